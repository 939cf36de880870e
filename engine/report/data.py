"""What a report reads from a run directory, and decimated, lazy reads of the cube.

Nothing here loads a whole cube: maps are read with a stride so that they are at most
``max_px`` pixels a side, the before/after panels read a few dates at that stride, and the time
series read a few pixels. The cube is chunked one tile per chunk over all dates, so a strided read
of one date still decodes every chunk once; the reads go through dask's threaded scheduler with
a few threads so memory stays at a few chunks.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import RunDirError
from engine.run.rundir import RunDir
from engine.science.gaps import GAP_BANDS

log = logging.getLogger(__name__)

READ_THREADS = max(1, min(4, os.cpu_count() or 1))
CLEAR_CODES = (0, 2)      # truly observed: clear, or clear but artificially hidden


@dataclass
class RunInputs:
    """Everything of a run directory the report uses; ``problems`` lists what is missing."""

    root: Path
    run: dict[str, Any]
    manifest: dict[str, Any]
    images: pd.DataFrame | None = None
    skill: pd.DataFrame | None = None
    tiles: Any = None                 # geopandas.GeoDataFrame in the grid CRS
    cube: Any = None                  # xarray.Dataset (lazy)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        return self.run.get("params", {})

    @property
    def synthetic(self) -> bool:
        if self.manifest.get("synthetic"):
            return True
        return bool(self.cube is not None and int(self.cube.attrs.get("synthetic", 0) or 0))

    @property
    def warning(self) -> str:
        if self.manifest.get("WARNING"):
            return str(self.manifest["WARNING"])
        if self.cube is not None and self.cube.attrs.get("WARNING"):
            return str(self.cube.attrs["WARNING"])
        return "SYNTHETIC DATA: the inputs are not satellite observations"

    @property
    def crs(self) -> str | None:
        if self.cube is not None and "spatial_ref" in self.cube:
            wkt = self.cube["spatial_ref"].attrs.get("crs_wkt")
            if wkt:
                return wkt
        grid = self.manifest.get("grid", {})
        if grid.get("crs"):
            return grid["crs"]
        epsg = self.run.get("aoi", {}).get("epsg") or self.run.get("plan", {}).get("epsg")
        return f"EPSG:{epsg}" if epsg else None

    def aoi_geometry(self):
        """The AOI polygon in the grid CRS (None when it cannot be rebuilt)."""
        wkt = self.run.get("aoi", {}).get("wkt")
        if not wkt or not self.crs:
            return None
        try:
            import shapely
            from pyproj import Transformer

            geom = shapely.from_wkt(wkt)
            tr = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
            return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        except Exception as e:  # a damaged run.json must not stop the report
            log.warning("cannot rebuild the AOI outline: %s", e)
            return None


def load_run(root: Path) -> RunInputs:
    """Read a finished (or failed) run directory; a missing or unfinished one is a RunDirError."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"run directory {str(root)!r} does not exist; make one with: "
                          f"python -m engine run --aoi ... --run-dir {root}")
    rd = RunDir(root)
    run = rd.read_run()
    if not rd.manifest.exists():
        raise RunDirError(f"run directory {str(root)!r} has not finished (no manifest.json); finish it with: "
                          f"python -m engine resume {root}  (see: python -m engine status {root})")
    try:
        manifest = json.loads(rd.manifest.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{rd.manifest} is unreadable ({e}); rerun with: python -m engine resume {root}") from e
    inputs = RunInputs(root=root, run=run, manifest=manifest)

    images = root / "images.csv"
    if images.exists():
        try:
            df = pd.read_csv(images)
            df["Date"] = pd.to_datetime(df["Date"])
            if "MAE" in df:
                df["MAE"] = pd.to_numeric(df["MAE"], errors="coerce").where(lambda s: s >= 0)
            if "Paired" in df:
                df["Paired"] = df["Paired"].astype(str).str.lower().eq("true")
            inputs.images = df
        except Exception as e:
            inputs.problems["images"] = f"images.csv is unreadable ({e})"
    else:
        inputs.problems["images"] = "the run wrote no images.csv"

    skill = root / "skill.csv"
    if skill.exists():
        try:
            inputs.skill = pd.read_csv(skill)
        except Exception as e:
            inputs.problems["skill"] = f"skill.csv is unreadable ({e})"
    else:
        inputs.problems["skill"] = "the run wrote no skill.csv (for a gee run, `python -m engine download " \
            f"{root}` scores it on the downloaded products)" \
            if manifest.get("backend") == "gee" else "the run wrote no skill.csv"

    inputs.tiles = _read_tiles(root, inputs)

    cube = rd.cube
    if cube.exists():
        try:
            from engine.run.cube import open_cube

            inputs.cube = open_cube(cube)
        except Exception as e:
            inputs.problems["cube"] = f"cube.zarr is unreadable ({type(e).__name__}: {e})"
    else:
        inputs.problems["cube"] = ("this run has no cube.zarr (the gee backend writes Earth Engine assets; `python -m "
                                    f"engine download {root}` brings them into one)"
                                   if manifest.get("backend") == "gee" else "the run wrote no cube.zarr")
    return inputs


def _read_tiles(root: Path, inputs: RunInputs):
    import geopandas as gpd

    parquet, geojson = root / "tiles.parquet", root / "tiles.geojson"
    errors = []
    if parquet.exists():
        try:
            frame = gpd.read_parquet(parquet)
            if "halo" in frame:
                frame = frame.drop(columns="halo")
            return frame
        except Exception as e:
            errors.append(f"tiles.parquet: {e}")
    if geojson.exists():
        try:
            frame = gpd.read_file(geojson)
            crs = inputs.crs
            return frame.to_crs(crs) if crs else frame
        except Exception as e:
            errors.append(f"tiles.geojson: {e}")
    inputs.problems["tiles"] = "; ".join(errors) if errors else "the run wrote no tile index (tiles.parquet)"
    return None


# --- decimated reads ---------------------------------------------------------------------------

def stride_for(height: int, width: int, max_px: int) -> int:
    """The smallest stride that keeps a ``height`` x ``width`` map within ``max_px`` a side."""
    return max(1, math.ceil(max(height, width) / max(1, max_px)))


def _load(obj):
    import dask

    with dask.config.set(scheduler="threads", num_workers=READ_THREADS):
        return obj.load()


@dataclass
class MapGrid:
    """The decimated map lattice over the AOI's bounding box (the cube's tiles may reach well beyond it).

    Full-resolution cube index of map pixel (i, j) is ``(row0 + i * stride, col0 + j * stride)``.
    """

    stride: int
    row0: int
    col0: int
    rows: int          # full-resolution rows and columns covered
    cols: int
    x: np.ndarray      # map pixel centres (metres)
    y: np.ndarray
    inside: np.ndarray | None       # (y, x) bool: pixel centre in the AOI

    @property
    def ys(self) -> slice:
        return slice(self.row0, self.row0 + self.rows, self.stride)

    @property
    def xs(self) -> slice:
        return slice(self.col0, self.col0 + self.cols, self.stride)

    def full_index(self, i: int, j: int) -> tuple[int, int]:
        return self.row0 + i * self.stride, self.col0 + j * self.stride

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) in km, for imshow."""
        dx = float(self.x[1] - self.x[0]) if len(self.x) > 1 else 10.0 * self.stride
        dy = float(self.y[0] - self.y[1]) if len(self.y) > 1 else dx
        return ((self.x[0] - dx / 2) / 1e3, (self.x[-1] + dx / 2) / 1e3,
                (self.y[-1] - dy / 2) / 1e3, (self.y[0] + dy / 2) / 1e3)


def _index_range(coords: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """[first, last + 1) of the positions of ``coords`` (monotonic) within [lo, hi]; all when none."""
    sel = np.nonzero((coords >= lo) & (coords <= hi))[0]
    if sel.size == 0:
        return 0, len(coords)
    return int(sel[0]), int(sel[-1]) + 1


def map_grid(inputs: RunInputs, max_px: int) -> MapGrid:
    """The map lattice: the AOI's bounding box (plus a 2% margin) in the cube, at most ``max_px`` a side."""
    cube = inputs.cube
    xs_all = np.asarray(cube["x"].values, dtype=float)
    ys_all = np.asarray(cube["y"].values, dtype=float)
    geom = inputs.aoi_geometry()
    r0, r1, c0, c1 = 0, len(ys_all), 0, len(xs_all)
    if geom is not None and not geom.is_empty:
        minx, miny, maxx, maxy = geom.bounds
        pad = 0.02 * max(maxx - minx, maxy - miny)
        c0, c1 = _index_range(xs_all, minx - pad, maxx + pad)
        r0, r1 = _index_range(ys_all, miny - pad, maxy + pad)
    s = stride_for(r1 - r0, c1 - c0, max_px)
    x = xs_all[c0:c1:s]
    y = ys_all[r0:r1:s]
    inside = None
    if geom is not None:
        import shapely

        xx, yy = np.meshgrid(x, y)
        shapely.prepare(geom)
        inside = shapely.contains_xy(geom, xx, yy)
    return MapGrid(s, r0, c0, r1 - r0, c1 - c0, x, y, inside)


def read_gap_layers(inputs: RunInputs, grid: MapGrid) -> dict[str, np.ndarray]:
    names = [n for n in GAP_BANDS if n in inputs.cube]
    if not names:
        return {}
    sub = _load(inputs.cube[names].isel(y=grid.ys, x=grid.xs))
    return {n: np.asarray(sub[n].values, dtype=float) for n in names}


def cube_dates(inputs: RunInputs) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(inputs.cube["time"].values).normalize()


def choose_cloudy_dates(images: pd.DataFrame, available: pd.DatetimeIndex, n: int = 3,
                        lo: float = 25.0, hi: float = 85.0) -> pd.DataFrame:
    """The ``n`` cloudiest paired images with cover in [lo, hi] % (topped up from the rest), by date.

    Deterministic: ties on cover go to the earlier date.
    """
    df = images.copy()
    if "Paired" in df:
        df = df[df["Paired"]]
    df = df[df["Date"].dt.normalize().isin(available)]
    df = df[np.isfinite(df["Cloud_cover"])]
    order = df.sort_values(["Cloud_cover", "Date"], ascending=[False, True], kind="stable")
    reasonable = order[(order["Cloud_cover"] >= lo) & (order["Cloud_cover"] <= hi)]
    pick = reasonable.head(n)
    if len(pick) < n:  # top up: nearest to the range first (below it, then above it)
        rest = order.drop(pick.index)
        below = rest[rest["Cloud_cover"] < lo]
        above = rest[rest["Cloud_cover"] > hi].sort_values(["Cloud_cover", "Date"], kind="stable")
        pick = pd.concat([pick, below, above]).head(n)
    return pick.sort_values("Date", kind="stable")


def read_dates(inputs: RunInputs, grid: MapGrid, dates: pd.Series) -> dict[str, np.ndarray]:
    """observation, mask and filled at the given dates, decimated: arrays (date, y, x)."""
    cube = inputs.cube
    available = cube_dates(inputs)
    idx = [int(available.get_indexer([pd.Timestamp(d).normalize()])[0]) for d in dates]
    names = [n for n in ("observation", "mask", "filled") if n in cube]
    sub = _load(cube[names].isel(time=idx, y=grid.ys, x=grid.xs))
    return {n: np.asarray(sub[n].values) for n in names}


def _candidates(clear_count: np.ndarray, inside: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels with a clear count, away from the AOI edge when possible, in a deterministic order:
    by clear_count, ties in a fixed pseudo-random order (so equal counts do not all pick the top row)."""
    from scipy import ndimage

    ok = np.isfinite(clear_count)
    if inside is not None:
        ok &= inside
    for depth in (max(3, min(ok.shape) // 20), 3):  # keep away from the AOI edge and from failed tiles
        interior = ndimage.binary_erosion(ok, iterations=depth)
        if interior.sum() >= 20:
            ok = interior
            break
    rows, cols = np.nonzero(ok)
    tie = np.random.default_rng(0).permutation(rows.size)
    order = np.lexsort((tie, clear_count[rows, cols]))
    return rows[order], cols[order]


def choose_pixels(clear_count: np.ndarray, inside: np.ndarray | None,
                  quantiles: tuple[float, ...] = (0.02, 0.34, 0.66, 0.98)) -> list[tuple[int, int]]:
    """Map-pixel (i, j) at the given quantiles of clear_count (cloudiest first), deterministically."""
    rows, cols = _candidates(clear_count, inside)
    if rows.size == 0:
        return []
    chosen: list[int] = []
    for q in quantiles:
        k = int(round(q * (rows.size - 1)))
        while k in chosen and k + 1 < rows.size:
            k += 1
        if k not in chosen:
            chosen.append(k)
    return [(int(rows[k]), int(cols[k])) for k in chosen]


def read_pixels(inputs: RunInputs, pixels: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """observation, mask, prediction and filled at full-resolution (row, col) pixels: arrays (pixel, time)."""
    import xarray as xr

    cube = inputs.cube
    names = [n for n in ("observation", "mask", "prediction", "filled") if n in cube]
    rows = xr.DataArray([p[0] for p in pixels], dims="pixel")
    cols = xr.DataArray([p[1] for p in pixels], dims="pixel")
    sub = _load(cube[names].isel(y=rows, x=cols))
    return {n: np.asarray(sub[n].transpose("pixel", "time").values) for n in names}


def pick_series_pixels(inputs: RunInputs, grid: MapGrid, clear_count: np.ndarray, n: int = 4,
                       max_tries: int = 50) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    """``n`` full-resolution pixels of different cloudiness with a filled series (skipping failed tiles)."""
    first = choose_pixels(clear_count, grid.inside, _quantiles(n))
    if not first:
        return [], {}
    pixels = [grid.full_index(i, j) for i, j in first]
    data = read_pixels(inputs, pixels)
    key = "filled" if "filled" in data else next(iter(data))
    bad = [i for i in range(len(pixels)) if not np.isfinite(data[key][i]).any()]
    if bad:
        rows, cols = _candidates(clear_count, grid.inside)
        order = [grid.full_index(int(i), int(j)) for i, j in zip(rows, cols)]
        hop = max(1, len(order) // 50)
        for i in bad:
            k = order.index(pixels[i]) if pixels[i] in order else 0
            step = hop if k < len(order) // 2 else -hop
            for _ in range(max_tries):
                k += step
                if not 0 <= k < len(order):
                    break
                if order[k] in pixels:
                    continue
                if np.isfinite(read_pixels(inputs, [order[k]])[key][0]).any():
                    pixels[i] = order[k]
                    break
        data = read_pixels(inputs, pixels)
        good = [i for i in range(len(pixels)) if np.isfinite(data[key][i]).any()]
        if good and len(good) < len(pixels):  # drop pixels that still have nothing to show
            pixels = [pixels[i] for i in good]
            data = {k: v[good] for k, v in data.items()}
    return pixels, data


def read_gap_point(inputs: RunInputs, pixels: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The gap layers at full-resolution (row, col) pixels: arrays (pixel,)."""
    import xarray as xr

    names = [n for n in GAP_BANDS if n in inputs.cube]
    if not names or not pixels:
        return {}
    rows = xr.DataArray([p[0] for p in pixels], dims="pixel")
    cols = xr.DataArray([p[1] for p in pixels], dims="pixel")
    sub = _load(inputs.cube[names].isel(y=rows, x=cols))
    return {n: np.asarray(sub[n].values, dtype=float) for n in names}


def _quantiles(n: int) -> tuple[float, ...]:
    if n == 1:
        return (0.5,)
    return tuple(float(q) for q in np.linspace(0.02, 0.98, n))
