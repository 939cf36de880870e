"""Cut an AOI (in its grid CRS) into the grid's tiles; pure planning, no I/O."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from engine.errors import PlanError
from tiling.budget import Budget
from tiling.grid import GridSpec, Tile, Window
from tiling.limits import ASSET_QUOTA_COUNT, REQUEST_MAX_SIDE

# Earth Engine folders a run creates: <root>, <root>/<title>, <root>/<title>/<run>, .../models.
RUN_FOLDERS = 4


@dataclass(frozen=True)
class TilePlan:
    """The tiles covering an AOI, with the figures a user needs before launching a run."""

    grid: GridSpec
    aoi: BaseGeometry  # in the grid CRS
    tiles: tuple[Tile, ...]
    budget: Budget
    forced_size: bool

    @property
    def tile_pixels(self) -> int:
        return sum(t.size**2 for t in self.tiles)

    @property
    def aoi_pixels(self) -> int:
        return int(round(self.aoi.area / self.grid.resolution**2))

    def compute_window(self, tile: Tile) -> Window | None:
        """What the per-pixel steps compute of ``tile``: its core cut to the bounding window of the
        AOI's part of it (plus, when read, the halo); None when the AOI misses the core. Every grid
        pixel whose centre lies in the AOI and the core is inside; the rest of the core is outside
        the AOI, so its outputs are masked whatever is computed there."""
        windows = self._compute_windows
        return windows[tile.id] if tile.id in windows else self._cut(tile)  # a split child: not cached

    @functools.cached_property
    def _compute_windows(self) -> dict[str, Window | None]:
        parts = shapely.intersection(np.array([t.core for t in self.tiles], dtype=object), self.aoi)
        return {t.id: self._cut(t, part) for t, part in zip(self.tiles, parts)}

    def _cut(self, tile: Tile, part: BaseGeometry | None = None) -> Window | None:
        part = self.aoi.intersection(tile.core) if part is None else part
        return None if part.is_empty else Window.covering(part.bounds, self.grid.resolution).intersection(tile.window)

    @property
    def compute_pixels(self) -> int:
        """Pixels of every tile's compute window (what the per-pixel steps cost)."""
        return sum(w.width * w.height for t in self.tiles if (w := self.compute_window(t)) is not None)

    def assets(self, exports_per_tile: int, outputs_to_asset: bool) -> int:
        """Earth Engine assets the run creates: its folders, then per tile the model and, when outputs go
        to assets, one asset per other export (``exports_per_tile`` counts the model too)."""
        per_tile = exports_per_tile if outputs_to_asset else 1
        return RUN_FOLDERS + per_tile * len(self.tiles)

    def tasks(self, exports_per_tile: int) -> int:
        """Earth Engine batch tasks: ``exports_per_tile`` (training export included) per tile."""
        return exports_per_tile * len(self.tiles)

    def summary(self, exports_per_tile: int, outputs_to_asset: bool, asset_quota: int = ASSET_QUOTA_COUNT) -> dict:
        side = self.grid.tile_size
        return {
            "crs": self.grid.crs,
            "resolution_m": self.grid.resolution,
            "tile_size_px": side,
            "tile_size_km": side * self.grid.resolution / 1000,
            "tile_size_source": "forced" if self.forced_size else "budget",
            "halo_px": self.grid.halo,
            "tiles": len(self.tiles),
            "aoi_km2": self.aoi.area / 1e6,
            "aoi_pixels": self.aoi_pixels,
            "tile_pixels": self.tile_pixels,
            "compute_pixels": self.compute_pixels,
            "dates_estimate": self.budget.dates,
            "tile_bytes": self.budget.tile_bytes(side),
            "budget_bytes": self.budget.max_bytes,
            "ee_exports_per_tile": exports_per_tile,
            "ee_tasks": self.tasks(exports_per_tile),
            "ee_assets": self.assets(exports_per_tile, outputs_to_asset),
            "ee_asset_quota": asset_quota,
        }


def _grid_ranges(grid: GridSpec, bounds: tuple[float, float, float, float]) -> tuple[range, range]:
    minx, miny, maxx, maxy = bounds
    span = grid.tile_size * grid.resolution
    ixs = range(math.floor(minx / span), math.floor(maxx / span) + 1)
    # rows grow southward: row = -y / res
    iys = range(math.floor(-maxy / span), math.floor(-miny / span) + 1)
    return ixs, iys


def tiles_touching(grid: GridSpec, aoi: BaseGeometry) -> tuple[Tile, ...]:
    """Every tile whose core shares area with ``aoi``, in row-major order (north to south)."""
    if aoi.is_empty or aoi.area <= 0:
        raise PlanError("the AOI has no area in the grid CRS; nothing to tile")
    ixs, iys = _grid_ranges(grid, aoi.bounds)
    n = len(ixs) * len(iys)
    if n > 5_000_000:
        raise PlanError(
            f"the AOI would need {n:,} candidate tiles of {grid.tile_size} px; use a larger --tile-size "
            "or a smaller AOI"
        )
    iy, ix = np.meshgrid(np.array(iys), np.array(ixs), indexing="ij")
    span = grid.tile_size * grid.resolution
    x0 = ix.ravel() * span
    y1 = -iy.ravel() * span
    boxes = shapely.box(x0, y1 - span, x0 + span, y1)
    shapely.prepare(aoi)
    hit = shapely.intersects(aoi, boxes)
    inside = shapely.contains_properly(aoi, boxes)
    edge = hit & ~inside
    # a box that only touches the AOI along a line or at a point holds no AOI area: drop it
    edge_idx = np.flatnonzero(edge)
    if edge_idx.size:
        areas = shapely.area(shapely.intersection(boxes[edge_idx], aoi))
        hit[edge_idx] = areas > 0
    keep = np.flatnonzero(hit)
    return tuple(Tile(grid, int(ix.ravel()[k]), int(iy.ravel()[k])) for k in keep)


def plan_tiles(
    aoi: BaseGeometry,
    epsg: int,
    resolution: float,
    budget: Budget,
    tile_size: int | None = None,
    recorded: bool = False,
) -> TilePlan:
    """Plan the tiles of ``aoi`` (a polygon in EPSG:``epsg``) on the fixed-origin grid.

    The tile side is the largest power of two whose haloed computation fits ``budget``, unless
    ``tile_size`` forces it. A ``recorded`` plan (a run's own, rebuilt to resume it) keeps its side
    whatever this version's budget model would say of it.
    """
    side = tile_size if tile_size is not None else budget.best_side()
    if tile_size is not None and not recorded and not budget.fits(side):
        raise PlanError(_over_budget(side, budget))
    grid = GridSpec(epsg=epsg, resolution=resolution, tile_size=side, halo=budget.halo)
    return TilePlan(
        grid=grid, aoi=aoi, tiles=tiles_touching(grid, aoi), budget=budget, forced_size=tile_size is not None
    )


def _over_budget(side: int, budget: Budget) -> str:
    """One line for a forced tile side beyond the budget: the need, the budget, the remedy."""
    need = budget.tile_bytes(side)
    if side + 2 * budget.halo > REQUEST_MAX_SIDE:
        return (
            f"TILE_SIZE {side} plus its halo is over Earth Engine's {REQUEST_MAX_SIDE} px request side; "
            f"use --tile-size {REQUEST_MAX_SIDE // 2} or less, or drop --tile-size"
        )
    base = f" + a worker's own {budget.base_bytes / 2**20:.0f} MiB" if budget.base_bytes else ""
    try:
        fits = f"--tile-size {budget.best_side()} (the largest that fits)"
    except PlanError:
        fits = "a shorter period"
    return (
        f"TILE_SIZE {side} needs {need / 2**30:.1f} GiB per tile ({budget.dates} dates x {budget.bands} bands x "
        f"{side + 2 * budget.halo}^2 px x {budget.dtype_bytes} bytes{base}), "
        f"over the {budget.max_bytes / 2**30:.1f} GiB "
        f"tile budget (TILE_BUDGET_MB {budget.max_bytes / 2**20:g}): a worker would run out of memory; use "
        f"{fits}, or raise --tile-budget-mb to {math.ceil(need / 2**20)} if the machine has the memory"
    )
