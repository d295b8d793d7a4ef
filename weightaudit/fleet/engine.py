"""Where the releases are audited: an engine takes tasks and hands every outcome back, in the calling (writer)
process, as soon as it is done. Engines register here by name; ``--engine NAME`` picks one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from weightaudit.fleet.work import Work


@dataclass(frozen=True)
class EngineConfig:
    jobs: int
    timeout_s: float | None = None          # wall-clock limit per release
    max_memory_bytes: int | None = None     # memory a release may use on top of its worker's own
    scheduler: str | None = None            # dask: an existing scheduler's address


class Engine(Protocol):
    name: str

    def run(self, work: "Work") -> None:
        """Run every unit ``work.take()`` hands out (bounded in flight; ``fleet.task.run_unit`` in a worker), give
        each result or failure back through ``work.deliver`` in this process, return once ``work.finished`` and
        nothing is in flight; stop all workers before returning or raising (KeyboardInterrupt/Interrupted
        included)."""


def _local(config: EngineConfig) -> Engine:
    from weightaudit.fleet.engine_local import LocalEngine

    return LocalEngine(config)


def _dask(config: EngineConfig) -> Engine:
    from weightaudit.fleet.engine_dask import DaskEngine

    return DaskEngine(config)


ENGINES: dict[str, Callable[[EngineConfig], Engine]] = {"local": _local, "dask": _dask}


def make_engine(name: str, config: EngineConfig) -> Engine:
    return ENGINES[name](config)
