"""The fixed pixel grid and its tiles: pure geometry, no I/O.

The grid is anchored at the CRS origin (0, 0): global pixel ``(col, row)`` covers
``x in [col*res, (col+1)*res)`` and ``y in (-(row+1)*res, -row*res]`` (rows grow southward).
Tile ``(ix, iy)`` of side ``size`` pixels covers columns ``ix*size .. ix*size+size-1`` and rows
``iy*size .. iy*size+size-1``. Because the anchor never moves, the same ground tile keeps the
same id whatever the AOI is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from affine import Affine
from odc.geo.geobox import GeoBox
from shapely.geometry import Polygon, box

from engine.errors import PlanError

_QUADRANTS = ("a", "b", "c", "d")  # NW, NE, SW, SE
_ID_RE = re.compile(r"^(?P<epsg>\d+)-(?P<res>[0-9.]+)m-(?P<size>\d+)px-x(?P<ix>-?\d+)-y(?P<iy>-?\d+)(?P<path>[abcd]*)$")


class Window(NamedTuple):
    """A pixel window of the grid: its first column and row (global grid pixels) and its size."""

    col: int
    row: int
    width: int
    height: int

    @classmethod
    def covering(cls, bounds: tuple[float, float, float, float], resolution: float, step: int = 1) -> Window:
        """The smallest window (in whole ``step``-pixel cells, origin-anchored) that covers ``bounds``
        (minx, miny, maxx, maxy in the grid CRS): the one bounds-to-pixels arithmetic of the engine."""
        minx, miny, maxx, maxy = bounds
        cell = resolution * step
        c0, r0 = math.floor(minx / cell) * step, math.floor(-maxy / cell) * step
        c1, r1 = math.ceil(maxx / cell) * step, math.ceil(-miny / cell) * step
        return cls(c0, r0, c1 - c0, r1 - r0)

    def intersection(self, other: tuple[int, int, int, int]) -> Window | None:
        """The pixels both windows hold, or None."""
        c0, r0 = max(self.col, other[0]), max(self.row, other[1])
        c1, r1 = min(self.col + self.width, other[0] + other[2]), min(self.row + self.height, other[1] + other[3])
        return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None

    def grown(self, pixels: int) -> Window:
        return Window(self.col - pixels, self.row - pixels, self.width + 2 * pixels, self.height + 2 * pixels)


@dataclass(frozen=True)
class GridSpec:
    """A pixel grid: CRS (EPSG code), pixel size in CRS units, tile side and halo in pixels."""

    epsg: int
    resolution: float
    tile_size: int
    halo: int = 12

    def __post_init__(self) -> None:
        if self.resolution <= 0 or not math.isfinite(self.resolution):
            raise PlanError(f"resolution must be a positive number, got {self.resolution!r}")
        if self.tile_size < 16 or self.tile_size % 2:
            raise PlanError(f"tile size must be an even number of pixels >= 16, got {self.tile_size}")
        if self.halo < 0:
            raise PlanError(f"halo must be >= 0 pixels, got {self.halo}")

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def res_label(self) -> str:
        return f"{self.resolution:g}"

    def geobox(self, col_off: int, row_off: int, width: int, height: int, step: int = 1) -> GeoBox:
        """GeoBox of a pixel window (optionally every ``step``-th pixel, centred on grid pixels)."""
        res = self.resolution
        if step == 1:
            affine = Affine(res, 0.0, col_off * res, 0.0, -res, -row_off * res)
            return GeoBox((height, width), affine, self.crs)
        if step % 2 == 0:
            raise PlanError(f"sample step must be odd so samples sit on pixel centres, got {step}")
        # Coarse cell k covers fine pixels col_off + k*step .. +step-1; its centre is the centre
        # of the middle fine pixel, so a nearest-neighbour read of the coarse grid hits grid pixels.
        affine = Affine(res * step, 0.0, col_off * res, 0.0, -res * step, -row_off * res)
        return GeoBox((height, width), affine, self.crs)

    def tile_id(self, ix: int, iy: int, path: str = "") -> str:
        return f"{self.epsg}-{self.res_label}m-{self.tile_size}px-x{ix}-y{iy}{path}"


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`GridSpec`: parent ``(ix, iy)`` and a quadrant path for split children."""

    grid: GridSpec
    ix: int
    iy: int
    path: str = ""

    def __post_init__(self) -> None:
        if any(q not in _QUADRANTS for q in self.path):
            raise PlanError(f"tile quadrant path may only use {''.join(_QUADRANTS)}, got {self.path!r}")
        if self.grid.tile_size >> len(self.path) < 16:
            raise PlanError(f"tile {self.id} cannot be split further: it would be under 16 px")

    @property
    def id(self) -> str:
        return self.grid.tile_id(self.ix, self.iy, self.path)

    @property
    def level(self) -> int:
        return len(self.path)

    @property
    def size(self) -> int:
        return self.grid.tile_size >> self.level

    @property
    def window(self) -> Window:
        """Core window ``(col_off, row_off, width, height)`` in global grid pixels."""
        col = self.ix * self.grid.tile_size
        row = self.iy * self.grid.tile_size
        half = self.grid.tile_size
        for q in self.path:
            half //= 2
            col += half * (q in "bd")
            row += half * (q in "cd")
        return Window(col, row, self.size, self.size)

    @property
    def halo_window(self) -> Window:
        return self.window.grown(self.grid.halo)

    def geobox(self, with_halo: bool = False) -> GeoBox:
        return self.grid.geobox(*(self.halo_window if with_halo else self.window))

    def _polygon(self, window: tuple[int, int, int, int]) -> Polygon:
        col, row, w, h = window
        res = self.grid.resolution
        return box(col * res, -(row + h) * res, (col + w) * res, -row * res)

    @property
    def core(self) -> Polygon:
        """Core footprint in the grid CRS."""
        return self._polygon(self.window)

    @property
    def halo(self) -> Polygon:
        """Footprint including the halo, in the grid CRS."""
        return self._polygon(self.halo_window)

    def children(self) -> tuple[Tile, Tile, Tile, Tile]:
        """The four quadrants (NW, NE, SW, SE); their ids extend this tile's id."""
        return tuple(Tile(self.grid, self.ix, self.iy, self.path + q) for q in _QUADRANTS)  # type: ignore[return-value]

    @classmethod
    def from_id(cls, tile_id: str, halo: int = 12) -> Tile:
        m = _ID_RE.match(tile_id)
        if not m:
            raise PlanError(f"not a tile id: {tile_id!r} (expected e.g. 32755-30m-512px-x12-y-11730)")
        grid = GridSpec(int(m["epsg"]), float(m["res"]), int(m["size"]), halo)
        return cls(grid, int(m["ix"]), int(m["iy"]), m["path"])
