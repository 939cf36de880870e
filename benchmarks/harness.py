"""Shared harness of the scaling benchmarks: build a job, run it, measure wall time and peak memory.

Peak memory is the largest sum of resident memory over the driver and all its child processes
(the dask workers), sampled every 0.2 s.
"""
from __future__ import annotations

import math
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import shapely
from pyproj import Transformer

from AOI.resolve import AOI, resolve_aoi
from config.parameters import load_parameters
from engine.run.context import RunContext, tile_budget
from engine.run.ledger import Ledger
from engine.backends.local import LocalBackend
from engine.run.driver import execute
from engine.run.progress import SilentProgress
from tiling.plan import plan_tiles

SCENE = "091084"


class PeakMemory:
    """Samples the RSS (and CPU-seconds) of this process tree in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.per_process: dict[str, int] = {}  # "pid name" -> peak RSS of that process
        self.cpu: dict[int, float] = {}  # pid -> user + system CPU-seconds when last seen (kept after it exits)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
                t = proc.cpu_times()
            except psutil.Error:
                continue
            self.cpu[proc.pid] = t.user + t.system
            total += rss
            key = "driver" if proc.pid == me.pid else f"{proc.pid}"
            self.per_process[key] = max(self.per_process.get(key, 0), rss)
        return total

    def cpu_seconds(self) -> float:
        """CPU-seconds of the tree so far (a fresh sample; exited processes keep their last one)."""
        self._sample()
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def square_aoi(area_km2: float, scene: str = SCENE) -> AOI:
    """A square of ``area_km2`` centred on the scene's centre (or the whole scene when larger)."""
    whole = resolve_aoi(scene)
    if area_km2 >= whole.area_km2:
        return whole
    tr = Transformer.from_crs(f"EPSG:{whole.epsg}", "EPSG:4326", always_xy=True)
    c = whole.projected().centroid
    half = math.sqrt(area_km2) * 1000 / 2
    square = shapely.box(c.x - half, c.y - half, c.x + half, c.y + half)
    lonlat = shapely.transform(square, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return AOI(name=f"square_{area_km2:g}km2", kind="bbox", geometry=lonlat, epsg=whole.epsg)


def make_context(aoi: AOI, run_dir: Path, **overrides: Any) -> RunContext:
    params, _ = load_parameters(None, {"RUN_DIR": str(run_dir), **overrides})
    plan = plan_tiles(aoi.projected(), aoi.epsg, params.scale, tile_budget(params, aoi), params.TILE_SIZE)
    return RunContext(params=params, aoi=aoi, plan=plan, run_dir=run_dir)


def kernel_mpx_per_core(pixels: int = 200_000, dates: int = 46, repeat: int = 3) -> float:
    """The robust regression's single-thread throughput on this machine, in Mpx/s."""
    import numba

    from benchmarks.regression_kernel import synthetic
    from engine.science import regression as reg

    cov, y, train = synthetic(dates, pixels)
    reg.robust_fit(cov[:, :, :1000], y[:, :1000], train[:, :1000])  # JIT (or cache load)
    numba.set_num_threads(1)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        reg.robust_fit(cov, y, train)
        best = min(best, time.perf_counter() - t0)
    return pixels / best / 1e6


def ratio_r(wall_s: float, workers: int, aoi_pixels: float, kernel_mpx_s: float) -> float:
    """R = wall x workers / (AOI pixels / kernel pixels per second per core): how many times the pure
    regression of the AOI's pixels the whole run costs (issue 14's machine-independent ratio)."""
    return wall_s * workers / (aoi_pixels / (kernel_mpx_s * 1e6))


def run_case(ctx: RunContext, keep: bool = False) -> dict[str, Any]:
    """Run the job from scratch and return its figures, with the regression kernel's speed measured
    just before and after and R = wall x workers / (AOI pixels / kernel pixels per second per core)."""
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    kernel_before = kernel_mpx_per_core()
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        result = execute(ctx, SilentProgress(), backend=LocalBackend())
    wall = time.perf_counter() - t0
    kernel = (kernel_before + kernel_mpx_per_core()) / 2
    with Ledger(ctx.run_dir / "ledger.sqlite") as ledger:
        read_s = sum(r.stats.get("read_s", 0.0) for r in ledger.records() if r.stage in ("train", "finish"))
    disk = sum(f.stat().st_size for f in ctx.run_dir.rglob("*") if f.is_file())
    row = {
        "aoi": ctx.aoi.name,
        "area_km2": round(ctx.aoi.area_km2, 2),
        "aoi_pixels": ctx.plan.aoi_pixels,
        "tiles": len(ctx.plan.tiles),
        "tile_px": ctx.plan.grid.tile_size,
        "dates": int(result.stats.paired.shape[0]),
        "years": round((ctx.params.END_DATE - ctx.params.START_DATE).days / 365.25, 2),
        "wall_s": round(wall, 2),
        "kernel_mpx_s": round(kernel, 3),
        "R": round(ratio_r(wall, ctx.params.WORKERS, ctx.plan.aoi_pixels, kernel), 1),
        **{f"{k}_s": round(v, 2) for k, v in result.timings.items()},
        "source_read_cpu_s": round(read_s, 2),
        "peak_rss_mb": round(mem.peak / 2**20),
        "peak_by_process_mb": " ".join(f"{k}:{v / 2**20:.0f}" for k, v in sorted(mem.per_process.items(),
                                                                                key=lambda kv: -kv[1])[:4]),
        "disk_mb": round(disk / 2**20),
        "complete": result.complete,
    }
    if not keep:
        shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return row


def fitted_exponent(x: list[float], y: list[float]) -> float:
    """Slope of log(y) against log(x) (least squares)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def machine() -> str:
    return (f"{platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}")


def plot_scaling(table, x: str, xlabel: str, path: Path, exponent: float, title: str, log_x_memory: bool) -> None:
    """Two panels: wall time and stage times against ``x`` (log-log), and peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.loglog(table[x], table["wall_s"], "o-", label=f"wall (exponent {exponent:.2f})")
    for stage in ("train_s", "finish_s"):
        if stage in table:
            a.loglog(table[x], table[stage], ".--", label=stage[:-2])
    a.set_xlabel(xlabel)
    a.set_ylabel("seconds")
    a.legend()
    a.set_title(title)
    (b.semilogx if log_x_memory else b.plot)(table[x], table["peak_rss_mb"] / 1024, "o-")
    b.set_xlabel(xlabel)
    b.set_ylabel("peak memory (GiB)")
    b.set_title("Peak memory of driver + workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
