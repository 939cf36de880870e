"""Scheduler and analysis unit tests on State with a fake clock (no HTTP).

The scheduler is independent of what a task computes: these States do not execute (``execute=False``),
so a task's outcome is the scheduler's alone."""

from __future__ import annotations

import pytest

from engine.ee_standin.compute import ComputeRequest
from engine.ee_standin.exports import estimate_pixels, image_properties
from engine.ee_standin.faults import Faults
from engine.ee_standin.state import ApiError, State

pytestmark = pytest.mark.standin

EXPR = {"result": "0", "values": {"0": {"functionInvocationValue": {
    "functionName": "Image.constant", "arguments": {"value": {"constantValue": 1}}}}}}


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_running_cap_and_queue_order_with_fake_clock():
    clock = FakeClock()
    st = State(execute=False, task_seconds=10, running_cap=2, clock=clock)
    names = [st.submit_export("p", {"expression": EXPR, "description": f"t{i}"},
                              "EXPORT_IMAGE")["name"] for i in range(5)]
    states = lambda: [st.get_operation(n)["metadata"]["state"] for n in names]  # noqa: E731
    assert states() == ["RUNNING", "RUNNING", "PENDING", "PENDING", "PENDING"]
    clock.t += 10
    assert states() == ["SUCCEEDED", "SUCCEEDED", "RUNNING", "RUNNING", "PENDING"]
    clock.t += 25  # jump over several events at once
    assert states() == ["SUCCEEDED"] * 5
    assert st.counters["running_max"] == 2
    starts = [st.tasks[n].start_time for n in names]
    assert starts == sorted(starts)
    assert st.tasks[names[4]].start_time == pytest.approx(1_700_000_020.0)


def test_cancel_pending_and_running():
    clock = FakeClock()
    st = State(execute=False, task_seconds=10, running_cap=1, clock=clock)
    a = st.submit_export("p", {"expression": EXPR}, "EXPORT_IMAGE")["name"]
    b = st.submit_export("p", {"expression": EXPR}, "EXPORT_IMAGE")["name"]
    st.cancel_operation(b)
    st.cancel_operation(a)
    assert st.get_operation(a)["metadata"]["state"] == "CANCELLED"
    op = st.get_operation(b)
    assert op["metadata"]["state"] == "CANCELLED" and op["error"]["message"] == "Cancelled."


def test_faults_are_deterministic_per_seed():
    def draws(seed):
        f = Faults(seed=seed, rate_429=0.3, rate_500=0.1)
        return [f.draw("operations.get") for _ in range(200)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    d = draws(3)
    assert 30 < d.count(429) < 90 and 5 < d.count(500) < 40
    f = Faults(burst_429=(10, 3))
    assert [f.draw("x") for _ in range(20)] == ([429] * 3 + [None] * 7) * 2
    assert Faults(rate_429=1.0).draw("discovery") is None


def test_pixel_estimate_and_properties():
    # 0.1 x 0.1 degree at the equator, 30 m: about 371 x 368 pixels.
    expr = {"result": "0", "values": {
        "1": {"functionInvocationValue": {"functionName": "GeometryConstructors.Polygon",
              "arguments": {"coordinates": {"constantValue": [[[0, 0.1], [0, 0], [0.1, 0],
                                                               [0.1, 0.1]]]}}}},
        "0": {"functionInvocationValue": {"functionName": "Image.clipToBoundsAndScale",
              "arguments": {"geometry": {"valueReference": "1"}, "scale": {"constantValue": 30},
                            "input": {"functionInvocationValue": {
                                "functionName": "Element.set", "arguments": {
                                    "object": {"valueReference": "2"},
                                    "key": {"constantValue": "tile"},
                                    "value": {"constantValue": "x1"}}}}}}},
        "2": EXPR["values"]["0"]}}
    px = estimate_pixels(expr)
    assert 130_000 < px < 140_000
    assert image_properties(expr) == {"tile": "x1"}


def test_invalid_request_id_and_missing_expression():
    st = State()
    with pytest.raises(ApiError) as e:
        st.submit_export("p", {"expression": EXPR, "requestId": "x" * 61}, "EXPORT_IMAGE")
    assert e.value.http_status == 400
    with pytest.raises(ApiError):
        st.submit_export("p", {}, "EXPORT_IMAGE")


def test_compute_request_helpers():
    req = ComputeRequest({"result": "0", "values": {"0": {"functionInvocationValue": {
        "functionName": "List.size", "arguments": {"list": {"constantValue": [1, 2, 3]}}}}}})
    assert req.function_name == "List.size" and req.evaluate() == 3
    assert req.synthetic_float("a") == req.synthetic_float("a") != req.synthetic_float("b")
