"""The ``local`` backend: the algorithm in numpy/numba on a data source, tile by tile on dask."""
from __future__ import annotations

from engine.backends.base import GlobalStats, Reduction, TileOutcome
from engine.backends.local.finish import finish_tile
from engine.backends.local.global_pass import global_pass
from engine.backends.local.reduce import reduce_samples
from engine.backends.local.train import train_tile
from config.parameters import Parameters
from engine.context import RunContext
from engine.sources.base import Source, get_source
from tiling.grid import Tile


def source_for(params: Parameters) -> Source:
    """The data source the parameters ask for."""
    if params.DATA_SOURCE == "synthetic":
        return get_source("synthetic", seed=params.SYNTHETIC_SEED)
    return get_source("stac", catalog=params.STAC_CATALOG, optical_collection=params.STAC_OPTICAL_COLLECTION,
                      sar_collection=params.STAC_SAR_COLLECTION, sar_units=params.STAC_SAR_UNITS)


class LocalBackend:
    """Stages of the local backend; tile stages run inside dask workers."""

    name = "local"

    def __init__(self, source: Source | None = None) -> None:
        self._source = source

    def source(self, ctx: RunContext) -> Source:
        if self._source is None:
            self._source = source_for(ctx.params)
        return self._source

    def global_pass(self, ctx: RunContext) -> GlobalStats:
        return global_pass(ctx, self.source(ctx))

    def train(self, ctx: RunContext, tile: Tile, stats: GlobalStats) -> TileOutcome:
        return train_tile(ctx, tile, stats, self.source(ctx))

    def reduce(self, ctx: RunContext, stats: GlobalStats, trained: list[Tile]) -> Reduction:
        return reduce_samples(ctx, stats, trained)

    def finish(self, ctx: RunContext, tile: Tile, stats: GlobalStats, reduction: Reduction) -> TileOutcome:
        return finish_tile(ctx, tile, stats, reduction, self.source(ctx))


__all__ = ["LocalBackend"]
