"""``status RUN_DIR``: what a run has done, from its ledger (read-only; safe while a run is going)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.ledger import FINAL, GLOBAL, Ledger
from engine.rundir import RunDir

EXIT_COMPLETE, EXIT_FAILED, EXIT_INCOMPLETE = 0, 1, 3
# worst first: a tile's later stages (local "finish"; gee "outputs", "images", ...) show as one
SEVERITY = ("failed", "running", "pending", "done", "empty", "split")


@dataclass
class RunStatus:
    run: dict
    stage_counts: dict[str, Counter[str]]
    tiles: list[dict]

    merge: str | None = None  # ledger status of the merge (None: not recorded)

    @property
    def state(self) -> str:
        if any(t["status"] == "failed" for t in self.tiles):
            return "failed"
        # the local driver records the merge; until it is done the products are missing or stale
        merged = self.merge == "done" or (self.merge is None and self.run.get("params", {}).get("BACKEND") != "local")
        if self.tiles and all(t["status"] in ("done", "empty", "split") for t in self.tiles) and merged:
            return "complete"
        return "incomplete"

    @property
    def exit_code(self) -> int:
        return {"complete": EXIT_COMPLETE, "failed": EXIT_FAILED}.get(self.state, EXIT_INCOMPLETE)


def read_status(path: Path) -> RunStatus:
    rd = RunDir(path)
    run = rd.read_run()
    counts: dict[str, Counter[str]] = {}
    tiles: dict[str, dict] = {}
    merge = None
    if rd.ledger.exists():
        with Ledger(rd.ledger) as ledger:
            for rec in ledger.records():
                counts.setdefault(rec.stage, Counter())[rec.status] += 1
                if rec.stage == "merge":
                    merge = rec.status
                if rec.tile_id == GLOBAL:
                    continue
                t = tiles.setdefault(rec.tile_id, {"tile_id": rec.tile_id, "later": []})
                if rec.stage == "train":
                    t["train"], t["train_attempts"] = rec.status, rec.attempts
                else:
                    t["later"].append(rec.status)
                    t["finish_attempts"] = max(t.get("finish_attempts", 0), rec.attempts)
                if rec.message and rec.status == "failed":
                    t["message"] = rec.message
    for t in tiles.values():
        later = t.pop("later")
        if later:
            t["finish"] = min(later, key=SEVERITY.index)
        train, finish = t.get("train"), t.get("finish")
        if "failed" in (train, finish):
            t["status"] = "failed"
        elif train in ("empty", "split"):
            t["status"] = train
        elif finish in FINAL:
            t["status"] = finish
        elif "running" in (train, finish):
            t["status"] = "running"
        else:
            t["status"] = "pending"
    n_planned = run.get("plan", {}).get("tiles", len(tiles))
    for i in range(max(0, n_planned - len(tiles))):
        tiles[f"~pending-{i}"] = {"tile_id": "(not started)", "status": "pending"}
    return RunStatus(run, counts, sorted(tiles.values(), key=lambda t: t["tile_id"]), merge)
