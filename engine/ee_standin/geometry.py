"""Geometries of expressions: shapely shapes with their projection (planar or geodesic lon/lat)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .raster import Grid, Proj, crs_code, transformer


@dataclass(frozen=True)
class Geom:
    """``shape`` in the units of ``proj`` (CRS units, or pixels of a projection with a
    transform, as ``Image.projection()`` gives them); ``None`` proj means EPSG:4326."""

    shape: BaseGeometry
    proj: Proj | None = None

    @property
    def crs(self) -> str:
        return self.proj.crs if self.proj is not None else "EPSG:4326"

    def _to_crs_units(self, shape: BaseGeometry) -> BaseGeometry:
        """Pixel units (a projection with a non-identity transform) -> CRS units."""
        if self.proj is None or self.proj.transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
            return shape
        a, b, c, d, e, f = self.proj.transform
        return shapely.transform(shape, lambda xy: np.column_stack((a * xy[:, 0] + b * xy[:, 1] + c,
                                                                    d * xy[:, 0] + e * xy[:, 1] + f)))

    def in_crs(self, crs: str) -> BaseGeometry:
        """The shape in ``crs`` (edges densified before reprojection)."""
        return _in_crs(self, crs)

    def lonlat(self) -> BaseGeometry:
        return self.in_crs("EPSG:4326")

    def contains_centres(self, grid: Grid) -> np.ndarray:
        """(h, w) bool: pixel centres of ``grid`` inside the geometry (boundary excluded)."""
        x, y = grid.centres()
        shape = self.in_crs(grid.proj.crs)
        return shapely.contains_xy(shape, x, y)

    def bounds_in(self, crs: str) -> tuple[float, float, float, float]:
        return self.in_crs(crs).bounds


@lru_cache(maxsize=256)
def _in_crs(geom: Geom, crs: str) -> BaseGeometry:
    """``Geom.in_crs``, cached: a request asks for the same region in the same CRS again and again
    (every collection filtered by it, every granule tested against it)."""
    shape = geom._to_crs_units(geom.shape)
    if crs_code(crs) == crs_code(geom.crs):
        return shape
    minx, miny, maxx, maxy = shape.bounds
    step = max(maxx - minx, maxy - miny) / 64 or 1.0
    dense = shape.segmentize(step)
    tr = transformer(geom.crs, crs)
    return shapely.transform(dense, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
