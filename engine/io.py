"""Atomic file writes: a temp file in the target directory, fsync (unless not needed), then ``os.replace``."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    """The process umask (read once, at import: setting it to read it is not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what ``open()`` gives a new file: products are as readable as any file


def publish_mode(path: Path | str) -> None:
    """Give a finished temporary file the mode of a normally created one (mkstemp makes 0600)."""
    os.chmod(path, FILE_MODE)


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    ``durable``: the file is on disk (fsync) before it replaces ``target``; without it (a run's
    work files: their checksums are verified before use, and a torn one is recomputed) the page
    cache may keep it, which spares a disk write of files the run deletes soon after.

    The temporary file has ``target``'s own name, inside a hidden temporary directory beside it:
    writers that record their file name (GeoJSON's ``name``, GeoTIFF tags) write the same bytes
    whatever the temporary name. It is created empty with mode 0600 and, once written, gets the
    mode ``open()`` would give it under the umask (colleagues on a shared file system can read it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_path = tmp_dir / target.name
    try:
        os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmp_path
        if tmp_path.is_file():
            if durable:
                with open(tmp_path, "rb") as fh:
                    os.fsync(fh.fileno())
            publish_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(target: Path | str, obj: Any) -> None:
    atomic_write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def existing_ancestor(path: Path | str) -> Path:
    """``path`` made absolute, or its nearest ancestor that exists (where it would be created)."""
    where = Path(path).absolute()
    while not where.exists():
        where = where.parent
    return where
