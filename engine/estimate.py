"""Before-the-run estimates of time, storage and Earth Engine tasks (rough, stated as such)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.context import RunContext

# Local backend cost per (pixel x optical date), seconds, on one core of the reference machine,
# all stages included. Measured with benchmarks/area_scaling.py (see benchmarks/RESULTS.md).
LOCAL_SECONDS_PER_PIXEL_DATE = 2.0e-7
# Earth Engine: rough minutes per batch task of a budget-sized tile (unconfirmed; depends on load).
GEE_MINUTES_PER_TASK = 6.0


@dataclass(frozen=True)
class Estimate:
    dates: int
    pixels: int
    seconds: float
    bytes: int
    ee_tasks: int
    ee_assets: int

    def describe(self) -> str:
        return f"~{human_seconds(self.seconds)}, ~{human_bytes(self.bytes)}"


def estimate(ctx: RunContext) -> Estimate:
    plan, params = ctx.plan, ctx.params
    dates = plan.budget.dates
    pixels = plan.tile_pixels
    float_outputs = 3 + params.EXPORT_PCA + 2 * params.EXPORT_INPUT  # filled, prediction, observation (+extras)
    per_pixel = dates * (4 * float_outputs + 1) + 4 * (7 + 9)  # + mask bytes, gap bands, model
    n_out = len(ctx.outputs)
    tasks = plan.tasks(n_out) if params.BACKEND == "gee" else 0
    assets = plan.assets(n_out, params.EXPORT_DESTINATION == "asset") if params.BACKEND == "gee" else 0
    if params.BACKEND == "gee":
        seconds = tasks * GEE_MINUTES_PER_TASK * 60 / params.MAX_RUNNING_EXPORTS
    else:
        workers = max(1, params.WORKERS)
        seconds = pixels * dates * LOCAL_SECONDS_PER_PIXEL_DATE / workers
    return Estimate(dates, pixels, seconds, pixels * per_pixel, tasks, assets)


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
