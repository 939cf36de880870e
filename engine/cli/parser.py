"""``python -m engine``: plan, run, resume, status and report cloud-infilling jobs.

The CLI owns the terminal: library code only logs. A user mistake prints one line starting with
``error:`` and exits non-zero, without a traceback and without writing anything.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from engine.cli import commands
from engine.cli.args import Options, add_job_options
from engine.errors import EngineError, Interrupted

log = logging.getLogger("engine")

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


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the final summary")


def build_parser() -> argparse.ArgumentParser:
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
            add_job_options(p, data_only=takes_job == "data")
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
    # Ctrl-C inside a dask client call can make distributed's event-loop callback fail (a NameError in
    # distributed.utils.sync's cancel), which tornado logs with a traceback: internals, not for users
    logging.getLogger("tornado.application").setLevel(noisy_level if verbose > 1 else logging.CRITICAL)
    # importing distributed (later, lazily) resets its loggers from dask's config ("distributed": info):
    # give it ours, or -q runs and one-line errors get scheduler chatter and tracebacks on stderr
    import dask

    dask.config.set({"logging.distributed": logging.getLevelName(noisy_level).lower()})


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--aoi -122.5,37.6,-122.4,37.7`` as ``--aoi=-122.5,...``: argparse takes a value that starts
    with ``-`` (a western or southern bbox) for an option and says "expected one argument"."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"-\.?\d", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    _setup_logging(args.verbose, args.quiet)
    func: Callable[[Options], int] = args.func
    try:
        return func(Options.from_namespace(args))
    except Interrupted as e:
        sys.stderr.write(f"{e}\n")
        return e.exit_code
    except EngineError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:  # before a run began: nothing was written
        sys.stderr.write("interrupted\n")
        return 130
    except OSError as e:  # disk full, permission denied: the user's environment, not a bug
        sys.stderr.write(f"error: {e.strerror or e}: {e.filename or ''}\n".replace(": \n", "\n"))
        return 1


__all__ = ["main", "build_parser"]
