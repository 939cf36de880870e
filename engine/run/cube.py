"""The merged product: one Zarr store holding every output as a (time, y, x) cube.

The store spans the bounding box of the tile plan and holds one shard (one file) per tile and
variable, with inner chunks of one date: each tile writes exactly its own files (zarr's local
store writes every file atomically), tiles never contend, and one date reads cheaply. ``xarray.open_zarr(path, decode_coords="all")`` gives the cube (and the 7 gap layers) with ``time``,
``y``, ``x`` coordinates and a CF ``spatial_ref`` (CRS WKT and GDAL GeoTransform).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from pyproj import CRS
from zarr.codecs import BloscCodec

from engine.science.gaps import GAP_BANDS
from tiling.grid import GridSpec, Tile, Window

# Measured on a run's cube with one thread: lz4 encodes float32 NDVI ~3x faster than zstd level 1
# (about 1 GB/s against 0.3) for ~7 % larger files; the 0/1/2/3 mask packs best bit-shuffled.
COMPRESSORS = {"float32": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
               "uint8": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")}
TIME_VARS = {"filled": "float32", "mask": "uint8", "prediction": "float32", "observation": "float32",
             "smoothed": "float32", "vv": "float32", "vh": "float32"}
FILL = {"float32": np.float32(np.nan), "uint8": np.uint8(255)}
# Inner chunks (one date of a tile) zarr encodes per batch: with its default of 1, most of a write is
# zarr's per-chunk overhead; 16 cut a 137-date 256 px tile's cube writes from 0.40 to 0.35 s in
# benchmarks.profile_steps (benchmarks/RESULTS.md), the bytes written the same.
WRITE_BATCH = 16


def cube_extent(tiles: Sequence[Tile]) -> tuple[int, int, int, int]:
    """(col_off, row_off, width, height) of the tiles' bounding box, in grid pixels."""
    wins = [t.window for t in tiles]
    c0 = min(w[0] for w in wins)
    r0 = min(w[1] for w in wins)
    c1 = max(w[0] + w[2] for w in wins)
    r1 = max(w[1] + w[3] for w in wins)
    return c0, r0, c1 - c0, r1 - r0


def create_cube(path: Path, grid: GridSpec, tiles: Sequence[Tile], times: pd.DatetimeIndex,
                variables: Sequence[str], attrs: dict[str, Any]) -> None:
    """Write the store's metadata and coordinates (no data chunks), replacing any store at ``path``.

    The store is built next to ``path`` and renamed into place, so a process killed meanwhile
    never leaves a store at ``path`` whose root exists but some variables do not.
    """
    c0, r0, width, height = cube_extent(tiles)
    res = grid.resolution
    x = (np.arange(c0, c0 + width) + 0.5) * res
    y = -(np.arange(r0, r0 + height) + 0.5) * res
    crs = CRS.from_epsg(grid.epsg)
    spatial_ref = xr.DataArray(0, attrs={**crs.to_cf(), "crs_wkt": crs.to_wkt(),
                                         "GeoTransform": f"{c0 * res} {res} 0 {-r0 * res} 0 {-res}"})
    t = grid.tile_size
    coords = {"time": times.tz_localize(None) if times.tz is not None else times, "y": y, "x": x}
    ds = xr.Dataset(coords=coords, attrs=attrs)
    ds["spatial_ref"] = spatial_ref
    encoding: dict[str, Any] = {"time": {"units": "seconds since 1970-01-01", "dtype": "int64"}}
    import dask.array as da

    for name in variables:
        dtype = TIME_VARS[name]
        ds[name] = (("time", "y", "x"), da.full((len(times), height, width), FILL[dtype], dtype=dtype,
                                                 chunks=(len(times), t, t)))
        ds[name].attrs["grid_mapping"] = "spatial_ref"
        # one shard (file) per tile, inner chunks of one date: a tile writes one file atomically, and
        # reading one date of a whole scene decodes only that date
        encoding[name] = {"chunks": (1, t, t), "shards": (len(times), t, t), "compressors": [COMPRESSORS[dtype]],
                          "fill_value": FILL[dtype]}
    for name in GAP_BANDS:  # job 1: one (y, x) layer per gap statistic
        ds[name] = (("y", "x"), da.full((height, width), np.float32(np.nan), dtype="float32", chunks=(t, t)))
        ds[name].attrs.update(grid_mapping="spatial_ref", units="count" if name == "clear_count" else "days")
        encoding[name] = {"chunks": (t, t), "compressors": [COMPRESSORS["float32"]], "fill_value": np.float32(np.nan)}
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    ds.to_zarr(partial, mode="w", compute=False, encoding=encoding, consolidated=False, zarr_format=3)
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)


def _region(path: Path, where: Tile | Window | Sequence[int]) -> tuple[slice, slice]:
    """The store's (y, x) slices of a tile's core or of a pixel window."""
    root = zarr.open_group(path, mode="r")
    x = root["x"]
    y = root["y"]
    res = float(x[1] - x[0]) if x.shape[0] > 1 else float(-(y[1] - y[0]))
    c0 = int(round(float(x[0]) / res - 0.5))
    r0 = int(round(-float(y[0]) / res - 0.5))
    col, row, w, h = where.window if isinstance(where, Tile) else where
    return slice(row - r0, row - r0 + h), slice(col - c0, col - c0 + w)


def write_tile(path: Path, tile: Tile, arrays: dict[str, np.ndarray], window: Window | None = None) -> dict[str, str]:
    """Write a tile's arrays (of its core, or of ``window`` inside it) into their chunks; return each
    variable's checksum of the data. The rest of the tile's own shards stays the fill value."""
    tys, txs = _region(path, tile)
    ys, xs = _region(path, window or tile)
    sums = {}
    with zarr.config.set({"codec_pipeline.batch_size": WRITE_BATCH}):  # read as each array opens
        root = zarr.open_group(path, mode="r+")
        for name, data in arrays.items():
            _drop_covered_shards(path / name, root[name], tys, txs)
            root[name][..., ys, xs] = data
            sums[name] = digest(data)
    return sums


def _drop_covered_shards(array_dir: Path, arr: zarr.Array, ys: slice, xs: slice) -> None:
    """Delete the shard files that the region overwrites entirely (a tile's own).

    zarr reads a shard before rewriting it, even when the write covers all of it, so a damaged shard
    would fail the very write that repairs it ("Stored and computed checksum do not match"). Shards
    the region covers only in part (split tiles share them) are kept.
    """
    shard = arr.shards or arr.chunks
    height, width = arr.shape[-2:]
    lead = arr.ndim - 2
    if any(shard[i] != arr.shape[i] for i in range(lead)):  # a shard spans the whole time axis
        return

    def covered(sl: slice, size: int, n: int) -> range:
        first = -(-sl.start // size)
        last = sl.stop // size if sl.stop < n else -(-n // size)
        return range(first, last)

    for iy in covered(ys, shard[-2], height):
        for ix in covered(xs, shard[-1], width):
            key = arr.metadata.encode_chunk_key((0,) * lead + (iy, ix))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(array_dir / key)


def read_tile(path: Path, where: Tile | Window | Sequence[int], names: Sequence[str]) -> dict[str, np.ndarray]:
    ys, xs = _region(path, where)
    root = zarr.open_group(path, mode="r")
    return {name: root[name][..., ys, xs] for name in names}


def digest(data: np.ndarray) -> str:
    """Checksum of an array's values (dtype, shape and bytes): what resume verifies."""
    h = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    h.update(np.ascontiguousarray(data).data)  # the buffer itself: no copy
    return h.hexdigest()


def open_cube(path: Path) -> xr.Dataset:
    return xr.open_zarr(path, decode_coords="all", consolidated=False)
