"""Time to plan a whole WRS-2 scene (resolve the AOI, size tiles, cut the grid).

    python benchmarks/plan_scene.py [--aoi 091084] [--scale 10] [--repeat 20]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

from AOI.resolve import resolve_aoi
from engine.run.context import acquisition_tracks
from tiling.budget import Budget, estimate_dates
from tiling.plan import plan_tiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aoi", default="091084")
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--mission", default="S2")
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--budget-mb", type=float, default=1024)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    t0 = time.perf_counter()
    aoi = resolve_aoi(args.aoi)
    geom = aoi.projected()
    t_resolve = time.perf_counter() - t0
    budget = Budget(estimate_dates(args.mission, args.days, tracks=acquisition_tracks(args.mission, aoi)),
                    int(args.budget_mb * 2**20))
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        plan = plan_tiles(geom, aoi.epsg, args.scale, budget)
        times.append(time.perf_counter() - t)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"AOI {aoi.name}: {aoi.area_km2:,.0f} km2 at {args.scale:g} m = {plan.aoi_pixels:,} px; "
          f"{len(plan.tiles)} tiles of {plan.grid.tile_size} px")
    print(f"resolve AOI (first call, loads the WRS-2 table): {t_resolve * 1000:.0f} ms")
    print(f"plan tiles: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {args.repeat} runs")


if __name__ == "__main__":
    main()
