"""The EECU journal: every Earth Engine batch operation's reported usage, across runs, per user.

One JSON line per operation (project, service, configuration shape, stage, EECU-seconds,
pixel-dates, time), appended by the gee backend after each wave of exports from its ledger, so a
run killed mid-wave is journaled when it resumes. It answers what no single run directory can:
this month's use of a project against its tier's quota, and the recorded cost per pixel-date of
a configuration shape (:mod:`engine.run.eecu`). Lines are deduplicated by operation on reading;
a damaged line is skipped. Earth Engine's quota month is taken as the calendar month in UTC
(its documentation says "monthly" without more).

Where: ``$SAR_INFILL_EECU_JOURNAL``, else ``$XDG_STATE_HOME/sar-infill/eecu.jsonl`` (default
``~/.local/state``). The journal only informs estimates: one that cannot be written is warned
about once and the run goes on.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.run import eecu
from engine.run.context import RunContext
from engine.run.eecu import EecuEstimate, Recorded, recorded

log = logging.getLogger(__name__)


def journal_path(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("SAR_INFILL_EECU_JOURNAL"):
        return Path(environ["SAR_INFILL_EECU_JOURNAL"]).expanduser()
    state = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "sar-infill" / "eecu.jsonl"


def service_of(url: str, loopback: bool) -> str:
    """Usage on a stand-in on loopback (any port) never prices or counts against the real service."""
    return "loopback" if loopback else url.rstrip("/")


@dataclass(frozen=True)
class Entry:
    operation: str
    project: str
    service: str
    shape: str
    stage: str
    eecu_seconds: float
    pixel_dates: float
    time: float  # when the operation finished (seconds since the epoch)


def read(path: Path | None = None) -> list[Entry]:
    """Every journaled operation, once each (the newest line of an operation wins)."""
    path = path or journal_path()
    entries: dict[tuple[str, str], Entry] = {}
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        log.warning("EECU journal %s cannot be read (%s); estimates use the prior", path, e)
        return []
    for line in lines:
        try:
            e = Entry(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut by a crash, or written by another version
        entries[(e.service, e.operation)] = e
    return list(entries.values())


def append(entries: Iterable[Entry], path: Path | None = None) -> int:
    """Journal the operations not journaled yet; returns how many lines were written."""
    path = path or journal_path()
    known = {(e.service, e.operation) for e in read(path)}
    new = [e for e in entries if (e.service, e.operation) not in known]
    if not new:
        return 0
    text = "".join(json.dumps(asdict(e), sort_keys=True) + "\n" for e in new)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # one write of whole lines in append mode: concurrent runs interleave lines, never cut them
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        log.warning("EECU journal %s cannot be written (%s); this run's usage stays in its ledger only", path, e)
        return 0
    return len(new)


def month_start(now: dt.datetime) -> float:
    return now.astimezone(dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_hours(entries: Iterable[Entry], project: str | None, service: str, now: dt.datetime) -> float:
    """EECU-hours journaled for ``project`` on ``service`` since the start of this UTC month."""
    start = month_start(now)
    return sum(e.eecu_seconds for e in entries
               if e.project == project and e.service == service and e.time >= start) / 3600


def history(entries: Iterable[Entry], shape: str, service: str) -> dict[str, Recorded]:
    """Recorded usage per stage group of operations of configuration ``shape`` on ``service``."""
    return recorded((e.stage, e.eecu_seconds, e.pixel_dates) for e in entries
                    if e.shape == shape and e.service == service)


@dataclass(frozen=True)
class Outlook:
    """A planned gee run's EECU-hours against its project's month: what ``plan`` shows and ``run`` guards."""

    estimate: EecuEstimate
    tier: str
    quota_hours: float | None  # None: commercial, billed without a cap
    month_hours: float  # journaled this UTC month for the project on the service
    project: str | None
    service: str

    @property
    def over_quota(self) -> bool:
        return self.quota_hours is not None and self.month_hours + self.estimate.total_hours > self.quota_hours


def outlook(ctx: RunContext, project: str | None, service: str, environ: Mapping[str, str] = os.environ,
            now: dt.datetime | None = None) -> Outlook:
    """The estimate refined by the journal's record of this configuration shape on ``service``,
    next to the tier's quota and the month's journaled use of ``project``."""
    entries = read(journal_path(environ))
    tier = eecu.tier(ctx.params, dict(environ))
    return Outlook(eecu.estimate(ctx, history(entries, eecu.shape_key(ctx.params), service)), tier,
                   eecu.TIER_QUOTA_HOURS[tier],
                   month_hours(entries, project, service, now or dt.datetime.now(dt.timezone.utc)), project, service)


__all__ = ["Entry", "Outlook", "outlook", "append", "history", "journal_path", "month_hours", "read", "service_of"]
