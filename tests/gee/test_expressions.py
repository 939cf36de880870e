"""Offline checks of serialised expressions against the wheel's algorithms.json (no server)."""

from __future__ import annotations

import copy

import pytest

from engine.ee_standin.client import encode, offline_initialize
from engine.ee_standin.expressions import Graph, check_expression

pytestmark = pytest.mark.standin


@pytest.fixture(scope="module")
def ee_offline():
    import ee

    offline_initialize()
    yield ee
    ee.Reset()


def _select_node(expr):
    return next(n for fn, n in Graph(expr).invocations() if fn == "Image.select")


def test_valid_expressions_pass(ee_offline):
    ee = ee_offline
    rect = ee.Geometry.Rectangle([0, 0, 1, 1])
    objs = [
        ee.Image(1).select(["constant"]),
        ee.Image.constant(1).select(["constant"]).clip(rect).set("a", 1),
        ee.ImageCollection([ee.Image(1), ee.Image(2)]).map(lambda i: i.add(1)).size(),
        ee.Image(1).reduceRegion(ee.Reducer.mean().combine(ee.Reducer.stdDev(), None, True),
                                 rect, 30),
        ee.List.sequence(0, 10).map(lambda x: ee.Number(x).multiply(2)),
        ee.Dictionary({"a": ee.Number(1).add(2)}),
    ]
    for obj in objs:
        assert check_expression(encode(obj)) == []


def test_wrong_function_name_is_rejected(ee_offline):
    expr = encode(ee_offline.Image(1).select(["constant"]))
    bad = copy.deepcopy(expr)
    _select_node(bad)["functionInvocationValue"]["functionName"] = "Image.selectt"
    assert check_expression(bad) == ["Unknown function: Image.selectt"]


def test_wrong_and_missing_argument_names_are_rejected(ee_offline):
    expr = encode(ee_offline.Image(1).select(["constant"]))
    bad = copy.deepcopy(expr)
    args = _select_node(bad)["functionInvocationValue"]["arguments"]
    args["bandz"] = args.pop("bandSelectors")
    errors = check_expression(bad)
    assert "Image.select, argument 'bandz': unknown argument." in errors
    assert ("Image.select, argument 'bandSelectors': Parameter 'bandSelectors' is required."
            in errors)


def test_structural_errors(ee_offline):
    ee = ee_offline
    expr = encode(ee.ImageCollection([ee.Image(1)]).map(lambda i: i.add(1)).size())
    # An argumentReference outside the function that binds it.
    bad = copy.deepcopy(expr)
    bad["values"]["extra"] = {"functionInvocationValue": {
        "functionName": "Image.add",
        "arguments": {"image1": {"argumentReference": "nope"},
                      "image2": {"constantValue": 1}}}}
    bad["values"][bad["result"]] = {"valueReference": "extra"}
    assert any("argumentReference 'nope'" in e for e in check_expression(bad))
    # Dangling valueReference and bad result key.
    assert check_expression({"result": "9", "values": {}})
    dangling = {"result": "0", "values": {"0": {"valueReference": "7"}}}
    assert any("missing value '7'" in e for e in check_expression(dangling))
    # Two node kinds in one node.
    two = {"result": "0", "values": {"0": {"constantValue": 1, "valueReference": "0"}}}
    assert check_expression(two)
    # Functions without arguments in algorithms.json, and literal-only expressions.
    assert check_expression(encode(ee.Reducer.minMax())) == []
    assert check_expression({"result": "0", "values": {"0": {"constantValue": [1, 2]}}}) == []
