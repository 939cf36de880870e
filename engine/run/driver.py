"""The one driver of a run, the same for both backends: global pass, train, reduce, finish, merge.

It owns the run directory (checks, lock, ``run.json``), the ledger (through a ``StageLog``),
which tile stages are pending or intact, splitting, the reuse of recorded AOI-wide results, the
merge and the manifest's common part. A backend (``engine.run.stages.Backend``) opens a session
(``Executor``) that executes what differs: the global pass, waves of tile stages (dask | the
Earth Engine dispatcher), the check that a recorded output is intact, the reduce, and its part of
the merge. Outputs are written before their ledger row; resume trusts an output only when the
executor finds it intact.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DataError
from engine.io import sha256_file
from engine.run.context import RunContext
from engine.run.ledger import FINAL, GLOBAL, Ledger, Stage, StageLog, StageRecord, Status
from engine.run.manifest import write_outputs
from engine.run.progress import Progress, SilentProgress
from engine.run.record import check_compatible, check_run_dir, run_description
from engine.run.rundir import RunDir, RunLock
from engine.run.stages import Backend, Executor, GlobalStats, Node, Reduction, TileOutcome, Unit
from tiling.grid import Tile

log = logging.getLogger(__name__)
MIN_SPLIT_SIZE = 16  # a tile is not split below this many pixels a side


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


def _no(question: str) -> bool:
    return False


def execute(ctx: RunContext, progress: Progress | None = None, *, backend: Backend,
            confirm: Callable[[str], bool] = _no, resuming: bool = False) -> RunResult:
    """Run (or resume) the whole job in ``ctx.run_dir`` on ``backend``. ``confirm`` answers a yes/no
    question (Earth Engine's CLEAR_EXISTING); by default the answer is no."""
    progress = progress or SilentProgress()
    rd = RunDir(ctx.run_dir)
    existing = check_run_dir(rd, ctx)
    with backend.open(ctx, progress, confirm, resuming) as ex:
        timings: dict[str, float] = {}
        fresh = None if existing else _timed(timings, "global", ex.global_pass)  # may refuse the data: first
        with RunLock(rd.root):
            if rd.sweep_temporaries():
                log.info("removed temporary files of an interrupted run")
            if not existing:
                if rd.exists():  # another process created the run while this one did the global pass
                    check_compatible(rd.read_run(), ctx)
                else:
                    rd.write_run(run_description(ctx))
            with Ledger(rd.ledger) as ledger:
                run = _Run(ctx, rd, StageLog(ledger, ctx.params.science_hash()), ex, progress, timings)
                stats = run.global_stats(fresh)
                ex.begin(rd, run.log, stats, existing)
                return run.tiles(stats)


def _output_name(stage: Stage) -> str:
    return "reduction" if stage == Stage.REDUCE else stage.value


def _timed(timings: dict[str, float], name: str, func: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return func()
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class _Run:
    ctx: RunContext
    rd: RunDir
    log: StageLog
    ex: Executor
    progress: Progress
    timings: dict[str, float]
    nodes: dict[str, Node] = field(default_factory=dict)  # every tile met: the plan's and split children
    release_work: bool = False  # a finished tile's work files go at once (the reduction can no longer change)
    _checked: dict[tuple[str, str, bool, float], bool] = field(default_factory=dict)

    def _intact(self, unit: Unit, rec: StageRecord, work: bool = False) -> bool:
        """The executor's verdict on a recorded output, asked once per record (it reads the outputs)."""
        key = (unit.tile.id, unit.stage, work, rec.updated)
        if key not in self._checked:
            self._checked[key] = self.ex.intact(unit, rec, work)
        return self._checked[key]

    # --- AOI-wide results, recorded once ---
    def global_stats(self, fresh: GlobalStats | None) -> GlobalStats:
        path = self.rd.global_dir / "global.json"
        recorded = None if fresh is not None else self._recorded(Stage.GLOBAL, path, GlobalStats.load)
        stats = fresh or recorded or _timed(self.timings, "global", self.ex.global_pass)
        if recorded is None:  # computed here: record it (replacing a missing or damaged global.json)
            self._record(Stage.GLOBAL, path, stats.save)
        for note in stats.notes:
            self.progress.note(note)
        return stats

    def _recorded(self, stage: Stage, path: Path, load: Callable[[Path], Any], **stats: Any) -> Any:
        """The AOI-wide result of ``stage`` if its file is intact and it was made of ``stats``."""
        rec = self.log.get(GLOBAL, stage)
        if rec is not None and rec.status == Status.DONE and path.exists() \
                and sha256_file(path) == rec.outputs[_output_name(stage)]["sha256"] \
                and all(rec.stats.get(k) == v for k, v in stats.items()):
            return load(path)
        return None

    def _record(self, stage: Stage, path: Path, save: Callable[[Path], None], **stats: Any) -> None:
        self.log.start(GLOBAL, stage)
        save(path)
        self.log.finish(GLOBAL, stage, outputs={_output_name(stage): {"path": str(path.relative_to(self.rd.root)),
                                                                      "sha256": sha256_file(path)}}, stats=stats)

    def reduction(self, trained: list[Tile], retrained: set[str]) -> Reduction:
        """The recorded reduction if it is intact and of exactly these tiles, else a new one (its
        tiles' work files first made whole again: the reduce reads them)."""
        ids = sorted(t.id for t in trained)
        path = self.rd.global_dir / "reduction.json"
        recorded = self._recorded(Stage.REDUCE, path, Reduction.load, tiles=ids)
        if recorded is not None:
            return recorded
        stale = [Unit(t, Stage.TRAIN, t) for t in trained if t.id not in retrained
                 and not self._intact(Unit(t, Stage.TRAIN, t), self.log.get(t.id, Stage.TRAIN), work=True)]
        if stale:
            self._waves(Stage.TRAIN, stale, None)
            retrained.update(u.tile.id for u in stale)
        reduction = self.ex.reduce(trained)
        self._record(Stage.REDUCE, path, reduction.save, tiles=ids, sample_pixels=reduction.sample_pixels)
        return reduction

    # --- tile stages ---
    def _pending(self, units: Iterable[Unit], digest: str | None = None) -> tuple[list[Unit], list[Unit]]:
        """(units to execute, units intact), following recorded splits to the children."""
        todo: list[Unit] = []
        intact: list[Unit] = []
        for u in units:
            if u.stage == Stage.TRAIN:
                self.nodes.setdefault(u.tile.id, Node(u.tile))
            rec = self.log.get(u.tile.id, u.stage)
            if rec is not None and rec.status == Status.SPLIT:
                t, i = self._pending(self._children(u, rec.outputs.get("children", [])), digest)
                todo += t
                intact += i
                continue
            if rec is not None and rec.status in FINAL and (digest is None or rec.status != Status.DONE
                                                            or rec.stats.get("reduction") == digest):
                if rec.status != Status.DONE or self._intact(u, rec):
                    intact.append(u)
                    continue
                self.progress.note(f"{u.stage} {u.tile.id}: recorded output missing or corrupt, redoing it")
            todo.append(u)
        return todo, intact

    def _children(self, unit: Unit, ids: list[str]) -> list[Unit]:
        out = []
        for tid in ids:
            child = Tile.from_id(tid, unit.tile.grid.halo)
            if unit.stage == Stage.TRAIN:
                self.nodes.setdefault(tid, Node(child, unit.tile.id))
            out.append(Unit(child, unit.stage, child if unit.stage == Stage.TRAIN else unit.model_tile))
        return out

    def _waves(self, name: Stage, units: list[Unit], reduction: Reduction | None, done: int = 0,
               digest: str | None = None) -> None:
        """Execute ``units``, then the children of those that report ``split``, until none is left."""
        self.progress.stage(name, len(units) + done, done)
        while units:
            children: list[Unit] = []
            by_key = {(u.tile.id, u.stage): u for u in units}

            def report(o: TileOutcome) -> None:
                unit = by_key[(o.tile_id, o.stage)]
                if o.status == Status.SPLIT:
                    children.extend(self._split(unit, o.message or "too big"))
                elif o.status == Status.FAILED:
                    self.log.fail(o.tile_id, o.stage, o.message or "failed")
                else:
                    stats = {**o.stats, **({"reduction": digest} if digest else {})}
                    self.log.finish(o.tile_id, o.stage, o.status, o.outputs, o.message, stats)
                    if name == Stage.FINISH:
                        self._release(unit.model_tile)
                self.progress.tile(name, unit.label, o.status)

            self.ex.wave(units, reduction, report)
            units = children

    def _release(self, model_tile: Tile) -> None:
        """Delete a tile's work files once every finish stage of it is done, when the run's reduction
        can no longer change (every tile trained): a run's work files then never all sit on disk beside
        all its outputs. A later redo of such a tile's finish retrains it first (``tiles``)."""
        if self.release_work and all(self._status(model_tile, s)[0] in (Status.DONE, Status.EMPTY)
                                     for s in self.ex.finish_stages):
            shutil.rmtree(self.rd.work_dir(model_tile.id), ignore_errors=True)

    def _split(self, unit: Unit, message: str) -> list[Unit]:
        """Record ``unit`` split into its children that meet the AOI (or failed, past the limits)."""
        tile, limit = unit.tile, self.ctx.params.MAX_SPLIT_DEPTH
        if tile.level >= limit or tile.size // 2 < MIN_SPLIT_SIZE:
            self.log.fail(tile.id, unit.stage, f"{message} (tile split {tile.level} time(s) already, MAX_SPLIT_DEPTH="
                                               f"{limit}; raise MAX_SPLIT_DEPTH or lower TILE_BUDGET_MB)")
            return []
        ids = [c.id for c in tile.children() if c.core.intersection(self.ctx.plan.aoi).area > 0]
        log.info("%s %s: %s -> split into %d tiles", unit.stage, tile.id, message, len(ids))
        self.log.finish(tile.id, unit.stage, Status.SPLIT, outputs={"children": ids}, message=message)
        return self._children(unit, ids)

    def tiles(self, stats: GlobalStats) -> RunResult:
        log_ = self.log
        train_todo, train_intact = self._pending(Unit(t, Stage.TRAIN, t) for t in self.ctx.plan.tiles)
        # a finish redo needs its tile's work files (local predictions): retrain where they are gone
        finish_todo, _ = self._pending(self._finish_units(self._trained()))
        retrained = {u.tile.id for u in train_todo}  # trained in this run (their finish is redone)
        for u in finish_todo:
            rec = log_.get(u.model_tile.id, Stage.TRAIN)
            if u.model_tile.id not in retrained and rec is not None and not self._intact(
                    Unit(u.model_tile, Stage.TRAIN, u.model_tile), rec, work=True):
                train_todo.append(Unit(u.model_tile, Stage.TRAIN, u.model_tile))
                retrained.add(u.model_tile.id)
        merge = log_.get(GLOBAL, Stage.MERGE)
        if merge is not None and (train_todo or finish_todo):  # the merged products are stale until merged again
            log_.finish(GLOBAL, Stage.MERGE, Status.PENDING)
        done = sum(u.tile.id not in retrained for u in train_intact)
        _timed(self.timings, "train", lambda: self._waves(Stage.TRAIN, train_todo, None, done))
        trained = self._trained()
        if not trained:
            self._raise_no_tiles()
        # a tile that failed in training and trains on resume changes the reduction, and every finish
        # is then redone from its work files: they are kept until the merge of a complete run
        self.release_work = not self._train_failures()
        reduction = _timed(self.timings, "reduce", lambda: self.reduction(trained, retrained))
        digest = reduction.digest()  # a finish made with another reduction is redone
        units = self._finish_units(trained)
        todo, intact = self._pending(units, digest)
        redo = [u for u in intact if u.model_tile.id in retrained]  # made from the model before
        _timed(self.timings, "finish", lambda: self._waves(Stage.FINISH, todo + redo, reduction,
                                                           len(intact) - len(redo), digest))
        return _timed(self.timings, "merge", lambda: self.merge(stats))

    def _trained(self) -> list[Tile]:
        """The leaves of the train stage that hold a model, in plan order."""
        out = []
        for node in self.nodes.values():
            rec = self.log.get(node.tile.id, Stage.TRAIN)
            if rec is not None and rec.status == Status.DONE:
                out.append(node.tile)
        return out

    def _finish_units(self, trained: list[Tile]) -> list[Unit]:
        return [Unit(t, s, t) for t in trained for s in self.ex.finish_stages]

    def _train_failures(self) -> list[tuple[str, str | None]]:
        """(tile id, message) of every tile, split children included, that failed in training."""
        return [(n.tile.id, r.message) for n in self.nodes.values()
                if (r := self.log.get(n.tile.id, Stage.TRAIN)) is not None and r.status == Status.FAILED]

    def _raise_no_tiles(self) -> None:
        failed = self._train_failures()
        if failed:
            tid, msg = failed[0]
            raise DataError(f"every tile failed in training ({len(failed)}), e.g. {tid}: {msg}")
        raise DataError(f"no tile holds valid data ({len(self.nodes)} tiles empty); check the AOI and the period")

    # --- merge ---
    def _status(self, tile: Tile, stage: str) -> tuple[str, str | None, str | None]:
        """(status, error, failed leaf) of one stage of a tile, following its splits to the leaves."""
        leaves = self.log.leaves(tile.id, stage)
        for tid, rec in leaves:
            if rec is not None and rec.status == Status.FAILED:
                message = rec.message or "failed"
                return Status.FAILED, message if stage in (Stage.TRAIN, Stage.FINISH) else f"{stage}: {message}", tid
        status = [Status.PENDING if r is None or r.status == Status.RUNNING else r.status for _, r in leaves]
        if len(status) == 1:
            return status[0], None, None
        return (Status.PENDING if Status.PENDING in status else Status.DONE), None, None

    def merge(self, stats: GlobalStats) -> RunResult:
        statuses: dict[str, str] = {}
        failures: dict[str, str] = {}  # the tile and, if it was split, its failed leaf -> the error
        for tid, node in self.nodes.items():
            train = self.log.get(tid, Stage.TRAIN)
            if train is not None and train.status == Status.SPLIT:  # its children stand for it
                statuses[tid] = Status.SPLIT.value
                continue
            status, error, leaf = self._status(node.tile, Stage.TRAIN)
            if status == Status.DONE:
                for stage in self.ex.finish_stages:
                    s, e, f = self._status(node.tile, stage)
                    if s == Status.FAILED and status != Status.FAILED:
                        status, error, leaf = s, e, f
                    elif s == Status.PENDING and status != Status.FAILED:
                        status = s
            statuses[tid] = str(status)
            if status == Status.FAILED:
                failures[tid] = failures[leaf or tid] = error or "failed"
        self.log.start(GLOBAL, Stage.MERGE)
        part = self.ex.merge(self.nodes, statuses, failures)
        # every task has ended: what a killed worker was writing is garbage now
        if self.rd.sweep_temporaries():
            log.info("removed temporary files of tasks whose worker died")
        finish_stats = [r.stats for n in self.nodes.values()
                        if (r := self.log.get(n.tile.id, Stage.FINISH)) is not None and r.status == Status.DONE]
        summary = write_outputs(self.ctx, self.rd, stats, self.nodes, statuses, failures, finish_stats, part)
        if not failures:
            shutil.rmtree(self.rd.root / "work", ignore_errors=True)
        self.log.finish(GLOBAL, Stage.MERGE, outputs={"manifest": {"path": "manifest.json",
                                                                   "sha256": sha256_file(self.rd.manifest)}})
        return RunResult(self.rd.root, statuses, failures, stats, summary, self.timings)


__all__ = ["execute", "RunResult"]
