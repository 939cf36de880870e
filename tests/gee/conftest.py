"""Fixtures for the stand-in tests: a fresh StandIn per test, the real ee client connected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from engine.ee_standin import StandIn
from engine.ee_standin.client import DEFAULT_PROJECT, connect

PROJECT = DEFAULT_PROJECT
ROOT = f"projects/{PROJECT}/assets"


@pytest.fixture
def make_standin() -> Iterator[Callable[..., StandIn]]:
    """Factory: ``s = make_standin(task_seconds=0.2, ...)`` starts a stand-in and connects ee."""
    started: list[StandIn] = []

    def make(connect_client: bool = True, **opts) -> StandIn:
        opts.setdefault("task_seconds", 0.2)
        s = StandIn(**opts).start()
        started.append(s)
        if connect_client:
            connect(s.url, PROJECT)
        return s

    yield make
    for s in started:
        s.stop()
    if started:
        import ee

        ee.Reset()  # do not leave the global client pointing at a stopped server


@pytest.fixture
def standin(make_standin) -> StandIn:
    return make_standin()


@pytest.fixture(scope="module")
def computing_standin(tmp_path_factory) -> Iterator[StandIn]:
    """One executing stand-in for a whole module, the client connected, exports under ``data_dir``."""
    import ee

    data = tmp_path_factory.mktemp("standin-data")
    with StandIn(task_seconds=0.05, data_dir=str(data)) as s:
        connect(s.url)
        s.data_dir = data
        yield s
    ee.Reset()


@pytest.fixture
def fast_backoff(monkeypatch) -> list[float]:
    """Shrink googleapiclient's retry sleeps 100x for this test; returns the requested sleeps."""
    from googleapiclient import http as gapi_http

    requested: list[float] = []
    original_init = gapi_http.HttpRequest.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)

        def sleep(seconds: float) -> None:
            requested.append(seconds)
            time.sleep(seconds / 100.0)

        self._sleep = sleep

    monkeypatch.setattr(gapi_http.HttpRequest, "__init__", init)
    return requested


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %.1f s" % timeout)
