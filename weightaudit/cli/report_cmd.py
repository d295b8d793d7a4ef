"""``weightaudit report DB``: the fleet report (placeholder while it is written)."""

import click


@click.command("report")
@click.argument("db", type=click.Path())
def report_command(db: str) -> None:
    """Fleet report of a batch database."""
    raise SystemExit(2)
