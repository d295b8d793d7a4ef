"""``weightaudit hash TARGET -o manifest.json`` and ``weightaudit verify TARGET manifest.json``.

hash: exit 0 when every file and tensor was hashed, 3 when something could not be. verify: exit 0 when everything
matches the manifest, 1 when a file or tensor changed, is missing or is extra, 3 when something could not be checked.
"""

from __future__ import annotations

import sys

import click

from weightaudit.cli.common import stderr_line, terminal, write_output
from weightaudit.cli.options import output_options, resolve_format

HASH_FORMATS = ("text", "json")
VERIFY_FORMATS = ("text", "json", "markdown")


def _emit(report, fmt: str, output: str | None, color: bool | None, quiet: bool) -> None:
    from weightaudit.render import RenderOptions
    from weightaudit.render.compare import render

    term = terminal(color, output)
    styled = fmt == "text" and term.stdout_styled
    write_output(render(report, fmt, RenderOptions(styled=styled, width=term.width)), output)
    if not quiet:
        for note in report.notes:
            stderr_line(f"weightaudit: {note}")
    sys.exit(int(report.exit_code))


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@output_options(HASH_FORMATS)
def hash_command(paths: tuple[str, ...], fmt: str | None, output: str | None, quiet: bool,
                 color: bool | None) -> None:
    """Write a manifest of a release: the sha256 of every file and a container-independent hash of every tensor
    (over its dtype, shape and little-endian C-order bytes: a safetensors file and its torch.save copy hash the
    same). Check it later with `weightaudit verify`."""
    from weightaudit import api

    fmt = resolve_format(fmt, output, HASH_FORMATS)
    manifest = api.hash(paths, exclude=output if output not in (None, "-") else None)
    _emit(manifest, fmt, output, color, quiet)


@click.command("verify")
@click.argument("target", type=click.Path())
@click.argument("manifest", type=click.Path(dir_okay=False))
@output_options(VERIFY_FORMATS)
def verify_command(target: str, manifest: str, fmt: str | None, output: str | None, quiet: bool,
                   color: bool | None) -> None:
    """Check TARGET against a manifest written by `weightaudit hash`: names every changed, missing and extra file
    and tensor. Exit 0 all match, 1 something differs."""
    from weightaudit import api

    fmt = resolve_format(fmt, output, VERIFY_FORMATS)
    _emit(api.verify(target, manifest), fmt, output, color, quiet)
