"""The job driver of the local backend: global pass, train wave, reduce, finish wave, merge.

The driver is the only writer of the ledger. A tile stage's outputs are written (atomically) by
the worker first, the ledger row by the driver last; resume trusts an output only when its
checksum matches the ledger's.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from engine.backends.base import GlobalStats, Reduction, TileOutcome
from engine.backends.local import LocalBackend
from engine.context import RunContext
from engine.cube import create_cube, digest, read_tile
from engine.errors import RunDirError
from engine.io import sha256_file
from engine.ledger import FINAL, GLOBAL, Ledger
from engine.manifest import write_outputs
from engine.rundir import RunDir, RunLock
from engine.dispatch import check_scheduler, open_client, run_wave
from engine.run_record import check_compatible, run_description
from tiling.grid import Tile

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the driver tells the terminal (the CLI implements it)."""

    def stage(self, name: str, total: int, done: int = 0) -> None: ...

    def tile(self, stage: str, tile_id: str, status: str) -> None: ...

    def note(self, text: str) -> None: ...


class SilentProgress:
    def stage(self, name: str, total: int, done: int = 0) -> None:
        log.info("stage %s: %d tiles (%d already done)", name, total, done)

    def tile(self, stage: str, tile_id: str, status: str) -> None:
        log.info("%s %s: %s", stage, tile_id, status)

    def note(self, text: str) -> None:
        log.info(text)


@dataclass
class RunResult:
    run_dir: Path
    statuses: dict[str, str]  # tile id -> final status
    failures: dict[str, str]  # tile id -> message
    stats: GlobalStats
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failures


# --- dask task bodies (top level so they pickle) ---
def _train_task(backend: LocalBackend, ctx: RunContext, stats: GlobalStats, tile_id: str) -> TileOutcome:
    return backend.train(ctx, Tile.from_id(tile_id, ctx.plan.grid.halo), stats)


def _finish_task(backend: LocalBackend, ctx: RunContext, stats: GlobalStats, reduction: Reduction,
                 tile_id: str) -> TileOutcome:
    return backend.finish(ctx, Tile.from_id(tile_id, ctx.plan.grid.halo), stats, reduction)


# --- verification of recorded outputs ---
def _verified(rd: RunDir, tile: Tile, outputs: dict[str, Any], work: bool = False) -> bool:
    """True when every recorded product of a stage (or, with ``work``, its work files) matches its checksum."""
    outputs = {k: v for k, v in outputs.items() if bool(v.get("work")) == work}
    cube_names = [name for name, o in outputs.items() if "cube" in o]
    try:
        for name, out in outputs.items():
            if "path" in out and sha256_file(rd.root / out["path"]) != out["sha256"]:
                return False
        if cube_names:
            arrays = read_tile(rd.cube, tile, cube_names)
            if any(digest(arrays[n]) != outputs[n]["sha256"] for n in cube_names):
                return False
    except Exception as e:  # noqa: BLE001 - e.g. a corrupt zarr chunk raises RuntimeError from blosc
        log.warning("tile %s: recorded output unreadable (%s: %s); it will be redone", tile.id, type(e).__name__, e)
        return False
    return True


def _pending(ledger: Ledger, rd: RunDir, tiles: list[Tile], stage: str, h: str,
             progress: Progress) -> tuple[list[Tile], dict[str, str]]:
    """Tiles whose ``stage`` must (re)run, and the final statuses of the others."""
    todo, final = [], {}
    for tile in tiles:
        rec = ledger.get(tile.id, stage)
        if rec is not None and rec.status in FINAL and rec.config_hash == h:
            if rec.status != "done" or _verified(rd, tile, rec.outputs):
                final[tile.id] = rec.status
                continue
            progress.note(f"{stage} {tile.id}: output missing or corrupt, redoing it")
        todo.append(tile)
    return todo, final


def _wave(client, ledger: Ledger, stage: str, func, tiles: list[Tile], h: str, shared: list,
          progress: Progress, already: int) -> dict[str, TileOutcome]:
    progress.stage(stage, len(tiles) + already, already)

    def start(tid: str) -> None:
        ledger.start(tid, stage, h)

    def done(o: TileOutcome) -> None:
        if o.status == "failed":
            ledger.fail(o.tile_id, stage, h, o.message or "failed")
        else:
            ledger.finish(o.tile_id, stage, h, o.status, o.outputs, o.message, o.stats)
        progress.tile(stage, o.tile_id, o.status)

    outcomes = run_wave(client, stage, func, [t.id for t in tiles], h, shared, start, done)
    return {o.tile_id: o for o in outcomes}


def _check_run_dir(rd: RunDir, ctx: RunContext) -> bool:
    """Whether ``rd`` already holds this run; refuse (before writing anything) what it cannot be used for."""
    if rd.root.exists() and not rd.root.is_dir():
        raise RunDirError(f"run directory {str(rd.root)!r} is a file; choose another --run-dir")
    if not rd.root.exists():  # it will be created: can it be?
        parent = rd.root.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            why = "is a file" if not parent.is_dir() else "is not writable"
            raise RunDirError(f"cannot create run directory {str(rd.root)!r}: {str(parent)!r} {why}; "
                              "choose another --run-dir")
    if rd.exists():
        check_compatible(rd.read_run(), ctx)
        return True
    holder = RunLock.holder(rd.root)
    if holder:  # another process is creating a run here (its run.json is not written yet)
        raise RunDirError(f"run directory {str(rd.root)!r} is in use by {holder}; wait for it or use another --run-dir")
    # a run killed between taking the lock and writing run.json leaves only .lock (and maybe a temp dir)
    if rd.root.exists() and any(p.name != ".lock" and not (p.name.startswith(".") and p.name.endswith(".tmp"))
                                for p in rd.root.iterdir()):
        raise RunDirError(f"{str(rd.root)!r} exists and is not a run directory of this engine; choose another --run-dir")
    return False


def execute(ctx: RunContext, progress: Progress | None = None, backend: LocalBackend | None = None) -> RunResult:
    """Run (or resume) the whole job in ``ctx.run_dir``."""
    progress = progress or SilentProgress()
    backend = backend or LocalBackend()
    rd = RunDir(ctx.run_dir)
    h = ctx.params.science_hash()
    timings: dict[str, float] = {}
    existing = _check_run_dir(rd, ctx)
    if ctx.params.SCHEDULER:  # an unreachable scheduler must fail before anything is written
        check_scheduler(ctx.params.SCHEDULER)

    stats: GlobalStats | None = None
    global_file = rd.global_dir / "global.json"
    if not existing:  # the global pass may refuse the data: do it before writing anything
        t0 = time.perf_counter()
        stats = backend.global_pass(ctx)
        timings["global"] = time.perf_counter() - t0
    with RunLock(rd.root):
        if rd.sweep_temporaries():
            log.info("removed temporary files of an interrupted run")
        if not existing:
            if rd.exists():  # another process created the run while this one did the global pass
                check_compatible(rd.read_run(), ctx)
            else:
                rd.write_run(run_description(ctx))
        with Ledger(rd.ledger) as ledger:
            rec = ledger.get(GLOBAL, "global")
            if stats is None and rec is not None and rec.status == "done" and rec.config_hash == h \
                    and global_file.exists() and sha256_file(global_file) == rec.outputs["global"]["sha256"]:
                stats = GlobalStats.load(global_file)
            if stats is None:
                t0 = time.perf_counter()
                stats = backend.global_pass(ctx)
                timings["global"] = time.perf_counter() - t0
            if "global" in timings:  # computed here: record it (replacing a missing or corrupt global.json)
                ledger.start(GLOBAL, "global", h)
                stats.save(global_file)
                ledger.finish(GLOBAL, "global", h, outputs={"global": {"path": "global/global.json",
                                                                       "sha256": sha256_file(global_file)}})
            for note in stats.notes:
                progress.note(note)
            return _tiles(ctx, rd, ledger, backend, stats, h, progress, timings)


def _tiles(ctx: RunContext, rd: RunDir, ledger: Ledger, backend: LocalBackend, stats: GlobalStats, h: str,
           progress: Progress, timings: dict[str, float]) -> RunResult:
    tiles = list(ctx.plan.tiles)
    paired = stats.paired
    if not (rd.cube / "zarr.json").exists():
        variables = ["filled", "mask", "prediction", "observation"]
        variables += ["smoothed"] * ctx.params.EXPORT_PCA + ["vv", "vh"] * ctx.params.EXPORT_INPUT
        attrs = {"title": f"{ctx.params.PROJECT_TITLE}: SAR-infilled NDVI", "aoi": ctx.aoi.name,
                 "source": backend.source(ctx).name, "synthetic": int(backend.source(ctx).synthetic)}
        if backend.source(ctx).synthetic:
            attrs["WARNING"] = "SYNTHETIC DATA: generated by the engine's synthetic source, not observations"
        create_cube(rd.cube, ctx.plan.grid, tiles, pd.DatetimeIndex(paired["time"]), variables, attrs)

    train_todo, statuses = _pending(ledger, rd, tiles, "train", h, progress)
    finish_todo, finish_final = _pending(ledger, rd, tiles, "finish", h, progress)
    # a finish redo needs the stage-A predictions: retrain tiles whose work files are gone
    for tile in finish_todo:
        rec = ledger.get(tile.id, "train")
        if tile not in train_todo and rec is not None and rec.status == "done" and not _verified(
                rd, tile, rec.outputs, work=True):
            train_todo.append(tile)
            statuses.pop(tile.id, None)
    failures: dict[str, str] = {}
    merge = ledger.get(GLOBAL, "merge")
    if merge is not None and (train_todo or finish_todo):  # tiles change: the merged products are stale until merged again
        ledger.finish(GLOBAL, "merge", h, status="pending", outputs={})
    with open_client(ctx.params.SCHEDULER, ctx.params.WORKERS) as client:
        t0 = time.perf_counter()
        outcomes = _wave(client, ledger, "train", _train_task, train_todo, h, [backend, ctx, stats], progress,
                         len(tiles) - len(train_todo))
        timings["train"] = time.perf_counter() - t0
        for tid, o in outcomes.items():
            statuses[tid] = o.status
            if o.status == "failed":
                failures[tid] = o.message or "failed"
        trained = [t for t in tiles if statuses.get(t.id) == "done"]
        if not trained:
            raise_no_tiles(failures, statuses)

        t0 = time.perf_counter()
        reduction = _recorded_reduction(rd, ledger, trained, h)
        changed = reduction is None
        if changed:
            # the reduce reads every trained tile's sample rows: retrain tiles whose work files are gone
            stale = [t for t in trained if t not in train_todo and not _verified(
                rd, t, ledger.get(t.id, "train").outputs, work=True)]
            _wave(client, ledger, "train", _train_task, stale, h, [backend, ctx, stats], progress, 0)
            train_todo += stale
            reduction = _reduce(ctx, rd, ledger, backend, stats, trained, h)
        timings["reduce"] = time.perf_counter() - t0
        # a new reduction changes every tile's smoothing and calibration: finish them all again
        redo = {t.id for t in finish_todo} | {t.id for t in train_todo}
        finish_todo = [t for t in trained if changed or t.id in redo or t.id not in finish_final]
        t0 = time.perf_counter()
        outcomes = _wave(client, ledger, "finish", _finish_task, finish_todo, h,
                         [backend, ctx, stats, reduction], progress, len(trained) - len(finish_todo))
        timings["finish"] = time.perf_counter() - t0
        for tid, o in outcomes.items():
            if o.status == "failed":
                statuses[tid] = "failed"
                failures[tid] = o.message or "failed"

    t0 = time.perf_counter()
    ledger.start(GLOBAL, "merge", h)
    summary = write_outputs(ctx, rd, ledger, stats, backend.source(ctx), statuses, failures)
    if not failures:
        shutil.rmtree(rd.root / "work", ignore_errors=True)
    ledger.finish(GLOBAL, "merge", h, outputs={"manifest": {"path": "manifest.json", "sha256": sha256_file(rd.manifest)}})
    timings["merge"] = time.perf_counter() - t0
    return RunResult(rd.root, statuses, failures, stats, summary, timings)


def _recorded_reduction(rd: RunDir, ledger: Ledger, trained: list[Tile], h: str) -> Reduction | None:
    """The recorded AOI-wide reduction if it is intact and covers exactly these tiles."""
    path = rd.global_dir / "reduction.json"
    rec = ledger.get(GLOBAL, "reduce")
    if rec is not None and rec.status == "done" and rec.config_hash == h and path.exists() \
            and sha256_file(path) == rec.outputs["reduction"]["sha256"] \
            and rec.stats.get("tiles") == sorted(t.id for t in trained):
        return Reduction.load(path)
    return None


def _reduce(ctx: RunContext, rd: RunDir, ledger: Ledger, backend: LocalBackend, stats: GlobalStats,
            trained: list[Tile], h: str) -> Reduction:
    path = rd.global_dir / "reduction.json"
    ledger.start(GLOBAL, "reduce", h)
    reduction = backend.reduce(ctx, stats, trained)
    reduction.save(path)
    ledger.finish(GLOBAL, "reduce", h, outputs={"reduction": {"path": "global/reduction.json",
                                                              "sha256": sha256_file(path)}},
                  stats={"tiles": sorted(t.id for t in trained), "sample_pixels": reduction.sample_pixels})
    return reduction


def raise_no_tiles(failures: dict[str, str], statuses: dict[str, str]) -> None:
    from engine.errors import DataError

    if failures:
        tid, msg = next(iter(failures.items()))
        raise DataError(f"every tile failed in training ({len(failures)}), e.g. {tid}: {msg}")
    raise DataError(f"no tile holds valid data ({len(statuses)} tiles empty); check the AOI and the period")


__all__ = ["execute", "RunResult", "Progress", "SilentProgress"]
