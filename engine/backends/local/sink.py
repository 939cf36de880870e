"""Where a local tile stage's products go: the model COG, the work files stage B reads, the
statistics sample and the cube chunks, each written atomically and described by its checksum
(the ledger's ``outputs`` entries that ``engine.run.verify`` checks on resume)."""
from __future__ import annotations

from typing import Any

import numpy as np
import rasterio

from engine.io import atomic_path, sha256_file
from engine.run.cube import write_tile
from engine.run.rundir import RunDir
from engine.science.regression import COEF_BANDS
from tiling.grid import Tile, Window

Outputs = dict[str, dict[str, Any]]


class TileSink:
    def __init__(self, rd: RunDir, tile: Tile, window: Window) -> None:
        self.rd = rd
        self.tile = tile
        self.window = window  # the part of the tile's core the stage computed
        self.work = rd.work_dir(tile.id)

    def _entry(self, path, work: bool = False) -> dict[str, Any]:
        return {"path": str(path.relative_to(self.rd.root)), "sha256": sha256_file(path), "window": list(self.window),
                **({"work": True} if work else {})}

    def model(self, coef: np.ndarray) -> Outputs:
        """The 9-band coefficient image of the compute window as a COG (saved before it is used).
        ZSTD level 1: a 512 px model writes in 0.04 s instead of 0.16 s (level 9, GDAL's default)
        for 5 % more bytes."""
        path = self.rd.tile_dir(self.tile.id) / "model.tif"
        gbox = self.tile.grid.geobox(*self.window)
        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", driver="COG", width=gbox.shape[1], height=gbox.shape[0],
                               count=len(COEF_BANDS), dtype="float32", crs=gbox.crs.to_wkt(), transform=gbox.affine,
                               nodata=np.nan, compress="ZSTD", level=1, predictor=3, overviews="NONE",
                               blocksize=256, num_threads=1) as dst:
                dst.write(coef.astype(np.float32))
                dst.descriptions = COEF_BANDS
                dst.update_tags(tile_id=self.tile.id)
        return {"model": self._entry(path)}

    def work_arrays(self, arrays: dict[str, np.ndarray]) -> Outputs:
        """Arrays stage B reads back (``load``), as ``.npy`` work files."""
        out = {}
        for name, array in arrays.items():
            path = self.work / f"{name}.npy"
            with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array))  # a view's copy: numpy writes views slowly
            out[name] = self._entry(path, work=True)
        return out

    def sample(self, **columns: np.ndarray) -> Outputs:
        """The tile's rows of the AOI-wide statistics sample (read by the reduce)."""
        path = self.work / "sample.npz"
        with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **columns)
        return {"sample": self._entry(path, work=True)}

    def cube(self, arrays: dict[str, np.ndarray]) -> Outputs:
        sums = write_tile(self.rd.cube, self.tile, arrays, self.window)
        return {name: {"cube": name, "sha256": s, "window": list(self.window)} for name, s in sums.items()}

    def load(self, *names: str) -> tuple[np.ndarray, ...]:
        return tuple(np.load(self.work / f"{name}.npy") for name in names)


__all__ = ["TileSink"]
