"""Execute Earth Engine expression graphs: every algorithm the engine submits, as documented.

:func:`evaluate` walks an expression (``{"result", "values"}``) and returns Python values
(numbers, strings, lists, dictionaries) or stand-in objects (:class:`~.raster.Image`,
:class:`Coll`, :class:`~.geometry.Geom`, :class:`~.reducers.Reducer`, ...). Images stay lazy:
pixels are computed only when a request names a grid (``Image.reduceRegion``, an export,
``computePixels``); see ``raster`` for the pull-based model.

Each algorithm follows its description in the wheel's ``ee/tests/algorithms.json`` and the Earth
Engine guides; where they are silent the choice is marked "[silent]" here and listed in the
stand-in's README. Errors are raised as :class:`EEError` with the service's wording.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from . import catalog
from . import reducers as R
from .geometry import Geom
from .raster import (
    DEFAULT_PROJ,
    Band,
    ComputeLimit,
    Ctx,
    Grid,
    Image,
    Proj,
    Px,
    constant_px,
    grid_covering,
    nearest,
    stored_band,
)

DAY_MS = 86_400_000
MAX_COLLECTION = 5000


class EEError(Exception):
    """An error of the computation, worded as Earth Engine words it (HTTP 400)."""


# --- values -----------------------------------------------------------------------------------
@dataclass
class Closure:
    names: list[str]
    body: str
    env: dict[str, Any]
    ev: "Evaluator"

    def __call__(self, *args: Any) -> Any:
        env = dict(self.env)
        env.update(zip(self.names, args))
        return self.ev.node({"valueReference": self.body}, env)


@dataclass
class Feature:
    geometry: Geom | None
    props: dict[str, Any]


@dataclass
class Filter:
    test: Callable[[Any], bool]
    bounds: Geom | None = None  # an intersects filter: what a catalog query can use
    dates: tuple[int, int] | None = None  # a time_start range filter [t0, t1)


@dataclass
class DateRange:
    start: int
    end: int


@dataclass
class Kernel:
    radius: int
    shape: str  # "square" | "circle"

    def offsets(self) -> np.ndarray:
        r = self.radius
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        return np.ones(yy.shape, bool) if self.shape == "square" else (yy ** 2 + xx ** 2) <= self.fr ** 2

    fr: float = 0.0


@dataclass
class Coll:
    """A collection: materialised elements, or a catalog query still to be bounded."""

    elements: list[Any] | None = None
    source: str | None = None
    filters: list[Filter] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)

    def items(self) -> list[Any]:
        if self.elements is not None:
            return self.elements
        bounds = next((f.bounds for f in self.filters if f.bounds is not None), None)
        dates = [f.dates for f in self.filters if f.dates is not None]
        if bounds is None or not dates:
            raise EEError(f"ImageCollection.load: Collection query aborted after accumulating over "
                          f"{MAX_COLLECTION} elements.")
        t0, t1 = max(d[0] for d in dates), min(d[1] for d in dates)
        region = bounds.lonlat()
        grans = catalog.list_granules(self.source, region, t0, t1) if t1 > t0 else []
        imgs = [catalog.granule_image(self.source, g) for g in grans]
        imgs = [im for im in imgs if all(f.test(im) for f in self.filters)]
        if len(imgs) > MAX_COLLECTION:
            raise EEError(f"Collection query aborted after accumulating over {MAX_COLLECTION} elements.")
        self.elements = imgs
        return imgs


def props_of(x: Any) -> dict[str, Any]:
    if isinstance(x, (Image, Feature, Coll)):
        return x.props
    if isinstance(x, dict):
        return x
    raise EEError(f"Element.get: expected an element, got {type(x).__name__}.")


# --- band helpers -----------------------------------------------------------------------------------
def const_image(value: Any) -> Image:
    """``Image.constant``: one band per number ("constant", "constant_1", ...; [silent] names
    beyond the first follow ``addBands``' renaming); an array value makes one array band."""
    if isinstance(value, np.ndarray):
        arr = value.astype(np.float64)

        def fa(grid: Grid, ctx: Ctx, arr=arr) -> Px:
            return Px(np.broadcast_to(arr, grid.shape + arr.shape), np.ones(grid.shape))

        return Image([Band("constant", fa, DEFAULT_PROJ, array_dims=arr.ndim)])
    values = value if isinstance(value, list) else [value]
    bands = []
    for i, v in enumerate(values):
        if v is None:
            raise EEError("Image.constant: Parameter 'value' is required.")
        if isinstance(v, np.ndarray):
            return const_image(v)
        bands.append(Band("constant" if i == 0 else f"constant_{i}",
                          lambda grid, ctx, v=float(v): constant_px(grid, v), DEFAULT_PROJ))
    return Image(bands)


def as_image(x: Any) -> Image:
    if isinstance(x, Image):
        return x
    if isinstance(x, (int, float, list, np.ndarray)):
        return const_image(np.asarray(x, dtype=float) if isinstance(x, np.ndarray) else x)
    raise EEError(f"Image: cannot convert {type(x).__name__} to an image.")


def unary(band: Band, f: Callable[[Px], Px], name: str | None = None, array_dims: int | None = None) -> Band:
    return Band(name or band.name, lambda grid, ctx: f(band.compute(grid, ctx)), band.proj,
                array_dims=band.array_dims if array_dims is None else array_dims)


def _bcast(a: Px, b: Px) -> tuple[np.ndarray, np.ndarray]:
    va, vb = a.v, b.v
    while va.ndim < vb.ndim:
        va = va[..., None]
    while vb.ndim < va.ndim:
        vb = vb[..., None]
    return va, vb


def _lengths(a: Px, b: Px) -> np.ndarray | None:
    if a.n is None:
        return b.n
    if b.n is None:
        return a.n
    if not np.array_equal(a.n, b.n):
        # [silent] per-pixel length mismatch: Earth Engine errors; the stand-in masks
        return np.minimum(a.n, b.n)
    return a.n


def binary(img1: Image, img2: Image, op: Callable[[np.ndarray, np.ndarray], np.ndarray], fname: str) -> Image:
    """Documented pairing (e.g. ``Image.add``): a single band is used against every band of the
    other image; otherwise bands pair in order; names from the longer input, else image1."""
    b1, b2 = img1.bands, img2.bands
    if len(b1) != len(b2) and len(b1) != 1 and len(b2) != 1:
        raise EEError(f"{fname}: Images must contain the same number of bands or only 1 band. "
                      f"Got {len(b1)} and {len(b2)}.")
    if not b1 or not b2:
        return img1.with_bands([])
    n = max(len(b1), len(b2))
    names = [b.name for b in (b1 if len(b1) >= len(b2) else b2)]
    out = []
    for i in range(n):
        x, y = b1[i if len(b1) > 1 else 0], b2[i if len(b2) > 1 else 0]

        def fn(grid: Grid, ctx: Ctx, x=x, y=y) -> Px:
            a, b = x.compute(grid, ctx), y.compute(grid, ctx)
            va, vb = _bcast(a, b)
            with np.errstate(all="ignore"):
                v = op(va, vb)
            m = np.minimum(a.m, b.m)
            v = np.where(np.isfinite(v), v, 0.0)
            return Px(v, m, _lengths(a, b))

        out.append(Band(names[i], fn, x.proj, array_dims=max(x.array_dims, y.array_dims)))
    return img1.with_bands(out)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # [documented] division by zero yields a masked pixel; NaNs are masked by binary()
    return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


BINARY = {
    "Image.add": np.add, "Image.subtract": np.subtract, "Image.multiply": np.multiply, "Image.divide": _divide,
    "Image.eq": lambda a, b: (a == b).astype(float), "Image.neq": lambda a, b: (a != b).astype(float),
    "Image.gt": lambda a, b: (a > b).astype(float), "Image.gte": lambda a, b: (a >= b).astype(float),
    "Image.lt": lambda a, b: (a < b).astype(float), "Image.lte": lambda a, b: (a <= b).astype(float),
    "Image.and": lambda a, b: ((a != 0) & (b != 0)).astype(float),
    "Image.or": lambda a, b: ((a != 0) | (b != 0)).astype(float),
    "Image.bitwiseAnd": lambda a, b: (a.astype(np.int64) & b.astype(np.int64)).astype(float),
    "Image.bitwiseOr": lambda a, b: (a.astype(np.int64) | b.astype(np.int64)).astype(float),
    "Image.max": np.maximum, "Image.min": np.minimum, "Image.pow": np.power,
}

NUMBER = {
    "Number.add": lambda a, b: a + b, "Number.subtract": lambda a, b: a - b,
    "Number.multiply": lambda a, b: a * b, "Number.divide": lambda a, b: a / b if b else 0,
    "Number.gt": lambda a, b: int(a > b), "Number.gte": lambda a, b: int(a >= b),
    "Number.lt": lambda a, b: int(a < b), "Number.lte": lambda a, b: int(a <= b),
    "Number.eq": lambda a, b: int(a == b), "Number.neq": lambda a, b: int(a != b),
    "Number.max": max, "Number.min": min,
}


# --- neighbourhoods ---------------------------------------------------------------------------------
def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sums over (2r+1)^2 windows of ``a`` (h + 2r, w + 2r) -> (h, w) (summed-area table)."""
    c = np.pad(np.cumsum(np.cumsum(a, axis=0), axis=1), ((1, 0), (1, 0)))
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def neighbourhood(band: Band, reducer: R.Reducer, kernel: Kernel, skip_masked: bool, name: str) -> Band:
    """``reduceNeighborhood`` on the request's grid (kernels count pixels of that grid).

    Masked pixels never enter the reducer; a square kernel of normalised weights gives the
    plain mean of the unmasked neighbours. Output masked where no neighbour is unmasked, and
    where the centre is masked if ``skipMasked``."""
    r = kernel.radius

    def fn(grid: Grid, ctx: Ctx) -> Px:
        px = band.compute(grid.grow(r), ctx)
        valid = px.m > 0
        if reducer.kind in ("mean", "sum", "count") and kernel.shape == "square":
            n = _box_sum(valid.astype(np.float64), r)
            s = _box_sum(np.where(valid, px.v, 0.0), r)
            out = {"mean": s / np.maximum(n, 1), "sum": s, "count": n}[reducer.kind]
            ok = n > 0
        else:
            from numpy.lib.stride_tricks import sliding_window_view

            sel = kernel.offsets().ravel()
            win = sliding_window_view(np.where(valid, px.v, np.nan), (2 * r + 1, 2 * r + 1))
            win = win.reshape(grid.h, grid.w, -1)[..., sel]
            wv = sliding_window_view(valid, (2 * r + 1, 2 * r + 1)).reshape(grid.h, grid.w, -1)[..., sel]
            x = np.moveaxis(win, 2, 0).reshape(win.shape[2], -1, 1)
            w = np.moveaxis(wv, 2, 0).reshape(wv.shape[2], -1).astype(np.float64)
            (vals, okf), = reducer.apply(np.nan_to_num(x), w)[:1]
            out, ok = vals.reshape(grid.shape), okf.reshape(grid.shape)
        if skip_masked:
            ok = ok & valid[r:r + grid.h, r:r + grid.w]
        return Px(np.where(ok, out, 0.0), ok.astype(np.float64))

    return Band(name, fn, band.proj)


# --- arrays ---------------------------------------------------------------------------------------
def collection_to_array(images: list[Image]) -> Band:
    """``ImageCollection.toArray``: per pixel, the images valid in all bands along axis 0, in
    collection order; bands along axis 1."""

    def fn(grid: Grid, ctx: Ctx) -> Px:
        if not images:
            return Px(np.zeros(grid.shape + (0, 0)), np.ones(grid.shape), np.zeros(grid.shape, np.int64))
        vals, oks = [], []
        for im in images:
            pxs = [b.compute(grid, ctx) for b in im.bands]
            vals.append(np.stack([p.v for p in pxs], axis=-1))
            oks.append(np.all([p.m > 0 for p in pxs], axis=0))
        v = np.stack(vals, axis=2)  # (h, w, n, nb)
        ok = np.stack(oks, axis=2)  # (h, w, n)
        order = np.argsort(~ok, axis=2, kind="stable")
        v = np.take_along_axis(v, order[..., None], axis=2)
        n = ok.sum(axis=2)
        return Px(v, np.ones(grid.shape), n)

    return Band("array", fn, DEFAULT_PROJ, array_dims=2)


# --- the evaluator --------------------------------------------------------------------------------
class Evaluator:
    def __init__(self, expr: dict[str, Any], assets: dict[str, Any] | None = None):
        self.values = expr.get("values", {})
        self.result = expr.get("result")
        self.assets = assets or {}
        self._cache: dict[str, Any] = {}
        self._free: dict[str, bool] = {}

    def _closed(self, key: str) -> bool:
        """Whether value ``key`` uses no function argument (so one result serves every call)."""
        hit = self._free.get(key)
        if hit is not None:
            return hit
        self._free[key] = False  # cycles cannot occur; guard anyway
        stack, ok = [self.values[key]], True
        while stack and ok:
            n = stack.pop()
            if isinstance(n, dict):
                if "argumentReference" in n:
                    ok = False
                elif "valueReference" in n and len(n) == 1:
                    ok = self._closed(n["valueReference"])
                elif "functionDefinitionValue" in n:
                    continue  # a lambda's body binds its own arguments
                else:
                    stack.extend(n.values())
            elif isinstance(n, list):
                stack.extend(n)
        self._free[key] = ok
        return ok

    def run(self) -> Any:
        return self.node({"valueReference": self.result}, {})

    def node(self, n: Any, env: dict[str, Any]) -> Any:
        if "valueReference" in n:
            key = n["valueReference"]
            if key in self._cache:
                return self._cache[key]
            closed = not env or self._closed(key)
            v = self.node(self.values[key], {} if closed else env)
            if closed:
                self._cache[key] = v
            return v
        if "constantValue" in n:
            return n["constantValue"]
        if "integerValue" in n:
            return int(n["integerValue"])
        if "nullValue" in n:
            return None
        if "arrayValue" in n:
            return [self.node(v, env) for v in n["arrayValue"].get("values", [])]
        if "dictionaryValue" in n:
            return {k: self.node(v, env) for k, v in n["dictionaryValue"].get("values", {}).items()}
        if "argumentReference" in n:
            return env[n["argumentReference"]]
        if "functionDefinitionValue" in n:
            d = n["functionDefinitionValue"]
            return Closure(d.get("argumentNames", []), d["body"], env, self)
        if "functionInvocationValue" in n:
            inv = n["functionInvocationValue"]
            args = {k: self.node(v, env) for k, v in (inv.get("arguments") or {}).items()}
            if "functionReference" in inv:
                fn = self.node({"valueReference": inv["functionReference"]}, env)
                return fn(*args.values())
            return self.call(inv["functionName"], args)
        raise EEError(f"Invalid value node: {sorted(n)}")

    def call(self, name: str, a: dict[str, Any]) -> Any:
        if name in BINARY:
            return binary(as_image(a["image1"]), as_image(a["image2"]), BINARY[name], name)
        if name in NUMBER:
            return NUMBER[name](a["left"], a["right"])
        fn = ALGORITHMS.get(name)
        if fn is None:
            raise NotImplementedError(name)
        return fn(self, a)


ALGORITHMS: dict[str, Callable[[Evaluator, dict[str, Any]], Any]] = {}


def alg(*names: str):
    def deco(f):
        for n in names:
            ALGORITHMS[n] = f
        return f

    return deco


# --- scalars, lists, dictionaries, strings -------------------------------------------------------
alg("String")(lambda ev, a: str(a["input"]))
alg("String.cat")(lambda ev, a: str(a["string1"]) + str(a["string2"]))
alg("Number.toInt", "Number.int")(lambda ev, a: int(a["input"]))


@alg("List.get")
def _list_get(ev, a):
    lst, i = a["list"], int(a["index"])
    if not -len(lst) <= i < len(lst):
        raise EEError(f"List.get: List index must be between {-len(lst)} and {len(lst) - 1}: {i}.")
    return lst[i]


@alg("List.map")
def _list_map(ev, a):
    out = [a["baseAlgorithm"](x) for x in a["list"]]
    return [x for x in out if x is not None] if a.get("dropNulls") else out


alg("List.size", "List.length")(lambda ev, a: len(a["list"]))


@alg("List.sequence")
def _list_sequence(ev, a):
    start, end, step = a["start"], a.get("end"), a.get("step") or 1
    count = a.get("count")
    if end is None:
        end = start + step * (count - 1)
    return list(np.arange(start, end + step / 2, step).tolist())


alg("Dictionary")(lambda ev, a: dict(a.get("input") or {}))


@alg("Dictionary.get")
def _dict_get(ev, a):
    d, k = a["dictionary"], a["key"]
    if k in d:
        return d[k]
    if "defaultValue" in a:
        return a["defaultValue"]
    raise EEError(f"Dictionary.get: Dictionary does not contain key: {k}.")


alg("Dictionary.set")(lambda ev, a: dict(a["dictionary"], **{a["key"]: a["value"]}))


@alg("Dictionary.values")
def _dict_values(ev, a):
    d = a["dictionary"]
    keys = a.get("keys") or sorted(d)  # Earth Engine dictionaries are ordered by key
    return [d[k] for k in keys]


alg("Dictionary.keys")(lambda ev, a: sorted(a["dictionary"]))


@alg("Algorithms.If", "If")
def _if(ev, a):
    c = a.get("condition")
    truthy = bool(c) and not (isinstance(c, (int, float)) and c == 0)
    return a.get("trueCase") if truthy else a.get("falseCase")


alg("Array")(lambda ev, a: np.asarray(a["values"], dtype=np.float64))


def _ms(t: Any) -> int:
    """A date as milliseconds since the epoch (numbers are ms; strings ISO 8601, UTC)."""
    if isinstance(t, str):
        import pandas as pd

        return int(pd.Timestamp(t, tz="UTC").value // 1_000_000)
    return int(t)


@alg("DateRange")
def _date_range(ev, a):
    start = _ms(a["start"])
    return DateRange(start, _ms(a["end"]) if a.get("end") is not None else start + DAY_MS)


alg("Date")(lambda ev, a: _ms(a["value"]))


# --- elements ---------------------------------------------------------------------------------------
def _with_props(x: Any, props: dict[str, Any]) -> Any:
    if isinstance(x, Image):
        out = x.with_bands(list(x.bands))
        out.props.update(props)
        return out
    if isinstance(x, Feature):
        return Feature(x.geometry, dict(x.props, **props))
    if isinstance(x, Coll):
        return Coll(x.elements, x.source, list(x.filters), dict(x.props, **props))
    if isinstance(x, dict):
        return dict(x, **props)
    raise EEError(f"Element.set: cannot set properties on {type(x).__name__}.")


alg("Element.set")(lambda ev, a: _with_props(a["object"], {a["key"]: a["value"]}))
alg("Element.setMulti")(lambda ev, a: _with_props(a["object"], dict(a["properties"])))
alg("Element.get")(lambda ev, a: props_of(a["object"]).get(a["property"]))


@alg("Element.copyProperties", "Image.copyProperties")
def _copy_properties(ev, a):
    src, dst = a.get("source"), a.get("destination")
    sp = props_of(src)
    names = a.get("properties")
    if names is None:
        exclude = set(a.get("exclude") or [])
        names = [k for k in sp if not k.startswith("system:") and k not in exclude]
    return _with_props(dst, {k: sp[k] for k in names if k in sp})


@alg("Feature")
def _feature(ev, a):
    g = a.get("geometry")
    if isinstance(g, Feature):
        g = g.geometry
    return Feature(g, dict(a.get("metadata") or {}))


@alg("Collection")
def _feature_collection(ev, a):
    feats = a.get("features") or []
    return Coll([f if isinstance(f, Feature) else Feature(None, dict(f)) for f in feats])


# --- geometry and projections -----------------------------------------------------------------------
def _proj_arg(p: Any) -> Proj | None:
    if p is None:
        return None
    if isinstance(p, Proj):
        return p
    return Proj(str(p))


@alg("Projection")
def _projection(ev, a):
    t = a.get("transform")
    return Proj(str(a["crs"]), tuple(float(v) for v in t) if t else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))


def _geodesic_check(a: dict[str, Any], proj: Proj | None) -> None:
    if a.get("geodesic") and proj is not None and proj.crs.upper() != "EPSG:4326":
        raise EEError("Geometry: geodesic edges are only defined in EPSG:4326.")


@alg("GeometryConstructors.Rectangle")
def _rectangle(ev, a):
    c = a["coordinates"]
    flat = list(np.asarray(c, dtype=float).ravel())
    x0, y0, x1, y1 = flat[:4]
    proj = _proj_arg(a.get("crs"))
    # [silent] a geodesic rectangle's edges follow great circles; planar edges are used (the
    # engine's rectangles are planar in a projected CRS)
    return Geom(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), proj)


@alg("GeometryConstructors.Polygon")
def _polygon(ev, a):
    rings = a["coordinates"]
    proj = _proj_arg(a.get("crs"))
    return Geom(Polygon(rings[0], rings[1:]), proj)


@alg("GeometryConstructors.MultiPolygon")
def _multipolygon(ev, a):
    polys = [Polygon(p[0], p[1:]) for p in a["coordinates"]]
    return Geom(shapely.MultiPolygon(polys), _proj_arg(a.get("crs")))


# --- filters ----------------------------------------------------------------------------------------
def _field(x: Any, name: str) -> Any:
    return props_of(x).get(name)


@alg("Filter.intersects")
def _f_intersects(ev, a):
    g = a.get("rightValue")
    if isinstance(g, Feature):
        g = g.geometry
    if a.get("leftField") != ".all" or not isinstance(g, Geom):
        raise EEError("Filter.intersects: the stand-in supports leftField '.all' against a geometry.")
    region = g.lonlat()

    def test(x: Any) -> bool:
        fp = getattr(x, "footprint", None)
        return fp is None or fp.intersects(region)

    return Filter(test, bounds=g)


@alg("Filter.dateRangeContains")
def _f_date_range(ev, a):
    r = a.get("leftValue")
    fieldname = a.get("rightField")
    if not isinstance(r, DateRange):
        raise EEError("Filter.dateRangeContains: leftValue must be a DateRange.")

    def test(x: Any) -> bool:
        t = _field(x, fieldname)
        return t is not None and r.start <= t < r.end

    return Filter(test, dates=(r.start, r.end) if fieldname == "system:time_start" else None)


alg("Filter.equals")(lambda ev, a: Filter(lambda x: _field(x, a["leftField"]) == a.get("rightValue")))
alg("Filter.listContains")(lambda ev, a: Filter(lambda x: a.get("rightValue") in (_field(x, a["leftField"]) or [])))


@alg("Filter.and")
def _f_and(ev, a):
    fs = a["filters"]
    return Filter(lambda x: all(f.test(x) for f in fs), next((f.bounds for f in fs if f.bounds), None),
                  next((f.dates for f in fs if f.dates), None))


# --- collections ------------------------------------------------------------------------------------
@alg("ImageCollection.load")
def _ic_load(ev, a):
    cid = a["id"]
    if cid not in catalog.COLLECTIONS:
        raise EEError(f"ImageCollection.load: ImageCollection asset '{cid}' not found (does not exist or caller "
                      "does not have access).")
    return Coll(source=cid)


@alg("ImageCollection.fromImages")
def _ic_from_images(ev, a):
    imgs = [as_image(x) for x in a["images"]]
    return Coll([_with_index(im, str(i)) for i, im in enumerate(imgs)])


def _with_index(im: Image, idx: str) -> Image:
    out = im.with_bands(list(im.bands))
    out.props.setdefault("system:index", idx)
    return out


@alg("ImageCollection.merge")
def _ic_merge(ev, a):
    # documented: all images of both; [silent] system:index gets the "1_" / "2_" prefixes
    e1 = [_with_props(x, {"system:index": "1_" + str(x.props.get("system:index", i))})
          for i, x in enumerate(a["collection1"].items())]
    e2 = [_with_props(x, {"system:index": "2_" + str(x.props.get("system:index", i))})
          for i, x in enumerate(a["collection2"].items())]
    return Coll(e1 + e2)


@alg("Collection.filter")
def _c_filter(ev, a):
    c, f = a["collection"], a["filter"]
    if c.elements is None:
        return Coll(None, c.source, c.filters + [f], dict(c.props))
    return Coll([x for x in c.elements if f.test(x)], props=dict(c.props))


@alg("Collection.limit")
def _c_limit(ev, a):
    items = list(a["collection"].items())
    key = a.get("key")
    if key is not None:
        asc = a.get("ascending", True)
        items.sort(key=lambda x: (props_of(x).get(key) is None, props_of(x).get(key)), reverse=not asc)
    lim = a.get("limit")
    return Coll(items[: int(lim)] if lim is not None else items, props=dict(a["collection"].props))


@alg("Collection.map")
def _c_map(ev, a):
    c = a["collection"]
    out = []
    for x in c.items():
        y = a["baseAlgorithm"](x)
        if isinstance(y, Image) and isinstance(x, Image):
            y = y.with_bands(list(y.bands))
            y.props.setdefault("system:index", x.props.get("system:index"))
            if y.footprint is None:
                y.footprint = x.footprint
        if y is not None or not a.get("dropNulls"):
            out.append(y)
    return Coll(out, props=dict(c.props))


alg("Collection.size")(lambda ev, a: len(a["collection"].items()))
alg("AggregateFeatureCollection.array")(lambda ev, a: [
    v for v in (props_of(x).get(a["property"]) for x in a["collection"].items()) if v is not None])


def _band_names_of(images: list[Image]) -> list[str]:
    names: list[str] = []
    for im in images:
        for n in im.names():
            if n not in names:
                names.append(n)
    return names


def _footprint_union(images: list[Image]) -> Any:
    fps = [im.footprint for im in images]
    if not fps or any(f is None for f in fps):
        return None
    return shapely.union_all(fps)


@alg("ImageCollection.mosaic")
def _ic_mosaic(ev, a):
    """Documented: composites the images using their masks, the last image on top. The result
    has the default projection; [silent] bands are the union of the images' band names (an
    empty collection gives an image with no bands)."""
    images = a["collection"].items()
    bands = []
    for name in _band_names_of(images):
        members = [b for im in images for b in im.bands if b.name == name]

        def fn(grid: Grid, ctx: Ctx, members=members) -> Px:
            v = np.zeros(grid.shape)
            m = np.zeros(grid.shape)
            for b in members:
                px = b.compute(grid, ctx)
                take = px.m > 0
                v = np.where(take, px.v, v)
                m = np.where(take, px.m, m)
            return Px(v, m)

        bands.append(Band(name, fn, DEFAULT_PROJ))
    return Image(bands, footprint=_footprint_union(images))


def _stack(images: list[Image], name: str, grid: Grid, ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    pxs = [b.compute(grid, ctx) for im in images for b in im.bands if b.name == name]
    if not pxs:
        return np.zeros((0, grid.size, 1)), np.zeros((0, grid.size))
    x = np.stack([p.v.reshape(-1) for p in pxs])[..., None]
    w = np.stack([p.m.reshape(-1) for p in pxs])
    return x, w


def _out_band(name: str, grid: Grid, vals: np.ndarray, ok: np.ndarray) -> Px:
    v = vals.reshape(grid.shape + vals.shape[1:])
    return Px(np.where(ok.reshape(grid.shape + (1,) * (vals.ndim - 1)), v, 0.0), ok.reshape(grid.shape).astype(float))


def collection_reduce(images: list[Image], reducer: R.Reducer, keep_names: bool = False) -> Image:
    names = _band_names_of(images)
    bands = []
    if reducer.n_inputs == 1:
        for name in names:
            for k, out_name in enumerate(reducer.outputs):
                def fn(grid: Grid, ctx: Ctx, name=name, k=k) -> Px:
                    x, w = _stack(images, name, grid, ctx)
                    vals, ok = reducer.apply(x, w)[k]
                    return _out_band(name, grid, vals, ok)

                label = name if keep_names else f"{name}_{out_name}"
                bands.append(Band(label, fn, DEFAULT_PROJ))
        return Image(bands)
    if len(names) != reducer.n_inputs:
        raise EEError(f"ImageCollection.reduce: Need {reducer.n_inputs} bands for the reducer inputs, "
                      f"got {len(names)}.")

    memo: dict[Grid, list] = {}

    def outputs(grid: Grid, ctx: Ctx) -> list:
        if grid not in memo:
            xs, ws = zip(*[_stack(images, n, grid, ctx) for n in names])
            x = np.concatenate(xs, axis=2)
            w = np.min(np.stack(ws), axis=0) if ws[0].size else ws[0]
            memo.clear()
            memo[grid] = reducer.apply(x, w)
        return memo[grid]

    for k, out_name in enumerate(reducer.outputs):
        def fn(grid: Grid, ctx: Ctx, k=k) -> Px:
            vals, ok = outputs(grid, ctx)[k]
            return _out_band(out_name, grid, vals, ok)

        dims = 2 if reducer.kind in ("linearRegression", "robustLinearRegression") and k == 0 else 1
        bands.append(Band(out_name, fn, DEFAULT_PROJ, array_dims=dims))
    return Image(bands)


alg("ImageCollection.reduce")(lambda ev, a: collection_reduce(a["collection"].items(), a["reducer"]))


for _k in ("mean", "count", "median"):  # ImageCollection.mean() etc.: band names kept
    ALGORITHMS[f"reduce.{_k}"] = lambda ev, a, _k=_k: collection_reduce(a["collection"].items(), R.make(_k),
                                                                       keep_names=True)


@alg("ImageCollection.toBands")
def _ic_to_bands(ev, a):
    images = a["collection"].items()
    bands = [b.renamed(f"{im.props.get('system:index', i)}_{b.name}") for i, im in enumerate(images) for b in im.bands]
    if len(bands) > 5000:
        raise EEError("ImageCollection.toBands: The maximum number of bands is 5000.")
    return Image(bands, footprint=_footprint_union(images))


alg("ImageCollection.toArray")(lambda ev, a: Image([collection_to_array(a["collection"].items())]))


# --- images: construction, bands, masks -------------------------------------------------------------
alg("Image.constant")(lambda ev, a: const_image(a["value"]))


@alg("Image.load")
def _img_load(ev, a):
    asset = ev.assets.get(a["id"]) if ev.assets else None
    if asset is None or "pixels" not in asset.get("standin", {}):
        raise EEError(f"Image.load: Image asset '{a['id']}' not found (does not exist or caller does not have access).")
    return asset_image(asset)


def asset_image(asset: dict[str, Any]) -> Image:
    """An exported image asset: its pixels on the export grid, read through its pyramid."""
    st = asset["standin"]
    grid: Grid = st["grid"]
    bands = []
    for name, (v, m) in st["pixels"].items():
        def read(win: Grid, ctx: Ctx, v=v, m=m) -> Px:
            out_v, out_m = np.zeros(win.shape), np.zeros(win.shape)
            r0, c0 = win.row0 - grid.row0, win.col0 - grid.col0
            rs, cs = max(r0, 0), max(c0, 0)
            re_, ce = min(r0 + win.h, grid.h), min(c0 + win.w, grid.w)
            if re_ > rs and ce > cs:
                out_v[rs - r0:re_ - r0, cs - c0:ce - c0] = v[rs:re_, cs:ce]
                out_m[rs - r0:re_ - r0, cs - c0:ce - c0] = m[rs:re_, cs:ce]
            return Px(out_v, out_m)

        bands.append(stored_band(name, grid.proj, read, st["pyramiding"].get(name, "MEAN")))
    return Image(bands, dict(asset.get("properties", {})))


def _select_indices(img: Image, selectors: list[Any]) -> list[int]:
    names = img.names()
    out: list[int] = []
    for s in selectors:
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            i = int(s)
            if not 0 <= i < len(names):
                raise EEError(f"Image.select: Band index out of bounds: {i}.")
            out.append(i)
            continue
        s = str(s)
        if re.escape(s) == s:  # a plain name (the usual case): an exact match, without a regex scan
            hits = [i for i, n in enumerate(names) if n == s]
        else:
            pat = re.compile(s)
            hits = [i for i, n in enumerate(names) if pat.fullmatch(n)]
        if not hits:
            raise EEError(f"Image.select: Pattern '{s}' did not match any bands.")
        out.extend(hits)
    return out


@alg("Image.select")
def _img_select(ev, a):
    img = as_image(a["input"])
    sel = a.get("bandSelectors") or []
    idx = _select_indices(img, sel)
    bands = [img.bands[i] for i in idx]
    new = a.get("newNames")
    if new is not None:
        if len(new) != len(bands):
            raise EEError(f"Image.select: Can't rename {len(bands)} bands to {len(new)} names.")
        bands = [b.renamed(n) for b, n in zip(bands, new)]
    return img.with_bands(bands)


@alg("Image.rename")
def _img_rename(ev, a):
    img = as_image(a["input"])
    names = a["names"]
    if len(names) != len(img.bands):
        raise EEError(f"Image.rename: The number of names ({len(names)}) must match the number of bands "
                      f"({len(img.bands)}).")
    return img.with_bands([b.renamed(str(n)) for b, n in zip(img.bands, names)])


@alg("Image.addBands")
def _img_add_bands(ev, a):
    dst, src = as_image(a["dstImg"]), as_image(a["srcImg"])
    names = a.get("names")
    new = [b for b in src.bands if names is None or b.name in names]
    bands = list(dst.bands)
    for b in new:
        existing = [x.name for x in bands]
        if b.name in existing:
            if a.get("overwrite"):
                bands[existing.index(b.name)] = b
                continue
            k = 1
            while f"{b.name}_{k}" in existing:
                k += 1
            b = b.renamed(f"{b.name}_{k}")
        bands.append(b)
    return dst.with_bands(bands)


alg("Image.bandNames")(lambda ev, a: as_image(a["image"]).names())


@alg("Image.projection")
def _img_projection(ev, a):
    img = as_image(a["image"])
    if not img.bands:
        raise EEError("Image.projection: Image has no bands.")
    return img.bands[0].proj


@alg("Image.toFloat", "Image.float")
def _img_to_float(ev, a):
    img = as_image(a.get("value", a.get("image")))

    def f(px: Px) -> Px:
        return Px(px.v.astype(np.float32).astype(np.float64), px.m, px.n)

    return img.with_bands([unary(b, f) for b in img.bands])


alg("Image.toDouble", "Image.double")(lambda ev, a: as_image(a.get("value", a.get("image"))))


@alg("Image.abs")
def _img_abs(ev, a):
    img = as_image(a["value"])
    return img.with_bands([unary(b, lambda p: Px(np.abs(p.v), p.m, p.n)) for b in img.bands])


@alg("Image.round")
def _img_round(ev, a):
    """"Computes the integer nearest to the input" ([silent] on ties: half away from zero, as C's
    round())."""
    img = as_image(a["value"])
    return img.with_bands([unary(b, lambda p: Px(np.sign(p.v) * np.floor(np.abs(p.v) + 0.5), p.m, p.n))
                           for b in img.bands])


@alg("Image.clamp")
def _img_clamp(ev, a):
    """"Clamps the values in all bands of an image to all lie within the specified range" ([silent]
    on the output type: values keep their band's type; masks are unchanged)."""
    img, lo, hi = as_image(a["input"]), float(a["low"]), float(a["high"])
    return img.with_bands([unary(b, lambda p: Px(np.clip(p.v, lo, hi), p.m, p.n)) for b in img.bands])


def _mask_image(img: Image, mask: Image, fname: str) -> list[tuple[Band, Band]]:
    if len(mask.bands) not in (1, len(img.bands)):
        raise EEError(f"{fname}: Mask must have 1 band or as many bands as the image ({len(img.bands)}).")
    return [(b, mask.bands[i if len(mask.bands) > 1 else 0]) for i, b in enumerate(img.bands)]


@alg("Image.updateMask")
def _img_update_mask(ev, a):
    img, mask = as_image(a["image"]), as_image(a["mask"])
    out = []
    for b, mb in _mask_image(img, mask, "Image.updateMask"):
        def fn(grid: Grid, ctx: Ctx, b=b, mb=mb) -> Px:
            p, q = b.compute(grid, ctx), mb.compute(grid, ctx)
            mv = np.where(q.m > 0, np.clip(q.v, 0.0, 1.0), 0.0)  # a masked mask pixel is 0
            return Px(p.v, np.minimum(p.m, mv), p.n)

        out.append(Band(b.name, fn, b.proj, array_dims=b.array_dims))
    return img.with_bands(out)


@alg("Image.mask")
def _img_mask(ev, a):
    img = as_image(a["image"])
    if a.get("mask") is not None:  # the deprecated setter: replaces the mask
        mask = as_image(a["mask"])
        out = []
        for b, mb in _mask_image(img, mask, "Image.mask"):
            def fn(grid: Grid, ctx: Ctx, b=b, mb=mb) -> Px:
                p, q = b.compute(grid, ctx), mb.compute(grid, ctx)
                return Px(p.v, np.where(q.m > 0, np.clip(q.v, 0, 1), 0.0), p.n)

            out.append(Band(b.name, fn, b.proj, array_dims=b.array_dims))
        return img.with_bands(out)
    return img.with_bands([unary(b, lambda p: Px(p.m.copy(), np.ones_like(p.m)), array_dims=0) for b in img.bands])


@alg("Image.selfMask")
def _img_self_mask(ev, a):
    img = as_image(a["image"])
    return img.with_bands([unary(b, lambda p: Px(p.v, np.where(p.v != 0, p.m, 0.0))) for b in img.bands])


def _in_footprint(img: Image, grid: Grid) -> np.ndarray | None:
    if img.footprint is None:
        return None
    x, y = grid.centres_in("EPSG:4326")
    return shapely.contains_xy(img.footprint, x, y)


@alg("Image.unmask")
def _img_unmask(ev, a):
    """Documented: value and mask of ``value`` where the input mask is zero; with
    ``sameFootprint`` (default) the output keeps the input's footprint."""
    img = as_image(a["input"])
    value = as_image(a["value"]) if a.get("value") is not None else const_image(0)
    same = a.get("sameFootprint", True)
    if same is None:
        same = True
    out = []
    for b, vb in _mask_image(img, value, "Image.unmask"):
        def fn(grid: Grid, ctx: Ctx, b=b, vb=vb) -> Px:
            p, q = b.compute(grid, ctx), vb.compute(grid, ctx)
            hole = p.m <= 0
            if same:
                inside = _in_footprint(img, grid)
                if inside is not None:
                    hole = hole & inside
            va, vq = _bcast(p, q)
            v = np.where(hole.reshape(hole.shape + (1,) * (va.ndim - 2)), vq, va)
            return Px(v, np.where(hole, q.m, p.m), p.n)

        out.append(Band(b.name, fn, b.proj, array_dims=b.array_dims))
    return img.with_bands(out)


@alg("Image.where")
def _img_where(ev, a):
    """Documented: where ``test`` is nonzero, ``value``; if test or value is masked, the input;
    if the input is masked, nothing is done (the output stays masked)."""
    img, test, value = as_image(a["input"]), as_image(a["test"]), as_image(a["value"])
    out = []
    for i, b in enumerate(img.bands):
        tb = test.bands[i if len(test.bands) > 1 else 0]
        vb = value.bands[i if len(value.bands) > 1 else 0]

        def fn(grid: Grid, ctx: Ctx, b=b, tb=tb, vb=vb) -> Px:
            p, t, q = b.compute(grid, ctx), tb.compute(grid, ctx), vb.compute(grid, ctx)
            use = (t.m > 0) & (q.m > 0) & (t.v != 0) & (p.m > 0)
            return Px(np.where(use, q.v, p.v), p.m)

        out.append(Band(b.name, fn, b.proj))
    return img.with_bands(out)


@alg("Image.clip")
def _img_clip(ev, a):
    """Masks data outside the geometry. [silent] Earth Engine gives edge pixels fractional
    masks; the stand-in masks by pixel centre (whole pixels)."""
    img, g = as_image(a["input"]), a["geometry"]
    if isinstance(g, Feature):
        g = g.geometry
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            return Px(p.v, np.where(g.contains_centres(grid), p.m, 0.0), p.n)

        out.append(Band(b.name, fn, b.proj, array_dims=b.array_dims))
    res = img.with_bands(out)
    return res


@alg("Image.reproject")
def _img_reproject(ev, a):
    img = as_image(a["image"])
    crs = _proj_arg(a["crs"])
    if a.get("crsTransform") is not None:
        target = Proj(crs.crs, tuple(float(v) for v in a["crsTransform"]))
    elif a.get("scale") is not None:
        target = crs.at_scale(float(a["scale"]))
    else:
        target = crs
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            return nearest(lambda win: b.compute(win, ctx), target, grid)

        out.append(Band(b.name, fn, target, array_dims=b.array_dims))
    return img.with_bands(out)


@alg("Image.clipToBoundsAndScale")
def _img_clip_bounds(ev, a):
    img = as_image(a["input"])
    g = a.get("geometry")
    if g is None or not img.bands:
        raise EEError("Image.clipToBoundsAndScale: a geometry is required by the stand-in.")
    if a.get("width") is not None or a.get("height") is not None or a.get("maxDimension") is not None:
        raise EEError("Image.clipToBoundsAndScale: the stand-in supports bounds and scale, not width / height / "
                      "maxDimension.")
    proj = img.bands[0].proj
    if a.get("scale") is not None:  # documented: "scales the clipped image to a particular ... scale"
        proj = proj.at_scale(float(a["scale"]))
    if g.proj is not None and g.proj == proj:  # pixel coordinates of the image's projection
        x0, y0, x1, y1 = g.shape.bounds
        grid = Grid(proj, int(np.floor(x0 + 1e-9)), int(np.floor(y0 + 1e-9)),
                    int(round(x1 - np.floor(x0 + 1e-9))), int(round(y1 - np.floor(y0 + 1e-9))))
    else:
        grid = grid_covering(proj, g.bounds_in(proj.crs), proj.crs)
    out = img.with_bands(list(img.bands))
    out.export_grid = grid
    return out


# --- images: reductions, neighbourhoods, arrays -----------------------------------------------------
@alg("Image.reduce")
def _img_reduce(ev, a):
    """Documented: a single-input reducer over the bands at each pixel; one band per output."""
    img, red = as_image(a["image"]), a["reducer"]
    bands = img.bands
    out = []
    for k, name in enumerate(red.outputs):
        def fn(grid: Grid, ctx: Ctx, k=k) -> Px:
            pxs = [b.compute(grid, ctx) for b in bands]
            x = np.stack([p.v.reshape(-1) for p in pxs])[..., None]
            w = np.stack([p.m.reshape(-1) for p in pxs])
            vals, ok = red.apply(x, w)[k]
            return _out_band(name, grid, vals, ok)

        out.append(Band(name, fn, bands[0].proj if bands else DEFAULT_PROJ))
    return img.with_bands(out)


def _kernel(k: Kernel | None, radius: float = 1.5, ktype: str = "circle") -> Kernel:
    if k is not None:
        return k
    r = int(np.floor(radius))
    return Kernel(r, "square" if ktype == "square" else "circle", fr=float(radius))


@alg("Kernel.square")
def _k_square(ev, a):
    if (a.get("units") or "pixels") != "pixels":
        raise EEError("Kernel.square: the stand-in supports units 'pixels'.")
    return Kernel(int(np.floor(float(a["radius"]))), "square", fr=float(a["radius"]))


alg("Kernel.circle")(lambda ev, a: Kernel(int(np.floor(float(a["radius"]))), "circle", fr=float(a["radius"])))


@alg("Image.reduceNeighborhood")
def _img_reduce_neighborhood(ev, a):
    img, red, k = as_image(a["image"]), a["reducer"], a["kernel"]
    skip = a.get("skipMasked", True)
    if red.n_inputs != 1 or len(red.outputs) != 1:
        raise EEError("Image.reduceNeighborhood: the stand-in supports single-input, single-output reducers.")
    return img.with_bands([neighbourhood(b, red, k, True if skip is None else bool(skip),
                                         f"{b.name}_{red.outputs[0]}") for b in img.bands])


def _focal(ev, a, kind: str):
    """``focal_*``: ``reduceNeighborhood`` of the band, names kept. [silent] whether masked
    centres are filled: the stand-in fills them (``skipMasked=false``), as focal filters are
    commonly used to fill holes."""
    img = as_image(a["image"])
    k = _kernel(a.get("kernel"), float(a.get("radius") or 1.5), a.get("kernelType") or "circle")
    if (a.get("units") or "pixels") != "pixels":
        raise EEError(f"Image.focal_{kind}: the stand-in supports units 'pixels'.")
    out = img
    for _ in range(int(a.get("iterations") or 1)):
        out = out.with_bands([neighbourhood(b, R.make(kind), k, False, b.name) for b in out.bands])
    return out


for _kind in ("median", "mean", "max", "min"):
    ALGORITHMS[f"Image.focal_{_kind}"] = lambda ev, a, _k=_kind: _focal(ev, a, _k)


@alg("Image.toArray")
def _img_to_array(ev, a):
    """Documented: concatenates the bands into one array per pixel; masked if any band is."""
    img = as_image(a["image"])
    axis = int(a.get("axis") or 0)
    bands = img.bands
    dims = bands[0].array_dims if bands else 0

    def fn(grid: Grid, ctx: Ctx) -> Px:
        pxs = [b.compute(grid, ctx) for b in bands]
        m = np.min([p.m for p in pxs], axis=0)
        if dims == 0:
            v = np.stack([p.v for p in pxs], axis=-1)
        elif axis == dims:
            v = np.stack([p.v for p in pxs], axis=-1)
        else:
            v = np.concatenate([p.v for p in pxs], axis=2 + axis)
        return Px(v, m, pxs[0].n if dims and axis != 0 else None)

    return img.with_bands([Band("array", fn, bands[0].proj if bands else DEFAULT_PROJ,
                                array_dims=max(dims, 1) + (1 if dims and axis == dims else 0))])


def _image_arg(x: Any, default: float | None) -> Image | None:
    if x is None:
        return None if default is None else const_image(default)
    return as_image(x)


def _pixelwise(img: Image, grid: Grid, ctx: Ctx) -> np.ndarray:
    return img.bands[0].compute(grid, ctx).v


@alg("Image.arraySlice")
def _img_array_slice(ev, a):
    img = as_image(a["input"])
    axis = int(a.get("axis") or 0)
    start, end = _image_arg(a.get("start"), 0), _image_arg(a.get("end"), None)
    step = int(a.get("step") or 1)
    if axis != 0 or step != 1:
        raise EEError("Image.arraySlice: the stand-in supports axis 0 with step 1.")
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            n = p.n if p.n is not None else np.full(grid.shape, p.v.shape[2])
            s = _pixelwise(start, grid, ctx).astype(np.int64)
            e = _pixelwise(end, grid, ctx).astype(np.int64) if end is not None else n
            s = np.clip(np.where(s < 0, n + s, s), 0, n)
            e = np.clip(np.where(e < 0, n + e, e), 0, n)
            length = np.maximum(e - s, 0)
            idx = np.clip(s[..., None] + np.arange(p.v.shape[2]), 0, max(p.v.shape[2] - 1, 0))
            sl = idx.reshape(idx.shape + (1,) * (p.v.ndim - 3))
            v = np.take_along_axis(p.v, np.broadcast_to(sl, p.v.shape), axis=2) if p.v.shape[2] else p.v
            return Px(v, p.m, length)

        out.append(Band(b.name, fn, b.proj, array_dims=b.array_dims))
    return img.with_bands(out)


@alg("Image.arrayLength")
def _img_array_length(ev, a):
    img = as_image(a["input"])
    axis = int(a["axis"])
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            if axis == 0 and p.n is not None:
                return Px(p.n.astype(np.float64), p.m)
            return Px(np.full(grid.shape, float(p.v.shape[2 + axis])), p.m)

        out.append(Band(b.name, fn, b.proj, array_dims=0))
    return img.with_bands(out)


@alg("Image.arrayProject")
def _img_array_project(ev, a):
    img = as_image(a["input"])
    axes = [int(x) for x in a["axes"]]
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            v = p.v
            drop = [ax for ax in range(v.ndim - 2) if ax not in axes]
            for ax in sorted(drop, reverse=True):
                if v.shape[2 + ax] > 1:
                    raise EEError(f"Image.arrayProject: Projected-out axis {ax} must be at most length 1, "
                                  f"got {v.shape[2 + ax]}.")
                v = v.reshape(v.shape[: 2 + ax] + v.shape[3 + ax:]) if v.shape[2 + ax] == 1 else \
                    np.zeros(v.shape[: 2 + ax] + v.shape[3 + ax:])
            return Px(v, p.m, p.n if 0 in axes else None)

        out.append(Band(b.name, fn, b.proj, array_dims=len(axes)))
    return img.with_bands(out)


@alg("Image.arrayReduce")
def _img_array_reduce(ev, a):
    """Reduces along axis 0 of each pixel's array (elements beyond a pixel's length excluded);
    the output has length 1 on that axis (documented)."""
    img, red = as_image(a["input"]), a["reducer"]
    axes = [int(x) for x in a["axes"]]
    if axes != [0] or red.n_inputs != 1 or len(red.outputs) != 1:
        raise EEError("Image.arrayReduce: the stand-in supports one single-output reducer over axis 0.")
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            if p.v.ndim != 3:
                raise EEError("Image.arrayReduce: the stand-in supports 1-D arrays.")
            L = p.v.shape[2]
            n = p.n if p.n is not None else np.full(grid.shape, L)
            x = np.moveaxis(p.v.reshape(-1, L), 1, 0)[..., None]
            w = (np.arange(L)[:, None] < n.reshape(-1)[None, :]).astype(np.float64)
            w = w * (p.m.reshape(-1) > 0)[None, :]
            vals, ok = red.apply(x, w)[0]
            v = np.where(ok, vals, 0.0).reshape(grid.shape + (1,))
            # [silent] an empty array reduces to a masked pixel
            return Px(v, np.where(ok.reshape(grid.shape), p.m, 0.0), np.ones(grid.shape, np.int64))

        out.append(Band(b.name, fn, b.proj, array_dims=1))
    return img.with_bands(out)


@alg("Image.arrayGet")
def _img_array_get(ev, a):
    """The element at ``position`` (one scalar band per axis). [silent] a position outside the
    pixel's array (including a negative one: negative indices are documented for ``List.get``,
    not here) gives a masked pixel."""
    img, pos = as_image(a["image"]), as_image(a["position"])
    out = []
    for b in img.bands:
        def fn(grid: Grid, ctx: Ctx, b=b) -> Px:
            p = b.compute(grid, ctx)
            idx = [pb.compute(grid, ctx) for pb in pos.bands]
            if len(idx) != p.v.ndim - 2:
                raise EEError(f"Image.arrayGet: Position has {len(idx)} dimensions, array has {p.v.ndim - 2}.")
            ok = p.m > 0
            sel = []
            for ax, q in enumerate(idx):
                i = q.v.astype(np.int64)
                size = p.n if (ax == 0 and p.n is not None) else np.full(grid.shape, p.v.shape[2 + ax])
                ok = ok & (q.m > 0) & (i >= 0) & (i < size)
                sel.append(np.clip(i, 0, max(p.v.shape[2 + ax] - 1, 0)))
            if any(s == 0 for s in p.v.shape[2:]):
                return Px(np.zeros(grid.shape), np.zeros(grid.shape))
            hh, ww = np.indices(grid.shape)
            v = p.v[(hh, ww, *sel)]
            return Px(np.where(ok, v, 0.0), ok.astype(np.float64))

        out.append(Band(b.name, fn, b.proj, array_dims=0))
    return img.with_bands(out)


@alg("Image.arrayFlatten")
def _img_array_flatten(ev, a):
    img = as_image(a["image"])
    labels = a["coordinateLabels"]
    sep = a.get("separator") or "_"
    if len(img.bands) != 1:
        raise EEError("Image.arrayFlatten: the stand-in flattens single-band images.")
    b = img.bands[0]
    combos = [[str(x)] for x in labels[0]]
    for axis_labels in labels[1:]:
        combos = [c + [str(x)] for c in combos for x in axis_labels]
    shape = tuple(len(ls) for ls in labels)
    out = []
    for flat, names in enumerate(combos):
        pos = np.unravel_index(flat, shape)

        def fn(grid: Grid, ctx: Ctx, pos=pos) -> Px:
            p = b.compute(grid, ctx)
            if tuple(p.v.shape[2:]) != shape:
                raise EEError(f"Image.arrayFlatten: Incorrect number of labels: array shape {list(p.v.shape[2:])}, "
                              f"labels {list(shape)}.")
            ok = p.m > 0
            if p.n is not None:
                ok = ok & (p.n == shape[0])
            return Px(np.where(ok, p.v[(slice(None), slice(None), *pos)], 0.0), ok.astype(np.float64))

        out.append(Band(sep.join(names), fn, b.proj))
    return img.with_bands(out)


@alg("Image.matrixMultiply")
def _img_matrix_multiply(ev, a):
    def mm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.einsum("...ij,...jk->...ik", x, y)

    i1, i2 = as_image(a["image1"]), as_image(a["image2"])
    b1, b2 = i1.bands[0], i2.bands[0]

    def fn(grid: Grid, ctx: Ctx) -> Px:
        p, q = b1.compute(grid, ctx), b2.compute(grid, ctx)
        if p.v.ndim != 4 or q.v.ndim != 4 or p.v.shape[3] != q.v.shape[2]:
            raise EEError(f"Image.matrixMultiply: Incompatible shapes {list(p.v.shape[2:])} and {list(q.v.shape[2:])}.")
        return Px(mm(p.v, q.v), np.minimum(p.m, q.m))

    return i1.with_bands([Band(b1.name, fn, b1.proj, array_dims=2)])


# --- reducers -----------------------------------------------------------------------------------------
for _k in ("count", "sum", "mean", "min", "max", "median", "centeredCovariance"):
    ALGORITHMS[f"Reducer.{_k}"] = lambda ev, a, _k=_k: R.make(_k)


alg("Reducer.percentile")(lambda ev, a: R.make("percentile", percentiles=a["percentiles"],
                                               outputNames=a.get("outputNames")))
alg("Reducer.intervalMean")(lambda ev, a: R.make("intervalMean", minPercentile=a["minPercentile"],
                                                 maxPercentile=a["maxPercentile"]))
alg("Reducer.linearRegression")(lambda ev, a: R.make("linearRegression", numX=a["numX"], numY=a.get("numY")))
alg("Reducer.robustLinearRegression")(lambda ev, a: R.make("robustLinearRegression", numX=a["numX"],
                                                           numY=a.get("numY"), beta=a.get("beta")))


@alg("Reducer.combine")
def _r_combine(ev, a):
    try:
        return R.combine(a["reducer1"], a["reducer2"], a.get("outputPrefix") or "", bool(a.get("sharedInputs")))
    except ValueError as e:
        raise EEError(str(e)) from e


@alg("Reducer.setOutputs")
def _r_set_outputs(ev, a):
    try:
        return a["reducer"].with_outputs(list(a["outputs"]))
    except ValueError as e:
        raise EEError(str(e)) from e


@alg("Reducer.unweighted")
def _r_unweighted(ev, a):
    r = a["reducer"]
    from dataclasses import replace

    return replace(r, weighted=False, parts=tuple(replace(p, weighted=False) for p in r.parts))


# --- region reductions -------------------------------------------------------------------------------
def request_grid(img: Image, geometry: Geom | None, crs: Any, scale: Any, crs_transform: Any) -> tuple[Grid, Geom]:
    proj = _proj_arg(crs) or (img.bands[0].proj if img.bands else DEFAULT_PROJ)
    if crs_transform is not None:
        proj = Proj(proj.crs, tuple(float(v) for v in crs_transform))
    elif scale is not None:
        proj = proj.at_scale(float(scale))
    if geometry is None and img.footprint is not None:  # documented default: the image's footprint
        geometry = Geom(img.footprint, Proj("EPSG:4326"))
    if geometry is None:
        raise EEError("Image.reduceRegion: Provide 'geometry' parameter when aggregating over an unbounded image.")
    return grid_covering(proj, geometry.bounds_in(proj.crs), proj.crs), geometry


def _jsonable(v: np.ndarray) -> Any:
    if np.ndim(v) == 0:
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 2 ** 53 else f
    return np.asarray(v, dtype=float).tolist()


@alg("Image.reduceRegion")
def _img_reduce_region(ev, a):
    """Documented: a reducer with as many inputs as bands, or one input repeated per band;
    returns the outputs by name (``<band>`` for a single output, ``<band>_<output>`` for
    several). Pixels enter when their centre is in the geometry ([silent]: weighted reducers
    in Earth Engine also admit partially covered pixels, with a fractional weight)."""
    img, red = as_image(a["image"]), a["reducer"]
    grid, geom = request_grid(img, a.get("geometry"), a.get("crs"), a.get("scale"), a.get("crsTransform"))
    ctx: Ctx = ev.ctx
    inside = geom.contains_centres(grid)
    n_px = int(inside.sum())
    max_px = float(a.get("maxPixels") or 1e7)
    if n_px > max_px:
        raise EEError(f"Image.reduceRegion: Too many pixels in the region. Found {n_px}, but maxPixels allows only "
                      f"{int(max_px)}. Ensure that you are not aggregating at a higher resolution than you intended; "
                      "that is a frequent cause of this error. If not, then you may set the 'maxPixels' argument to a "
                      "limit suitable for your computation; set 'bestEffort' to true to aggregate at whatever scale "
                      "results in 'maxPixels' total pixels; or both.")
    flat = inside.reshape(-1)
    result: dict[str, Any] = {}

    def sample(b: Band) -> tuple[np.ndarray, np.ndarray]:
        p = b.compute(grid, ctx)
        v = p.v.reshape((grid.size,) + p.v.shape[2:])[flat]
        w = p.m.reshape(-1)[flat]
        return v, w

    if red.n_inputs == 1:
        for b in img.bands:
            v, w = sample(b)
            x = v[:, None, :] if v.ndim == 2 else v[:, None, None]
            outs = red.apply(x, w[:, None], region=True)
            for name, (vals, ok) in zip(red.outputs, outs):
                key = b.name if len(red.outputs) == 1 else f"{b.name}_{name}"
                result[key] = _jsonable(vals[0]) if ok[0] else None
    else:
        if len(img.bands) != red.n_inputs:
            raise EEError(f"Image.reduceRegion: Need {red.n_inputs} bands for the reducer inputs, got {len(img.bands)}.")
        vs, ws = zip(*[sample(b) for b in img.bands])
        x = np.stack(vs, axis=-1)[:, None, :]
        w = np.min(np.stack(ws), axis=0)[:, None]
        for name, (vals, ok) in zip(red.outputs, red.apply(x, w, region=True)):
            result[name] = _jsonable(vals[0]) if ok[0] else None
    return dict(sorted(result.items()))


def evaluate(expr: dict[str, Any], ctx: Ctx, assets: dict[str, Any] | None = None) -> Any:
    """Evaluate ``expr``; raises :class:`EEError` (and ``ComputeLimit``) like the service."""
    ev = Evaluator(expr, assets)
    ev.ctx = ctx
    try:
        return ev.run()
    except ComputeLimit:
        raise
    except NotImplementedError as e:
        raise EEError(f"The stand-in does not implement the algorithm {e}.") from None


def to_json(value: Any) -> Any:
    """A computed value as ``value:compute`` returns it."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Image):
        return {"type": "Image", "bands": [{"id": b.name} for b in value.bands], "properties": value.props}
    if isinstance(value, Proj):
        return {"type": "Projection", "crs": value.crs, "transform": list(value.transform)}
    if isinstance(value, Coll):
        return {"type": "FeatureCollection", "features": [to_json(x) for x in value.items()]}
    if isinstance(value, Feature):
        return {"type": "Feature", "geometry": None if value.geometry is None else
                shapely.geometry.mapping(value.geometry.lonlat()), "properties": to_json(value.props)}
    if isinstance(value, Geom):
        return shapely.geometry.mapping(value.lonlat())
    return value


@alg("GeometryConstructors.Point")
def _point(ev, a):
    x, y = np.asarray(a["coordinates"], dtype=float).ravel()[:2]
    return Geom(shapely.Point(x, y), _proj_arg(a.get("crs")))


@alg("List.distinct")
def _list_distinct(ev, a):
    out: list[Any] = []
    for x in a["list"]:
        if x not in out:
            out.append(x)
    return out


@alg("Collection.first")
def _c_first(ev, a):
    items = a["collection"].items()
    if not items:
        raise EEError("Collection.first: Error in map(ID=0): Image.load: Collection is empty.")
    return items[0]
