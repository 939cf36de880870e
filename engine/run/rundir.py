"""The run directory: layout, the single-writer lock, and the recorded run description."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.errors import RunDirError
from engine.io import atomic_write_json

RUN_FILE = "run.json"
PLAN_FILES = ("tiles.parquet", "tiles.geojson")  # the tile index ``plan`` writes before a run exists


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def global_dir(self) -> Path:
        return self.root / "global"

    def tile_dir(self, tile_id: str) -> Path:
        return self.root / "tiles" / tile_id

    def work_dir(self, tile_id: str) -> Path:
        return self.root / "work" / tile_id

    @property
    def cube(self) -> Path:
        return self.root / "cube.zarr"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.run_file.exists()

    def read_run(self) -> dict[str, Any]:
        try:
            run = json.loads(self.run_file.read_text())
        except NotADirectoryError:
            raise RunDirError(f"{str(self.root)!r} is a file, not a run directory") from None
        except FileNotFoundError:
            raise RunDirError(
                f"{str(self.root)!r} is not a run directory (no {RUN_FILE}); start one with: python -m engine run --aoi ..."
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise RunDirError(f"{self.run_file} is unreadable ({e}); the run directory is damaged") from None
        missing = [k for k in ("params", "aoi", "plan") if not isinstance(run, dict) or not isinstance(run.get(k), dict)]
        if missing:
            raise RunDirError(f"{self.run_file} lacks {', '.join(missing)}; the run directory is damaged "
                              "(or was written by another program)")
        return run

    def check_unused(self) -> None:
        """Refuse a directory without ``run.json`` unless it holds only what a new run may replace:
        the tile index of ``plan``, or the lock and temporary files of a run killed before ``run.json``."""
        holder = RunLock.holder(self.root)
        if holder:  # another process is creating a run here (its run.json is not written yet)
            raise RunDirError(f"run directory {str(self.root)!r} is in use by {holder}; wait for it or use another --run-dir")
        if self.root.exists() and any(p.name not in (".lock", *PLAN_FILES) and not _temporary(p.name)
                                      for p in self.root.iterdir()):
            raise RunDirError(f"{str(self.root)!r} exists and is not a run directory of this engine; "
                              "choose another --run-dir")

    def write_run(self, description: dict[str, Any]) -> None:
        atomic_write_json(self.run_file, description)

    def sweep_temporaries(self) -> int:
        """Delete what killed writers left behind: ``atomic_path`` temp directories (``.<name>.*.tmp``)
        and zarr's ``*.partial`` chunk files. Only the lock holder may call it. Returns how many."""
        import shutil

        n = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for d in [d for d in dirnames if _temporary(d)]:
                shutil.rmtree(os.path.join(dirpath, d), ignore_errors=True)
                dirnames.remove(d)
                n += 1
            for f in filenames:
                if f.endswith(".partial") or _temporary(f):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, f))
                        n += 1
        return n


class RunLock:
    """An exclusive, non-blocking lock on the run directory (released when the process dies)."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        self._fh: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fh)
            fh.close()
            raise RunDirError(
                f"run directory {str(self.path.parent)!r} is in use by {holder}; wait for it or use another --run-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    @staticmethod
    def holder(root: Path) -> str | None:
        """Who holds the lock of ``root`` (e.g. ``pid 123``), or None when it is free; changes nothing."""
        try:
            fh = open(root / ".lock")
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _holder_text(fh)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _temporary(name: str) -> bool:
    """An ``atomic_path`` temporary (``.<name>.*.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _holder_text(fh: IO[str]) -> str:
    """The holder's ``pid N`` (it writes it just after locking: wait a moment for it)."""
    import time

    for _ in range(20):
        fh.seek(0)
        text = fh.read().strip()
        if text:
            return text
        time.sleep(0.01)
    return "another process"
