"""The one driver (engine.run.driver) against an in-memory backend: neither dask nor Earth Engine.

The fake executor keeps its "products" in a dict and counts what it executes, so each test can say
exactly which tile stages a run or a resume executed: none of an intact run, only the damaged ones,
every finish after a changed reduction, the children of a split.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.run.context import build_context
from engine.run.driver import execute
from engine.run.ledger import GLOBAL, Ledger
from engine.run.stages import GlobalStats, Reduction, TileOutcome
from engine.science.calibration import CalStats

AOI = "145.770,-17.070,145.800,-17.045"  # ~3.2 km x 2.8 km: 9 tiles of 128 px at 10 m


class Killed(Exception):
    """Stands for the process dying mid-wave."""


class FakeExecutor:
    def __init__(self, backend: FakeBackend) -> None:
        self.b = backend
        self.finish_stages = backend.finish_stages

    def global_pass(self) -> GlobalStats:
        self.b.executed["global"] += 1
        n = 12
        images = pd.DataFrame({
            "id": [f"S2_2021{m:02d}01" for m in range(1, n + 1)],
            "time": pd.to_datetime([f"2021-{m:02d}-01" for m in range(1, n + 1)], utc=True),
            "day": np.arange(n) * 30, "cloud_pct": np.linspace(0, 90, n), "pixel_count": 500.0, "s1_count": 2,
            "vv_mean": -10.0, "vh_mean": -16.0, "paired": True, "random": np.linspace(0, 1, n),
            "split": ["Training"] * 8 + ["Validation"] * 2 + ["Testing"] * 2})
        return GlobalStats(images, pd.DataFrame({"id": [], "time": pd.to_datetime([], utc=True), "day": []}),
                           None, 3, 1)

    def begin(self, rd, log, stats, existing) -> None:
        self.b.begun += 1
        self.b.rd = rd

    def intact(self, unit, rec, work: bool = False) -> bool:
        key = ("work" if work else "product", unit.tile.id, unit.stage)
        if work and unit.stage != "train":
            return True
        on_disk = not (work and self.b.work_files) or (self.b.rd.work_dir(unit.tile.id) / "pred.npy").exists()
        return on_disk and self.b.store.get(key) == rec.outputs.get("product", {}).get("sha256")

    def wave(self, units, reduction, report) -> None:
        for u in units:
            if self.b.kill_after is not None and sum(self.b.executed.values()) >= self.b.kill_after:
                raise Killed(f"killed before {u.stage} {u.tile.id}")
            self.b.executed[(u.tile.id, u.stage)] += 1
            if (u.tile.id, u.stage) in self.b.failing:
                report(TileOutcome(u.tile.id, u.stage, "failed", message="a bug"))
                continue
            if (u.tile.id, u.stage) in self.b.too_big or (u.tile.level < self.b.split_levels.get(u.stage, 0)):
                report(TileOutcome(u.tile.id, u.stage, "split", message="User memory limit exceeded."))
                continue
            value = f"{u.tile.id}/{u.stage}/{u.model_tile.id}/{reduction.sample_pixels if reduction else '-'}"
            self.b.store[("product", u.tile.id, u.stage)] = value
            if u.stage == "train":
                self.b.store[("work", u.tile.id, u.stage)] = value
            if u.stage == "train" and self.b.work_files:  # local: predictions on disk; gee: the model asset
                work = self.b.rd.work_dir(u.tile.id)
                work.mkdir(parents=True, exist_ok=True)
                (work / "pred.npy").write_text(value)
            report(TileOutcome(u.tile.id, u.stage, "done", {"product": {"sha256": value}}))

    def reduce(self, trained) -> Reduction:
        self.b.executed["reduce"] += 1
        return Reduction(None, {"S2_20210101": (CalStats(0.0, 1.0, 2.0), CalStats(0.0, 1.0, 2.0))}, self.b.sample_pixels)

    def merge(self, nodes, statuses, failures) -> dict[str, Any]:
        return {"backend": "fake", "synthetic": True, "warning": "SYNTHETIC DATA: fake", "tiles": {}}


class FakeBackend:
    name = "fake"

    def __init__(self, finish_stages=("finish",), work_files: bool = True) -> None:
        self.finish_stages = finish_stages
        self.work_files = work_files
        self.store: dict[tuple[str, str, str], str] = {}
        self.executed: Counter = Counter()
        self.begun = 0
        self.kill_after: int | None = None
        self.sample_pixels = 100
        self.too_big: set[tuple[str, str]] = set()
        self.failing: set[tuple[str, str]] = set()
        self.rd: Any = None
        self.split_levels: dict[str, int] = {}

    @contextlib.contextmanager
    def open(self, ctx, progress, confirm, resuming):
        yield FakeExecutor(self)


@pytest.fixture
def ctx(tmp_path):
    return build_context(None, {"OPTICAL_MISSION": "S2", "START_DATE": "2021-01-01", "END_DATE": "2022-01-01",
                                "TILE_SIZE": 128, "RUN_DIR": str(tmp_path / "run")}, AOI)


def manifest(ctx) -> dict[str, Any]:
    return json.loads((ctx.run_dir / "manifest.json").read_text())


def test_a_run_executes_every_stage_once_and_a_rerun_nothing(ctx):
    b = FakeBackend()
    result = execute(ctx, backend=b)
    n = len(ctx.plan.tiles)
    assert result.complete and n >= 4
    assert b.executed["global"] == 1 and b.executed["reduce"] == 1
    assert sorted(k[1] for k in b.executed if isinstance(k, tuple)) == ["finish"] * n + ["train"] * n
    m = manifest(ctx)
    assert m["complete"] and m["tile_counts"] == {"done": n} and m["backend"] == "fake"
    with Ledger(ctx.run_dir / "ledger.sqlite") as ledger:
        assert ledger.get(GLOBAL, "merge").status == "done"

    b.executed.clear()
    assert execute(ctx, backend=b).complete
    assert not b.executed  # intact: nothing executed, not even the global pass or the reduce


def test_the_driver_needs_neither_a_dask_cluster_nor_earth_engine():
    code = "import sys, engine.run.driver; print(sorted({'distributed', 'ee', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kill_after", [1, 5, 9, 13, 17])
def test_killed_anywhere_then_rerun_executes_only_what_is_missing(ctx, kill_after):
    b = FakeBackend()
    b.kill_after = kill_after
    with pytest.raises(Killed):
        execute(ctx, backend=b)
    before = Counter(b.executed)
    b.kill_after = None
    assert execute(ctx, backend=b).complete
    again = b.executed - before
    n = len(ctx.plan.tiles)
    # every tile stage was executed exactly once over both runs, the global pass once
    assert all(v == 1 for k, v in b.executed.items() if isinstance(k, tuple)), b.executed
    assert len([k for k in b.executed if isinstance(k, tuple)]) == 2 * n
    assert b.executed["global"] == 1 and not any(k == "global" for k in again)


def test_a_damaged_product_is_redone_and_only_it(ctx):
    b = FakeBackend()
    execute(ctx, backend=b)
    victim = ctx.plan.tiles[1].id
    b.store[("product", victim, "finish")] = "garbled"
    b.executed.clear()
    execute(ctx, backend=b)
    # the complete run's work files went with its merge: the victim's model is trained again first
    assert dict(b.executed) == {(victim, "train"): 1, (victim, "finish"): 1}


def test_lost_work_files_retrain_the_tile_before_its_finish(ctx):
    b = FakeBackend()
    b.kill_after = 1 + len(ctx.plan.tiles)  # the global pass and every train: killed before the first finish
    with pytest.raises(Killed):
        execute(ctx, backend=b)
    victim = ctx.plan.tiles[2].id
    (b.rd.work_dir(victim) / "pred.npy").unlink()
    b.kill_after = None
    b.executed.clear()
    execute(ctx, backend=b)
    assert {k for k in b.executed if k[1] == "train"} == {(victim, "train")}
    assert b.executed[(victim, "train")] == 1 and all(b.executed[(t.id, "finish")] == 1 for t in ctx.plan.tiles)


def test_a_finished_tiles_work_files_go_at_once_and_a_resume_needs_them_not(ctx):
    b = FakeBackend()
    n = len(ctx.plan.tiles)
    b.kill_after = 1 + n + 1 + 2  # the global pass, every train, the reduce and two finishes
    with pytest.raises(Killed):
        execute(ctx, backend=b)
    kept = {t.id: b.rd.work_dir(t.id).exists() for t in ctx.plan.tiles}
    finished = {k[0] for k in b.executed if k[1] == "finish"}
    assert len(finished) == 2 and all(kept[t] == (t not in finished) for t in kept), kept
    b.kill_after = None
    b.executed.clear()
    assert execute(ctx, backend=b).complete
    assert sorted(k[1] for k in b.executed if isinstance(k, tuple)) == ["finish"] * (n - 2)  # no retraining
    assert not (ctx.run_dir / "work").exists()


def test_a_tile_failed_in_training_keeps_every_work_file_for_the_finishes_its_resume_redoes(ctx):
    b = FakeBackend()
    victim = ctx.plan.tiles[0].id
    b.failing = {(victim, "train")}
    assert not execute(ctx, backend=b).complete
    trained = [t.id for t in ctx.plan.tiles if t.id != victim]
    assert all(b.rd.work_dir(t).exists() for t in trained) and b.executed[(trained[0], "finish")] == 1
    b.failing = set()
    b.sample_pixels = 200  # the reduction of every tile differs from the one without the victim
    b.executed.clear()
    assert execute(ctx, backend=b).complete
    assert b.executed[(victim, "train")] == 1 and not any(b.executed[(t, "train")] for t in trained)
    assert all(b.executed[(t.id, "finish")] == 1 for t in ctx.plan.tiles)
    assert not (ctx.run_dir / "work").exists()


def test_a_changed_reduction_redoes_every_finish_but_no_training(ctx):
    b = FakeBackend(work_files=False)  # Earth Engine: a finish reads the model asset (kept)
    execute(ctx, backend=b)
    with Ledger(ctx.run_dir / "ledger.sqlite") as ledger:  # the recorded reduction is gone: reduce again
        ledger.finish(GLOBAL, "reduce", ctx.params.science_hash(), status="pending")
    b.sample_pixels = 200  # ... and it comes out different
    b.executed.clear()
    execute(ctx, backend=b)
    n = len(ctx.plan.tiles)
    assert b.executed["reduce"] == 1
    assert sorted(k[1] for k in b.executed if isinstance(k, tuple)) == ["finish"] * n


def test_a_split_tile_is_replaced_by_its_children_in_both_stages(ctx):
    b = FakeBackend(finish_stages=("outputs", "images"))
    parent = ctx.plan.tiles[0]
    b.too_big = {(parent.id, "train")}
    finish_parent = ctx.plan.tiles[1]
    b.too_big |= {(finish_parent.id, "outputs")}
    result = execute(ctx, backend=b)
    assert result.complete
    kids = [c.id for c in parent.children() if c.core.intersection(ctx.plan.aoi).area > 0]
    assert kids and all(b.executed[(k, "train")] == 1 for k in kids)
    assert all(b.executed[(k, "outputs")] == 1 and b.executed[(k, "images")] == 1 for k in kids)
    # a finish split keeps the parent's model: its children's products name it
    fkids = [c.id for c in finish_parent.children() if c.core.intersection(ctx.plan.aoi).area > 0]
    assert all(b.store[("product", k, "outputs")].split("/")[2] == finish_parent.id for k in fkids)
    assert b.executed[(finish_parent.id, "images")] == 1 and not any(b.executed[(k, "images")] for k in fkids)
    m = manifest(ctx)
    status = {t["id"]: t["status"] for t in m["tiles"]}
    assert status[parent.id] == "split" and all(status[k] == "done" for k in kids)
    assert {t["id"]: t.get("parent") for t in m["tiles"] if t["id"] in kids} == {k: parent.id for k in kids}

    b.executed.clear()  # and a resume follows the recorded splits: nothing to do
    assert execute(ctx, backend=b).complete and not b.executed


def test_a_split_past_the_depth_limit_fails_with_the_remedy(ctx):
    b = FakeBackend()
    b.split_levels = {"train": 99}  # every level is too big
    with pytest.raises(DataError, match="every tile failed in training"):
        execute(ctx, backend=b)
    with Ledger(ctx.run_dir / "ledger.sqlite") as ledger:
        failed = [r for r in ledger.records("train") if r.status == "failed"]
    assert failed and all("MAX_SPLIT_DEPTH" in r.message for r in failed)
    assert max(r.tile_id.count("-") for r in failed)  # children of children were tried
