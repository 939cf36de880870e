"""In-memory state of the stand-in: batch tasks (operations), assets and counters.

Task scheduling is a discrete-event simulation evaluated lazily on every request
(:meth:`State.advance`): a task waits PENDING in submission order, RUNNING starts as soon as one
of ``running_cap`` slots is free, and it ends ``duration`` seconds later as SUCCEEDED, FAILED or
CANCELLED. ``duration = task_seconds + seconds_per_megapixel * pixels / 1e6`` (pixels estimated
from the export expression; see ``exports.estimate_pixels``). No background thread is needed:
times come from ``clock`` (``time.time`` by default; tests may pass a fake clock).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from concurrent.futures import Future, ThreadPoolExecutor

from .compute import NOT_HANDLED, ComputeError, ComputeRegistry, ComputeRequest
from .evaluate import EEError
from .execution import Limits, compute_pixels, compute_value, run_export
from .expressions import check_expression, load_signatures
from .exports import band_names, estimate_pixels, image_properties
from .expressions import Graph
from .faults import Faults

OPERATION_METADATA_TYPE = "type.googleapis.com/google.earthengine.v1alpha.OperationMetadata"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PAGE_SIZE = 500
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class ApiError(Exception):
    """An error answered with Earth Engine's JSON error body."""

    def __init__(self, http_status: int, status: str, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message,
                          "status": self.status}}


def rfc3339(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Counters(Mapping):
    """Thread-safe counters; missing keys read as 0. ``dict(counters)`` gives a snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._d: dict[str, float] = {}

    def inc(self, key: str, n: float = 1) -> None:
        with self._lock:
            self._d[key] = self._d.get(key, 0) + n

    def set_max(self, key: str, value: float) -> None:
        with self._lock:
            if value > self._d.get(key, 0):
                self._d[key] = value

    def set(self, key: str, value: float) -> None:
        with self._lock:
            self._d[key] = value

    def reset(self) -> None:
        with self._lock:
            self._d.clear()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(sorted(self._d.items()))

    def __getitem__(self, key: str) -> float:
        with self._lock:
            return self._d.get(key, 0)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"


@dataclass
class Task:
    seq: int
    op_id: str
    project: str
    kind: str  # EXPORT_IMAGE / EXPORT_FEATURES
    description: str
    request_id: str | None
    request: dict[str, Any]
    destination: str | None  # asset name for exports to asset
    overwrite: bool
    destination_uris: list[str]
    create_time: float
    duration: float
    pixels: float | None
    failure: str | None
    failure_code: int = 3
    state: str = "PENDING"
    outcome: str | None = None  # final state the task will reach
    start_time: float | None = None
    end_time: float | None = None
    update_time: float = 0.0
    attempt: int = 0
    properties: dict[str, Any] = field(default_factory=dict)
    bands: list[str] | None = None
    future: Future | None = None  # the export's computation (executing stand-in)
    eecu_seconds: float | None = None  # set when the task succeeds (see ``eecu_seconds``)

    @property
    def name(self) -> str:
        return f"projects/{self.project}/operations/{self.op_id}"

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def to_operation(self, now: float) -> dict[str, Any]:
        md: dict[str, Any] = {
            "@type": OPERATION_METADATA_TYPE,
            "state": self.state,
            "description": self.description,
            "priority": int(self.request.get("priority", {}).get("value", 100))
            if isinstance(self.request.get("priority"), dict) else 100,
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(now if self.state == "RUNNING" else self.update_time),
            "type": self.kind,
            "destinationUris": list(self.destination_uris),
        }
        if self.start_time is not None:
            md["startTime"] = rfc3339(self.start_time)
            md["attempt"] = self.attempt
        if self.state == "RUNNING" and self.end_time is not None and self.start_time is not None:
            span = max(self.end_time - self.start_time, 1e-9)
            md["progress"] = min(max((now - self.start_time) / span, 0.0), 0.99)
        elif self.state == "SUCCEEDED":
            md["progress"] = 1.0
        if self.done:
            md["endTime"] = rfc3339(self.end_time or self.update_time)
            if self.state == "SUCCEEDED" and self.eecu_seconds is not None:
                # Earth Engine reports no usage for failed or cancelled tasks (Computation Overview)
                md["batchEecuUsageSeconds"] = self.eecu_seconds
        op: dict[str, Any] = {"name": self.name, "metadata": md, "done": self.done}
        if self.state == "SUCCEEDED":
            op["response"] = {"@type": EMPTY_TYPE}
        elif self.state == "FAILED":
            op["error"] = {"code": self.failure_code, "message": self.failure or "Failed."}
        elif self.state == "CANCELLED":
            op["error"] = {"code": 1, "message": "Cancelled."}
        return op


EECU_SECONDS_PER_PIXEL_OP = 1e-7  # the stand-in's price of its cost model's unit of work
EECU_SECONDS_PER_TASK = 2.0  # and of a batch task's own overhead (start-up, writing the output)
EECU_PER_SIMULATED_SECOND = 10.0  # a task that is only timed (execute=False): 10 EECUs busy while it runs


def eecu_seconds(pixel_ops: float | None, duration: float) -> float:
    """A successful task's ``batchEecuUsageSeconds``. [silent] Earth Engine publishes no formula
    (EECU-seconds "don't correspond directly to CPU-seconds", Computation Overview): the stand-in
    charges its documented cost model's ``pixel_ops`` at :data:`EECU_SECONDS_PER_PIXEL_OP` plus a
    per-task overhead, so the figure grows with the work an export does, as the real one does, and
    is repeatable. A task that was only timed is charged by its duration."""
    if pixel_ops is None:
        return round(duration * EECU_PER_SIMULATED_SECOND, 3)
    return round(EECU_SECONDS_PER_TASK + pixel_ops * EECU_SECONDS_PER_PIXEL_OP, 3)


def _parent_of(name: str) -> str:
    """'projects/p/assets/a/b' -> 'projects/p/assets/a'; 'projects/p/assets/a' -> 'projects/p'."""
    head, _, _ = name.rpartition("/")
    if head.endswith("/assets") and head.count("/") == 2:
        return head[: -len("/assets")]
    return head


class State:
    """Everything the server knows; all public methods are thread-safe."""

    def __init__(self, *, task_seconds: float = 2.0, running_cap: int = 2,
                 seconds_per_megapixel: float = 0.0, seed: int = 0,
                 faults: Faults | None = None, compute: ComputeRegistry | None = None,
                 clock: Callable[[], float] = time.time, algorithms_path: str | None = None,
                 strict_parents: bool = True, cancel_seconds: float = 0.0,
                 default_max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_queued_tasks: int | None = None, data_dir: str | None = None,
                 execute: bool = True, limits: Limits | None = None):
        self.lock = threading.RLock()
        self.data_dir = data_dir
        self.execute = execute
        self.limits = limits or Limits()
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="standin-export")
        self.clock = clock
        self.task_seconds = task_seconds
        self.running_cap = running_cap
        self.seconds_per_megapixel = seconds_per_megapixel
        self.seed = seed
        self.faults = faults if faults is not None else Faults(seed=seed)
        self.compute = compute if compute is not None else ComputeRegistry()
        self.algorithms_path = algorithms_path
        self.signatures = load_signatures(algorithms_path)
        self.strict_parents = strict_parents
        self.cancel_seconds = cancel_seconds
        self.default_max_pixels = default_max_pixels
        self.max_queued_tasks = max_queued_tasks
        self.counters = Counters()
        self.tasks: dict[str, Task] = {}
        self.task_order: list[Task] = []
        self._pending: deque[Task] = deque()
        self._running: list[Task] = []
        self._by_request_id: dict[tuple[str, str], Task] = {}
        self._descriptions: dict[tuple[str, str], int] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.rejections: list[dict[str, Any]] = []  # invalid expressions seen (for debugging)
        self._cursor = clock()
        self._seq = 0

    # -- configuration ---------------------------------------------------------------------
    FAULT_ALIASES = {"fault_429": "rate_429", "fault_500": "rate_500", "fault_kinds": "kinds"}

    def configure(self, **opts: Any) -> None:
        """Change durations / cap / faults at runtime (names as the CLI flags, with ``_``)."""
        with self.lock:
            self.advance()
            fault_opts = {}
            for key, value in opts.items():
                if key in ("task_seconds", "seconds_per_megapixel", "cancel_seconds"):
                    setattr(self, key, float(value))
                elif key == "running_cap":
                    self.running_cap = int(value)
                elif key == "strict_parents":
                    self.strict_parents = bool(value)
                elif key == "default_max_pixels":
                    self.default_max_pixels = int(value)
                elif key == "max_queued_tasks":
                    self.max_queued_tasks = None if value is None else int(value)
                elif key in ("interactive_pixel_ops", "batch_pixel_ops", "memory_bytes"):
                    setattr(self.limits, key, float(value))
                elif key == "execute":
                    self.execute = bool(value)
                elif key == "unsupported_compute_status":
                    self.compute.unsupported_http_status = int(value)
                elif key == "seed":
                    self.seed = int(value)
                    fault_opts["seed"] = int(value)
                else:
                    fault_opts[self.FAULT_ALIASES.get(key, key)] = value
            if fault_opts:
                self.faults.update(**fault_opts)
            self.advance()

    def config_snapshot(self) -> dict[str, Any]:
        return {"task_seconds": self.task_seconds, "running_cap": self.running_cap,
                "seconds_per_megapixel": self.seconds_per_megapixel, "seed": self.seed,
                "strict_parents": self.strict_parents, "cancel_seconds": self.cancel_seconds,
                "default_max_pixels": self.default_max_pixels,
                "max_queued_tasks": self.max_queued_tasks,
                "unsupported_compute_status": self.compute.unsupported_http_status,
                "execute": self.execute, "data_dir": self.data_dir,
                "interactive_pixel_ops": self.limits.interactive_pixel_ops,
                "batch_pixel_ops": self.limits.batch_pixel_ops, "memory_bytes": self.limits.memory_bytes,
                "faults": self.faults.snapshot()}

    # -- scheduling --------------------------------------------------------------------------
    def advance(self, now: float | None = None) -> None:
        """Process task starts and ends up to ``now`` in time order."""
        with self.lock:
            now = self.clock() if now is None else now
            while True:
                next_end = min((t.end_time for t in self._running), default=float("inf"))
                next_start = float("inf")
                if self._pending and len(self._running) < self.running_cap:
                    next_start = max(self._cursor, self._pending[0].create_time)
                if next_end <= next_start:
                    if next_end > now:
                        break
                    task = min(self._running, key=lambda t: (t.end_time, t.seq))
                    if task.future is not None and not task.future.done() and task.outcome != "CANCELLED":
                        task.end_time = max(next_end, now) + 0.05  # still computing
                        continue
                    self._finish(task, next_end)
                    self._cursor = max(self._cursor, next_end)
                else:
                    if next_start > now:
                        break
                    self._start(self._pending.popleft(), next_start)
                    self._cursor = max(self._cursor, next_start)

    def _start(self, task: Task, t: float) -> None:
        task.state = "RUNNING"
        task.start_time = t
        task.end_time = t + task.duration
        task.update_time = t
        task.attempt = 1
        task.outcome = "FAILED" if task.failure else "SUCCEEDED"
        self._running.append(task)
        self.counters.inc("tasks_started")
        self.counters.set_max("running_max", len(self._running))

    def _finish(self, task: Task, t: float) -> None:
        self._running.remove(task)
        if task.future is not None and task.outcome == "SUCCEEDED":
            err = task.future.exception()
            if err is not None:
                task.outcome, task.failure = "FAILED", str(err) if isinstance(err, EEError) else f"Internal error: {err!r}"
                task.failure_code = 8 if "memory" in task.failure or "timed out" in task.failure else 3
                self.counters.inc("exports_failed_computation")
        task.state = task.outcome or "SUCCEEDED"
        if task.state == "SUCCEEDED":
            task.eecu_seconds = eecu_seconds(task.future.result()["pixel_ops"] if task.future is not None else None,
                                             task.duration)
        task.end_time = t
        task.update_time = t
        self.counters.inc(f"tasks_{task.state.lower()}")
        if task.state == "SUCCEEDED" and task.destination:
            self._write_export_asset(task, t)

    def _write_export_asset(self, task: Task, t: float) -> None:
        asset: dict[str, Any] = {
            "type": "IMAGE" if task.kind == "EXPORT_IMAGE" else "TABLE",
            "name": task.destination,
            "id": task.destination,
            "updateTime": rfc3339(t),
            "properties": {k: v for k, v in task.properties.items()
                           if not k.startswith("system:")},
        }
        start = task.properties.get("system:time_start")
        if isinstance(start, (int, float)):
            asset["startTime"] = rfc3339(start / 1000.0)
        end = task.properties.get("system:time_end")
        if isinstance(end, (int, float)):
            asset["endTime"] = rfc3339(end / 1000.0)
        if isinstance(task.request.get("properties"), dict):
            asset["properties"].update(task.request["properties"])
        if task.kind == "EXPORT_IMAGE":
            if task.bands is not None:
                asset["bands"] = [{"id": b, "dataType": {"precision": "FLOAT"}}
                                  for b in task.bands]
            if task.pixels is not None:
                asset["sizeBytes"] = str(int(task.pixels * 4 * max(len(task.bands or [1]), 1)))
        asset["standin"] = {"operation": task.name, "pixels_estimate": task.pixels}
        if task.future is not None:
            result = task.future.result()
            asset["standin"].update(result)
            if "grid" in result:
                g = result["grid"]
                asset["bands"] = [{"id": b, "dataType": {"precision": "FLOAT"},
                                   "grid": {"crsCode": g.proj.crs, "dimensions": {"width": g.w, "height": g.h},
                                            "affineTransform": dict(zip(
                                                ("scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"),
                                                g.affine()))},
                                   "pyramidingPolicy": result["pyramiding"][b]} for b in result["pixels"]]
                asset["sizeBytes"] = str(int(g.size * 4 * len(result["pixels"])))
        self.assets[task.destination] = asset  # type: ignore[index]
        self.counters.inc("assets_created")

    # -- exports -----------------------------------------------------------------------------
    def _check(self, expr: Any, where: str) -> None:
        errors = check_expression(expr, self.signatures)
        if errors:
            self.counters.inc("invalid_expressions")
            with self.lock:
                self.rejections.append({"where": where, "errors": errors})
            raise ApiError(400, "INVALID_ARGUMENT", errors[0])

    def _next_op_id(self) -> str:
        self._seq += 1
        h = hashlib.sha256(f"standin:{self.seed}:{self._seq}".encode()).digest()
        return base64.b32encode(h).decode()[:24]

    def submit_export(self, project: str, body: dict[str, Any], kind: str) -> dict[str, Any]:
        """``image:export`` (kind EXPORT_IMAGE) / ``table:export`` (EXPORT_FEATURES)."""
        if not isinstance(body, dict) or "expression" not in body:
            raise ApiError(400, "INVALID_ARGUMENT", "Request is missing required field "
                           "'expression'.")
        request_id = body.get("requestId") or None
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 60):
            raise ApiError(400, "INVALID_ARGUMENT",
                           "Invalid request ID: must be a string of at most 60 characters.")
        with self.lock:
            now = self.clock()
            self.advance(now)
            if request_id is not None and (project, request_id) in self._by_request_id:
                self.counters.inc("duplicate_request_id")
                return self._by_request_id[(project, request_id)].to_operation(now)
        self._check(body["expression"], kind)
        expr = body["expression"]
        dest_opts = (body.get("assetExportOptions") or {}).get("earthEngineDestination") or {}
        destination = dest_opts.get("name")
        overwrite = bool(dest_opts.get("overwrite", False))
        uris = []
        if destination:
            if not destination.startswith("projects/") or "/assets/" not in destination:
                raise ApiError(400, "INVALID_ARGUMENT", f"Invalid asset name: '{destination}'.")
            uris.append(f"https://code.earthengine.google.com/?asset={destination}")
        else:
            fopts = body.get("fileExportOptions") or {}
            gcs = fopts.get("gcsDestination") or fopts.get("cloudStorageDestination")
            if gcs:
                uris.append("https://console.developers.google.com/storage/browser/"
                            f"{gcs.get('bucket', '')}/{gcs.get('filenamePrefix', '')}")
            elif fopts.get("driveDestination") is not None:
                uris.append("https://drive.google.com/")
        description = body.get("description") or (
            "myExportImageTask" if kind == "EXPORT_IMAGE" else "myExportTableTask")
        pixels = estimate_pixels(expr) if kind == "EXPORT_IMAGE" else None
        mp = body.get("maxPixels")
        if isinstance(mp, dict):
            mp = mp.get("value")
        max_pixels = int(float(mp)) if mp is not None else self.default_max_pixels
        with self.lock:
            now = self.clock()
            self.advance(now)
            if request_id is not None and (project, request_id) in self._by_request_id:
                self.counters.inc("duplicate_request_id")
                return self._by_request_id[(project, request_id)].to_operation(now)
            if destination:
                if destination in self.assets and not overwrite:
                    raise ApiError(400, "FAILED_PRECONDITION",
                                   f"Cannot overwrite asset '{destination}'.")
                parent = _parent_of(destination)
                if (self.strict_parents and parent.count("/") > 1
                        and parent not in self.assets):
                    raise ApiError(400, "INVALID_ARGUMENT",
                                   f"Parent folder '{parent}' of asset '{destination}' does "
                                   "not exist.")
            if (self.max_queued_tasks is not None
                    and len(self._pending) + len(self._running) >= self.max_queued_tasks):
                self.counters.inc("queue_full_rejections")
                raise ApiError(429, "RESOURCE_EXHAUSTED",
                               f"Too many tasks already in the queue ({self.max_queued_tasks})."
                               " Please wait for some of them to complete.")
            key = (project, description)
            if self._descriptions.get(key):
                self.counters.inc("duplicate_description")
            self._descriptions[key] = self._descriptions.get(key, 0) + 1
            failure = self.faults.task_failure(description, destination or "", pixels)
            code = 8 if failure == "User memory limit exceeded." else 3
            if failure is None and pixels is not None and pixels > max_pixels:
                failure = (f"Export too large: specified {int(pixels)} pixels (max: "
                           f"{max_pixels}). Specify higher maxPixels value if you intend to "
                           "export a large area.")
                code = 3
            duration = self.task_seconds
            if pixels is not None:
                duration += self.seconds_per_megapixel * pixels / 1e6
            g = Graph(expr)
            op_id = self._next_op_id()
            task = Task(
                seq=self._seq, op_id=op_id, project=project, kind=kind,
                description=description, request_id=request_id, request=body,
                destination=destination, overwrite=overwrite, destination_uris=uris,
                create_time=now, duration=duration, pixels=pixels, failure=failure,
                failure_code=code, update_time=now,
                properties=image_properties(expr) if kind == "EXPORT_IMAGE" else {},
                bands=band_names(g, g.root()) if kind == "EXPORT_IMAGE" else None,
            )
            if self.execute and failure is None:
                task.future = self._workers.submit(run_export, kind, body, self.assets, self.limits, self.seed,
                                                   self.data_dir)
            self.tasks[task.name] = task
            self.task_order.append(task)
            self._pending.append(task)
            if request_id is not None:
                self._by_request_id[(project, request_id)] = task
            self.counters.inc("exports_submitted")
            self.counters.inc("image_exports_submitted" if kind == "EXPORT_IMAGE"
                              else "table_exports_submitted")
            self.advance(now)
            return task.to_operation(now)

    # -- operations --------------------------------------------------------------------------
    def _task(self, name: str) -> Task:
        task = self.tasks.get(name)
        if task is None:
            raise ApiError(404, "NOT_FOUND", f"Operation '{name}' not found.")
        return task

    def get_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self.advance(now)
            return self._task(name).to_operation(now)

    def cancel_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self.advance(now)
            task = self._task(name)
            if task.state == "PENDING":
                self._pending.remove(task)
                task.state = "CANCELLED"
                task.end_time = task.update_time = now
                self.counters.inc("tasks_cancelled")
            elif task.state == "RUNNING":
                task.state = "CANCELLING"
                task.outcome = "CANCELLED"
                task.end_time = now + self.cancel_seconds
                task.update_time = now
            self.advance(now)
            return {}

    def delete_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            self.advance()
            task = self._task(name)
            if not task.done:
                raise ApiError(400, "FAILED_PRECONDITION",
                               f"Operation '{name}' is not done and cannot be deleted.")
            del self.tasks[name]
            self.task_order.remove(task)
            return {}

    @staticmethod
    def _parse_filter(text: str) -> list[tuple[str, str, str]]:
        clauses = []
        for part in [p.strip() for p in text.replace(" and ", " AND ").split(" AND ")]:
            if not part:
                continue
            for op in ("!=", "="):
                if op in part:
                    k, _, v = part.partition(op)
                    k, v = k.strip(), v.strip().strip('"').strip("'")
                    if k not in ("metadata.state", "state", "done", "metadata.description",
                                 "description", "metadata.type", "type"):
                        raise ApiError(400, "INVALID_ARGUMENT",
                                       f"Unsupported filter field '{k}' (stand-in supports "
                                       "metadata.state, done, metadata.description, "
                                       "metadata.type).")
                    clauses.append((k.replace("metadata.", ""), op, v))
                    break
            else:
                raise ApiError(400, "INVALID_ARGUMENT", f"Invalid filter: '{text}'.")
        return clauses

    def list_operations(self, project: str, page_size: int | None = None,
                        page_token: str | None = None,
                        filter_text: str | None = None) -> dict[str, Any]:
        """Newest first, at most 500 per page; the token is opaque (encodes the last seq)."""
        clauses = self._parse_filter(filter_text) if filter_text else []
        size = MAX_PAGE_SIZE if not page_size or page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        after = None
        if page_token:
            try:
                after = int(base64.urlsafe_b64decode(page_token.encode()).decode())
            except Exception as exc:  # noqa: BLE001
                raise ApiError(400, "INVALID_ARGUMENT", "Invalid page token.") from exc
        with self.lock:
            now = self.clock()
            self.advance(now)
            items = []
            for task in reversed(self.task_order):
                if task.project != project or (after is not None and task.seq >= after):
                    continue
                if not all(self._matches(task, *c) for c in clauses):
                    continue
                items.append(task)
                if len(items) > size:
                    break
            out: dict[str, Any] = {}
            page = items[:size]
            if page:
                out["operations"] = [t.to_operation(now) for t in page]
            if len(items) > size:
                out["nextPageToken"] = base64.urlsafe_b64encode(
                    str(page[-1].seq).encode()).decode()
            return out

    @staticmethod
    def _matches(task: Task, key: str, op: str, value: str) -> bool:
        actual = {"state": task.state, "done": "true" if task.done else "false",
                  "description": task.description, "type": task.kind}[key]
        return (actual == value) if op == "=" else (actual != value)

    def operations(self, state: str | None = None) -> list[dict[str, Any]]:
        """All operations (oldest first), optionally of one state (test convenience)."""
        with self.lock:
            now = self.clock()
            self.advance(now)
            return [t.to_operation(now) for t in self.task_order
                    if state is None or t.state == state]

    # -- assets ------------------------------------------------------------------------------
    def _exists_container(self, name: str) -> bool:
        if name.count("/") == 1:  # "projects/p" root
            return True
        a = self.assets.get(name)
        return a is not None and a["type"] in ("FOLDER", "IMAGE_COLLECTION")

    def create_asset(self, parent: str, asset_id: str | None, body: dict[str, Any]) -> dict:
        if not asset_id:
            raise ApiError(400, "INVALID_ARGUMENT", "Request is missing required field assetId.")
        name = f"{parent}/assets/{asset_id.strip('/')}"
        atype = (body or {}).get("type", "FOLDER")
        if atype not in ("FOLDER", "IMAGE_COLLECTION", "IMAGE", "TABLE"):
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid asset type '{atype}'.")
        with self.lock:
            self.advance()
            if name in self.assets:
                raise ApiError(409, "ALREADY_EXISTS", f"Cannot overwrite asset '{name}'.")
            par = _parent_of(name)
            if self.strict_parents and not self._exists_container(par):
                raise ApiError(404, "NOT_FOUND", f"Parent asset '{par}' does not exist.")
            asset = {"type": atype, "name": name, "id": name,
                     "updateTime": rfc3339(self.clock())}
            if (body or {}).get("properties"):
                asset["properties"] = dict(body["properties"])
            self.assets[name] = asset
            self.counters.inc("assets_created")
            return dict(asset)

    def _asset(self, name: str) -> dict[str, Any]:
        asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, "NOT_FOUND",
                           f"Asset '{name}' does not exist or doesn't allow this operation.")
        return asset

    def get_asset(self, name: str) -> dict[str, Any]:
        with self.lock:
            self.advance()
            return {k: v for k, v in self._asset(name).items() if k != "standin"}

    def list_assets(self, parent: str, page_size: int | None = None,
                    page_token: str | None = None) -> dict[str, Any]:
        with self.lock:
            self.advance()
            if parent.count("/") > 1 and parent not in self.assets:
                raise ApiError(404, "NOT_FOUND",
                               f"Asset '{parent}' does not exist or doesn't allow this "
                               "operation.")
            children = sorted(n for n in self.assets if _parent_of(n) == parent)
            start = int(page_token) if page_token and page_token.isdigit() else 0
            size = page_size if page_size and page_size > 0 else 1000
            page = children[start:start + size]
            out: dict[str, Any] = {}
            if page:
                out["assets"] = [{k: v for k, v in self.assets[n].items() if k != "standin"}
                                 for n in page]
            if start + size < len(children):
                out["nextPageToken"] = str(start + size)
            return out

    def delete_asset(self, name: str) -> dict[str, Any]:
        with self.lock:
            self.advance()
            self._asset(name)
            if any(_parent_of(n) == name for n in self.assets):
                raise ApiError(400, "FAILED_PRECONDITION",
                               f"Cannot delete asset '{name}': it is not empty.")
            del self.assets[name]
            self.counters.inc("assets_deleted")
            return {}

    def update_asset(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.advance()
            asset = self._asset(name)
            new = body.get("asset", {}) or {}
            paths = (body.get("updateMask") or {}).get("paths") or [
                "properties", "start_time", "end_time", "bands"]
            if isinstance(paths, str):
                paths = paths.split(",")
            for path in paths:
                if path == "properties":
                    asset["properties"] = dict(new.get("properties", {}))
                elif path.startswith("properties."):
                    key = path[len("properties."):]
                    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'`":
                        key = key[1:-1]  # ee quotes keys: properties."my key"
                    props = asset.setdefault("properties", {})
                    if (new.get("properties") or {}).get(key) is not None:
                        props[key] = new["properties"][key]
                    else:
                        props.pop(key, None)
                else:
                    camel = {"start_time": "startTime", "end_time": "endTime"}.get(path, path)
                    if camel in new:
                        asset[camel] = new[camel]
                    else:
                        asset.pop(camel, None)
            asset["updateTime"] = rfc3339(self.clock())
            return {k: v for k, v in asset.items() if k != "standin"}

    def copy_asset(self, source: str, body: dict[str, Any], move: bool = False) -> dict:
        dest = (body or {}).get("destinationName")
        if not dest:
            raise ApiError(400, "INVALID_ARGUMENT", "Missing destinationName.")
        with self.lock:
            self.advance()
            asset = self._asset(source)
            if dest in self.assets and not body.get("overwrite"):
                raise ApiError(409, "ALREADY_EXISTS", f"Cannot overwrite asset '{dest}'.")
            if self.strict_parents and not self._exists_container(_parent_of(dest)):
                raise ApiError(404, "NOT_FOUND",
                               f"Parent asset '{_parent_of(dest)}' does not exist.")
            copy = dict(asset, name=dest, id=dest, updateTime=rfc3339(self.clock()))
            self.assets[dest] = copy
            if move:
                del self.assets[source]
            return {k: v for k, v in copy.items() if k != "standin"}

    # -- compute -----------------------------------------------------------------------------
    def compute_value(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        self.counters.inc("compute_calls")
        if not isinstance(body, dict) or "expression" not in body:
            raise ApiError(400, "INVALID_ARGUMENT", "Request is missing required field "
                           "'expression'.")
        self._check(body["expression"], "value:compute")
        req = ComputeRequest(body["expression"], state=self, seed=self.seed)
        try:
            answer = self.compute.answer_user(req)
            if answer is NOT_HANDLED:
                if not self.execute:
                    answer = self.compute.answer(req)
                else:
                    try:
                        answer, cost = compute_value(body["expression"], self.assets, self.limits, self.seed)
                        self.counters.set_max("compute_held_bytes_max", cost.held_bytes)
                    except EEError as e:
                        raise ComputeError(str(e)) from None
                    except Exception as e:  # ComputeLimit
                        if type(e).__name__ == "ComputeLimit":
                            raise ComputeError(str(e)) from None
                        raise
            return {"result": answer}
        except ComputeError as e:
            if e.status == "UNIMPLEMENTED":
                self.counters.inc("compute_unsupported")
            raise ApiError(e.http_status, e.status, e.message) from e

    def compute_pixels(self, project: str, body: dict[str, Any]) -> bytes:
        self.counters.inc("compute_pixels_calls")
        if not isinstance(body, dict) or "expression" not in body:
            raise ApiError(400, "INVALID_ARGUMENT", "Request is missing required field 'expression'.")
        self._check(body["expression"], "image:computePixels")
        try:
            data, cost = compute_pixels(body, self.assets, self.limits, self.seed)
            self.counters.set_max("compute_held_bytes_max", cost.held_bytes)
            return data
        except EEError as e:
            raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None

    # -- misc --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        with self.lock:
            self.advance()
            states: dict[str, int] = {}
            for t in self.task_order:
                states[t.state] = states.get(t.state, 0) + 1
            return {"tasks": states, "assets": len(self.assets),
                    "running": len(self._running), "pending": len(self._pending),
                    "config": self.config_snapshot()}

    def reset(self) -> None:
        """Forget tasks, assets and counters (configuration stays)."""
        with self.lock:
            self.tasks.clear()
            self.task_order.clear()
            self._pending.clear()
            self._running.clear()
            self._by_request_id.clear()
            self._descriptions.clear()
            self.assets.clear()
            self.rejections.clear()
            self.counters.reset()
            self._cursor = self.clock()
