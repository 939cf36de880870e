"""Running requests on the evaluator: ``value:compute``, ``image:computePixels`` and exports.

Exports are computed by a worker thread while their task runs (a task cannot end before its
computation has); what they produce lands where Earth Engine would put it: image assets keep
their pixels, grid and pyramiding policies (and can be read back with ``ee.Image(id)``); Cloud
Storage and Drive exports are written as real files under the stand-in's ``data_dir``
(``gcs/<bucket>/<prefix>.tif|.csv``, ``drive/<folder>/<prefix>.tif|.csv``): Cloud-Optimised
GeoTIFFs (float32, masked pixels written as 0, or as ``geoTiffOptions.noData`` when given, as
Earth Engine does) and CSV tables (``system:index``, the properties, ``.geo``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from .evaluate import Coll, EEError, Feature, evaluate, to_json
from .raster import ComputeLimit, Cost, Ctx, Grid, Image, Proj


@dataclass
class Limits:
    """The cost model's thresholds (configurable; see ``raster.Cost``)."""

    interactive_pixel_ops: float = 2e9
    batch_pixel_ops: float = 2e11
    memory_bytes: float = 2 * 2 ** 30


def _source(seed: int):
    from engine.sources.synthetic import SyntheticSource

    return SyntheticSource(seed=seed)


def compute_value(expr: dict[str, Any], assets: dict[str, Any], limits: Limits, seed: int) -> tuple[Any, Cost]:
    """The value of ``expr`` (JSON) and what computing it cost."""
    ctx = Ctx(Cost(limits.interactive_pixel_ops, limits.memory_bytes), _source(seed))
    return to_json(evaluate(expr, ctx, assets)), ctx.cost


def compute_image(expr: dict[str, Any], assets: dict[str, Any], cost: Cost, seed: int,
                  grid: Grid | None = None) -> tuple[Image, Grid, dict[str, tuple[np.ndarray, np.ndarray]]]:
    ctx = Ctx(cost, _source(seed))
    img = evaluate(expr, ctx, assets)
    if not isinstance(img, Image):
        raise EEError("Export: the expression is not an image.")
    grid = grid or img.export_grid
    if grid is None:
        raise EEError("Export: the image has no export region (clipToBoundsAndScale).")
    if not img.bands:
        raise EEError("Export: the image has no bands.")
    pixels = {}
    for b in img.bands:
        px = b.compute(grid, ctx)
        if px.is_array:
            raise EEError(f"Exported bands must be scalar; band '{b.name}' has array pixels. Use arrayFlatten().")
        pixels[b.name] = (px.v.astype(np.float32), px.m.astype(np.float32))
    return img, grid, pixels


def _atomic_write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def file_path(data_dir: str, body: dict[str, Any], ext: str) -> str | None:
    fopts = body.get("fileExportOptions") or {}
    gcs = fopts.get("gcsDestination") or fopts.get("cloudStorageDestination")
    if gcs:
        return os.path.join(data_dir, "gcs", gcs.get("bucket", ""), gcs.get("filenamePrefix", "") + ext)
    drive = fopts.get("driveDestination")
    if drive is not None:
        return os.path.join(data_dir, "drive", drive.get("folder", "") or "", drive.get("filenamePrefix", "") + ext)
    return None


def write_geotiff(path: str, grid: Grid, pixels: dict[str, tuple[np.ndarray, np.ndarray]], nodata: float | None) -> None:
    import rasterio
    from rasterio.transform import Affine

    names = list(pixels)
    stack = np.stack([np.where(pixels[n][1] > 0, pixels[n][0], 0.0 if nodata is None else nodata) for n in names])
    a, b, c, d, e, f = grid.affine()
    prof = {"driver": "COG", "width": grid.w, "height": grid.h, "count": len(names), "dtype": "float32",
            "crs": grid.proj.crs, "transform": Affine(a, b, c, d, e, f), "compress": "deflate"}
    if nodata is not None:
        prof["nodata"] = nodata
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tif")
    os.close(fd)
    with rasterio.open(tmp, "w", **prof) as dst:
        dst.write(stack.astype(np.float32))
        dst.descriptions = tuple(names)
    os.replace(tmp, path)


def table_rows(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, Coll):
        raise EEError("Export: the expression is not a FeatureCollection.")
    rows = []
    for i, x in enumerate(value.items()):
        props = x.props if isinstance(x, (Feature, Image)) else dict(x)
        geo = to_json(x).get("geometry") if isinstance(x, Feature) else None
        rows.append({"system:index": str(props.get("system:index", i)),
                     **{k: to_json(v) for k, v in props.items() if k != "system:index"},
                     ".geo": json.dumps(geo) if geo else ""})
    return rows


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return buf.getvalue().encode()


def run_export(kind: str, body: dict[str, Any], assets: dict[str, Any], limits: Limits, seed: int,
               data_dir: str | None) -> dict[str, Any]:
    """Compute one export; returns what the finished task stores (``standin`` asset payload)."""
    cost = Cost(limits.batch_pixel_ops, limits.memory_bytes)
    try:
        if kind == "EXPORT_IMAGE":
            img, grid, pixels = compute_image(body["expression"], assets, cost, seed)
            opts = (body.get("assetExportOptions") or {})
            default = opts.get("pyramidingPolicy") or "MEAN"
            overrides = opts.get("pyramidingPolicyOverrides") or {}
            out = {"grid": grid, "pixels": pixels, "pyramiding": {n: overrides.get(n, default) for n in pixels},
                   "pixel_ops": cost.pixel_ops, "held_bytes": cost.held_bytes}
            path = file_path(data_dir, body, ".tif") if data_dir else None
            if path:
                nd = ((body.get("fileExportOptions") or {}).get("geoTiffOptions") or {}).get("noData")
                nodata = None if nd is None else float(nd.get("floatValue", nd) if isinstance(nd, dict) else nd)
                write_geotiff(path, grid, pixels, nodata)
                out["file"] = path
            return out
        ctx = Ctx(cost, _source(seed))
        rows = table_rows(evaluate(body["expression"], ctx, assets))
        out = {"rows": rows, "pixel_ops": cost.pixel_ops, "held_bytes": cost.held_bytes}
        path = file_path(data_dir, body, ".csv") if data_dir else None
        if path:
            _atomic_write(path, csv_bytes(rows))
            out["file"] = path
        return out
    except ComputeLimit as e:
        raise EEError(str(e)) from None


def grid_from_request(g: dict[str, Any]) -> Grid:
    """The ``grid`` of a ``computePixels`` request (PixelGrid)."""
    t = g.get("affineTransform") or {}
    dims = g.get("dimensions") or {}
    proj = Proj(g.get("crsCode") or "EPSG:4326", (float(t.get("scaleX", 1)), float(t.get("shearX", 0)),
                                                  float(t.get("translateX", 0)), float(t.get("shearY", 0)),
                                                  float(t.get("scaleY", -1)), float(t.get("translateY", 0))))
    return Grid(proj, 0, 0, int(dims.get("width", 0)), int(dims.get("height", 0)))


def compute_pixels(body: dict[str, Any], assets: dict[str, Any], limits: Limits, seed: int) -> tuple[bytes, Cost]:
    """``image:computePixels`` as NPY (a structured array, one field per band; masked = 0), and
    what computing it cost."""
    fmt = body.get("fileFormat") or "NPY"
    if fmt != "NPY":
        raise EEError(f"computePixels: the stand-in answers fileFormat NPY only, not {fmt}.")
    grid = grid_from_request(body.get("grid") or {})
    if grid.size > 32768 * 32768 or grid.w > 32768 or grid.h > 32768:
        raise EEError("Total request size must be less than or equal to 50331648 bytes.")
    cost = Cost(limits.interactive_pixel_ops, limits.memory_bytes)
    try:
        _, _, pixels = compute_image(body["expression"], assets, cost, seed, grid)
    except ComputeLimit as e:
        raise EEError(str(e)) from None
    names = body.get("bandIds") or list(pixels)
    if len(names) * grid.size * 4 > 50331648:
        raise EEError("Total request size must be less than or equal to 50331648 bytes.")
    arr = np.zeros(grid.shape, dtype=[(n, "<f4") for n in names])
    for n in names:
        v, m = pixels[n]
        arr[n] = np.where(m > 0, v, 0.0)
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue(), cost
