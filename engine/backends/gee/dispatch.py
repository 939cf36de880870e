"""The Earth Engine task dispatcher: submit exports under a cap, poll once per interval, split.

Why a single-process loop and not dask: on the ``gee`` backend Earth Engine does the compute.
The client's work per task is two small HTTP requests (submit, and its share of a poll) and a
ledger write, so there is nothing to parallelise. What matters is *when* to submit: the project
runs only ``MAX_RUNNING_EXPORTS`` batch tasks at once, and one ``listOperations`` call reports
on every task. dask workers babysitting one task each would poll per task (N requests per
interval instead of one), race each other for the running-task cap, and need a scheduler that
survives for days while doing nothing; a killed worker would lose the operation name that only
the ledger keeps. One loop owns the cap, the ledger and the poll, and resume is just "read the
ledger, list the operations".

Per iteration:

1. **Submit** queued jobs while fewer than ``cap`` of *our* submitted tasks are PENDING or
   RUNNING. Each export carries a deterministic ``requestId`` (tile id + stage + config hash +
   attempt + content variant, :func:`engine.backends.gee.naming.request_id`); the ledger records the
   attempt before the request and the operation name after it, so a client killed in between
   resubmits the same ``requestId`` and gets the same operation back (never a second export).
2. **Wait** until the next poll: ``POLL_INTERVAL_S`` at most, sooner when a running task's
   reported progress says it ends earlier (polls at least a tenth of the interval apart). The
   wait is used to build the next request bodies, so a freed slot costs one request.
3. **Poll** with *one* paged ``listOperations`` (newest first, 500 per page), stopping as soon
   as every operation we wait for has been seen; never a per-task ``getOperation`` (only as a
   fallback for an operation that has vanished from the listing).
4. **Settle** finished operations (each recorded in the ledger's operations with the
   ``batchEecuUsageSeconds`` its metadata reports): SUCCEEDED -> done; FAILED with "User memory limit exceeded"
   or "Computation timed out" -> ``split`` (the driver, ``engine.run.driver``, records the split
   and executes the children, up to ``MAX_SPLIT_DEPTH``); any other failure -> failed with Earth
   Engine's message, and the run goes on.

Transient errors (429, 5xx, transport) are retried inside :class:`engine.backends.gee.api.EEApi` with
jittered exponential backoff; a submission still failing after that is re-queued with a delay.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError, MemoryLimitError, TransientError
from engine.backends.gee.api import EEApi, is_memory_message
from engine.backends.gee.naming import request_id
from engine.run.ledger import OperationRecord, StageLog
from tiling.grid import Tile

log = logging.getLogger(__name__)

PREPARE_AHEAD = 4  # request bodies built ahead beyond the free slots
MAX_SUBMIT_FAILURES = 6  # consecutive transient submission failures (each already retried) before a job fails


@dataclass
class Job:
    """One export: a tile (or a pseudo-tile id for run-wide exports) and a stage."""

    tile_id: str
    stage: str  # "train", an output name, or "mosaic:<output>"
    kind: str  # "image" | "table"
    tile: Tile | None = None
    model_tile: Tile | None = None  # stage B: the tile whose model asset is used
    destination: dict[str, Any] = field(default_factory=dict)  # {"asset": id} | {"uri": ...}
    overwrite: bool = False
    variant: str = ""  # what else decides the export's content (part of the requestId)
    pixel_dates: float = 0.0  # window pixels x dates: the EECU cost model's unit (engine.run.eecu)
    # runtime
    attempt: int = 0
    resubmit: bool = False  # the ledger holds an attempt whose operation name was never recorded
    operation: str | None = None
    submit_failures: int = 0
    not_before: float = 0.0
    submitted_at: float = 0.0
    attempt_recorded: bool = False
    body: dict[str, Any] | None = field(default=None, repr=False)
    build_error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.tile_id, self.stage


@dataclass
class Outcome:
    job: Job
    status: str  # done | failed | split | empty
    message: str | None = None
    operation: dict[str, Any] | None = None


@dataclass
class DispatchStats:
    polls: int = 0
    list_pages: int = 0
    get_operation_calls: int = 0
    submitted: int = 0
    adopted: int = 0
    splits: int = 0
    task_seconds: float = 0.0  # sum of RUNNING durations reported by the server (for the bound)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


BuildBody = Callable[[Job], dict[str, Any]]
Listener = Callable[[Outcome], None]


class Dispatcher:
    """Runs a set of export jobs to completion (see the module docstring)."""

    def __init__(self, api: EEApi, log: StageLog, build: BuildBody, *, cap: int, poll_interval: float,
                 on_outcome: Listener | None = None, on_submit: Callable[[Job], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.log = log
        self.build = build
        self.cap = cap
        self.poll_interval = poll_interval
        self.min_interval = poll_interval / 10
        self.on_outcome = on_outcome or (lambda o: None)
        self.on_submit = on_submit or (lambda j: None)
        self.clock = clock
        self.sleep = sleep
        self.stats = DispatchStats()
        self.queue: deque[Job] = deque()
        self.active: dict[str, Job] = {}  # operation name -> job (submitted, not seen finished)
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self._ends: dict[str, float | None] = {}  # operation -> expected end (local clock); None = unknown
        self._last_poll = float("-inf")
        self._prep_cost = 0.05  # running estimate of the seconds one request body takes to build

    # --- public -----------------------------------------------------------------------------
    def add(self, job: Job) -> None:
        """Queue a job, or adopt its operation if the ledger shows one in flight."""
        rec = self.log.get(job.tile_id, job.stage)
        if rec is not None and rec.status == "running":
            job.attempt = rec.attempts
            if rec.operation:
                job.operation = rec.operation
                self.active[rec.operation] = job
                self.stats.adopted += 1
                log.info("%s %s: awaiting operation %s from an earlier run", job.stage, job.tile_id, rec.operation)
                return
            job.resubmit = True  # submitted (maybe) without recording the answer: same requestId again
        self.queue.append(job)

    def run(self) -> dict[tuple[str, str], Outcome]:
        while self.queue or self.active:
            self._submit_ready()
            if not self.active:
                if self.queue:  # every queued job is backing off
                    wait = min(j.not_before for j in self.queue) - self.clock()
                    self.sleep(max(wait, 0.0))
                continue
            deadline = self.clock() + self._next_delay()
            self._prepare_ahead(deadline)  # build the next request bodies while the tasks run
            self.sleep(max(deadline - self.clock(), 0.0))
            finished = self._poll()
            self._submit_ready()  # refill the freed slots first, then do the bookkeeping
            for job, op in finished:
                self._finished(job, op)
        return self.outcomes

    # --- submission -----------------------------------------------------------------------------
    def _submit_ready(self) -> None:
        now = self.clock()
        skipped: list[Job] = []
        while self.queue and len(self.active) < self.cap:
            job = self.queue.popleft()
            if job.not_before > now:
                skipped.append(job)
                continue
            self._submit(job)
        self.queue.extendleft(reversed(skipped))

    def _prepare_ahead(self, deadline: float) -> None:
        """Prepare queued jobs (ledger attempt + request body) while there is time before the next
        poll, so a freed slot is refilled with one request and no client-side work."""
        for job in list(self.queue)[: self.cap + PREPARE_AHEAD]:
            if job.body is not None or job.build_error or job.not_before > self.clock():
                continue
            if self.clock() + self._prep_cost > deadline:
                return
            t0 = self.clock()
            self._prepare(job)
            self._prep_cost = 0.7 * self._prep_cost + 0.3 * (self.clock() - t0)

    def _prepare(self, job: Job) -> bool:
        """Record the attempt (before any request) and build the request body; False if it failed."""
        if not job.resubmit and job.submit_failures == 0 and job.attempt_recorded is False:
            self.log.start(job.tile_id, job.stage)
            rec = self.log.get(job.tile_id, job.stage)
            job.attempt = rec.attempts if rec else 1
            job.attempt_recorded = True
        try:
            job.body = self.build(job)
        except Exception as e:  # noqa: BLE001 - one tile's bad request must not stop the others
            log.exception("%s %s: cannot build the export request", job.stage, job.tile_id)
            job.body = None
            job.build_error = f"cannot build the export request: {type(e).__name__}: {e}"
            return False
        return True

    def _submit(self, job: Job) -> None:
        if job.body is None and not self._prepare(job):
            self._settle(Outcome(job, "failed", job.build_error or "the export request could not be built"))
            return
        rid = request_id(job.tile_id, job.stage, self.log.h, job.attempt, job.variant,
                         json.dumps(job.destination, sort_keys=True))
        try:
            op = self.api.export(job.kind, job.body, rid)
        except TransientError as e:
            job.submit_failures += 1
            if job.submit_failures >= MAX_SUBMIT_FAILURES:
                self._settle(Outcome(job, "failed", f"Earth Engine kept refusing the export: {e}"))
                return
            job.resubmit = True  # the request may have taken effect: keep the requestId
            job.not_before = self.clock() + self.poll_interval * job.submit_failures
            self.queue.append(job)
            return
        except MemoryLimitError as e:
            self._split(job, str(e))
            return
        except EngineError as e:
            self._settle(Outcome(job, "failed", _explain_submit_error(job, str(e))))
            return
        job.body = None  # sent; do not keep it
        job.operation = op["name"]
        job.submitted_at = self.clock()
        job.resubmit = False
        job.submit_failures = 0
        self.log.set_operation(job.tile_id, job.stage, op["name"])
        self.active[op["name"]] = job
        self.stats.submitted += 1
        self._ends[op["name"]] = None
        self.on_submit(job)

    # --- polling ------------------------------------------------------------------------------------
    def _next_delay(self) -> float:
        """Until the earliest expected end of a running task; a quarter interval to learn the pace
        of tasks without a progress report yet; at most the poll interval."""
        now = self.clock()
        soonest = now + self.poll_interval
        for name in self.active:
            end = self._ends.get(name)
            soonest = min(soonest, now + self.poll_interval / 4 if end is None else end + 0.01)
        soonest = max(soonest, self._last_poll + self.min_interval)  # never closer than a tenth of the interval
        return min(self.poll_interval, max(soonest - now, 0.0))

    def _poll(self) -> list[tuple[Job, dict[str, Any]]]:
        """One paged listOperations; returns the jobs whose operations finished (removed from active)."""
        self.stats.polls += 1
        self._last_poll = self.clock()
        waiting = set(self.active)
        seen: dict[str, dict[str, Any]] = {}
        token = None
        complete = False
        try:
            while True:
                page = self.api.list_operations_page(token)
                self.stats.list_pages += 1
                for op in page.get("operations", []):
                    if op.get("name") in waiting:
                        seen[op["name"]] = op
                token = page.get("nextPageToken")
                if len(seen) == len(waiting):
                    break
                if not token:
                    complete = True
                    break
        except TransientError as e:
            log.warning("listOperations failed (%s); polling again later", e)
            return []
        if complete:  # some operations are not listed at all: ask for them one by one (rare)
            for name in waiting - set(seen):
                self.stats.get_operation_calls += 1
                try:
                    op = self.api.get_operation(name)
                except TransientError:
                    continue
                seen[name] = op if op is not None else {"name": name, "done": True, "_missing": True}
        now = self.clock()
        finished = []
        for name, op in seen.items():
            job = self.active.get(name)
            if job is None:
                continue
            md = op.get("metadata", {}) or {}
            if op.get("done") or md.get("state") in ("SUCCEEDED", "FAILED", "CANCELLED"):
                del self.active[name]
                self._ends.pop(name, None)
                finished.append((job, op))
            elif md.get("state") == "RUNNING":
                remaining = _remaining(md)
                self._ends[name] = None if remaining is None else now + remaining
            else:  # PENDING: queued behind other tasks of the project
                self._ends[name] = now + self.poll_interval
        return finished

    def _finished(self, job: Job, op: dict[str, Any]) -> None:
        md = op.get("metadata", {}) or {}
        if op.get("_missing"):  # pruned from the task list: the destination asset tells whether it ran
            asset = job.destination.get("asset")
            try:
                found = asset is not None and self.api.get_asset(asset) is not None
            except EngineError:
                found = False
            if found:
                self._settle(Outcome(job, "done", operation={"name": op["name"]}))
            else:
                self._settle(Outcome(job, "failed", f"operation {op['name']} is no longer in Earth Engine's task "
                                                    "list and left no output; run the command again to redo it"))
            return
        state = md.get("state") or ("FAILED" if op.get("error") else "SUCCEEDED")
        self.stats.task_seconds += _duration(md)
        eecu = md.get("batchEecuUsageSeconds")
        self.log.record_operation(OperationRecord(
            op["name"], job.tile_id, job.stage, state, None if eecu is None else float(eecu), job.pixel_dates,
            _ts(md.get("endTime")) or time.time()))
        if state == "SUCCEEDED":
            self._settle(Outcome(job, "done", operation=op))
            return
        message = (op.get("error") or {}).get("message") or f"task {state.lower()}"
        if state == "FAILED" and is_memory_message(message):
            self._split(job, message)
            return
        if state == "CANCELLED":
            message = "the export task was cancelled (in the Earth Engine task manager?)"
        self._settle(Outcome(job, "failed", message, operation=op))

    # --- outcomes -------------------------------------------------------------------------------------
    def _split(self, job: Job, message: str) -> None:
        self.stats.splits += 1
        self._settle(Outcome(job, "split", message))

    def _settle(self, outcome: Outcome) -> None:
        """The caller records it (done with its outputs, failed, split)."""
        self.outcomes[outcome.job.key] = outcome
        self.on_outcome(outcome)


def _explain_submit_error(job: Job, message: str) -> str:
    if "cannot overwrite asset" in message.lower():
        return (f"{message} The asset exists and this run did not record creating it; delete it in the Earth "
                "Engine asset manager or use another --run-dir")
    return message


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _remaining(md: dict[str, Any]) -> float | None:
    """Seconds a RUNNING task still needs, from its reported progress (server clock only)."""
    progress = md.get("progress")
    start, update = _ts(md.get("startTime")), _ts(md.get("updateTime"))
    if not progress or start is None or update is None or progress <= 0.02:
        return None
    elapsed = max(update - start, 0.0)
    return max(elapsed * (1 - progress) / progress, 0.0)


def _duration(md: dict[str, Any]) -> float:
    start, end = _ts(md.get("startTime")), _ts(md.get("endTime"))
    return max(end - start, 0.0) if start is not None and end is not None else 0.0


__all__ = ["Dispatcher", "Job", "Outcome", "DispatchStats"]
