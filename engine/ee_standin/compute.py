"""Answers for ``value:compute`` (what ``.getInfo()`` / ``ee.data.computeValue`` ask for).

The stand-in does not run Earth Engine algorithms. A :class:`ComputeRegistry` holds handlers
tried in order (most recently registered first); the first one that matches and does not return
:data:`NOT_HANDLED` answers. Handlers receive a :class:`ComputeRequest`::

    from engine.ee_standin.compute import ComputeRequest, ComputeError, NOT_HANDLED

    def s2_count(req: ComputeRequest):
        if "COPERNICUS/S2_SR_HARMONIZED" not in req.constants():
            return NOT_HANDLED
        return 42

    s.state.compute.register("Collection.size", s2_count)      # by root function name
    s.state.compute.register(lambda req: req.contains("Image.reduceRegion"), handler)
    s.state.compute.register_marker("my-marker", handler)      # any constantValue == marker

A handler may raise :class:`ComputeError` to answer like a failing server call (HTTP 400 by
default, e.g. ``ComputeError("User memory limit exceeded.")``), which the client raises as
``ee.EEException``.

Built-in defaults (registered last, so user handlers win):

* root is a constant / array / dictionary of constants -> echoed;
* constant folding (:meth:`ComputeRequest.evaluate`) of ``List.size``, ``List.length``,
  ``Collection.size`` (on ``ImageCollection.fromImages`` / ``FeatureCollection`` of literal
  lists, through ``Collection.map`` / ``Collection.limit``), ``List.get``, ``List.sequence``,
  ``Dictionary``, ``Dictionary.get`` / ``keys`` / ``values``, ``Number.add`` / ``subtract`` /
  ``multiply`` / ``divide``, ``String.cat``, ``Element.get`` on literal ``set`` chains;
* ``Image.bandNames`` -> inferred band names (see ``exports.band_names``);
* ``Image.reduceRegion`` -> a dictionary keyed like Earth Engine's output (band names for
  single-output reducers; ``<band>_<output>`` for ``combine`` / ``percentile`` / ``minMax``;
  ``coefficients`` / ``residuals`` arrays for ``linearRegression`` /
  ``robustLinearRegression``) with deterministic synthetic floats in [0, 1) (integers for
  ``count``), a function of the seed, the expression and the key.

Anything else is answered with status ``UNIMPLEMENTED`` and a message naming the root function
and how to register a handler. Its HTTP code is ``unsupported_http_status`` (default 400, not
Earth Engine's 501, because the client retries every 5xx with exponential backoff).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .expressions import Graph
from .exports import band_names


class _NotHandled:
    def __repr__(self) -> str:
        return "NOT_HANDLED"


NOT_HANDLED = _NotHandled()


class ComputeError(Exception):
    """Raise from a handler to fail the call with an Earth Engine error body."""

    def __init__(self, message: str, http_status: int = 400, status: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.status = status


class ComputeUnsupported(ComputeError):
    def __init__(self, message: str, http_status: int = 400):
        super().__init__(message, http_status=http_status, status="UNIMPLEMENTED")


class NotEvaluable(Exception):
    pass


SINGLE_REDUCERS = {
    "Reducer.mean": "mean", "Reducer.sum": "sum", "Reducer.median": "median",
    "Reducer.min": "min", "Reducer.max": "max", "Reducer.stdDev": "stdDev",
    "Reducer.variance": "variance", "Reducer.sampleStdDev": "sampleStdDev",
    "Reducer.sampleVariance": "sampleVariance", "Reducer.count": "count",
    "Reducer.countDistinct": "countDistinct", "Reducer.first": "first", "Reducer.last": "last",
    "Reducer.firstNonNull": "firstNonNull", "Reducer.lastNonNull": "lastNonNull",
    "Reducer.mode": "mode", "Reducer.product": "product", "Reducer.intervalMean": "mean",
    "Reducer.anyNonZero": "any", "Reducer.allNonZero": "all", "Reducer.kurtosis": "kurtosis",
    "Reducer.skew": "skew",
}
REGRESSION_REDUCERS = {"Reducer.linearRegression", "Reducer.robustLinearRegression",
                       "Reducer.ridgeRegression"}


class ComputeRequest:
    """One ``value:compute`` call as seen by handlers."""

    def __init__(self, expression: dict[str, Any], state: Any = None, seed: int = 0):
        self.expression = expression
        self.graph = Graph(expression)
        self.root = self.graph.root()
        self.function_name = Graph.function_name(self.root)
        self.state = state
        self.seed = seed
        self._digest = hashlib.sha256(
            json.dumps(expression, sort_keys=True).encode()).hexdigest()

    # -- inspection ----------------------------------------------------------------------
    def invocations(self, name: str | None = None) -> list[Any]:
        """Invocation nodes reachable from the result, optionally only of function ``name``."""
        return [n for fn, n in self.graph.invocations() if name is None or fn == name]

    def contains(self, name: str) -> bool:
        return any(fn == name for fn, _ in self.graph.invocations())

    def constants(self) -> list[Any]:
        """Every ``constantValue`` in the expression (strings, numbers, lists, dicts)."""
        out: list[Any] = []

        def rec(x: Any) -> None:
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == "constantValue":
                        out.append(v)
                    else:
                        rec(v)
            elif isinstance(x, list):
                for v in x:
                    rec(v)

        rec(self.expression.get("values", {}))
        return out

    def args(self, node: Any = None) -> dict[str, Any]:
        return self.graph.args(self.root if node is None else node)

    def band_names(self, image_node: Any) -> list[str] | None:
        return band_names(self.graph, image_node)

    def synthetic_float(self, *key: Any) -> float:
        """Deterministic float in [0, 1) from the seed, the expression and ``key``."""
        h = hashlib.sha256(f"{self.seed}|{self._digest}|{key!r}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2.0**64

    # -- constant folding ----------------------------------------------------------------
    def evaluate(self, node: Any = None, _depth: int = 0) -> Any:
        """Fold a node built only from literals and a few pure functions; else NotEvaluable."""
        if _depth > 200:
            raise NotEvaluable("expression too deep")
        g = self.graph
        node = g.resolve(self.root if node is None else node)
        if not isinstance(node, dict):
            raise NotEvaluable("dangling reference")
        if "constantValue" in node:
            return node["constantValue"]
        if "integerValue" in node:
            return int(node["integerValue"])
        if "nullValue" in node:
            return None
        if "arrayValue" in node:
            return [self.evaluate(v, _depth + 1) for v in node["arrayValue"].get("values", [])]
        if "dictionaryValue" in node:
            return {k: self.evaluate(v, _depth + 1)
                    for k, v in node["dictionaryValue"].get("values", {}).items()}
        fn = g.function_name(node)
        if fn is None:
            raise NotEvaluable("not a literal or named function call")
        a = g.args(node)

        def ev(name: str) -> Any:
            if name not in a:
                raise NotEvaluable(f"{fn}: missing {name}")
            return self.evaluate(a[name], _depth + 1)

        if fn in ("List.size", "List.length"):
            return len(ev("list"))
        if fn == "Collection.size":
            return len(self._collection_items(a.get("collection"), _depth + 1))
        if fn == "List.get":
            lst, idx = ev("list"), ev("index")
            return lst[idx]
        if fn == "List.sequence":
            start = ev("start")
            end = self.evaluate(a["end"], _depth + 1) if "end" in a else None
            step = self.evaluate(a["step"], _depth + 1) if "step" in a else 1
            count = self.evaluate(a["count"], _depth + 1) if "count" in a else None
            if count is not None:
                return [start + i * step for i in range(int(count))]
            out, x = [], start
            while (step > 0 and x <= end) or (step < 0 and x >= end):
                out.append(x)
                x += step
            return out
        if fn == "Dictionary":
            return dict(ev("input")) if "input" in a else {}
        if fn == "Dictionary.get":
            d, k = ev("dictionary"), ev("key")
            if k in d:
                return d[k]
            if "defaultValue" in a:
                return self.evaluate(a["defaultValue"], _depth + 1)
            raise ComputeError(f"Dictionary.get: Dictionary does not contain key: '{k}'.")
        if fn == "Dictionary.keys":
            return sorted(ev("dictionary"))
        if fn == "Dictionary.values":
            d = ev("dictionary")
            return [d[k] for k in sorted(d)]
        if fn in ("Number.add", "Number.subtract", "Number.multiply", "Number.divide"):
            x, y = ev("left"), ev("right")
            return {"Number.add": lambda: x + y, "Number.subtract": lambda: x - y,
                    "Number.multiply": lambda: x * y,
                    "Number.divide": lambda: x / y if y else 0}[fn]()
        if fn == "String.cat":
            return str(ev("string1")) + str(ev("string2"))
        if fn == "Element.get":
            return self._literal_property(a.get("object"), ev("property"), _depth + 1)
        raise NotEvaluable(f"{fn} is not folded")

    def _collection_items(self, node: Any, depth: int) -> list[Any]:
        g = self.graph
        node = g.resolve(node)
        fn = g.function_name(node)
        a = g.args(node)
        if fn == "ImageCollection.fromImages":
            items = g.resolve(a.get("images"))
            if isinstance(items, dict) and "arrayValue" in items:
                return list(items["arrayValue"].get("values", []))
            return list(self.evaluate(items, depth + 1))
        if fn in ("FeatureCollection", "Collection"):
            feats = g.resolve(a.get("features"))
            if isinstance(feats, dict) and "arrayValue" in feats:
                return list(feats["arrayValue"].get("values", []))
            return list(self.evaluate(feats, depth + 1))
        if fn == "Collection.map" and not g.constant(a.get("dropNulls")):
            return self._collection_items(a.get("collection"), depth + 1)
        if fn == "Collection.limit":
            items = self._collection_items(a.get("collection"), depth + 1)
            return items[: int(self.evaluate(a["limit"], depth + 1))] if "limit" in a else items
        raise NotEvaluable(f"cannot count the elements of {fn}")

    def _literal_property(self, node: Any, prop: str, depth: int) -> Any:
        g = self.graph
        for _ in range(200):
            node = g.resolve(node)
            fn = g.function_name(node)
            if fn in ("Element.set", "Image.set"):
                if g.constant(g.arg(node, "key")) == prop:
                    return self.evaluate(g.arg(node, "value"), depth + 1)
                node = g.arg(node, "object")
            elif fn == "Element.setMulti":
                d = g.constant(g.arg(node, "properties"))
                if isinstance(d, dict) and prop in d:
                    return d[prop]
                node = g.arg(node, "object")
            else:
                break
        raise NotEvaluable(f"property {prop!r} is not set literally")


Handler = Callable[[ComputeRequest], Any]
Matcher = Callable[[ComputeRequest], bool]


class ComputeRegistry:
    """Ordered handlers for ``value:compute``; user handlers run before the defaults."""

    def __init__(self, unsupported_http_status: int = 400, with_defaults: bool = True):
        self._user: list[tuple[Matcher, Handler, str]] = []
        self._defaults: list[tuple[Matcher, Handler, str]] = []
        self.unsupported_http_status = unsupported_http_status
        if with_defaults:
            install_defaults(self)

    @staticmethod
    def _matcher(match: str | Matcher) -> tuple[Matcher, str]:
        if isinstance(match, str):
            return (lambda req, _n=match: req.function_name == _n), match
        return match, getattr(match, "__name__", "predicate")

    def register(self, match: str | Matcher, handler: Handler | None = None):
        """Register ``handler`` for a root function name or a predicate; usable as decorator.

        Later registrations are tried first. Returns the handler.
        """
        def deco(h: Handler) -> Handler:
            m, label = self._matcher(match)
            self._user.insert(0, (m, h, label))
            return h

        return deco(handler) if handler is not None else deco

    def register_marker(self, marker: Any, handler: Handler) -> Handler:
        """Match requests whose expression contains a ``constantValue`` equal to ``marker``."""
        def m(req: ComputeRequest) -> bool:
            return any(c == marker for c in req.constants())

        m.__name__ = f"marker:{marker!r}"
        return self.register(m, handler)

    def clear(self) -> None:
        """Remove user handlers (defaults stay)."""
        self._user = []

    def _add_default(self, match: str | Matcher, handler: Handler) -> None:
        m, label = self._matcher(match)
        self._defaults.append((m, handler, label))

    def answer_user(self, req: ComputeRequest) -> Any:
        """The first user handler's answer, or NOT_HANDLED."""
        for matcher, handler, _label in self._user:
            if matcher(req):
                out = handler(req)
                if out is not NOT_HANDLED:
                    return out
        return NOT_HANDLED

    def answer(self, req: ComputeRequest) -> Any:
        for matcher, handler, _label in self._user + self._defaults:
            if not matcher(req):
                continue
            value = handler(req)
            if value is not NOT_HANDLED:
                return value
        raise ComputeUnsupported(
            f"Stand-in: value:compute of '{req.function_name or 'a literal'}' is not "
            "implemented. Register a handler: StandIn.state.compute.register("
            f"'{req.function_name}', handler).", http_status=self.unsupported_http_status)


# -- defaults ---------------------------------------------------------------------------

def _fold(req: ComputeRequest) -> Any:
    try:
        return req.evaluate()
    except NotEvaluable:
        return NOT_HANDLED


def _band_names(req: ComputeRequest) -> Any:
    names = req.band_names(req.args().get("image"))
    return names if names is not None else NOT_HANDLED


def _reducer_outputs(req: ComputeRequest, node: Any, in_combine: bool = False,
                     depth: int = 0) -> tuple[list[str], bool] | None:
    """(output names, single_output_named_by_band). None if unknown."""
    g = req.graph
    node = g.resolve(node)
    fn = g.function_name(node)
    if fn is None or depth > 50:
        return None
    a = g.args(node)
    if fn in SINGLE_REDUCERS:
        return [SINGLE_REDUCERS[fn]], not in_combine
    if fn == "Reducer.minMax":
        return ["min", "max"], False
    if fn == "Reducer.percentile":
        names = g.constant(a.get("outputNames"))
        if isinstance(names, list) and names:
            return [str(n) for n in names], False
        pcts = g.constant(a.get("percentiles")) or []
        return [f"p{int(p) if float(p).is_integer() else p}" for p in pcts], False
    if fn == "Reducer.combine":
        r1 = _reducer_outputs(req, a.get("reducer1"), True, depth + 1)
        r2 = _reducer_outputs(req, a.get("reducer2"), True, depth + 1)
        if r1 is None or r2 is None:
            return None
        prefix = g.constant(a.get("outputPrefix")) or ""
        return r1[0] + [prefix + n for n in r2[0]], False
    if fn in REGRESSION_REDUCERS:
        return ["coefficients", "residuals"], False
    return None


def _reduce_region(req: ComputeRequest) -> Any:
    g = req.graph
    a = req.args()
    reducer = g.resolve(a.get("reducer"))
    rfn = g.function_name(reducer)
    if rfn in REGRESSION_REDUCERS:
        ra = g.args(reducer)
        num_x = int(g.constant(ra.get("numX"), 1) or 1)
        num_y = int(g.constant(ra.get("numY"), 1) or 1)
        return {
            "coefficients": [[req.synthetic_float("coef", i, j) for j in range(num_y)]
                             for i in range(num_x)],
            "residuals": [req.synthetic_float("resid", j) for j in range(num_y)],
        }
    outs = _reducer_outputs(req, reducer)
    bands = req.band_names(a.get("image"))
    if outs is None or bands is None:
        return NOT_HANDLED
    names, by_band = outs
    keys = list(bands) if by_band else [f"{b}_{n}" for b in bands for n in names]
    result = {}
    for k in keys:
        v = req.synthetic_float("reduceRegion", k)
        if rfn == "Reducer.count" or (k.endswith("_count")):
            v = int(v * 10_000)
        result[k] = v
    return result


def install_defaults(reg: ComputeRegistry) -> None:
    reg._add_default(lambda req: True, _fold)
    reg._add_default("Image.bandNames", _band_names)
    reg._add_default("Image.reduceRegion", _reduce_region)


