"""HTTP front of the stand-in: routes Earth Engine REST calls to :class:`State`.

Endpoints (``{v}`` is any ``v1*`` version segment; the shipped discovery document uses
``v1alpha``):

=======  ===========================================================  ======================
method   path                                                         kind (counter label)
=======  ===========================================================  ======================
GET      ``/$discovery/rest?version=v1``                              discovery
GET      ``/{v}/projects/{p}/algorithms``                             algorithms.list
POST     ``/{v}/projects/{p}/image:export``                           image.export
POST     ``/{v}/projects/{p}/table:export``                           table.export
POST     ``/{v}/projects/{p}/value:compute``                          value.compute
POST     ``/{v}/projects/{p}/image:computePixels`` (NPY)                image.computePixels
GET      ``/{v}/projects/{p}/operations?pageSize&pageToken&filter``   operations.list
GET      ``/{v}/projects/{p}/operations/{id}``                        operations.get
POST     ``/{v}/projects/{p}/operations/{id}:cancel``                 operations.cancel
DELETE   ``/{v}/projects/{p}/operations/{id}``                        operations.delete
GET      ``/{v}/projects/{p}:listAssets``                             projects.listAssets
GET      ``/{v}/projects/{p}/assets/{a}:listAssets``                  assets.listAssets
POST     ``/{v}/projects/{p}/assets?assetId=...``                     assets.create
GET      ``/{v}/projects/{p}/assets/{a}``                             assets.get
DELETE   ``/{v}/projects/{p}/assets/{a}``                             assets.delete
PATCH    ``/{v}/projects/{p}/assets/{a}``                             assets.patch
POST     ``/{v}/projects/{p}/assets/{a}:copy`` / ``:move``            assets.copy / move
GET      ``/_standin/counters`` (JSON)                                standin
GET      ``/_standin/state`` (summary + config)                       standin
POST     ``/_standin/config`` (JSON body of options)                  standin
POST     ``/_standin/reset``                                          standin
GET/HEAD ``/storage/{bucket}/{object}`` (bytes, ``Range``)             storage.get
=======  ===========================================================  ======================

``/storage/`` is a Cloud Storage read endpoint (the XML API's object GET / HEAD, with byte
ranges) over the files Cloud Storage exports wrote under ``data_dir/gcs``: GDAL's ``/vsigs/``
reads them with ``CPL_GS_ENDPOINT={url}/storage/`` and ``GS_NO_SIGN_REQUEST=YES``, as it reads
``gs://`` from Google's servers.

Errors use Earth Engine's body ``{"error": {"code", "message", "status"}}`` so the real client
raises ``ee.EEException(message)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from .compute import ComputeRegistry
from .execution import Limits
from .expressions import ee_test_data_path
from .faults import MESSAGE_429, MESSAGE_500, MESSAGE_503, Faults
from .state import ApiError, State

log = logging.getLogger(__name__)

STORAGE_PREFIX = "/storage/"
_V = r"^/(?P<ver>v1[a-z0-9]*)/projects/(?P<project>[^/:]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), k) for m, p, k in [
        ("GET", r"^/\$discovery/rest$", "discovery"),
        ("GET", _V + r"/algorithms$", "algorithms.list"),
        ("POST", _V + r"/image:export$", "image.export"),
        ("POST", _V + r"/table:export$", "table.export"),
        ("POST", _V + r"/value:compute$", "value.compute"),
        ("POST", _V + r"/image:computePixels$", "image.computePixels"),
        ("GET", _V + r"/operations$", "operations.list"),
        ("GET", _V + r"/operations/(?P<op>[^/:]+)$", "operations.get"),
        ("POST", _V + r"/operations/(?P<op>[^/:]+):cancel$", "operations.cancel"),
        ("DELETE", _V + r"/operations/(?P<op>[^/:]+)$", "operations.delete"),
        ("GET", _V + r":listAssets$", "projects.listAssets"),
        ("GET", _V + r"/assets/(?P<asset>.+):listAssets$", "assets.listAssets"),
        ("POST", _V + r"/assets/(?P<asset>.+):copy$", "assets.copy"),
        ("POST", _V + r"/assets/(?P<asset>.+):move$", "assets.move"),
        ("POST", _V + r"/assets$", "assets.create"),
        ("GET", _V + r"/assets/(?P<asset>[^:]+)$", "assets.get"),
        ("DELETE", _V + r"/assets/(?P<asset>[^:]+)$", "assets.delete"),
        ("PATCH", _V + r"/assets/(?P<asset>[^:]+)$", "assets.patch"),
        ("GET", r"^/_standin/counters$", "standin"),
        ("GET", r"^/_standin/state$", "standin"),
        ("POST", r"^/_standin/config$", "standin"),
        ("POST", r"^/_standin/reset$", "standin"),
    ]
]


def _augment_discovery(doc: dict[str, Any]) -> None:
    """Add query parameters today's client may send but the shipped (2020) document lacks.

    Without them googleapiclient raises ``TypeError: Got an unexpected keyword argument``
    before any request is made. Only ``filter`` / ``view`` on ``listAssets`` are added;
    the stand-in answers a non-empty ``filter`` with 400 (unsupported).
    """
    projects = doc.get("resources", {}).get("projects", {})
    methods = [projects.get("methods", {}).get("listAssets"),
               projects.get("resources", {}).get("assets", {}).get("methods", {})
               .get("listAssets")]
    for method in methods:
        if method is None:
            continue
        params = method.setdefault("parameters", {})
        for name in ("filter", "view"):
            params.setdefault(name, {"description": "", "location": "query", "type": "string"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not block shutdown
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], state: State, discovery_path: str | None,
                 algorithms_path: str | None):
        super().__init__(addr, _Handler)
        self.state = state
        self.in_flight = 0
        self.in_flight_lock = threading.Lock()
        host, port = self.server_address[:2]
        self.url = f"http://{host}:{port}"
        with open(discovery_path or ee_test_data_path("cloud_api_discovery_document.json"),
                  encoding="utf-8") as f:
            doc = json.load(f)
        doc["rootUrl"] = self.url + "/"
        doc["baseUrl"] = self.url + "/" + doc.get("servicePath", "")
        _augment_discovery(doc)
        self.discovery_bytes = json.dumps(doc).encode()
        with open(algorithms_path or ee_test_data_path("algorithms.json"), "rb") as f:
            self.algorithms_bytes = f.read()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive connections
    wbufsize = 1 << 16  # headers and body leave in one write (flushed per request)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith(STORAGE_PREFIX):
            self._storage(body=True)
        else:
            self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        if self.path.startswith(STORAGE_PREFIX):
            self._storage(body=False)
        else:
            self.send_error(405)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        if self.server.state.faults.quota_restricted:
            self.send_header("x-earth-engine-quota-status", "parallelism_restricted=true")
        self.end_headers()
        self.wfile.write(data)

    def _storage(self, body: bool) -> None:
        """An object of ``data_dir/gcs`` (GET or HEAD, honouring one ``Range: bytes=a-b``)."""
        state = self.server.state
        state.counters.inc("requests.total")
        state.counters.inc("requests.storage.get")
        bucket, _, name = unquote(urlsplit(self.path).path)[len(STORAGE_PREFIX):].partition("/")
        root = os.path.realpath(os.path.join(state.data_dir or "", "gcs", bucket))
        path = os.path.realpath(os.path.join(root, name))
        if not state.data_dir or not name or not path.startswith(root + os.sep) or not os.path.isfile(path):
            data = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>"
            self.send_response(404)
            self.send_header("Content-Type", "application/xml; charset=UTF-8")
            self.send_header("Content-Length", str(len(data) if body else 0))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        size = os.path.getsize(path)
        start, stop = 0, size
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start, stop = int(m.group(1)), min(size, int(m.group(2)) + 1 if m.group(2) else size)
            else:  # a suffix: the last N bytes
                start = max(0, size - int(m.group(2)))
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(max(0, stop - start))
        self.send_response(206 if m else 200)
        self.send_header("Content-Type", "image/tiff" if path.endswith(".tif") else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if m:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{size}")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0:
            return {}
        raw = self.rfile.read(n)
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {e}") from e

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        state = self.server.state
        match = None
        kind = "unknown"
        for m, pattern, k in ROUTES:
            mm = pattern.match(path)
            if mm and m == method:
                match, kind = mm, k
                break
        state.counters.inc("requests.total")
        state.counters.inc(f"requests.{method}.{kind}")
        with self.server.in_flight_lock:
            self.server.in_flight += 1
            in_flight = self.server.in_flight
        try:
            # The body must be consumed even when we answer with a fault (keep-alive).
            body = self._body() if method in ("POST", "PATCH") else {}
            if match is None:
                raise ApiError(404, "NOT_FOUND",
                               f"Stand-in: no endpoint for {method} {parts.path}.")
            fault = state.faults.draw(kind, in_flight)
            if fault == 429:
                state.counters.inc("faults_429")
                raise ApiError(429, "RESOURCE_EXHAUSTED", MESSAGE_429)
            if fault == 500:
                state.counters.inc("faults_500")
                raise ApiError(500, "INTERNAL", MESSAGE_500)
            status, payload, raw = self._route(kind, method, path, match, query, body)
            if status == 200 and state.faults.lose_response(kind, method):
                state.counters.inc("faults_lost_response")
                raise ApiError(503, "UNAVAILABLE", MESSAGE_503)
            self._send(status, payload, raw)
        except ApiError as e:
            self._send(e.http_status, e.body())
        except Exception as e:  # noqa: BLE001  (a stand-in bug: answer 500 with the reason)
            log.exception("stand-in handler error")
            state.counters.inc("handler_errors")
            self._send(500, {"error": {"code": 500, "status": "INTERNAL",
                                       "message": f"Stand-in internal error: {e!r}"}})
        finally:
            with self.server.in_flight_lock:
                self.server.in_flight -= 1

    def _route(self, kind: str, method: str, path: str, m: re.Match[str],
               q: dict[str, str], body: Any) -> tuple[int, Any, bytes | None]:
        st = self.server.state
        g = m.groupdict()
        project = g.get("project")
        if kind == "discovery":
            return 200, None, self.server.discovery_bytes
        if kind == "algorithms.list":
            return 200, None, self.server.algorithms_bytes
        if kind == "image.export":
            return 200, st.submit_export(project, body, "EXPORT_IMAGE"), None
        if kind == "table.export":
            return 200, st.submit_export(project, body, "EXPORT_FEATURES"), None
        if kind == "value.compute":
            return 200, st.compute_value(project, body), None
        if kind == "image.computePixels":
            return 200, None, st.compute_pixels(project, body)
        if kind == "operations.list":
            st.counters.inc("list_operations_calls")
            size = int(q["pageSize"]) if q.get("pageSize") else None
            return 200, st.list_operations(project, size, q.get("pageToken"),
                                           q.get("filter")), None
        if kind.startswith("operations."):
            name = f"projects/{project}/operations/{g['op']}"
            if kind == "operations.get":
                st.counters.inc("get_operation_calls")
                return 200, st.get_operation(name), None
            if kind == "operations.cancel":
                st.counters.inc("cancel_operation_calls")
                return 200, st.cancel_operation(name), None
            return 200, st.delete_operation(name), None
        if kind in ("projects.listAssets", "assets.listAssets") and q.get("filter"):
            raise ApiError(400, "INVALID_ARGUMENT",
                           "Stand-in: listAssets 'filter' is not supported.")
        if kind == "projects.listAssets":
            size = int(q["pageSize"]) if q.get("pageSize") else None
            return 200, st.list_assets(f"projects/{project}", size, q.get("pageToken")), None
        if kind.startswith("assets."):
            if kind == "assets.create":
                return 200, st.create_asset(f"projects/{project}", q.get("assetId"), body), None
            name = f"projects/{project}/assets/{g['asset']}"
            if kind == "assets.listAssets":
                size = int(q["pageSize"]) if q.get("pageSize") else None
                return 200, st.list_assets(name, size, q.get("pageToken")), None
            if kind == "assets.get":
                return 200, st.get_asset(name), None
            if kind == "assets.delete":
                return 200, st.delete_asset(name), None
            if kind == "assets.patch":
                if "updateMask" in q and "updateMask" not in body:
                    body = dict(body, updateMask={"paths": q["updateMask"].split(",")})
                return 200, st.update_asset(name, body), None
            if kind in ("assets.copy", "assets.move"):
                return 200, st.copy_asset(name, body, move=kind == "assets.move"), None
        if kind == "standin":
            if path.endswith("/counters"):
                return 200, st.counters.snapshot(), None
            if path.endswith("/state"):
                return 200, st.summary(), None
            if path.endswith("/reset"):
                st.reset()
                return 200, {}, None
            if not isinstance(body, dict):
                raise ApiError(400, "INVALID_ARGUMENT", "config body must be a JSON object")
            try:
                st.configure(**body)
            except (KeyError, TypeError, ValueError) as e:
                raise ApiError(400, "INVALID_ARGUMENT", f"Bad config: {e}") from e
            return 200, st.config_snapshot(), None
        raise ApiError(404, "NOT_FOUND", f"Stand-in: no endpoint for {method} {path}.")


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``, as ``MALLOC_ARENA_MAX``): every request
    and task thread otherwise grows an arena of its own that fragments and is never returned, so
    the process's memory grew from run to run (2.4 -> 3.7 GB over three identical runs; flat at
    2.0 GB capped). No-op where glibc is not the allocator."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, int(arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class StandIn:
    """Loopback Earth Engine REST stand-in, served from a background thread.

    ``with StandIn(task_seconds=0.2, running_cap=2) as s: ...`` then use ``s.url``,
    ``s.state`` (tasks, assets, ``s.state.faults``, ``s.state.compute``) and ``s.counters``.
    Options are the CLI's: ``task_seconds``, ``running_cap``, ``fault_429``, ``fault_500``,
    ``memory_limit_pixels``, ``permanent_fail`` (substrings or (substring, message) pairs),
    ``seed``, plus ``seconds_per_megapixel``, ``burst_429``, ``fail_next_429``,
    ``fail_next_500``, ``max_concurrent_requests``, ``fault_kinds``, ``quota_restricted``,
    ``rate_lost_response``, ``strict_parents``, ``cancel_seconds``, ``default_max_pixels``,
    ``max_queued_tasks``, ``clock``, ``algorithms_path``, ``discovery_path``; ``data_dir`` (Cloud
    Storage / Drive exports land there as files), ``limits`` (the cost model's thresholds) and
    ``execute=False`` (answer computations with shaped placeholders instead of computing them).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, task_seconds: float = 2.0,
                 running_cap: int = 2, fault_429: float = 0.0, fault_500: float = 0.0,
                 memory_limit_pixels: float | None = None, permanent_fail: Any = (),
                 seed: int = 0, seconds_per_megapixel: float = 0.0,
                 clock: Callable[[], float] | None = None, algorithms_path: str | None = None,
                 discovery_path: str | None = None, strict_parents: bool = True,
                 cancel_seconds: float = 0.0, default_max_pixels: int = 100_000_000,
                 max_queued_tasks: int | None = None, data_dir: str | None = None, execute: bool = True,
                 limits: Limits | None = None, **fault_opts: Any):
        import time as _time

        faults = Faults(seed=seed, rate_429=fault_429, rate_500=fault_500,
                        memory_limit_pixels=memory_limit_pixels,
                        permanent_fail=[permanent_fail] if isinstance(permanent_fail, str)
                        else permanent_fail)
        if fault_opts:
            faults.update(**{State.FAULT_ALIASES.get(k, k): v for k, v in fault_opts.items()})
        self.state = State(task_seconds=task_seconds, running_cap=running_cap,
                           seconds_per_megapixel=seconds_per_megapixel, seed=seed,
                           faults=faults, compute=ComputeRegistry(),
                           clock=clock or _time.time, algorithms_path=algorithms_path,
                           strict_parents=strict_parents, cancel_seconds=cancel_seconds,
                           default_max_pixels=default_max_pixels,
                           max_queued_tasks=max_queued_tasks, data_dir=data_dir, execute=execute,
                           limits=limits)
        self._addr = (host, port)
        self._discovery_path = discovery_path
        self._algorithms_path = algorithms_path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def counters(self):
        return self.state.counters

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("StandIn is not started")
        return self._server.url

    @property
    def storage_url(self) -> str:
        """The Cloud Storage endpoint GDAL's ``/vsigs/`` reads exports from (``CPL_GS_ENDPOINT``)."""
        return self.url + STORAGE_PREFIX

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StandIn is not started")
        return self._server.server_address[1]

    def start(self) -> "StandIn":
        if self._server is not None:
            return self
        cap_malloc_arenas()
        self._server = _Server(self._addr, self.state, self._discovery_path,
                               self._algorithms_path)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"ee-standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (CLI)."""
        cap_malloc_arenas()
        if self._server is None:
            self._server = _Server(self._addr, self.state, self._discovery_path,
                                   self._algorithms_path)
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
