"""``run.json``: what a run directory holds, how to check a new command against it, and how to rebuild it."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shlex
from pathlib import Path
from typing import Any

import shapely

from AOI.resolve import AOI
from config.parameters import EXECUTION_KEYS, Parameters
from engine import __version__
from engine.run.context import RunContext
from engine.errors import ConfigError, EngineError, RunDirError
from engine.io import existing_ancestor
from engine.run.rundir import RunDir
from tiling.budget import backend_budget
from tiling.plan import plan_tiles


def _tiles_hash(ctx: RunContext) -> str:
    return hashlib.sha256("\n".join(t.id for t in ctx.plan.tiles).encode()).hexdigest()[:12]


def run_description(ctx: RunContext) -> dict[str, Any]:
    g = ctx.plan.grid
    return {
        "engine_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "science_hash": ctx.params.science_hash(),
        "params": ctx.params.model_dump(mode="json"),
        "aoi": {"name": ctx.aoi.name, "kind": ctx.aoi.kind, "epsg": ctx.aoi.epsg, "wkt": ctx.aoi.geometry.wkt},
        "plan": {"epsg": g.epsg, "resolution": g.resolution, "tile_size": g.tile_size, "halo": g.halo,
                 "tiles": len(ctx.plan.tiles), "tiles_hash": _tiles_hash(ctx), "dates_estimate": ctx.plan.budget.dates,
                 "budget_bytes": ctx.plan.budget.max_bytes},
    }


def check_compatible(recorded: dict[str, Any], ctx: RunContext) -> None:
    """Refuse to mix two different jobs, or one job's products of two backends, in one run directory."""
    where = str(ctx.run_dir)
    was, now = recorded.get("params", {}).get("BACKEND"), ctx.params.BACKEND
    if was != now:  # an execution key, but each backend records its own kind of products (files, assets)
        raise RunDirError(f"run directory {where!r} holds a {was} run and this command asks for the {now} backend; "
                          f"use a new --run-dir (or --backend {was} to continue it)")
    if recorded.get("science_hash") != ctx.params.science_hash():
        changed = sorted(k for k, v in ctx.params.model_dump(mode="json").items()
                         if recorded.get("params", {}).get(k) != v)
        raise RunDirError(f"run directory {where!r} holds a run with a different configuration "
                          f"(changed: {', '.join(changed) or 'unknown'}); use a new --run-dir, or resume it as it is")
    if recorded.get("aoi", {}).get("wkt") != ctx.aoi.geometry.wkt:
        raise RunDirError(f"run directory {where!r} holds a run of another AOI ({recorded['aoi']['name']}); "
                          "use a new --run-dir")
    if recorded.get("plan", {}).get("tiles_hash") != _tiles_hash(ctx):
        was, now = recorded["plan"]["tile_size"], ctx.plan.grid.tile_size
        remedy = ("drop --tile-size" if ctx.plan.forced_size else
                  f"resume it as it was planned (python -m engine resume {shlex.quote(where)})")
        raise RunDirError(f"run directory {where!r} was planned with other tiles ({was} px, this plan {now} px); "
                          f"{remedy}, or use a new --run-dir")


def check_run_dir(rd: RunDir, ctx: RunContext) -> bool:
    """Whether ``rd`` already holds this run; refuse (before writing anything) what it cannot be used for."""
    if rd.root.exists() and not rd.root.is_dir():
        raise RunDirError(f"run directory {str(rd.root)!r} is a file; choose another --run-dir")
    if not rd.root.exists():  # it will be created: can it be?
        parent = existing_ancestor(rd.root.parent)
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            why = "is a file" if not parent.is_dir() else "is not writable"
            raise RunDirError(f"cannot create run directory {str(rd.root)!r}: {str(parent)!r} {why}; "
                              "choose another --run-dir")
    if rd.exists():
        check_compatible(rd.read_run(), ctx)
        return True
    rd.check_unused()
    return False


def context_from_run(run_dir: Path, recorded: dict[str, Any], overrides: dict[str, Any] | None = None) -> RunContext:
    """Rebuild the exact context of a recorded run (for ``resume``); only execution keys may change."""
    from pydantic import ValidationError

    bad = {k: v for k, v in (overrides or {}).items() if k not in EXECUTION_KEYS}
    if bad:
        raise ConfigError(f"resume can only change execution settings, not {', '.join(sorted(bad))}")
    try:
        values = {**recorded["params"], **(overrides or {})}
    except (KeyError, TypeError):
        raise RunDirError(f"{str(Path(run_dir) / 'run.json')!r} has no parameters; the run directory is damaged") from None
    try:
        params = Parameters(**values)
    except ValidationError as e:
        err = e.errors()[0]
        err["msg"] = err["msg"].removeprefix("Value error, ")
        where = ".".join(str(x) for x in err.get("loc", ())) or "parameters"
        key = where if where in (overrides or {}) else None
        if key:
            raise ConfigError(f"invalid {key} = {values[key]!r}: {err['msg']}") from None
        raise RunDirError(f"{str(Path(run_dir) / 'run.json')!r} records invalid parameters ({where}: {err['msg']}); "
                          "it was written by another engine version or edited; start a new --run-dir") from None
    try:
        a = recorded["aoi"]
        aoi = AOI(name=a["name"], kind=a["kind"], geometry=shapely.from_wkt(a["wkt"]), epsg=a["epsg"])
        p = recorded["plan"]
        budget = backend_budget(params.BACKEND, p["dates_estimate"], p["budget_bytes"], p["halo"])
        plan = plan_tiles(aoi.projected(), p["epsg"], p["resolution"], budget, tile_size=p["tile_size"],
                          recorded=True)
    except EngineError:
        raise
    except Exception as e:  # noqa: BLE001 - missing keys, bad WKT: a damaged run.json
        raise RunDirError(f"{str(Path(run_dir) / 'run.json')!r} is incomplete or damaged ({type(e).__name__}: {e}); "
                          "start a new --run-dir") from None
    return RunContext(params=params, aoi=aoi, plan=plan, run_dir=run_dir)
