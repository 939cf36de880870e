"""``status RUN_DIR``: what a run has done, from its ledger, with its recorded outputs verified as
``resume`` verifies them (read-only; safe while a run is going; works on a directory it cannot write)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.run.eecu import run_usage
from engine.run.ledger import FINAL, GLOBAL, Ledger
from engine.run.rundir import RunDir, RunLock
from engine.run.verify import verified
from tiling.grid import Tile

EXIT_COMPLETE, EXIT_FAILED, EXIT_INCOMPLETE = 0, 1, 3
# worst first: a tile's later stages (local "finish"; gee "outputs", "images", ...) show as one
SEVERITY = ("failed", "interrupted", "running", "pending", "done", "empty", "split")


@dataclass
class RunStatus:
    run: dict
    stage_counts: dict[str, Counter[str]]
    tiles: list[dict]

    merge: str | None = None  # ledger status of the merge (None: not recorded)
    live: str | None = None  # who is running it now (``pid 123``), None when no run holds the lock
    damaged: list[str] = field(default_factory=list)  # "tile stage" whose recorded outputs are missing or corrupt
    verify_note: str = ""  # what was (not) verified
    eecu: dict | None = None  # Earth Engine usage the batch operations reported (engine.run.eecu.usage)

    @property
    def state(self) -> str:
        if any(t["status"] == "failed" for t in self.tiles):
            return "failed"
        if self.damaged:
            return "damaged"
        # the driver records the merge; until it is done the products are missing or stale
        if self.tiles and all(t["status"] in ("done", "empty", "split") for t in self.tiles) and self.merge == "done":
            return "complete"
        return "incomplete"

    @property
    def exit_code(self) -> int:
        return {"complete": EXIT_COMPLETE, "failed": EXIT_FAILED}.get(self.state, EXIT_INCOMPLETE)


def read_status(path: Path, verify: bool = True) -> RunStatus:
    """The run's status; with ``verify`` (and no run writing) every done stage's files are checked."""
    rd = RunDir(path)
    run = rd.read_run()
    live = RunLock.holder(rd.root)
    counts: dict[str, Counter[str]] = {}
    tiles: dict[str, dict] = {}
    merge = None
    damaged: list[str] = []
    halo = int(run.get("plan", {}).get("halo", 12))
    check = verify and live is None
    if rd.ledger.exists():
        with Ledger(rd.ledger, read_only=True) as ledger:
            records = ledger.records()
            operations = run_usage(ledger)
    else:
        records, operations = [], None
    for rec in records:
        status = "interrupted" if rec.status == "running" and live is None else rec.status
        counts.setdefault(rec.stage, Counter())[status] += 1
        if check and rec.status == "done" and not verified(rd, None if rec.tile_id == GLOBAL else Tile.from_id(
                rec.tile_id, halo), rec.outputs):
            damaged.append(f"{rec.tile_id} {rec.stage}")
        if rec.stage == "merge":
            merge = rec.status
        if rec.tile_id == GLOBAL:
            continue
        t = tiles.setdefault(rec.tile_id, {"tile_id": rec.tile_id, "later": []})
        if rec.stage == "train":
            t["train"], t["train_attempts"] = status, rec.attempts
        else:
            t["later"].append(status)
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
        elif "running" in (train, finish) or "interrupted" in (train, finish):
            t["status"] = "running" if live else "interrupted"
        else:
            t["status"] = "pending"
    for item in damaged:
        tid = item.split(" ")[0]
        if tid in tiles:
            tiles[tid]["status"] = "damaged"
    n_planned = run.get("plan", {}).get("tiles", len(tiles))
    for i in range(max(0, n_planned - len(tiles))):
        tiles[f"~pending-{i}"] = {"tile_id": "(not started)", "status": "pending"}
    if live:
        note = f"outputs not verified: {live} is running it"
    elif not verify:
        note = "outputs not verified (--quick)"
    else:
        note = "outputs verified against their checksums"
        if run.get("params", {}).get("BACKEND") == "gee":
            note += " (files here only: resume checks the Earth Engine assets)"
    eecu = operations if operations and (operations["operations"] or operations["unreported_operations"]) else None
    return RunStatus(run, counts, sorted(tiles.values(), key=lambda t: t["tile_id"]), merge, live, damaged, note,
                     eecu)
