"""Earth Engine REST calls with classified errors and jittered exponential backoff.

Every call goes through :meth:`EEApi.call`: the earthengine-api request object is executed with
the client's own retries switched off (``num_retries=0``) so that one policy decides, with the
HTTP status in hand:

* 429, 5xx and transport errors (connection reset, timeout) are transient: retried with
  tenacity's ``wait_exponential_jitter`` up to ``attempts`` times, then :class:`TransientError`;
* "User memory limit exceeded" / "Computation timed out" are deterministic:
  :class:`MemoryLimitError` at once (the caller splits the tile; retrying is pointless);
* anything else (400 invalid argument, 404, 403) is :class:`EarthEngineError` with Earth
  Engine's message, at once.

Export requests carry a deterministic ``requestId``, so retrying a submission whose answer was
lost returns the same operation instead of starting a second task.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from engine.errors import CredentialsError, EarthEngineError, MemoryLimitError, TransientError
from tiling.limits import LIST_OPERATIONS_PAGE, MEMORY_LIMIT_MESSAGES

log = logging.getLogger(__name__)

TRANSIENT_MESSAGES = ("too many requests", "resource_exhausted", "quota exceeded", "rate limit",
                      "internal error", "backend error", "service is currently unavailable", "unavailable",
                      "deadline exceeded", "connection reset", "timed out")


def is_memory_message(message: str) -> bool:
    return any(m.lower() in (message or "").lower() for m in MEMORY_LIMIT_MESSAGES)


def classify(exc: BaseException) -> EarthEngineError:
    """The engine error for a failed call (``googleapiclient`` HttpError, ee.EEException, transport)."""
    from googleapiclient.errors import HttpError

    if isinstance(exc, HttpError):
        status = int(getattr(exc.resp, "status", 0) or 0)
        try:
            message = exc._get_reason() or str(exc)  # what ee shows: the server's message
        except Exception:  # noqa: BLE001
            message = str(exc)
        if is_memory_message(message):
            return MemoryLimitError(message)
        if status == 429 or status >= 500:
            return TransientError(f"HTTP {status}: {message}")
        if status in (401, 403) and "permission" not in message.lower():
            return CredentialsError(f"Earth Engine refused the credentials (HTTP {status}: {message}); "
                                    "run `earthengine authenticate` or check GOOGLE_APPLICATION_CREDENTIALS")
        err = EarthEngineError(message)
        err.http_status = status  # type: ignore[attr-defined]
        return err
    try:
        import google.auth.exceptions as gae

        if isinstance(exc, gae.RefreshError):
            return CredentialsError("Earth Engine credentials could not be refreshed; run `earthengine "
                                    "authenticate` again or check GOOGLE_APPLICATION_CREDENTIALS")
        if isinstance(exc, gae.TransportError):
            return TransientError(f"transport error: {type(exc).__name__}")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError, OSError)):
        return TransientError(f"transport error: {type(exc).__name__}: {exc}")
    try:
        import requests

        if isinstance(exc, requests.exceptions.RequestException):
            return TransientError(f"transport error: {type(exc).__name__}")
    except ImportError:  # pragma: no cover
        pass
    message = str(exc)
    if is_memory_message(message):
        return MemoryLimitError(message)
    if any(m in message.lower() for m in TRANSIENT_MESSAGES):
        return TransientError(message)
    return EarthEngineError(message)


@dataclass
class RetryPolicy:
    """Jittered exponential backoff for transient failures."""

    attempts: int = 10
    initial_s: float = 1.0
    max_s: float = 60.0

    @classmethod
    def for_poll_interval(cls, poll_interval_s: float) -> RetryPolicy:
        """Backoff scaled to the service's pace: 1 s initial / 60 s cap for the default 30 s polls,
        proportionally shorter for a fast service (the loopback stand-in, benchmarks)."""
        return cls(initial_s=min(1.0, poll_interval_s / 10), max_s=min(60.0, max(poll_interval_s * 2, 0.5)))


class EEApi:
    """The few Earth Engine REST methods the engine uses, each retried per :class:`RetryPolicy`.

    ``interactive`` caps concurrent interactive requests (``value:compute``) across threads.
    """

    def __init__(self, project: str, policy: RetryPolicy | None = None, max_interactive: int = 20) -> None:
        self.project = project
        self.policy = policy or RetryPolicy()
        self.interactive = threading.BoundedSemaphore(max_interactive)
        self.requests = 0
        self.retries = 0
        self._lock = threading.Lock()

    @property
    def parent(self) -> str:
        return f"projects/{self.project}"

    # --- plumbing ---
    def call(self, make: Callable[[], Any], what: str) -> Any:
        """Execute ``make()`` (an earthengine-api HttpRequest) under the retry policy."""

        def once() -> Any:
            with self._lock:
                self.requests += 1
            try:
                return make().execute(num_retries=0)
            except Exception as e:  # noqa: BLE001 - classified below
                err = classify(e)
                if isinstance(err, TransientError):
                    log.debug("%s: transient failure (%s); backing off", what, err)
                raise err from e

        def before_sleep(state: RetryCallState) -> None:
            with self._lock:
                self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential_jitter(multiplier=self.policy.initial_s, max=self.policy.max_s,
                                         jitter=self.policy.initial_s),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(once)

    def call_or(self, make: Callable[[], Any], what: str, missing: Any = None) -> Any:
        """``call``, answering ``missing`` where the resource does not exist (HTTP 404)."""
        try:
            return self.call(make, what)
        except EarthEngineError as e:
            if getattr(e, "http_status", None) == 404:
                return missing
            raise

    @staticmethod
    def _projects() -> Any:
        import ee

        return ee.data._get_cloud_projects()  # the client's REST resource (discovery based)

    # --- value:compute ---
    def compute(self, obj: Any, what: str = "value:compute") -> Any:
        import ee

        body = {"expression": ee.serializer.encode(obj, for_cloud_api=True)}
        with self.interactive:
            result = self.call(lambda: self._projects().value().compute(project=self.parent, body=body,
                                                                         prettyPrint=False), what)
        return result["result"]

    def compute_pixels(self, image: Any, grid: dict[str, Any], what: str = "computePixels",
                       workload_tag: str | None = None) -> Any:
        """``image:computePixels`` of ``image`` on ``grid`` (crsCode, affineTransform, dimensions)
        as a structured numpy array, one field per band (masked pixels arrive as 0: unmask first).
        ``workload_tag`` labels the request's usage in Cloud Monitoring."""
        import io

        import ee
        import numpy as np

        body = {"expression": ee.serializer.encode(image, for_cloud_api=True), "fileFormat": "NPY", "grid": grid}
        if workload_tag:
            body["workloadTag"] = workload_tag
        with self.interactive:
            data = self.call(lambda: ee.data._get_cloud_projects_raw().image().computePixels(
                project=self.parent, body=body), what)
        return np.load(io.BytesIO(data), allow_pickle=False)

    # --- exports ---
    def export(self, kind: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Submit an ``image:export`` / ``table:export`` with ``requestId``; returns the operation."""
        body = dict(body, requestId=request_id)
        endpoint = (lambda: self._projects().image()) if kind == "image" else (lambda: self._projects().table())
        return self.call(lambda: endpoint().export(project=self.parent, body=body), f"{kind}:export {request_id}")

    # --- operations ---
    def list_operations_page(self, page_token: str | None = None) -> dict[str, Any]:
        kw: dict[str, Any] = {"name": self.parent, "pageSize": LIST_OPERATIONS_PAGE}
        if page_token:
            kw["pageToken"] = page_token
        return self.call(lambda: self._projects().operations().list(**kw), "listOperations")

    def get_operation(self, name: str) -> dict[str, Any] | None:
        return self.call_or(lambda: self._projects().operations().get(name=name), f"getOperation {name}")

    # --- assets ---
    def get_asset(self, name: str) -> dict[str, Any] | None:
        return self.call_or(lambda: self._projects().assets().get(name=name), f"getAsset {name}")

    def list_assets(self, parent: str) -> list[dict[str, Any]]:
        """Every child of a folder (all pages); [] if the folder does not exist."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            kw: dict[str, Any] = {"parent": parent, "pageSize": 1000}
            if token:
                kw["pageToken"] = token
            page = self.call_or(lambda: self._projects().assets().listAssets(**kw), f"listAssets {parent}")
            if page is None:
                return out
            out.extend(page.get("assets", []))
            token = page.get("nextPageToken")
            if not token:
                return out

    def create_folder(self, name: str) -> bool:
        """Create folder ``projects/<p>/assets/<path>``; False if it already exists."""
        asset_id = name.split("/assets/", 1)[1]
        try:
            self.call(lambda: self._projects().assets().create(parent=self.parent, assetId=asset_id,
                                                               body={"type": "FOLDER"}), f"createAsset {name}")
            return True
        except EarthEngineError as e:
            if getattr(e, "http_status", None) == 409 or "already exists" in str(e).lower() \
                    or "cannot overwrite" in str(e).lower():
                return False
            raise

    def delete_asset(self, name: str) -> bool:
        """Delete an asset; False if it did not exist."""
        answer = self.call_or(lambda: self._projects().assets().delete(name=name), f"deleteAsset {name}", missing=False)
        return answer is not False
