"""Period scaling of the local backend on the synthetic source: 1 to 6 years at a fixed area.

    python -m benchmarks.time_scaling [--years 1,2,3,4,5,6] [--area 1000] [--mission L8] [--workers 2]
                                      [--out benchmarks/results]

Prints one row per period, writes CSV and PNG, and the fitted exponent of wall time against the
number of optical dates. A period the engine refuses (e.g. one year of Landsat 8 holds too few clear
training dates for a model) is printed as refused and left out of the fit.
"""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd

from benchmarks.harness import fitted_exponent, machine, make_context, plot_scaling, run_case, square_aoi
from engine.errors import DataError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--years", default="1,2,3,4,5,6")
    ap.add_argument("--area", type=float, default=1000.0, help="AOI area in km2 (a square in WRS-2 091084)")
    ap.add_argument("--mission", default="L8")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tile-size", type=int, default=0,
                    help="0 (default): the budget's, which shrinks the tiles as dates grow (memory flat); "
                         "a size holds the tiles fixed")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--scratch", type=Path, default=Path("runs/bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    aoi = square_aoi(args.area)
    start = dt.date(2017, 1, 1)
    rows = []
    print(f"machine: {machine()}")
    for years in (int(y) for y in args.years.split(",")):
        ctx = make_context(aoi, args.scratch / f"years_{years}", OPTICAL_MISSION=args.mission, START_DATE=start,
                           END_DATE=start.replace(year=start.year + years), WORKERS=args.workers,
                           **({"TILE_SIZE": args.tile_size} if args.tile_size else {}))
        try:
            row = run_case(ctx)
        except DataError as e:
            print(f"years={years}: refused by the engine: {e}", flush=True)
            continue
        rows.append(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if len(rows) < 2:
        raise SystemExit("fewer than two periods ran: no exponent to fit")
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "time_scaling.csv", index=False)
    exponent = fitted_exponent(list(table["dates"]), list(table["wall_s"]))
    compute = table["wall_s"] - table.get("global_s", 0)
    exponent_tiles = fitted_exponent(list(table["dates"]), list(compute))
    print(f"fitted exponent of wall time against dates: {exponent:.3f} "
          f"(tile stages only, without the global pass: {exponent_tiles:.3f})")
    plot_scaling(table, "dates", "optical dates", args.out / "time_scaling.png", exponent,
                 "Local backend: time against period", False)
    print(f"wrote {args.out / 'time_scaling.csv'} and {args.out / 'time_scaling.png'}")


if __name__ == "__main__":
    main()
