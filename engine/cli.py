"""``python -m engine``: plan, run, resume, status and report cloud-infilling jobs.

The CLI owns the terminal: library code only logs. A user mistake prints one line starting with
``error:`` and exits non-zero, without a traceback and without writing anything.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from engine.errors import ConfigError, EngineError

log = logging.getLogger("engine")

# command-line flag -> config key
FLAG_KEYS = {
    "mission": "OPTICAL_MISSION",
    "start": "START_DATE",
    "end": "END_DATE",
    "tile_size": "TILE_SIZE",
    "tile_budget_mb": "TILE_BUDGET_MB",
    "scale": "ANALYSIS_SCALE",
    "crs": "CRS",
    "run_dir": "RUN_DIR",
    "backend": "BACKEND",
    "source": "DATA_SOURCE",
    "stac": "STAC_CATALOG",
    "workers": "WORKERS",
    "scheduler": "SCHEDULER",
    "project": "EE_PROJECT",
    "ee_url": "EE_API_URL",
    "title": "PROJECT_TITLE",
    "seed": "SYNTHETIC_SEED",
}

EPILOG = """examples:
  python -m engine plan --aoi 091084 --mission L8 --start 2021-01-01 --end 2023-01-01
  python -m engine run --aoi "North Qld"
  python -m engine run --aoi my_fields.gpkg --aoi-name "Paddock 7" --mission S2
  python -m engine run --aoi 145.7,-17.1,145.9,-16.9 --backend gee --project my-ee-project
  python -m engine status runs/North_Qld_S2_20210101_20220101
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _add_job_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("area and period")
    g.add_argument("--aoi", help="WRS-2 path/row (091084, 91/84, p091r084), site name, vector file, or bbox minx,miny,maxx,maxy")
    g.add_argument("--aoi-name", help="pick one feature (by its name column) from a vector file")
    g.add_argument("--config", help="Parameters.json to load over the defaults")
    g.add_argument("--mission", choices=["S2", "L8"], help="optical mission (OPTICAL_MISSION)")
    g.add_argument("--start", help="first day YYYY-MM-DD (START_DATE)")
    g.add_argument("--end", help="end day YYYY-MM-DD, exclusive (END_DATE)")
    g.add_argument("--crs", help="grid CRS, e.g. EPSG:32755 (default: UTM zone of the AOI centroid)")
    g = p.add_argument_group("tiling")
    g.add_argument("--tile-size", type=_positive_int, metavar="PX", help="force the tile side in pixels (TILE_SIZE)")
    g.add_argument("--tile-budget-mb", type=_positive_float, metavar="MB", help="bytes budget per tile (TILE_BUDGET_MB)")
    g.add_argument("--scale", type=_positive_float, metavar="M", help="analysis pixel size in metres (ANALYSIS_SCALE)")
    g = p.add_argument_group("execution")
    g.add_argument("--run-dir", help="run directory (default runs/<aoi>_<mission>_<start>_<end>)")
    g.add_argument("--backend", choices=["local", "gee"], help="local (numpy/dask) or gee (Earth Engine)")
    g.add_argument("--source", choices=["synthetic", "stac"], help="local data source (DATA_SOURCE)")
    g.add_argument("--stac", metavar="CATALOG", help="STAC catalog.json or API URL (STAC_CATALOG)")
    g.add_argument("--seed", type=int, help="synthetic source seed (SYNTHETIC_SEED)")
    g.add_argument("--workers", type=_positive_int, help="local dask worker processes (WORKERS)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask scheduler, e.g. tcp://10.0.0.5:8786")
    g.add_argument("--project", help="Earth Engine Cloud project (EE_PROJECT; or the EE_PROJECT env var)")
    g.add_argument("--ee-url", metavar="URL", help="Earth Engine API base URL (EE_API_URL)")
    g.add_argument("--title", help="PROJECT_TITLE")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the final summary")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    from engine import commands

    parser = _Parser(
        prog="python -m engine",
        description="Cloud-free NDVI time series for whole Landsat/Sentinel-2 scenes: fill cloudy pixels with "
        "predictions from Sentinel-1 radar, tile by tile, on Earth Engine (gee) or locally (local).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (func, help_text, takes_job, extra) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if takes_job:
            _add_job_options(p)
        extra(p)
        _add_verbosity(p)
        p.set_defaults(func=func)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    noisy_level = max(level, logging.WARNING if verbose > 1 else logging.ERROR)
    for noisy in ("distributed", "googleapiclient", "urllib3", "rasterio", "numba", "fiona", "pyogrio", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(noisy_level)
    # importing distributed (later, lazily) resets its loggers from dask's config ("distributed": info):
    # give it ours, or -q runs and one-line errors get scheduler chatter and tracebacks on stderr
    import dask

    dask.config.set({"logging.distributed": logging.getLevelName(noisy_level).lower()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except EngineError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished tiles are kept; resume with: python -m engine resume RUN_DIR\n")
        return 130
    except OSError as e:  # disk full, permission denied: the user's environment, not a bug
        sys.stderr.write(f"error: {e.strerror or e}: {e.filename or ''}\n".replace(": \n", "\n"))
        return 1


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; without one (or with --yes) only ``assume_yes`` counts."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


__all__ = ["main", "build_parser", "overrides_from_args", "confirm", "ConfigError"]
