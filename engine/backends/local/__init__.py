"""The ``local`` backend: the algorithm in numpy/numba on a data source, tile by tile on dask."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from engine.backends.local.executor import LocalExecutor
from engine.backends.local.finish import finish_tile
from engine.backends.local.global_pass import global_pass
from engine.backends.local.reduce import reduce_samples
from engine.backends.local.train import train_tile
from engine.run.context import RunContext
from engine.run.progress import Progress
from engine.run.stages import GlobalStats, Reduction, TileOutcome
from engine.sources.base import Source
from engine.sources.factory import source_for
from tiling.grid import Tile


class LocalBackend:
    """The local backend: its session is a dask client; its tile stages run inside dask workers
    (``train`` and ``finish`` here are what a worker calls)."""

    name = "local"

    def __init__(self, source: Source | None = None) -> None:
        self._source = source

    def source(self, ctx: RunContext) -> Source:
        if self._source is None:
            self._source = source_for(ctx.params)
        return self._source

    @contextlib.contextmanager
    def open(self, ctx: RunContext, progress: Progress, confirm: Callable[[str], bool],
             resuming: bool) -> Iterator[LocalExecutor]:
        from engine.backends.local.dask import check_scheduler, open_client

        if ctx.params.SCHEDULER:  # an unreachable scheduler must fail before anything is written
            check_scheduler(ctx.params.SCHEDULER)
        with open_client(ctx.params.SCHEDULER, ctx.params.WORKERS) as client:
            yield LocalExecutor(self, ctx, client)

    def global_pass(self, ctx: RunContext, client=None) -> GlobalStats:
        return global_pass(ctx, self.source(ctx), client)

    def train(self, ctx: RunContext, tile: Tile, stats: GlobalStats) -> TileOutcome:
        return train_tile(ctx, tile, stats, self.source(ctx))

    def reduce(self, ctx: RunContext, stats: GlobalStats, trained: list[Tile]) -> Reduction:
        return reduce_samples(ctx, stats, trained)

    def finish(self, ctx: RunContext, tile: Tile, stats: GlobalStats, reduction: Reduction) -> TileOutcome:
        return finish_tile(ctx, tile, stats, reduction, self.source(ctx))

__all__ = ["LocalBackend", "LocalExecutor"]
