"""What the stand-in reads out of an export expression: pixel count, properties, band names.

All of it is heuristic static analysis of the expression graph (nothing is computed):

* :func:`estimate_pixels` walks down from the root through property setters and
  ``Image.clip`` / ``Image.clipToBoundsAndScale`` / ``Image.reproject`` to find the export
  region and pixel size. ``ee.batch.Export.image`` folds ``region``/``scale``/``crs``/
  ``crsTransform``/``dimensions`` into exactly these calls. Region coordinates are taken as
  degrees (converted with 111,320 m per degree x cos(latitude)) unless the geometry carries a
  projected ``Projection`` (metres) or ``Image.projection`` (pixel units, from ``dimensions``).
  Returns ``None`` when it cannot tell; the memory-limit fault then never fires.
* :func:`image_properties` collects constant values set with ``Element.set`` /
  ``Element.setMulti`` (``image.set(...)``) on the exported image; the outermost set wins.
* :func:`band_names` infers output band names for common shapes (select/rename/constant/
  addBands/normalizedDifference/arithmetic), or ``None``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .expressions import Graph

#: Calls that keep the image's pixels' identity/properties; the walk continues into ``arg``.
PASS_THROUGH = {
    "Element.set": "object",
    "Element.setMulti": "object",
    "Image.set": "object",
    "Image.clip": "input",
    "Image.clipToBoundsAndScale": "input",
    "Image.clipToCollection": "input",
    "Image.reproject": "image",
    "Image.setDefaultProjection": "image",
    "Image.updateMask": "image",
    "Image.mask": "image",
    "Image.unmask": "input",
    "Image.cast": "image",
    "Image.toFloat": "value",
    "Image.toDouble": "value",
    "Image.toInt": "value",
    "Image.toInt16": "value",
    "Image.toInt32": "value",
    "Image.toUint8": "value",
    "Image.toUint16": "value",
    "Image.int": "value",
    "Image.float": "value",
    "Image.double": "value",
    "Image.round": "value",
    "Image.resample": "image",
    "Image.selfMask": "image",
}
# Calls that keep properties but change band names (band_names handles them).
PROPERTY_KEEPERS = dict(PASS_THROUGH, **{"Image.select": "input", "Image.rename": "input"})

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0


def _flatten_coords(c: Any) -> list[tuple[float, float]]:
    """All (x, y) points of a GeoJSON-style coordinate nest or a flat ``[x1, y1, x2, y2...]``."""
    if isinstance(c, (list, tuple)) and c and all(isinstance(v, (int, float)) for v in c):
        return [(float(c[i]), float(c[i + 1])) for i in range(0, len(c) - 1, 2)]
    out: list[tuple[float, float]] = []
    if isinstance(c, (list, tuple)):
        for v in c:
            out.extend(_flatten_coords(v))
    return out


def _geometry_bbox(g: Graph, geom: Any) -> tuple[tuple[float, float, float, float], str] | None:
    """((xmin, ymin, xmax, ymax), units) with units 'deg', 'm' or 'px'."""
    geom = g.resolve(geom)
    fn = g.function_name(geom)
    if fn is None:
        # A GeoJSON constant (ee.Geometry passed as a dict) or unknown.
        const = g.constant(geom)
        if isinstance(const, dict) and "coordinates" in const:
            pts = _flatten_coords(const["coordinates"])
            if pts:
                xs, ys = zip(*pts)
                return (min(xs), min(ys), max(xs), max(ys)), "deg"
        return None
    if fn == "Feature.geometry" or fn == "Collection.geometry" or fn == "Geometry.bounds":
        inner = g.arg(geom, "feature") or g.arg(geom, "collection") or g.arg(geom, "geometry")
        return _geometry_bbox(g, inner) if inner is not None else None
    if not fn.startswith("GeometryConstructors."):
        return None
    coords = g.constant(g.arg(geom, "coordinates"))
    if coords is None:
        return None
    pts = _flatten_coords(coords)
    if not pts:
        return None
    xs, ys = zip(*pts)
    units = "deg"
    crs = g.arg(geom, "crs")
    if crs is not None:
        cfn = g.function_name(crs)
        code = None
        if cfn == "Projection":
            code = g.constant(g.arg(crs, "crs"))
        elif cfn == "Image.projection":
            units = "px"
        else:
            code = g.constant(crs)
        if isinstance(code, str) and code.upper() not in ("EPSG:4326", "WGS84", "CRS:84"):
            units = "m"
    return (min(xs), min(ys), max(xs), max(ys)), units


def export_region_and_scale(g: Graph) -> dict[str, Any]:
    """Find region geometry, pixel size and explicit dimensions on the root image chain."""
    found: dict[str, Any] = {"geometry": None, "scale": None, "width": None, "height": None}
    node = g.root()
    for _ in range(200):
        fn = g.function_name(node)
        if fn is None or fn not in PROPERTY_KEEPERS:
            break
        if fn == "Image.clipToBoundsAndScale":
            if found["geometry"] is None and g.arg(node, "geometry") is not None:
                found["geometry"] = g.arg(node, "geometry")
            w, h = g.constant(g.arg(node, "width")), g.constant(g.arg(node, "height"))
            if w and h and found["width"] is None:
                found["width"], found["height"] = w, h
            s = g.constant(g.arg(node, "scale"))
            if s and found["scale"] is None:
                found["scale"] = float(s)
        elif fn in ("Image.clip",):
            if found["geometry"] is None:
                found["geometry"] = g.arg(node, "geometry")
        elif fn == "Image.reproject":
            s = g.constant(g.arg(node, "scale"))
            t = g.constant(g.arg(node, "crsTransform"))
            if found["scale"] is None:
                if s:
                    found["scale"] = float(s)
                elif isinstance(t, list) and len(t) >= 1 and t[0]:
                    found["scale"] = abs(float(t[0]))
        node = g.arg(node, PROPERTY_KEEPERS[fn])
    return found


def estimate_pixels(expr: dict[str, Any]) -> float | None:
    g = Graph(expr)
    info = export_region_and_scale(g)
    if info["width"] and info["height"]:
        return float(info["width"]) * float(info["height"])
    if info["geometry"] is None:
        return None
    bb = _geometry_bbox(g, info["geometry"])
    if bb is None:
        return None
    (x0, y0, x1, y1), units = bb
    if units == "px":
        return max(x1 - x0, 0) * max(y1 - y0, 0)
    scale = info["scale"]
    if not scale:
        return None
    if units == "deg":
        lat = math.radians((y0 + y1) / 2)
        w = (x1 - x0) * M_PER_DEG_LON * max(math.cos(lat), 1e-6)
        h = (y1 - y0) * M_PER_DEG_LAT
    else:
        w, h = x1 - x0, y1 - y0
    return max(w, 0) / scale * max(h, 0) / scale


def image_properties(expr: dict[str, Any]) -> dict[str, Any]:
    """Constant properties set on the exported image (outermost ``set`` wins)."""
    g = Graph(expr)
    props: dict[str, Any] = {}
    node = g.root()
    missing = object()
    for _ in range(500):
        fn = g.function_name(node)
        if fn is None or fn not in PROPERTY_KEEPERS:
            break
        if fn in ("Element.set", "Image.set"):
            key = g.constant(g.arg(node, "key"))
            val = g.constant(g.arg(node, "value"), missing)
            if isinstance(key, str) and val is not missing:
                props.setdefault(key, val)
        elif fn == "Element.setMulti":
            d = g.constant(g.arg(node, "properties"), missing)
            if isinstance(d, dict):
                for k, v in d.items():
                    props.setdefault(k, v)
        node = g.arg(node, PROPERTY_KEEPERS[fn])
    return props


def band_names(g: Graph, node: Any, _depth: int = 0) -> list[str] | None:
    """Output band names of an image node for common shapes, else None."""
    if _depth > 200:
        return None
    node = g.resolve(node)
    fn = g.function_name(node)
    if fn is None:
        return None
    if fn in PASS_THROUGH:
        return band_names(g, g.arg(node, PASS_THROUGH[fn]), _depth + 1)
    if fn == "Image.select":
        new = g.constant(g.arg(node, "newNames"))
        if isinstance(new, list) and new:
            return [str(n) for n in new]
        sel = g.constant(g.arg(node, "bandSelectors"))
        if isinstance(sel, list) and all(isinstance(s, str) for s in sel):
            if all(not any(ch in s for ch in ".*[]()?+|^$\\") for s in sel):
                return list(sel)
            base = band_names(g, g.arg(node, "input"), _depth + 1)
            if base is not None:
                return [b for b in base if any(re.fullmatch(s, b) for s in sel)]
        if isinstance(sel, list) and all(isinstance(s, int) for s in sel):
            base = band_names(g, g.arg(node, "input"), _depth + 1)
            if base is not None:
                return [base[i] for i in sel if 0 <= i < len(base)]
        return None
    if fn == "Image.rename":
        names = g.constant(g.arg(node, "names"))
        return [str(n) for n in names] if isinstance(names, list) else None
    if fn == "Image.constant":
        v = g.constant(g.arg(node, "value"))
        if isinstance(v, list):
            return ["constant"] if len(v) == 1 else [f"constant_{i}" for i in range(len(v))]
        return ["constant"]
    if fn == "Image.addBands":
        a = band_names(g, g.arg(node, "dstImg"), _depth + 1)
        b = band_names(g, g.arg(node, "srcImg"), _depth + 1)
        if a is None or b is None:
            return None
        names = g.constant(g.arg(node, "names"))
        if isinstance(names, list):
            b = [x for x in b if x in names]
        return a + [x for x in b if x not in a] if not g.constant(g.arg(node, "overwrite")) else (
            [x for x in a if x not in b] + b)
    if fn == "Image.normalizedDifference":
        return ["nd"]
    if fn in ("Image.add", "Image.subtract", "Image.multiply", "Image.divide", "Image.pow",
              "Image.max", "Image.min", "Image.where", "Image.abs", "Image.log10", "Image.exp",
              "Image.focalMedian", "Image.focalMean", "Image.focal_median", "Image.focal_mean"):
        first = g.arg(node, "image1") or g.arg(node, "image") or g.arg(node, "input") \
            or g.arg(node, "value")
        return band_names(g, first, _depth + 1)
    if fn == "Image.reduceNeighborhood":
        return band_names(g, g.arg(node, "image"), _depth + 1)
    return None
