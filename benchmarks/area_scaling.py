"""Area scaling of the local backend on the synthetic source: from ~10 km2 to a whole WRS-2 scene.

    python -m benchmarks.area_scaling [--areas 10,100,1000,5000,scene] [--mission L8] [--years 2]
                                        [--workers 2] [--out benchmarks/results]

Prints one row per AOI (wall time per stage, source read time, peak memory of the process tree),
writes CSV and PNG, and the fitted exponent of wall time against area.
"""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd

from benchmarks.harness import fitted_exponent, machine, make_context, plot_scaling, run_case, square_aoi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", default="10,100,1000,5000,scene", help="km2 list; 'scene' = the whole WRS-2 scene")
    ap.add_argument("--mission", default="L8")
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--scratch", type=Path, default=Path("runs/bench"))
    ap.add_argument("--from-csv", type=Path, nargs="+", help="no runs: fit and plot rows of earlier runs' CSVs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = dt.date(2021, 1, 1)
    end = start.replace(year=start.year + args.years)
    rows = [row for path in args.from_csv or [] for row in pd.read_csv(path).to_dict(orient="records")]
    print(f"machine: {machine()}")
    for spec in [] if args.from_csv else args.areas.split(","):
        area = 1e9 if spec == "scene" else float(spec)
        aoi = square_aoi(area)
        ctx = make_context(aoi, args.scratch / f"area_{spec}", OPTICAL_MISSION=args.mission, START_DATE=start,
                           END_DATE=end, WORKERS=args.workers)
        row = run_case(ctx)
        rows.append(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    table = pd.DataFrame(rows).sort_values("area_km2")
    print(table.to_string(index=False))
    table.to_csv(args.out / "area_scaling.csv", index=False)
    exponent = fitted_exponent(list(table["area_km2"]), list(table["wall_s"]))
    big = table[table["area_km2"] >= 100]
    exponent_big = fitted_exponent(list(big["area_km2"]), list(big["wall_s"])) if len(big) >= 2 else float("nan")
    print(f"fitted exponent of wall time against area: {exponent:.3f} (all AOIs), {exponent_big:.3f} (>= 100 km2)")
    plot_scaling(table, "area_km2", "AOI area (km2)", args.out / "area_scaling.png", exponent,
                 "Local backend: time against area", True)
    print(f"wrote {args.out / 'area_scaling.csv'} and {args.out / 'area_scaling.png'}")


if __name__ == "__main__":
    main()
