"""Pixels of the executing stand-in: projections, request grids and lazy, pull-based bands.

Earth Engine computes nothing until a request names an output grid ("pull-based"): an export's
``crs`` / ``crsTransform`` / region, a ``reduceRegion``'s ``crs`` + ``scale``, a
``computePixels`` grid. Every upstream operation is then evaluated on that grid, unless an
``Image.reproject`` intervenes (Earth Engine guide "Projections": *Earth Engine requests inputs
in the projection of the output*; ``reproject`` *forces* a projection). Here a :class:`Band` is a
function ``Grid -> Px``; a request evaluates the root band on its grid and each band asks its
inputs for the same grid (kernels for the grid grown by their radius).

Resampling is nearest neighbour (Earth Engine's default, guide "Resampling and reducing
resolution"). Images read from assets/collections at a coarser scale than stored go through the
asset's pyramid: the level whose scale is closest to but not coarser than the request, each level
2 x 2 aggregates of the one below by the band's pyramiding policy (guide "Scale": *MEAN* by
default; SAMPLE, MIN, MAX, MODE, MEDIAN).

Masks are floats in [0, 1] per band (guide "Masking"); binary operations take the minimum (the
intersection for binary masks).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

M_PER_DEGREE = 111_319.490793  # nominal metres per degree at the equator (WGS84)


@lru_cache(maxsize=256)
def transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


@lru_cache(maxsize=256)
def is_geographic(crs: str) -> bool:
    from pyproj import CRS

    return CRS.from_user_input(crs).is_geographic


def crs_code(crs: str) -> str:
    return crs.upper() if crs.upper().startswith("EPSG:") else crs


@dataclass(frozen=True)
class Proj:
    """A CRS and an affine ``(a, b, c, d, e, f)``: x = a col + b row + c, y = d col + e row + f."""

    crs: str
    transform: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    @property
    def nominal_scale(self) -> float:
        """Metres per pixel (degrees are converted at the equator, as Earth Engine does)."""
        a, b, _, d, e, _ = self.transform
        s = math.sqrt(abs(a * e - b * d))
        return s * M_PER_DEGREE if is_geographic(self.crs) else s

    def at_scale(self, scale_m: float) -> "Proj":
        """The projection rescaled so a pixel is ``scale_m`` nominal metres (origin kept)."""
        s = scale_m / M_PER_DEGREE if is_geographic(self.crs) else scale_m
        _, _, c, _, _, f = self.transform
        return Proj(self.crs, (s, 0.0, c, 0.0, -s, f))

    def level(self, k: int) -> "Proj":
        if k == 0:
            return self
        a, b, c, d, e, f = self.transform
        m = float(2 ** k)
        return Proj(self.crs, (a * m, b * m, c, d * m, e * m, f))

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (col, row) of CRS coordinates."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        dx, dy = x - c, y - f
        return (e * dx - b * dy) / det, (-d * dx + a * dy) / det

    def to_json(self) -> dict[str, Any]:
        return {"crs": self.crs, "transform": list(self.transform)}


#: The default projection of composites and constants (guide "Projections": WGS84, 1 degree).
DEFAULT_PROJ = Proj("EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0))


@dataclass(frozen=True)
class Grid:
    """``w`` x ``h`` pixels of ``proj`` starting at pixel ``(col0, row0)``."""

    proj: Proj
    col0: int
    row0: int
    w: int
    h: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.h, self.w

    @property
    def size(self) -> int:
        return self.w * self.h

    def grow(self, r: int) -> "Grid":
        return Grid(self.proj, self.col0 - r, self.row0 - r, self.w + 2 * r, self.h + 2 * r)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of the pixel centres, each (h, w)."""
        a, b, c, d, e, f = self.proj.transform
        cols = self.col0 + np.arange(self.w) + 0.5
        rows = self.row0 + np.arange(self.h) + 0.5
        cc, rr = np.meshgrid(cols, rows)
        return a * cc + b * rr + c, d * cc + e * rr + f

    def centres_in(self, crs: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.centres()
        if crs_code(crs) == crs_code(self.proj.crs):
            return x, y
        xx, yy = transformer(self.proj.crs, crs).transform(x.ravel(), y.ravel())
        return np.asarray(xx).reshape(x.shape), np.asarray(yy).reshape(y.shape)

    def affine(self) -> tuple[float, float, float, float, float, float]:
        """The transform of this grid's own pixel (0, 0)."""
        a, b, c, d, e, f = self.proj.transform
        return a, b, c + a * self.col0 + b * self.row0, d, e, f + d * self.col0 + e * self.row0


def grid_covering(proj: Proj, bounds: tuple[float, float, float, float], crs: str) -> Grid:
    """The pixels of ``proj`` whose area meets ``bounds`` (minx, miny, maxx, maxy in ``crs``)."""
    minx, miny, maxx, maxy = bounds
    xs = np.linspace(minx, maxx, 9)
    ys = np.linspace(miny, maxy, 9)
    X, Y = np.meshgrid(xs, ys)
    if crs_code(crs) != crs_code(proj.crs):
        X, Y = transformer(crs, proj.crs).transform(X.ravel(), Y.ravel())
    c, r = proj.to_pixel(np.asarray(X), np.asarray(Y))
    eps = 1e-9
    c0, c1 = math.floor(np.min(c) + eps), math.ceil(np.max(c) - eps)
    r0, r1 = math.floor(np.min(r) + eps), math.ceil(np.max(r) - eps)
    return Grid(proj, c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))


# --- pixels -------------------------------------------------------------------------------------
@dataclass
class Px:
    """Values and mask of one band on a grid. ``v`` is (h, w) for scalars or (h, w, *dims) for
    array pixels; ``n`` (arrays only) is the per-pixel length along array axis 0 (arrays from
    ``ImageCollection.toArray`` differ in length from pixel to pixel); ``m`` is (h, w) in [0, 1]."""

    v: np.ndarray
    m: np.ndarray
    n: np.ndarray | None = None

    @property
    def is_array(self) -> bool:
        return self.v.ndim > 2


@dataclass(eq=False)
class Band:
    """A lazily computed band: ``fn(grid, ctx) -> Px``; ``proj`` is its default projection."""

    name: str
    fn: Callable[["Grid", "Ctx"], Px]
    proj: Proj = DEFAULT_PROJ
    pyramiding: str = "MEAN"
    array_dims: int = 0
    native: bool = False  # stored (asset / catalog) pixels: read through a pyramid

    def renamed(self, name: str) -> "Band":
        return Band(name, self.fn, self.proj, self.pyramiding, self.array_dims, self.native)

    def compute(self, grid: Grid, ctx: "Ctx") -> Px:
        return ctx.get(self, grid)


@dataclass(eq=False)
class Image:
    bands: list[Band]
    props: dict[str, Any] = field(default_factory=dict)
    footprint: Any = None  # lon/lat shapely geometry of stored images (for filterBounds)
    export_grid: Grid | None = None  # set by Image.clipToBoundsAndScale

    def names(self) -> list[str]:
        return [b.name for b in self.bands]

    def with_bands(self, bands: list[Band]) -> "Image":
        return Image(bands, dict(self.props), self.footprint, self.export_grid)


# --- the evaluation context: memo and cost -------------------------------------------------------
class ComputeLimit(Exception):
    """A computation exceeding the cost model (worded as Earth Engine words it)."""


@dataclass
class Cost:
    """Documented cost model of one request (see the stand-in README, "Cost model").

    ``pixel_ops`` counts every output pixel of every band operation (array pixels count their
    elements); ``held_bytes`` is the memory the computation holds: every intermediate band it
    has computed (8 bytes a value, 8 a mask pixel; the stand-in evaluates a request as one tile,
    so this is the size of the request, not of one of Earth Engine's 256 x 256 tiles) and every
    source window it is about to read (:meth:`reserve`). Interactive requests
    (``value:compute``, ``computePixels``) fail with "Computation timed out." above
    ``interactive_pixel_ops`` and every request with "User memory limit exceeded." above
    ``memory_bytes``; batch tasks have ``batch_pixel_ops``."""

    limit_ops: float
    memory_bytes: float
    pixel_ops: float = 0.0
    held_bytes: float = 0.0

    def add(self, px: Px) -> None:
        self.pixel_ops += float(px.v.size)
        if self.pixel_ops > self.limit_ops:
            raise ComputeLimit("Computation timed out.")

    def hold(self, nbytes: float) -> None:
        self.held_bytes += nbytes
        if self.held_bytes > self.memory_bytes:
            raise ComputeLimit("User memory limit exceeded.")

    def reserve(self, nbytes: float) -> None:
        """Fail before a read that would not fit (the read's own result is held afterwards)."""
        if self.held_bytes + nbytes > self.memory_bytes:
            raise ComputeLimit("User memory limit exceeded.")


MEMO_BYTES = 1 << 30  # the stand-in's own memory per request (not the cost model's)


class Ctx:
    """Per-request memo: a band on a grid is computed once however many consumers it has.

    The cost model charges every computed band as held (``Cost.hold``) whatever the stand-in keeps.
    The stand-in itself keeps the most recently used ``memo_bytes`` of them: a band evicted and
    asked for again is computed again (the same numbers; its cost is charged again), so a
    request's real memory stays bounded when the cost model's limit is raised to compute big ones.
    """

    def __init__(self, cost: Cost, source: Any = None, memo_bytes: int = MEMO_BYTES):
        self.cost = cost
        self.source = source
        self.memo_bytes, self._held = memo_bytes, 0
        self._memo: OrderedDict[tuple[int, Grid], tuple[Band, Px, int]] = OrderedDict()
        self.reads: dict[tuple[str, Grid], Any] = {}  # source reads shared by a granule's bands

    def get(self, band: Band, grid: Grid) -> Px:
        key = (id(band), grid)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit[1]
        px = band.fn(grid, self)
        if px.v.shape[:2] != grid.shape:
            raise AssertionError(f"band {band.name}: {px.v.shape} on grid {grid.shape}")
        self.cost.add(px)
        base = px.v if px.v.base is None or px.v.strides[:2] != (0, 0) else px.v.base  # broadcast constants
        nbytes = base.nbytes + px.m.nbytes
        self.cost.hold(nbytes)
        self._memo[key] = (band, px, nbytes)  # the band too: its id must not be reused while memoised
        self._held += nbytes
        while self._held > self.memo_bytes and len(self._memo) > 1:
            _, (_, _, n) = self._memo.popitem(last=False)
            self._held -= n
        return px


# --- resampling ---------------------------------------------------------------------------------
def nearest(read: Callable[[Grid], Px], src: Proj, grid: Grid) -> Px:
    """``grid``'s pixels, each the ``src`` pixel containing its centre (``read`` of the window)."""
    if src == grid.proj:
        return read(grid)
    win, ii, jj = _nearest_index(src, grid)
    px = read(win)
    if ii is None:
        return px
    return Px(px.v[ii, jj], px.m[ii, jj], None if px.n is None else px.n[ii, jj])


@lru_cache(maxsize=64)
def _nearest_index(src: Proj, grid: Grid) -> tuple[Grid, np.ndarray | None, np.ndarray | None]:
    """The ``src`` window ``nearest`` reads for ``grid`` and the (row, col) of each of ``grid``'s
    pixels in it; the same for every image of a collection on one projection, hence cached."""
    x, y = grid.centres_in(src.crs)
    fc, fr = src.to_pixel(x, y)
    ci = np.floor(fc + 1e-9).astype(np.int64)
    ri = np.floor(fr + 1e-9).astype(np.int64)
    if ci.size == 0:
        return Grid(src, 0, 0, 0, 0), None, None
    c0, c1, r0, r1 = int(ci.min()), int(ci.max()), int(ri.min()), int(ri.max())
    ii, jj = ri - r0, ci - c0
    ii.setflags(write=False)
    jj.setflags(write=False)
    return Grid(src, c0, r0, c1 - c0 + 1, r1 - r0 + 1), ii, jj


def pyramid_level(native: Proj, request_scale: float) -> int:
    """The level whose scale is closest to, but not coarser than, the requested scale."""
    ratio = request_scale / native.nominal_scale
    if ratio < 2.0 - 1e-9:
        return 0
    return int(math.floor(math.log2(ratio) + 1e-9))


def aggregate(px: Px, policy: str) -> Px:
    """One pyramid step: 2 x 2 blocks (the window has even size, aligned to the level)."""
    v, m = px.v, px.m
    h, w = m.shape[0] // 2, m.shape[1] // 2
    vb = v[: 2 * h, : 2 * w].reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h, w, 4)
    mb = m[: 2 * h, : 2 * w].reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h, w, 4)
    valid = mb > 0
    if policy == "SAMPLE":  # the upper-left pixel of each block
        return Px(vb[..., 0].copy(), mb[..., 0].copy())
    any_valid = valid.any(axis=2)
    if policy == "MEAN":  # mask-weighted mean; the mask is the mean of the masks
        wsum = mb.sum(axis=2)
        val = np.where(wsum > 0, (np.where(valid, vb, 0) * mb).sum(axis=2) / np.where(wsum > 0, wsum, 1), 0.0)
        return Px(val, wsum / 4.0)
    vv = np.where(valid, vb, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if policy == "MIN":
                val = np.nanmin(vv, axis=2)
            elif policy == "MAX":
                val = np.nanmax(vv, axis=2)
            elif policy == "MEDIAN":
                val = np.nanmedian(vv, axis=2)
            elif policy == "MODE":
                val = _mode(vv)
            else:
                raise ValueError(f"unknown pyramiding policy {policy!r}")
    return Px(np.where(any_valid, val, 0.0), any_valid.astype(np.float64))


def _mode(vv: np.ndarray) -> np.ndarray:
    """The most frequent valid value of each block (ties: the smallest, documented choice)."""
    s = np.sort(vv, axis=2)
    best = s[..., 0].copy()
    best_n = np.zeros(s.shape[:2])
    for i in range(s.shape[2]):
        n = (s == s[..., i: i + 1]).sum(axis=2)
        better = (n > best_n) & ~np.isnan(s[..., i])
        best = np.where(better, s[..., i], best)
        best_n = np.where(better, n, best_n)
    return best


def stored_band(name: str, proj: Proj, read_level0: Callable[[Grid, Ctx], Px], pyramiding: str = "MEAN") -> Band:
    """A band of stored pixels on ``proj``: requests are served from its pyramid, nearest."""

    def fn(grid: Grid, ctx: Ctx) -> Px:
        k = pyramid_level(proj, grid.proj.nominal_scale)
        lvl = proj.level(k)

        def read(win: Grid) -> Px:
            if k == 0:
                return read_level0(win, ctx)
            m = 2 ** k
            base = read_level0(Grid(proj, win.col0 * m, win.row0 * m, win.w * m, win.h * m), ctx)
            for _ in range(k):
                base = aggregate(base, pyramiding)
            return base

        return nearest(read, lvl, grid)

    return Band(name, fn, proj, pyramiding, 0, True)


def constant_px(grid: Grid, value: float, mask: float = 1.0) -> Px:
    return Px(np.full(grid.shape, float(value)), np.full(grid.shape, float(mask)))
