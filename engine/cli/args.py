"""The job's command-line options: flag -> parameter key, value types, overrides, confirmation."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.errors import ConfigError

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
    "clip_ndvi": "CLIP_NDVI",
    "keep_clear": "KEEP_CLEAR_OBSERVED",
}


def _positive(kind: type, noun: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


positive_int = _positive(int, "a whole number")
_positive_float = _positive(float, "a number")


def _date(text: str) -> str:
    """A day as YYYY-MM-DD (YYYYMMDD is accepted and rewritten)."""
    import datetime as dt

    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a day YYYY-MM-DD (e.g. 2021-01-01)")


def _mission(text: str) -> str:
    return text.upper()


def add_job_options(p: argparse.ArgumentParser, data_only: bool = False) -> None:
    """The job's options; ``data_only`` (export-stac): only what chooses the data, not how a run executes."""
    g = p.add_argument_group("area and period")
    g.add_argument("--aoi", help="WRS-2 path/row (091084, 91/84, p091r084), site name, vector file, or bbox minx,miny,maxx,maxy")
    g.add_argument("--aoi-name", help="pick one feature (by its name column) from a vector file")
    g.add_argument("--config", help="Parameters.json to load over the defaults")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_params",
                   help="any parameter, e.g. --set TRAIN_TEST_SPLIT=0.8 (VALUE as JSON or text; repeatable; "
                        "over --config, under the flags)")
    g.add_argument("--mission", type=_mission, choices=["S2", "L8"], help="optical mission (OPTICAL_MISSION)")
    g.add_argument("--start", type=_date, help="first day YYYY-MM-DD (START_DATE)")
    g.add_argument("--end", type=_date, help="end day YYYY-MM-DD, exclusive (END_DATE)")
    g.add_argument("--crs", help="grid CRS, e.g. EPSG:32755 (default: UTM zone of the AOI centroid)")
    g = p.add_argument_group("tiling")
    g.add_argument("--tile-size", type=positive_int, metavar="PX", help="force the tile side in pixels (TILE_SIZE)")
    g.add_argument("--tile-budget-mb", type=_positive_float, metavar="MB", help="bytes budget per tile (TILE_BUDGET_MB)")
    g.add_argument("--scale", type=_positive_float, metavar="M", help="analysis pixel size in metres (ANALYSIS_SCALE)")
    if data_only:
        p.add_argument_group("data").add_argument("--seed", type=int, help="synthetic source seed (SYNTHETIC_SEED)")
        return
    g = p.add_argument_group("science options (the defaults follow the method)")
    g.add_argument("--clip-ndvi", action="store_true", default=None,
                   help="clip the calibrated prediction (and the fill) to [-1, 1] (CLIP_NDVI)")
    g.add_argument("--keep-clear", action="store_true", default=None,
                   help="keep clear observations as observed after the fill's focal median (KEEP_CLEAR_OBSERVED)")
    g = p.add_argument_group("execution")
    g.add_argument("--run-dir", help="run directory (default runs/<aoi>_<mission>_<start>_<end>)")
    g.add_argument("--backend", choices=["local", "gee"], help="local (numpy/dask) or gee (Earth Engine)")
    g.add_argument("--source", choices=["synthetic", "stac", "ee"],
                   help="local data source (DATA_SOURCE): ee reads Earth Engine with computePixels")
    g.add_argument("--stac", metavar="CATALOG", help="STAC catalog.json or API URL (STAC_CATALOG)")
    g.add_argument("--seed", type=int, help="synthetic source seed (SYNTHETIC_SEED)")
    g.add_argument("--workers", type=positive_int, help="local dask worker processes (WORKERS)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask scheduler, e.g. tcp://10.0.0.5:8786")
    g.add_argument("--project", help="Earth Engine Cloud project (EE_PROJECT; or the EE_PROJECT env var)")
    g.add_argument("--ee-url", metavar="URL", help="Earth Engine API base URL (EE_API_URL)")
    g.add_argument("--title", help="PROJECT_TITLE")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Parameter overrides of the flags given. ``--stac`` implies ``--source stac``; with
    ``--source synthetic`` it would be ignored, so that is refused."""
    out = _set_params(getattr(args, "set_params", None) or [])
    out.update({key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None})
    if getattr(args, "stac", None):
        if getattr(args, "source", None) == "synthetic":
            raise ConfigError(f"--stac {args.stac} reads a STAC catalog but --source synthetic uses the built-in "
                              "synthetic data: drop --source synthetic (or --stac)")
        out["DATA_SOURCE"] = "stac"
    return out


def _set_params(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs; VALUE is JSON (``0.8``, ``false``, ``null``) or else a string."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE, e.g. --set TRAIN_TEST_SPLIT=0.8")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


@dataclass(frozen=True)
class Options:
    """What a command was given, as one frozen value (commands never see argparse's Namespace)."""

    command: str
    overrides: Mapping[str, Any] = field(default_factory=dict)  # parameters from the flags (and --set)
    aoi: str | None = None
    aoi_name: str | None = None
    config: str | None = None
    run_dir: str | None = None  # RUN_DIR of resume, status, report (for run and plan: an override)
    out: str | None = None
    yes: bool = False
    quiet: bool = False
    verbose: int = 0
    workers: int | None = None
    scheduler: str | None = None
    quick: bool = False
    tiles: bool = False
    float_values: bool = False
    request_mib: float = 48.0  # download: the largest computePixels response

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> Options:
        """Checked here, so a contradiction (``--stac`` with ``--source synthetic``) is one error line."""
        given = vars(ns)
        names = {f for f in cls.__dataclass_fields__ if f not in ("overrides", "float_values")}
        return cls(overrides=MappingProxyType(overrides_from_args(ns)), float_values=bool(given.get("float")),
                   **{k: given[k] for k in names if given.get(k) is not None})


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; without one (or with --yes) only ``assume_yes`` counts."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


__all__ = ["FLAG_KEYS", "Options", "add_job_options", "overrides_from_args", "confirm", "positive_int"]
