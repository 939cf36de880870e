"""The per-tile ledger: one SQLite file per run directory, shared by both backends.

Each row is one (tile, stage): status, attempts, config hash, outputs with checksums (or Earth
Engine asset ids / operation names) and the last message. Every change is one transaction, so a
killed process leaves the ledger at its last committed state. Only the driver process writes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.errors import RunDirError

SCHEMA = """
CREATE TABLE IF NOT EXISTS stages (
    tile_id     TEXT NOT NULL,
    stage       TEXT NOT NULL,
    status      TEXT NOT NULL,          -- pending | running | done | failed | empty | split
    attempts    INTEGER NOT NULL DEFAULT 0,
    config_hash TEXT NOT NULL,
    outputs     TEXT NOT NULL DEFAULT '{}',   -- JSON: name -> {"path"|"asset": ..., "sha256": ...}
    operation   TEXT,                   -- Earth Engine operation name, if any
    message     TEXT,
    stats       TEXT NOT NULL DEFAULT '{}',   -- JSON: figures the stage reported (sums for AOI-wide metrics)
    updated     REAL NOT NULL,
    PRIMARY KEY (tile_id, stage)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operations (     -- every finished Earth Engine batch operation of the run
    name         TEXT PRIMARY KEY,         -- operation name (a resume that sees it again changes nothing)
    tile_id      TEXT NOT NULL,
    stage        TEXT NOT NULL,
    state        TEXT NOT NULL,            -- SUCCEEDED | FAILED | CANCELLED
    eecu_seconds REAL,                     -- batchEecuUsageSeconds of its metadata (none when it failed)
    pixel_dates  REAL NOT NULL,            -- the export's window pixels x dates: the cost model's unit
    finished     REAL NOT NULL
);
"""

GLOBAL = "_aoi"  # tile id of the AOI-wide stages (global pass, reduce, merge)


class Stage(StrEnum):
    """The run's stages (ledger rows of ``GLOBAL``: global, reduce, merge; of each tile: train, and
    finish or, on Earth Engine, one row per stage-B export)."""

    GLOBAL = "global"
    TRAIN = "train"
    REDUCE = "reduce"
    FINISH = "finish"
    MERGE = "merge"


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EMPTY = "empty"  # nothing of the AOI to compute
    SPLIT = "split"  # replaced by its children (outputs["children"])


STATUSES = tuple(s.value for s in Status)
FINAL = frozenset({Status.DONE, Status.EMPTY, Status.SPLIT})


@dataclass
class StageRecord:
    tile_id: str
    stage: str
    status: str
    attempts: int
    config_hash: str
    outputs: dict[str, Any] = field(default_factory=dict)
    operation: str | None = None
    message: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0


@dataclass(frozen=True)
class OperationRecord:
    """One finished Earth Engine batch operation and the EECU-seconds its metadata reported."""

    name: str
    tile_id: str
    stage: str
    state: str
    eecu_seconds: float | None
    pixel_dates: float
    finished: float


class Ledger:
    """Transactional record of every tile's stages."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        """Open (creating it) for the driver; ``read_only`` for readers such as ``status``, which
        must also read a run directory they cannot write (e.g. a colleague's)."""
        self.path = Path(path)
        try:
            if read_only:
                self._conn = _open_read_only(self.path)
            else:
                if not self.path.exists():
                    _create(self.path)
                self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as e:  # not a database, damaged, or unwritable
            if not read_only and not os.access(self.path.parent, os.W_OK):
                raise RunDirError(f"run directory {str(self.path.parent)!r} is not writable; "
                                  "run there as its owner, or copy it") from None
            raise RunDirError(f"ledger {str(self.path)!r} cannot be opened ({e}); the run directory is damaged, "
                              "start a new --run-dir") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta ---
    def set_meta(self, key: str, value: Any) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- stages ---
    def get(self, tile_id: str, stage: str) -> StageRecord | None:
        row = self._conn.execute(
            "SELECT tile_id, stage, status, attempts, config_hash, outputs, operation, message, stats, updated "
            "FROM stages WHERE tile_id = ? AND stage = ?",
            (tile_id, stage),
        ).fetchone()
        return _record(row) if row else None

    def records(self, stage: str | None = None) -> list[StageRecord]:
        sql = "SELECT tile_id, stage, status, attempts, config_hash, outputs, operation, message, stats, updated FROM stages"
        rows = self._conn.execute(sql + (" WHERE stage = ?" if stage else "") + " ORDER BY stage, tile_id",
                                  (stage,) if stage else ()).fetchall()
        return [_record(r) for r in rows]

    def _upsert(self, tile_id: str, stage: str, config_hash: str, **values: Any) -> None:
        now = time.time()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute(
                "SELECT attempts FROM stages WHERE tile_id = ? AND stage = ?", (tile_id, stage)
            ).fetchone()
            attempts = (cur[0] if cur else 0) + values.pop("add_attempt", 0)
            for key in ("outputs", "stats"):
                if key in values:
                    values[key] = json.dumps(values[key], sort_keys=True)
            cols = {"status": "pending", **values}
            if cur is None:
                self._conn.execute(
                    "INSERT INTO stages (tile_id, stage, status, attempts, config_hash, outputs, operation, message, "
                    "stats, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (tile_id, stage, cols["status"], attempts, config_hash, cols.get("outputs", "{}"),
                     cols.get("operation"), cols.get("message"), cols.get("stats", "{}"), now),
                )
            else:
                sets = ", ".join(f"{k} = ?" for k in cols) + ", attempts = ?, config_hash = ?, updated = ?"
                self._conn.execute(
                    f"UPDATE stages SET {sets} WHERE tile_id = ? AND stage = ?",
                    (*cols.values(), attempts, config_hash, now, tile_id, stage),
                )
            self._conn.execute("COMMIT")

    def start(self, tile_id: str, stage: str, config_hash: str, operation: str | None = None) -> None:
        """A new attempt of (tile, stage) begins."""
        self._upsert(tile_id, stage, config_hash, status="running", add_attempt=1, operation=operation, message=None)

    def set_operation(self, tile_id: str, stage: str, config_hash: str, operation: str) -> None:
        self._upsert(tile_id, stage, config_hash, status="running", operation=operation)

    def finish(self, tile_id: str, stage: str, config_hash: str, status: str = "done",
               outputs: dict[str, Any] | None = None, message: str | None = None,
               stats: dict[str, Any] | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown ledger status {status!r}")
        self._upsert(tile_id, stage, config_hash, status=status, outputs=outputs or {}, message=message,
                     stats=stats or {})

    def fail(self, tile_id: str, stage: str, config_hash: str, message: str) -> None:
        self._upsert(tile_id, stage, config_hash, status="failed", message=message)

    def counts(self, stage: str | None = None) -> Counter[str]:
        return Counter(r.status for r in self.records(stage))

    # --- Earth Engine operations ---
    def record_operation(self, op: OperationRecord) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO operations VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (op.name, op.tile_id, op.stage, op.state, op.eecu_seconds, op.pixel_dates, op.finished))

    def operations(self) -> list[OperationRecord]:
        """Every finished operation, oldest first (none in a ledger older than the table)."""
        try:
            rows = self._conn.execute("SELECT name, tile_id, stage, state, eecu_seconds, pixel_dates, finished "
                                      "FROM operations ORDER BY finished, name").fetchall()
        except sqlite3.OperationalError:  # a read-only ledger written before operations were recorded
            return []
        return [OperationRecord(*row) for row in rows]


class StageLog:
    """The ledger as one configuration (science hash) writes it: the driver records through it, and
    an executor records there the attempts and Earth Engine operations of the work it runs."""

    def __init__(self, ledger: Ledger, config_hash: str) -> None:
        self.ledger = ledger
        self.h = config_hash

    def get(self, tile_id: str, stage: str) -> StageRecord | None:
        """The row of (tile, stage) if it belongs to this configuration."""
        rec = self.ledger.get(tile_id, stage)
        return rec if rec is not None and rec.config_hash == self.h else None

    def records(self, stage: str | None = None) -> list[StageRecord]:
        return self.ledger.records(stage)

    def leaves(self, tile_id: str, stage: str) -> list[tuple[str, StageRecord | None]]:
        """(tile id, record or None) of ``stage`` of a tile, following recorded splits to the leaves."""
        rec = self.get(tile_id, stage)
        if rec is not None and rec.status == Status.SPLIT:
            return [leaf for c in rec.outputs.get("children", []) for leaf in self.leaves(c, stage)]
        return [(tile_id, rec)]

    def start(self, tile_id: str, stage: str) -> None:
        self.ledger.start(tile_id, stage, self.h)

    def set_operation(self, tile_id: str, stage: str, operation: str) -> None:
        self.ledger.set_operation(tile_id, stage, self.h, operation)

    def finish(self, tile_id: str, stage: str, status: str = Status.DONE, outputs: dict[str, Any] | None = None,
               message: str | None = None, stats: dict[str, Any] | None = None) -> None:
        self.ledger.finish(tile_id, stage, self.h, str(status), outputs, message, stats)

    def fail(self, tile_id: str, stage: str, message: str) -> None:
        self.ledger.fail(tile_id, stage, self.h, message)

    def record_operation(self, op: OperationRecord) -> None:
        self.ledger.record_operation(op)


def _create(path: Path) -> None:
    """A new ledger, complete with its schema before its name appears: a reader (``status``, a
    test polling a starting run) never sees an empty database under the ledger's name. (SQLite
    creates the file with the process's umask, as it would under the ledger's own name.)"""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()  # the last connection: the WAL is checkpointed into the file and removed
        try:
            os.link(tmp, path)  # never replaces a ledger another process created meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL database needs its ``-shm`` file, which a reader that cannot
    write the directory cannot create: then read it as immutable (no writer can be running there
    unless the writer is another user, whose newest transactions may then be missed)."""
    if not path.exists():
        raise sqlite3.DatabaseError("no such file")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None)
        conn.execute("SELECT count(*) FROM stages").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM stages").fetchone()
        return conn


def _record(row: tuple) -> StageRecord:
    return StageRecord(row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "{}"), row[6], row[7],
                       json.loads(row[8] or "{}"), row[9])
