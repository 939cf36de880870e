"""``download RUN_DIR``: a gee run's exported products brought home into the same ``cube.zarr`` as a
local run writes, so ``report`` and any xarray analysis work on gee runs too.

Products exported to assets are read with ``image:computePixels`` in request-sized chunks
(:func:`plan_chunks`: at most 48 MiB of float32 per response, 32,768 px a side, 1,024 bands),
concurrently under ``MAX_INTERACTIVE_REQUESTS``, each retried on 429 / 5xx by :class:`EEApi`.
Products exported to Cloud Storage are read from their Cloud-Optimised GeoTIFFs (``gs://`` through
GDAL's ``/vsigs/``, with GDAL's own credentials and retries; from the stand-in's storage endpoint
for a run against a server on loopback) in chunks of the same plan, by window and band. Every
chunk is saved atomically under ``download/`` as it arrives: a download killed at any point
resumes without reading a finished chunk again. Where a product sits comes from its own
metadata (the asset's band grid, the file's geotransform); which band is which date from the
manifest's band layout (a GeoTIFF of Earth Engine need not name its bands) and the run's
``global.json``. Drive files cannot be read by program: the user downloads them.

Held-out skill and the optical-only baselines are then scored on the downloaded tiles by the local
backend's own code (:func:`engine.backends.local.finish.score`) on the same lattice of AOI pixels,
into ``skill.csv`` and the manifest, so ``report`` shows them as for a local run.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.gee.api import EEApi, RetryPolicy
from engine.backends.gee.session import initialize, is_loopback
from engine.errors import RunDirError
from engine.io import atomic_write_bytes
from engine.backends.scoring import inside_mask, score, skill_pixels
from engine.run.cube import create_cube, write_tile
from engine.run.manifest import add_skill
from engine.run.rundir import RunDir
from engine.run.stages import GlobalStats
from engine.science.gaps import GAP_BANDS
from tiling.ee_layout import band_name, variables
from tiling.grid import Tile

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 48 * 2**20  # computePixels: a response of at most 48 MiB
MAX_SIDE = 32_768  # px a side of a computePixels grid
MAX_BANDS = 1_024
NODATA = -9999.0  # computePixels carries no masks: masked pixels are unmasked to this first


# GDAL's reads of gs:// files: no directory listing on open (the exports have no side-car files),
# and GDAL's own retries with backoff on 429 / 5xx
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "1"}
STANDIN_STORAGE = "/storage/"  # where an Earth Engine stand-in on loopback serves its Cloud Storage files


def gdal_env(ee_api_url: str) -> dict[str, str]:
    """GDAL's options for the run's Cloud Storage files: a run against an Earth Engine server on
    loopback (the stand-in) reads that server's storage endpoint, unless ``CPL_GS_ENDPOINT`` says
    otherwise; a run against Google reads Google's, with GDAL's own credentials."""
    env = dict(GDAL_ENV)
    if is_loopback(ee_api_url) and "CPL_GS_ENDPOINT" not in os.environ:
        env.update(CPL_GS_ENDPOINT=ee_api_url.rstrip("/") + STANDIN_STORAGE, GS_NO_SIGN_REQUEST="YES")
    return env


@dataclass(frozen=True)
class Chunk:
    """One read: ``bands`` of ``source`` (an asset name, or a ``gs://`` file of the same grid) over
    columns / rows of the analysis grid."""

    source: str
    bands: tuple[str, ...]
    col: int  # of the analysis grid (pixels)
    row: int
    width: int
    height: int

    @property
    def key(self) -> str:
        text = json.dumps([self.source, self.bands, self.col, self.row, self.width, self.height])
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_chunks(asset: str, bands: list[str], window: tuple[int, int, int, int],
                limit: int = MAX_RESPONSE_BYTES) -> list[Chunk]:
    """Split an asset's bands and rows into requests within the response size, side and band limits:
    band groups first (whole rows keep each request a plain strip), rows when one band is too big."""
    col, row, width, height = window
    group = min(MAX_BANDS, len(bands))
    rows = min(height, MAX_SIDE)
    while width * rows * group * 4 > limit:
        if group > 1:
            group = math.ceil(group / 2)
        else:
            rows = math.ceil(rows / 2)
    out = []
    for c0 in range(0, width, MAX_SIDE):
        w = min(MAX_SIDE, width - c0)
        for r0 in range(0, height, rows):
            h = min(rows, height - r0)
            for b0 in range(0, len(bands), group):
                out.append(Chunk(asset, tuple(bands[b0:b0 + group]), col + c0, row + r0, w, h))
    return out


def grid_window(name: str, transform: tuple[float, float, float, float, float, float], width: int, height: int,
                resolution: float) -> tuple[int, int, int, int]:
    """(col, row, width, height) on the analysis grid of a product whose affine is
    ``(scaleX, shearX, translateX, shearY, scaleY, translateY)``; refused off the run's grid."""
    sx, hx, tx, hy, sy, ty = transform
    cols, rows = tx / resolution, -ty / resolution
    if (abs(sx - resolution) > 1e-6 or abs(sy + resolution) > 1e-6 or hx or hy
            or abs(cols - round(cols)) > 1e-6 or abs(rows - round(rows)) > 1e-6):
        raise RunDirError(f"{name!r} is not on the run's {resolution:g} m grid; it was not exported by this run")
    return int(round(cols)), int(round(rows)), width, height


def asset_window(asset: dict[str, Any], resolution: float) -> tuple[int, int, int, int]:
    """(col, row, width, height) on the analysis grid of an image asset, from its first band's grid."""
    grid = asset["bands"][0]["grid"]
    t = grid["affineTransform"]
    sx, hx, tx, hy, sy, ty = (float(t.get(k, 0)) for k in ("scaleX", "shearX", "translateX", "shearY", "scaleY",
                                                           "translateY"))
    dims = grid["dimensions"]
    return grid_window(asset["name"], (sx, hx, tx, hy, sy, ty), int(dims.get("width", 0)), int(dims.get("height", 0)),
                       resolution)


def file_layout(uri: str, bands: list[str], resolution: float, env: dict[str, str],
                run_dir: Path) -> tuple[int, int, int, int]:
    """The window of an exported GeoTIFF on the analysis grid, after checking it holds ``bands`` (the
    manifest's layout of its part): as many bands, and their names where the file has any."""
    import rasterio

    try:
        with rasterio.Env(**env), rasterio.open(uri) as src:
            t, names, size = src.transform, src.descriptions, (src.width, src.height)
    except rasterio.errors.RasterioIOError as e:
        raise RunDirError(f"{uri} of the manifest cannot be read ({e}); check GDAL's Cloud Storage credentials "
                          f"(GOOGLE_APPLICATION_CREDENTIALS), or run `python -m engine resume {run_dir}` to export "
                          "it again") from None
    if len(names) != len(bands) or any(n and n != b for n, b in zip(names, bands)):
        raise RunDirError(f"{uri} holds bands {list(names)[:3]}... ({len(names)}), not the manifest's "
                          f"{bands[:3]}... ({len(bands)}); it was not exported by this run")
    return grid_window(uri, (t.a, t.b, t.c, t.d, t.e, t.f), size[0], size[1], resolution)


class Downloader:
    """The download of one gee run directory: ``connect()``, then ``run()`` (resumable)."""

    def __init__(self, run_dir: Path, request_bytes: int = MAX_RESPONSE_BYTES) -> None:
        from engine.run.record import context_from_run

        self.rd = RunDir(run_dir)
        self.ctx = context_from_run(self.rd.root, self.rd.read_run())
        p = self.ctx.params
        if p.BACKEND != "gee":
            raise RunDirError(f"{self.rd.root} is a {p.BACKEND} run: its cube.zarr is written by the run itself; "
                              "download reads the products of gee runs")
        if not self.rd.manifest.exists():
            raise RunDirError(f"{self.rd.root} has no manifest.json: the run has not finished; "
                              f"resume it first: python -m engine resume {self.rd.root}")
        self.manifest = json.loads(self.rd.manifest.read_text())
        if p.EXPORT_DESTINATION == "drive":
            raise RunDirError(f"the products of {self.rd.root} went to Google Drive (folder "
                              f"{p.EXPORT_FOLDER or p.PROJECT_TITLE!r}), which has no read API for them: download "
                              "the files from Drive, or export to assets or Cloud Storage (EXPORT_DESTINATION)")
        self.stats = GlobalStats.load(self.rd.global_dir / "global.json")
        self.dir = self.rd.root / "download"
        self.request_bytes = request_bytes
        self.api: EEApi | None = None
        self.files: dict[str, tuple[list[str], tuple[int, int, int, int]]] = {}  # gs:// file -> bands, window
        self.gdal_env = gdal_env(p.EE_API_URL)

    def connect(self) -> EEApi:
        p = self.ctx.params
        session = initialize(p.EE_PROJECT, p.EE_API_URL)
        self.api = EEApi(session.project, RetryPolicy.for_poll_interval(p.POLL_INTERVAL_S), p.MAX_INTERACTIVE_REQUESTS)
        return self.api

    def parts(self) -> list[tuple[str, str, str]]:
        """(manifest tile id, outputs stage, asset name or file URI) of every exported outputs image."""
        out = []
        for tile in self.manifest.get("tiles", []):
            for stage, product in tile.get("outputs", {}).items():
                if stage == "images":
                    continue  # the per-image table, also in images.csv
                for part in product.get("parts", []):
                    source = part.get("asset") or part.get("uri")
                    if product.get("status") == "done" and source:
                        out.append((tile["id"], stage, source))
        return out

    def _bands_and_window(self, stage: str, source: str) -> tuple[list[str], tuple[int, int, int, int]]:
        res = self.ctx.plan.grid.resolution
        if source.startswith("gs://"):
            layout = self.manifest.get("products", {}).get("layout", {}).get("images", {}).get(stage, {})
            bands = list(layout.get("band_names", []))
            self.files[source] = bands, file_layout(source, bands, res, self.gdal_env, self.rd.root)
            return self.files[source]
        assert self.api is not None
        asset = self.api.get_asset(source)
        if asset is None:
            raise RunDirError(f"asset {source!r} of the manifest no longer exists; run `python -m engine resume "
                              f"{self.rd.root}` to export it again")
        return [b["id"] for b in asset.get("bands", [])], asset_window(asset, res)

    def run(self) -> dict[str, Any]:
        if self.api is None and self.ctx.params.EXPORT_DESTINATION == "asset":
            self.connect()
        chunks: dict[str, list[Chunk]] = {}  # plan tile id -> its chunks
        for tile_id, stage, source in self.parts():
            bands, window = self._bands_and_window(stage, source)
            chunks.setdefault(self._plan_tile(tile_id).id, []).extend(
                plan_chunks(source, bands, window, self.request_bytes))
        todo = [c for cs in chunks.values() for c in cs if not self._have(c)]
        log.info("download: %d chunks, %d to read", sum(map(len, chunks.values())), len(todo))
        workers = max(1, min(self.ctx.params.MAX_INTERACTIVE_REQUESTS, len(todo)))  # GDAL's reads alike
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(self._fetch, todo):
                pass
        skill = self._write_cube(chunks)
        add_skill(self.rd, skill, "scored by `download` on the downloaded products, by the local backend's code "
                                  "on the same lattice of AOI pixels")
        summary = {"chunks": sum(map(len, chunks.values())), "read": len(todo), "tiles": len(chunks),
                   "cube": str(self.rd.cube)}
        atomic_write_bytes(self.rd.root / "download.json", json.dumps(summary, indent=2).encode())
        return summary

    def _plan_tile(self, tile_id: str) -> Tile:
        """The plan tile (cube shard) a manifest tile is, or was split from."""
        tile = Tile.from_id(tile_id, self.ctx.plan.budget.halo)
        for t in self.ctx.plan.tiles:
            c, r, w, h = t.window
            tc, tr, tw, th = tile.window
            if c <= tc and r <= tr and tc + tw <= c + w and tr + th <= r + h:
                return t
        raise RunDirError(f"tile {tile_id} of the manifest is not in the run's plan; the run directory is damaged")

    def _path(self, chunk: Chunk) -> Path:
        return self.dir / f"{chunk.key}.npy"

    def _have(self, chunk: Chunk) -> bool:
        try:
            arr = np.load(self._path(chunk), allow_pickle=False)
        except (OSError, ValueError):
            return False
        return arr.dtype.names == chunk.bands and arr.shape == (chunk.height, chunk.width)

    def _fetch(self, chunk: Chunk) -> None:
        arr = self._read_file(chunk) if chunk.source.startswith("gs://") else self._compute_pixels(chunk)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        atomic_write_bytes(self._path(chunk), buf.getvalue())

    def _compute_pixels(self, chunk: Chunk) -> np.ndarray:
        import ee

        assert self.api is not None
        res, crs = self.ctx.plan.grid.resolution, self.ctx.plan.grid.crs
        grid = {"crsCode": crs, "dimensions": {"width": chunk.width, "height": chunk.height},
                "affineTransform": {"scaleX": res, "shearX": 0, "translateX": chunk.col * res,
                                    "shearY": 0, "scaleY": -res, "translateY": -chunk.row * res}}
        image = ee.Image(chunk.source).select(list(chunk.bands)).unmask(NODATA, False).toFloat()
        return self.api.compute_pixels(image, grid, f"download {chunk.source} ({chunk.bands[0]}..)")

    def _read_file(self, chunk: Chunk) -> np.ndarray:
        """The chunk's window and bands of an exported GeoTIFF, as computePixels answers them (a
        structured array, one field per band, no-data as :data:`NODATA`)."""
        import rasterio
        from rasterio.windows import Window

        names, (col, row, _, _) = self.files[chunk.source]
        indexes = [names.index(b) + 1 for b in chunk.bands]
        with rasterio.Env(**self.gdal_env), rasterio.open(chunk.source) as src:
            data = src.read(indexes, window=Window(chunk.col - col, chunk.row - row, chunk.width, chunk.height),
                            out_dtype=np.float32)
            if src.nodata is not None and src.nodata != NODATA:
                data[data == np.float32(src.nodata)] = NODATA
        out = np.empty((chunk.height, chunk.width), dtype=[(b, "<f4") for b in chunk.bands])
        for i, b in enumerate(chunk.bands):
            out[b] = data[i]
        return out

    def _write_cube(self, chunks: dict[str, list[Chunk]]) -> list[dict[str, Any]]:
        """Every plan tile's core from its chunks, into a cube of the local backend's layout; returns
        each tile's held-out skill sums."""
        import pandas as pd

        p = self.ctx.params
        paired = self.stats.paired
        names = list(variables(p.EXPORT_PCA, p.EXPORT_INPUT))

        if not self.rd.cube.exists():
            attrs = {"title": f"{p.PROJECT_TITLE}: SAR-infilled NDVI", "aoi": self.ctx.aoi.name,
                     "source": f"Earth Engine ({p.EE_API_URL}), downloaded", "synthetic": int(bool(
                         self.manifest.get("synthetic")))}
            if self.manifest.get("synthetic"):
                attrs["WARNING"] = "SYNTHETIC DATA: generated by the engine's synthetic source, not observations"
            create_cube(self.rd.cube, self.ctx.plan.grid, list(self.ctx.plan.tiles),
                        pd.DatetimeIndex(paired["time"]), names, attrs)
        where = {band_name(v, i): (v, k) for v in names for k, i in enumerate(paired["id"])}
        by_id = {t.id: t for t in self.ctx.plan.tiles}
        skill = []
        for tile_id, cs in chunks.items():
            tile = by_id[tile_id]
            c0, r0, w, h = tile.window
            arrays = {v: np.full((len(paired), h, w), np.nan, np.float32) for v in names}
            gaps = {b: np.full((h, w), np.nan, np.float32) for b in GAP_BANDS}
            for chunk in cs:
                arr = np.load(self._path(chunk), allow_pickle=False)
                ys = slice(chunk.row - r0, chunk.row - r0 + chunk.height)
                xs = slice(chunk.col - c0, chunk.col - c0 + chunk.width)
                for band in chunk.bands:
                    values = np.asarray(arr[band], np.float32)
                    values = np.where(values == NODATA, np.float32(np.nan), values)
                    if band in gaps:
                        gaps[band][ys, xs] = values
                    elif band in where:
                        v, k = where[band]
                        arrays[v][k, ys, xs] = values
            out: dict[str, np.ndarray] = {v: a for v, a in arrays.items() if v != "mask"}
            out["mask"] = np.where(np.isnan(arrays["mask"]), 255, arrays["mask"]).astype(np.uint8)
            write_tile(self.rd.cube, tile, {**out, **gaps})
            skill.append({"skill": self._score(tile, out)})
        return skill

    def _score(self, tile: Tile, cube: dict[str, np.ndarray]) -> dict[str, dict]:
        """The tile's held-out skill sums, as ``finish_products`` scores them (no synthetic truth: a gee
        run has none)."""
        paired = self.stats.paired
        inside = inside_mask(tile.grid.geobox(*tile.window), self.ctx.plan.aoi)
        sel = skill_pixels(tile.window, self.stats, inside)
        return score(cube["observation"][:, sel], cube["mask"][:, sel], cube["prediction"][:, sel],
                     cube["filled"][:, sel], paired["split"].to_numpy(), paired["day"].to_numpy(), None)


__all__ = ["Chunk", "Downloader", "plan_chunks", "asset_window"]
