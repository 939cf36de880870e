"""Progress for long runs: a live display on a terminal, plain log lines otherwise."""
from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TerminalProgress:
    """Per stage: tiles done / total, failed, elapsed and ETA (rich on a TTY, lines otherwise)."""

    def __init__(self, console: Console, quiet: bool = False, slots: int | None = None) -> None:
        self.console = console
        self.quiet = quiet
        self.slots = slots  # tasks that can run at once (dask worker threads, EE running cap)
        self.live = console.is_terminal and not quiet
        self._bar: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._totals: dict[str, int] = {}
        self._t0: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __enter__(self) -> TerminalProgress:
        if self.live:
            self._bar = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def stage(self, name: str, total: int, done: int = 0) -> None:
        if name in self._totals:  # a stage run again (e.g. retraining tiles): extend its bar
            if total > done:
                self._totals[name] += total - done
                if self._bar is not None:
                    self._bar.update(self._tasks[name], total=self._totals[name])
            return
        self._counts[name] = Counter(done=done)  # tiles reported before (reused, adopted) are in ``done``
        self._totals[name] = total
        self._t0[name] = time.perf_counter()
        self._skipped[name] = done
        if self._bar is not None:
            self._tasks[name] = self._bar.add_task(name, total=total, completed=done, detail=self._detail(name))
        elif not self.quiet:
            self._line(f"{name}: {total} tiles" + (f" ({done} already done)" if done else ""))

    def _detail(self, name: str) -> str:
        c = self._counts[name]
        left = self._totals.get(name, 0) - sum(c.values())
        running = min(self.slots, left) if self.slots else 0
        parts = [f"{running} running" if running else "", f"{c['failed']} failed" if c["failed"] else "",
                 f"{c['empty']} empty" if c["empty"] else "", f"{c['split']} split" if c["split"] else ""]
        return ", ".join(p for p in parts if p)

    def tile(self, stage: str, tile_id: str, status: str) -> None:
        c = self._counts.setdefault(stage, Counter())
        c[status] += 1
        if stage not in self._totals:  # reported before the stage started (reused, adopted): part of its done
            return
        finished = sum(c.values())
        if self._bar is not None:
            self._bar.update(self._tasks[stage], completed=finished, detail=self._detail(stage))
        elif not self.quiet:
            total = self._totals.get(stage, 0)
            elapsed = time.perf_counter() - self._t0.get(stage, time.perf_counter())
            new = finished - self._skipped.get(stage, 0)
            eta = f", ETA {elapsed / new * (total - finished):.0f} s" if 0 < new and finished < total else ""
            self._line(f"{stage} {finished}/{total} {tile_id}: {status}{eta}")

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]note:[/] {text}")

    def _line(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)
