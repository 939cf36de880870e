"""Where a tile's time goes: a per-step profile of the local backend's two tile stages.

    python -m benchmarks.profile_steps [--area-km2 1000] [--mission L8] [--start 2019-01-01]
                                       [--end 2021-01-01] [--threads 1]

Runs the global pass, then one tile's stage A and B in this process (the tile of the plan with
the most AOI pixels), with every science step, source read and write wrapped in a timer that
counts exclusive seconds (a step's time excludes the steps it calls). Prints a table: seconds,
share of the tile, and the multiple of the regression's own time. The synthetic source's cost is
printed separately, per pixel-date, next to the engine's own cost per pixel-date (issue 14: at
most a quarter): for the tile's stages, and for a run, whose global pass reads every image once
more. Numba runs ``--threads`` threads (1: per-core figures).
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import shutil
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from AOI.resolve import resolve_aoi  # noqa: E402
from benchmarks.harness import kernel_mpx_per_core, machine, make_context, square_aoi  # noqa: E402
from engine.backends.local import finish, inputs, train  # noqa: E402
from engine.backends.local.global_pass import global_pass  # noqa: E402
from engine.backends.local.sink import TileSink  # noqa: E402
from engine.backends.sample_reduce import reduce_from_samples  # noqa: E402
from engine.run.cube import create_cube  # noqa: E402
from engine.run.rundir import RunDir  # noqa: E402
from engine.science import sar  # noqa: E402
from engine.sources.synthetic import SyntheticSource  # noqa: E402

SOURCE = "source (synthetic)"


class Timers:
    """Exclusive seconds per step name: time inside a wrapped call minus its wrapped callees."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, time spent in callees]

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return func(*args, **kwargs)
            finally:
                start, inner = self._stack.pop()
                total = time.perf_counter() - start
                self.seconds[name] += total - inner
                if self._stack:
                    self._stack[-1][1] += total

        return timed


# (module, attribute, step): the functions the tile stages call, as they name them
STEPS = [
    (inputs, "observe", "optical: cloud mask and NDVI"),
    (train, "gap_statistics", "gap statistics"), (train, "read_composites", "SAR composites"),
    (sar, "covariates", "covariates (21 x 21 means, focal medians, differences)"), (train, "robust_fit", "regression"),
    (train, "predict", "prediction"),
    (finish, "pca_smooth", "PCA smoothing"), (finish, "calibrate", "calibration"), (finish, "fill", "fill"),
    (finish, "score", "skill and baselines"),
]
IO = {"model": "writes: model COG", "work_arrays": "writes: work files", "sample": "writes: statistics sample",
      "cube": "writes: cube chunks", "load": "reads: work files"}


@contextmanager
def instrumented(timers: Timers, source: SyntheticSource) -> Iterator[None]:
    saved: list[tuple[Any, str, Any]] = []
    for module, attr, step in STEPS:
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, timers.wrap(step, getattr(module, attr)))
    for attr, step in IO.items():
        saved.append((TileSink, attr, getattr(TileSink, attr)))
        setattr(TileSink, attr, timers.wrap(step, getattr(TileSink, attr)))
    for attr in ("read_optical", "read_sar", "read_truth_ndvi"):
        setattr(source, attr, timers.wrap(SOURCE, getattr(source, attr)))
    try:
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--area-km2", type=float, default=1000.0)
    ap.add_argument("--aoi", help="instead: a site name, WRS-2 path/row or bbox (the tile the AOI covers most)")
    ap.add_argument("--mission", default="L8")
    ap.add_argument("--start", default="2019-01-01")
    ap.add_argument("--end", default="2021-01-01")
    ap.add_argument("--threads", type=int, default=1, help="numba threads (1: per-core figures)")
    ap.add_argument("--scratch", type=Path, default=Path("runs/bench"))
    a = ap.parse_args(argv)
    print(f"machine: {machine()}")
    kernel = kernel_mpx_per_core()
    print(f"regression kernel: {kernel:.3f} Mpx/s per core (robust_fit, 46 dates, one thread)", flush=True)
    numba.set_num_threads(a.threads)

    aoi = resolve_aoi(a.aoi) if a.aoi else square_aoi(a.area_km2)
    ctx = make_context(aoi, a.scratch / f"profile_{aoi.name}", OPTICAL_MISSION=a.mission,
                       START_DATE=dt.date.fromisoformat(a.start), END_DATE=dt.date.fromisoformat(a.end), WORKERS=1)
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    RunDir(ctx.run_dir).root.mkdir(parents=True)
    source = SyntheticSource(ctx.params.SYNTHETIC_SEED, missions=[a.mission])
    stats = global_pass(ctx, source)  # compiles the global pass's kernels (timed again below)
    p = ctx.params
    create_cube(RunDir(ctx.run_dir).cube, ctx.plan.grid, list(ctx.plan.tiles), pd.DatetimeIndex(stats.paired["time"]),
                ["filled", "mask", "prediction", "observation"] + ["smoothed"] * p.EXPORT_PCA, {})
    tile = max(ctx.plan.tiles, key=lambda t: t.core.intersection(ctx.plan.aoi).area)
    window = ctx.plan.compute_window(tile)
    dates, paired = len(stats.images), int(stats.paired.shape[0])
    # the global pass again, compiled now, its source reads timed: it reads every image a second time
    global_timers = Timers()
    for attr in ("read_optical", "read_sar"):
        setattr(source, attr, global_timers.wrap(SOURCE, getattr(SyntheticSource, attr).__get__(source)))
    t0 = time.perf_counter()
    global_pass(ctx, source)
    t_global = time.perf_counter() - t0
    for attr in ("read_optical", "read_sar"):
        delattr(source, attr)
    print(f"AOI {aoi.name}: {len(ctx.plan.tiles)} tiles of {ctx.plan.grid.tile_size} px; profiled tile {tile.id}: "
          f"{window.width} x {window.height} px computed, {dates} optical dates ({paired} paired), "
          f"{len(stats.sar)} S1 images; global pass {t_global:.1f} s (compiled), of which source reads "
          f"{global_timers.seconds[SOURCE]:.1f} s", flush=True)

    # warm-up: the numba kernels compile (or load their cache) outside the profile; the AOI-wide
    # reduce (of this tile's sample only) is not a tile step. The warm-up also measures memory:
    # tracemalloc slows numba's own allocations some tenfold, so it is off while timing.
    tracemalloc.start()
    train.train_tile(ctx, tile, stats, source)
    peak_train = tracemalloc.get_traced_memory()[1]
    sample = np.load(RunDir(ctx.run_dir).work_dir(tile.id) / "sample.npz")
    reduction = reduce_from_samples(ctx, stats, sample["pred"], sample["obs"], sample["mask"])
    tracemalloc.reset_peak()
    finish.finish_tile(ctx, tile, stats, reduction, source)
    peak_finish = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    timers = Timers()
    with instrumented(timers, source):
        t0 = time.perf_counter()
        outcome = train.train_tile(ctx, tile, stats, source)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        finish.finish_tile(ctx, tile, stats, reduction, source)
        t_finish = time.perf_counter() - t0
    total = t_train + t_finish
    timers.seconds["other (glue, masks, copies)"] = total - sum(timers.seconds.values())
    regression = timers.seconds["regression"]
    print(f"tile: train {t_train:.2f} s ({outcome.status}), finish {t_finish:.2f} s, numba threads {a.threads}; "
          f"peak traced memory (numpy and Python, a separate pass): train {peak_train / 2**20:,.0f} MiB, finish "
          f"{peak_finish / 2**20:,.0f} MiB; the plan's model of a tile: "
          f"{ctx.plan.budget.tile_bytes(ctx.plan.grid.tile_size) / 2**20:,.0f} MiB")
    print("\n| step | seconds | share | x regression |\n|---|---|---|---|")
    for name, s in sorted(timers.seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {s:.2f} | {s / total:.0%} | {s / regression:.2f} |")
    print(f"| all | {total:.2f} | 100% | {total / regression:.2f} |")
    pixel_dates = window.width * window.height * dates
    src = timers.seconds[SOURCE]
    engine = total - src
    print(f"\nper pixel-date ({window.width * window.height:,} px x {dates} dates): synthetic source "
          f"{src / pixel_dates * 1e9:.0f} ns, engine {engine / pixel_dates * 1e9:.0f} ns, ratio "
          f"{src / engine:.2f} (target <= 0.25); regression alone {regression / pixel_dates * 1e9:.0f} ns")
    # a run reads the source twice: the global pass (every tile's pixels) and stage A
    aoi_pixel_dates = ctx.plan.compute_pixels * dates
    src_g = global_timers.seconds[SOURCE]
    run_src = src_g / aoi_pixel_dates + src / pixel_dates
    run_engine = (t_global - src_g) / aoi_pixel_dates + engine / pixel_dates
    print(f"with the global pass ({ctx.plan.compute_pixels:,} px x {dates} dates, {t_global:.1f} s): synthetic source "
          f"{run_src * 1e9:.0f} ns, engine {run_engine * 1e9:.0f} ns per pixel-date, ratio {run_src / run_engine:.2f}")
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
