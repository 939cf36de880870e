"""A whole-scene run of the local backend measured against this machine's regression kernel.

    python -m benchmarks.scene [--aoi 091084 | --area-km2 1000] [--mission L8] [--start 2019-01-01]
                               [--end 2021-01-01] [--workers 2] [--scratch runs/bench]

Prints, from one run: the robust regression kernel's Mpx/s per core (measured here before and after
the run: this machine's speed drifts by tens of percent within minutes, so R takes their mean), the
run's wall time, CPU-seconds per stage (driver and workers), peak memory per process and summed,
and the machine-independent ratio R = wall x workers / (AOI pixels / kernel pixels per second per
core): how many times the pure regression of the AOI's pixels the whole pipeline costs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from AOI.resolve import resolve_aoi  # noqa: E402
from benchmarks.harness import PeakMemory, kernel_mpx_per_core, machine, make_context, ratio_r, square_aoi  # noqa: E402
from engine.backends.local import LocalBackend  # noqa: E402
from engine.run.driver import execute  # noqa: E402


class StageMarks:
    """The driver's Progress: the tree's CPU-seconds at each stage start."""

    def __init__(self, mem: PeakMemory) -> None:
        self.mem = mem
        self.marks: list[tuple[str, float]] = []

    def stage(self, name: str, total: int, done: int = 0) -> None:
        self.marks.append((str(name), self.mem.cpu_seconds()))

    def tile(self, stage: str, tile_id: str, status: str) -> None:
        pass

    def note(self, text: str) -> None:
        print(f"note: {text}")

    def per_stage(self, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, t0), (_, t1) in zip(self.marks, [*self.marks[1:], ("end", end)], strict=True):
            out[name] = out.get(name, 0.0) + t1 - t0
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aoi", default="091084", help="WRS-2 path/row or site name (default 091084)")
    ap.add_argument("--area-km2", type=float, help="instead: a square of this area at the scene's centre")
    ap.add_argument("--mission", default="L8")
    ap.add_argument("--start", default="2019-01-01")
    ap.add_argument("--end", default="2021-01-01")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("runs/bench"))
    a = ap.parse_args(argv)
    print(f"machine: {machine()}")
    kernel_before = kernel_mpx_per_core()
    print(f"regression kernel: {kernel_before:.3f} Mpx/s per core (robust_fit, 46 dates, one thread)", flush=True)

    aoi = square_aoi(a.area_km2) if a.area_km2 else resolve_aoi(a.aoi)
    ctx = make_context(aoi, a.scratch / f"scene_{aoi.name}", OPTICAL_MISSION=a.mission,
                       START_DATE=dt.date.fromisoformat(a.start), END_DATE=dt.date.fromisoformat(a.end),
                       WORKERS=a.workers)
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    pixels = ctx.plan.aoi_pixels
    print(f"AOI {aoi.name}: {aoi.area_km2:,.0f} km2, {pixels / 1e6:.1f} Mpx at {ctx.params.scale:g} m, "
          f"{len(ctx.plan.tiles)} tiles of {ctx.plan.grid.tile_size} px, {a.mission} {a.start} to {a.end}, "
          f"{a.workers} workers", flush=True)
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        marks = StageMarks(mem)
        cpu0 = mem.cpu_seconds()
        result = execute(ctx, marks, backend=LocalBackend())
    wall = time.perf_counter() - t0
    cpu_end = sum(mem.cpu.values())  # exited workers keep their last sample (<= 0.2 s old)
    stages = marks.per_stage(cpu_end)
    before = (marks.marks[0][1] if marks.marks else cpu_end) - cpu0
    print(f"complete: {result.complete}; wall {wall:.1f} s; stage wall: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    print("CPU-seconds (driver and workers): " + ", ".join(
        [f"set-up and global pass {before:.1f}"] + [f"{k} {v:.1f}" for k, v in stages.items()]
        + [f"all {cpu_end - cpu0:.1f}"]) + " (train includes the reduce after it, finish the merge)")
    me = next(iter(mem.cpu))  # the driver: sampled first
    print(f"CPU-seconds per process: driver (with the scheduler) {mem.cpu[me] - cpu0:.1f}, workers "
          + ", ".join(f"{v:.1f}" for pid, v in mem.cpu.items() if pid != me and v > 1.0))
    top = sorted(mem.per_process.items(), key=lambda kv: -kv[1])
    print(f"peak memory: summed {mem.peak / 2**30:.2f} GiB; per process "
          + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in top[:6]))
    kernel_after = kernel_mpx_per_core()
    kernel = (kernel_before + kernel_after) / 2
    print(f"regression kernel after the run: {kernel_after:.3f} Mpx/s per core; their mean {kernel:.3f}")
    r = ratio_r(wall, a.workers, pixels, kernel)
    print(f"R = wall x workers / (AOI pixels / kernel px/s per core) = {wall:.1f} x {a.workers} / "
          f"({pixels / 1e6:.1f} Mpx / {kernel:.3f} Mpx/s) = {r:.1f} (target <= 4)")
    dates = int(result.stats.paired.shape[0]) if result.stats is not None else 0
    if dates and dates != 46:  # an AOI that several tracks see has more dates than one track's 46
        kernel_t = kernel_mpx_per_core(dates=dates)
        print(f"the run's {dates} paired dates: regression kernel at {dates} dates {kernel_t:.3f} Mpx/s per core; "
              f"R at the run's dates = {ratio_r(wall, a.workers, pixels, kernel_t):.1f}")
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return 0 if result.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
