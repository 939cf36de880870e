"""Fault injection for the stand-in: transient HTTP errors and deterministic task failures.

Transient faults (answered before the request has any effect, so a retry is safe):

* ``rate_429`` / ``rate_500``: fraction of API requests answered 429 RESOURCE_EXHAUSTED / 500
  INTERNAL. Draws come from ``random.Random(seed)`` in request-arrival order, so a sequential
  client sees the same faults on every run.
* ``burst_429 = (every, length)``: the requests numbered ``k*every .. k*every+length-1``
  (counting faultable requests from 0) are answered 429, e.g. ``(10, 3)``.
* ``fail_next_429`` / ``fail_next_500``: the next N faultable requests fail (exact test control).
* ``max_concurrent_requests``: requests beyond this many in flight are answered 429
  (Earth Engine allows about 40 concurrent interactive requests).
* ``rate_lost_response``: fraction of *mutating* requests (POST/PATCH/DELETE) that take effect
  but whose answer is replaced by 503 UNAVAILABLE, as when a response is lost; the client's
  retry then exercises ``requestId`` deduplication (separate random stream).
* ``kinds``: request kinds that may fault (``None`` = every API kind except ``discovery``);
  kinds are names such as ``"image.export"``, ``"operations.get"``, ``"value.compute"``.

Deterministic task failures (the export is accepted, the operation ends FAILED):

* ``memory_limit_pixels``: exports whose estimated pixel count exceeds it fail with
  ``"User memory limit exceeded."``.
* ``permanent_fail``: list of ``(substring, message)``; exports whose description or
  destination contains the substring fail with the message.

``quota_restricted=True`` adds the ``x-earth-engine-quota-status: parallelism_restricted=true``
header the real service sends to over-quota noncommercial projects.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from typing import Any

DEFAULT_PERMANENT_MESSAGE = "Image.select: Pattern 'foo' did not match any bands."
MEMORY_LIMIT_MESSAGE = "User memory limit exceeded."
MESSAGE_429 = ("Too Many Requests: Request was rejected because the request rate or "
               "concurrency limit was exceeded.")
MESSAGE_500 = "An internal error has occurred (stand-in injected fault)."
MESSAGE_503 = "The service is currently unavailable (stand-in: response lost after effect)."

NEVER_FAULT_KINDS = frozenset({"discovery", "standin"})


class Faults:
    """Mutable fault configuration; safe to change from tests while the server runs."""

    def __init__(self, seed: int = 0, rate_429: float = 0.0, rate_500: float = 0.0,
                 burst_429: tuple[int, int] | None = None, fail_next_429: int = 0,
                 fail_next_500: int = 0, max_concurrent_requests: int | None = None,
                 kinds: Iterable[str] | None = None, memory_limit_pixels: float | None = None,
                 permanent_fail: Iterable[Any] = (), quota_restricted: bool = False,
                 rate_lost_response: float = 0.0):
        self._lock = threading.RLock()
        self.seed = seed
        self._rng = random.Random(seed)
        self._rng_lost = random.Random(seed + 1_000_003)
        self._n = 0
        self.rate_lost_response = rate_lost_response
        self.rate_429 = rate_429
        self.rate_500 = rate_500
        self.burst_429 = tuple(burst_429) if burst_429 else None
        self.fail_next_429 = fail_next_429
        self.fail_next_500 = fail_next_500
        self.max_concurrent_requests = max_concurrent_requests
        self.kinds = set(kinds) if kinds is not None else None
        self.memory_limit_pixels = memory_limit_pixels
        self.permanent_fail: list[tuple[str, str]] = []
        self.set_permanent_fail(permanent_fail)
        self.quota_restricted = quota_restricted

    # -- configuration -------------------------------------------------------------------
    def set_permanent_fail(self, items: Iterable[Any]) -> None:
        """Items are substrings, ``(substring, message)`` pairs or ``{"substring", "message"}``."""
        out = []
        for item in items or ():
            if isinstance(item, str):
                out.append((item, DEFAULT_PERMANENT_MESSAGE))
            elif isinstance(item, dict):
                out.append((item["substring"], item.get("message", DEFAULT_PERMANENT_MESSAGE)))
            else:
                sub, msg = item
                out.append((sub, msg))
        with self._lock:
            self.permanent_fail = out

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)
            self._rng_lost = random.Random(seed + 1_000_003)
            self._n = 0

    def update(self, **opts: Any) -> None:
        """Set several options at once (names as in the constructor)."""
        with self._lock:
            for key, value in opts.items():
                if key == "seed":
                    self.reseed(int(value))
                elif key == "permanent_fail":
                    self.set_permanent_fail(value)
                elif key == "burst_429":
                    self.burst_429 = tuple(value) if value else None
                elif key == "kinds":
                    self.kinds = set(value) if value is not None else None
                elif key in ("rate_429", "rate_500", "fail_next_429", "fail_next_500",
                             "max_concurrent_requests", "memory_limit_pixels",
                             "quota_restricted", "rate_lost_response"):
                    setattr(self, key, value)
                else:
                    raise KeyError(f"unknown fault option {key!r}")

    def clear(self) -> None:
        self.update(rate_429=0.0, rate_500=0.0, burst_429=None, fail_next_429=0, fail_next_500=0,
                    max_concurrent_requests=None, memory_limit_pixels=None, permanent_fail=(),
                    quota_restricted=False, rate_lost_response=0.0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed, "rate_429": self.rate_429, "rate_500": self.rate_500,
                "burst_429": list(self.burst_429) if self.burst_429 else None,
                "fail_next_429": self.fail_next_429, "fail_next_500": self.fail_next_500,
                "max_concurrent_requests": self.max_concurrent_requests,
                "kinds": sorted(self.kinds) if self.kinds is not None else None,
                "memory_limit_pixels": self.memory_limit_pixels,
                "permanent_fail": [list(p) for p in self.permanent_fail],
                "quota_restricted": self.quota_restricted,
                "rate_lost_response": self.rate_lost_response,
            }

    # -- decisions -----------------------------------------------------------------------
    def applies_to(self, kind: str) -> bool:
        if kind in NEVER_FAULT_KINDS:
            return False
        return self.kinds is None or kind in self.kinds

    def draw(self, kind: str, in_flight: int = 0) -> int | None:
        """HTTP status to inject for this request (429 / 500), or None."""
        if not self.applies_to(kind):
            return None
        with self._lock:
            n = self._n
            self._n += 1
            u = self._rng.random()  # always draw, so the sequence depends only on arrival order
            if self.max_concurrent_requests is not None and in_flight > self.max_concurrent_requests:
                return 429
            if self.fail_next_429 > 0:
                self.fail_next_429 -= 1
                return 429
            if self.fail_next_500 > 0:
                self.fail_next_500 -= 1
                return 500
            if self.burst_429:
                every, length = self.burst_429
                if every > 0 and n % every < length:
                    return 429
            if u < self.rate_429:
                return 429
            if u < self.rate_429 + self.rate_500:
                return 500
            return None

    def lose_response(self, kind: str, method: str) -> bool:
        """After a mutating request took effect: replace its answer with 503?"""
        if method == "GET" or not self.applies_to(kind):
            return False
        with self._lock:
            return self._rng_lost.random() < self.rate_lost_response

    def task_failure(self, description: str, destination: str,
                     pixels: float | None) -> str | None:
        """Failure message for an export, or None if it should succeed."""
        with self._lock:
            for sub, msg in self.permanent_fail:
                if sub and (sub in (description or "") or sub in (destination or "")):
                    return msg
            if (self.memory_limit_pixels is not None and pixels is not None
                    and pixels > self.memory_limit_pixels):
                return MEMORY_LIMIT_MESSAGE
        return None
