"""What a run reports while it goes: the ``Progress`` protocol (the CLI implements it)."""
from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("engine.run")


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


__all__ = ["Progress", "SilentProgress"]
