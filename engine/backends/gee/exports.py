"""Export request bodies (``image:export`` / ``table:export``) for asset, Cloud Storage or Drive.

The image expression is wrapped exactly as ``ee.batch.Export.image`` does it (reproject to the
grid's ``crs``/``crsTransform``, clip to bounds with ``dimensions``), so every export lands on the
engine's fixed pixel grid, pixel-aligned with every other tile.
"""
from __future__ import annotations

from typing import Any

import ee

from engine.backends.gee import expressions as X
from tiling.grid import Window

ENGINE_TAG = "sar-infill"
NODATA = -9999.0  # GeoTIFF no-data value of file exports (every band is float32)
MODEL_MARGIN = 1  # model pixels beyond the tile core: the final 3 x 3 focal median reads them


def model_window(window: Window) -> Window:
    """A tile's export window (the plan's compute window) grown by :data:`MODEL_MARGIN` pixels: [fix] a
    model of the core only leaves the final focal median a masked ring at core edges."""
    return window.grown(MODEL_MARGIN)


def _grid_expression(image: ee.Image, window: tuple[int, int, int, int], spec: X.Spec) -> Any:
    col, row, w, h = window
    res = spec.resolution
    task = ee.batch.Export.image.toCloudStorage(
        image=image, description="x", bucket="x", fileNamePrefix="x", crs=spec.crs,
        crsTransform=[res, 0, col * res, 0, -res, -row * res], dimensions=f"{w}x{h}", maxPixels=X.MAX_PIXELS)
    return task.config["expression"]


def destination_options(kind: str, destination: dict[str, Any], overwrite: bool,
                        pyramiding: dict[str, str] | None = None) -> dict[str, Any]:
    """``pyramiding``: per-band policy overrides of an image asset (e.g. MODE for mask bands; MEAN otherwise)."""
    if "asset" in destination:
        opts: dict[str, Any] = {"earthEngineDestination": {"name": destination["asset"], "overwrite": overwrite}}
        if kind == "image" and pyramiding:
            opts["pyramidingPolicy"] = "MEAN"
            opts["pyramidingPolicyOverrides"] = dict(pyramiding)
        return {"assetExportOptions": opts}
    file_format = "GEO_TIFF" if kind == "image" else "CSV"
    opts = {"fileFormat": file_format}
    if "gcs" in destination:
        bucket, prefix = destination["gcs"]
        opts["cloudStorageDestination"] = {"bucket": bucket, "filenamePrefix": prefix}
    else:
        folder, name = destination["drive"]
        opts["driveDestination"] = {"folder": folder, "filenamePrefix": name}
    if kind == "image":
        # [fix] without a no-data value Earth Engine writes masked pixels as 0 (a valid NDVI, and
        # "clear" in the mask band)
        opts["geoTiffOptions"] = {"cloudOptimized": True, "noData": {"floatValue": NODATA}}
    return {"fileExportOptions": opts}


def image_body(image: ee.Image, window: tuple[int, int, int, int], spec: X.Spec, description: str,
               destination: dict[str, Any], overwrite: bool, properties: dict[str, Any],
               pyramiding: dict[str, str] | None = None) -> dict[str, Any]:
    expr = _grid_expression(ee.Image(image).set(properties), window, spec)
    body = {"expression": ee.serializer.encode(expr, for_cloud_api=True), "description": description,
            "maxPixels": {"value": str(int(X.MAX_PIXELS))}}
    body.update(destination_options("image", destination, overwrite, pyramiding))
    return body


def table_body(table: ee.FeatureCollection, description: str, destination: dict[str, Any], overwrite: bool,
               properties: dict[str, Any]) -> dict[str, Any]:
    body = {"expression": ee.serializer.encode(ee.FeatureCollection(table).set(properties), for_cloud_api=True),
            "description": description}
    body.update(destination_options("table", destination, overwrite))
    return body


def uri(destination: dict[str, Any], kind: str) -> dict[str, Any]:
    """What the manifest records for a destination."""
    if "asset" in destination:
        return {"asset": destination["asset"]}
    ext = ".tif" if kind == "image" else ".csv"
    if "gcs" in destination:
        bucket, prefix = destination["gcs"]
        return {"uri": f"gs://{bucket}/{prefix}{ext}"}
    folder, name = destination["drive"]
    return {"uri": f"drive://{folder}/{name}{ext}"}
