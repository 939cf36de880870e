"""Before-the-run estimates of time, storage and Earth Engine tasks (rough, stated as such)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.run.context import RunContext

# Local backend: a run's wall time is LOCAL_FIXED_SECONDS (the cluster's start, the catalogs, the
# reduce and merge) plus LOCAL_SECONDS_PER_PIXEL_DATE per computed pixel and planned date on one core,
# all stages included. Fitted to two runs of `python -m benchmarks.scene` in the same hour
# (benchmarks/RESULTS.md, "Compute windows cut to the AOI's part of each tile"): the scene, 985.5 s for
# 4.94e9 pixel-dates, and the 1,000 km2 square, 20.65 s for 5.1e7, on 2 workers (the runs' kernel means
# 0.397, 0.428 and 0.421 Mpx/s per core; machines differ up to 2x).
LOCAL_SECONDS_PER_PIXEL_DATE = 4.0e-7
LOCAL_FIXED_SECONDS = 10.0
# Earth Engine: rough minutes per batch task of a budget-sized tile (unconfirmed; depends on load). A tile is
# ``RunContext.ee_exports_per_tile`` tasks: the model, the outputs image (every product, computed once), the table.
GEE_MINUTES_PER_TASK = 6.0
# Local backend: stage A keeps, per pixel and paired date, the prediction and the observation
# (float32) and the mask (uint8) for stage B, uncompressed (.npy); a tile's go once it is finished.
WORK_BYTES_PER_PIXEL_DATE = 9
# The local cube's float32 variables on disk, as a fraction of their raw size (lz4 with byte shuffle):
# a whole scene's cube measured 0.61 (prediction), 0.67 (filled) and 0.34 (observation, NaN where
# cloudy) of the raw bytes of its AOI's pixels (benchmarks/RESULTS.md, "The scene within 2.5 GB");
# the mask (uint8) is counted raw. Outside the AOI the chunks hold NaN, which costs next to nothing.
CUBE_FLOAT_RATIO = 0.7


@dataclass(frozen=True)
class Estimate:
    dates: int
    pixels: int
    seconds: float
    bytes: int
    ee_tasks: int
    ee_assets: int
    work_bytes: int = 0  # local: work files between a tile's stages (each tile's deleted once it is finished)
    train_bytes: int = 0  # local: what training writes besides the work files (models, gap layers)

    @property
    def peak_bytes(self) -> int:
        """The most on disk at once: every work file and training output at the end of training, or every
        output at the end (a finished tile's outputs replace its work files; a run with failed tiles keeps
        them all)."""
        return max(self.bytes, self.work_bytes + self.train_bytes)


def ee_counts(ctx: RunContext) -> tuple[int, int]:
    """(batch tasks, assets) of the run on Earth Engine, whatever the backend: per tile
    ``ctx.ee_exports_per_tile`` exports (model, outputs image(s), per-image table; assets for all of
    them with EXPORT_DESTINATION=asset, else the model only), plus the run's folders and mosaics."""
    to_asset = ctx.params.EXPORT_DESTINATION == "asset"
    per_tile = ctx.ee_exports_per_tile
    return (ctx.plan.tasks(per_tile) + ctx.ee_run_exports,
            ctx.plan.assets(per_tile, to_asset) + ctx.ee_run_exports)


def estimate(ctx: RunContext) -> Estimate:
    plan, params = ctx.plan, ctx.params
    dates = plan.budget.dates
    pixels = plan.compute_pixels  # the tiles' cores cut to the AOI's part of them: what is computed
    floats = len(ctx.variables) - 1  # float32 per-date variables besides the mask
    per_pixel = 4 * (7 + 9)  # 7 gap bands and the 9-band model, float32
    tasks, assets = ee_counts(ctx) if params.BACKEND == "gee" else (0, 0)
    if params.BACKEND == "gee":  # one outputs image, every band float32 (the mask too), raw
        seconds = tasks * GEE_MINUTES_PER_TASK * 60 / params.MAX_RUNNING_EXPORTS
        return Estimate(dates, pixels, seconds, pixels * (dates * 4 * (floats + 1) + per_pixel), tasks, assets)
    workers = max(1, params.WORKERS)
    seconds = LOCAL_FIXED_SECONDS + pixels * dates * LOCAL_SECONDS_PER_PIXEL_DATE / workers
    cube = plan.aoi_pixels * dates * (4 * floats * CUBE_FLOAT_RATIO + 1)
    return Estimate(dates, pixels, seconds, round(cube) + pixels * per_pixel, tasks, assets,
                    work_bytes=pixels * dates * WORK_BYTES_PER_PIXEL_DATE, train_bytes=pixels * per_pixel)


def human_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
