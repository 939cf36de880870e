"""The embedded synthetic data source: deterministic optical, SAR and true NDVI, with ground truth.

Every value is a pointwise function of (seed, CRS, pixel-centre coordinates, UTC day): nothing
depends on the window a pixel is read through, so tiles, halos, whole AOIs and the coarse
statistics lattice (``grid.geobox(..., step=k)``) all see bit-identical pixels. Coordinates are
first quantised to integers (1 mm for projected CRSs, 1e-8 degree for geographic ones) and every
later computation starts from those integers.

Coverage follows the per-granule acquisition model of :mod:`engine.sources.footprints`: a
catalog lists the days on which a usable granule (Landsat WRS-2 scene, Sentinel-2 tile cut to its
orbit's swath, Sentinel-1 IW VV+VH slice) intersects the window, and a read is no data (NaN,
optical QA ``QA_NODATA``) at pixel centres outside every usable granule footprint of that day
(:func:`coverage_mask`). Optical reflectance is quantised like the catalogs' integer DN
(``refl = DN * scale + offset``, ``OPTICAL_DN``; :func:`optical_dn`), so a stand-in serving DN per
granule and this source's reads agree exactly. SAR stays float dB. The truth NDVI is unmasked.

The model (land cover, phenology, reflectance, backscatter, clouds, calendars, footprints, DN) is
documented, with its equations and parameters, in ``SYNTHETIC.md`` beside this file.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import threading
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from numba import njit
from shapely.geometry import Polygon, box

from engine.errors import SourceError
from engine.sources import footprints as _fp
from engine.sources.base import (
    OPTICAL_MISSIONS,
    SAR_MISSION,
    day_to_datetime64,
    empty_catalog,
    make_id,
    parse_ids,
    to_ns,
)

if TYPE_CHECKING:  # pragma: no cover
    from odc.geo.geobox import GeoBox

log = logging.getLogger(__name__)

__all__ = [
    "SyntheticSource",
    "acquisition_days",
    "coverage_days",
    "coverage_mask",
    "footprint_mask",
    "lonlat_extent",
    "pixel_lonlat",
    "optical_dn",
    "dn_reflectance",
    "OPTICAL_DN",
    "DN_FILL",
    "DN_VALID",
    "QA_NODATA",
    "LAND_COVER_CLASSES",
    "SCL",
    "QA_PIXEL",
]

# =============================================================================================
# Calendars (integer UTC days since 1970-01-01). Anchored to fixed epochs so that catalogs of
# overlapping periods agree.


def _d(s: str) -> int:
    return (_dt.date.fromisoformat(s) - _dt.date(1970, 1, 1)).days


S2A_START = _d("2015-07-04")  # Sentinel-2A: every 10 days from here
S2B_START = _d("2017-07-06")  # Sentinel-2B: the other 5-day phase from here (S2C continues it)
S2_ANCHOR = S2A_START
L8_START = _d("2013-04-11")  # Landsat 8: every 16 days from here
L9_START = _d("2021-10-31")  # Landsat 9: every 16 days, 8 days out of phase with Landsat 8
S1_ANCHOR = _d("2014-10-03")  # Sentinel-1A: every 12 days from here
S1B_START, S1B_END = _d("2016-09-26"), _d("2021-12-23")  # S1B: the other 6-day phase
S1C_START = _d("2025-05-20")  # S1C resumes the 6-day phase

#: Acquisition time of day (UTC seconds); all acquisitions of a mission share it.
OVERPASS_SECONDS = {"S2": 0 * 3600 + 30 * 60, "L8": 0 * 3600 + 10 * 60, "L9": 0 * 3600 + 10 * 60, "S1": 8 * 3600 + 30 * 60}


def acquisition_days(mission: str, first_day: int, last_day: int) -> np.ndarray:
    """Integer days in ``[first_day, last_day)`` of ``mission``'s global (track-phase 0) calendar.

    The catalogs no longer use it (they follow the per-track footprints, :func:`coverage_days`);
    it defines the weather's cumulus days (every day on both the S2 and the L8 global calendar)
    and is the calendar of a window seen only by tracks of phase 0 (Landsat paths 1, 17, ..., 97,
    113; Sentinel-2 orbits 0, 10, ...; Sentinel-1 tracks 0, 12, ...; see ``footprints``).
    """
    d = np.arange(int(first_day), int(last_day), dtype=np.int64)
    if mission == "S2":
        ph = (d - S2_ANCHOR) % 10
        keep = (d >= S2A_START) & ((ph == 0) | ((ph == 5) & (d >= S2B_START)))
    elif mission == "L8":
        keep = (d >= L8_START) & ((d - L8_START) % 16 == 0)
    elif mission == "L9":
        keep = (d >= L9_START) & ((d - L8_START) % 16 == 8)
    elif mission == "S1":
        ph = (d - S1_ANCHOR) % 12
        six = ((d >= S1B_START) & (d < S1B_END)) | (d >= S1C_START)
        keep = (d >= S1_ANCHOR) & ((ph == 0) | ((ph == 6) & six))
    else:
        raise SourceError(f"unknown mission {mission!r}: expected one of {', '.join(OPTICAL_MISSIONS + (SAR_MISSION,))}")
    return d[keep]


# =============================================================================================
# Encodings

#: Land-cover class codes.
WATER, FOREST, PASTURE, CROP, BARE = 0, 1, 2, 3, 4
LAND_COVER_CLASSES = {WATER: "water", FOREST: "forest", PASTURE: "pasture", CROP: "crop", BARE: "bare"}

#: Sentinel-2 L2A scene classification codes used here.
SCL = {"no_data": 0, "saturated": 1, "cloud_shadow": 3, "vegetation": 4, "not_vegetated": 5, "water": 6,
       "cloud_medium": 8, "cloud_high": 9, "cirrus": 10}

#: Landsat Collection 2 QA_PIXEL words used here (bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud,
#: 4 cloud shadow, 6 clear, 7 water; bits 8-9, 10-11, 12-13, 14-15 cloud / shadow / snow / cirrus
#: confidence, 01 low, 11 high).
_CONF_LOW = (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
QA_PIXEL = {
    "fill": 1,
    "clear": (1 << 6) | _CONF_LOW,  # 21824
    "clear_water": (1 << 6) | (1 << 7) | _CONF_LOW,  # 21952
    "cloud": (1 << 3) | (3 << 8) | (1 << 10) | (1 << 12) | (1 << 14),  # 22280
    "dilated": (1 << 1) | _CONF_LOW,  # 21762
    "shadow": (1 << 4) | (1 << 6) | (1 << 8) | (3 << 10) | (1 << 12) | (1 << 14),  # 23888
    "cirrus": (1 << 2) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 12) | (3 << 14),  # 54596
}
_M_S2, _M_L8 = 0, 1  # qa encodings inside the kernels

#: QA value of a no-data pixel (outside the day's footprint, or a no-data strip), per mission.
QA_NODATA = {"S2": SCL["no_data"], "L8": QA_PIXEL["fill"], "L9": QA_PIXEL["fill"]}

#: Catalog integer DN encoding of optical reflectance: ``refl = DN * scale + offset`` with
#: ``(scale, offset)`` per mission (COPERNICUS/S2_SR_HARMONIZED: 1e-4, 0; Landsat Collection 2
#: L2 SR_B*: 2.75e-5, -0.2). DN ``DN_FILL`` (0) is no data; valid pixels have DN in ``DN_VALID``.
OPTICAL_DN = {"S2": (1e-4, 0.0), "L8": (2.75e-5, -0.2), "L9": (2.75e-5, -0.2)}
DN_FILL = 0
DN_VALID = (1, 65535)


def optical_dn(mission: str, refl: Any) -> np.ndarray:
    """Catalog DN (uint16) of reflectance ``refl``: ``round((refl - offset) / scale)`` in float64
    (half to even), clipped to ``DN_VALID``; ``DN_FILL`` where ``refl`` is NaN.

    Idempotent on this source's reads: ``optical_dn(m, read_optical(...).red)`` returns the DN the
    read was made from, and ``dn_reflectance(m, optical_dn(m, r)) == r`` bit for bit.
    """
    scale, offset = _dn_params(mission)
    r = np.asarray(refl, dtype=np.float64)
    ok = np.isfinite(r)
    dn = np.clip(np.rint((np.where(ok, r, 0.0) - offset) / scale), DN_VALID[0], DN_VALID[1])
    return np.where(ok, dn, DN_FILL).astype(np.uint16)


def dn_reflectance(mission: str, dn: Any) -> np.ndarray:
    """Reflectance (float32) of catalog DN: ``float32(DN * scale + offset)`` computed in float64,
    NaN where ``DN == DN_FILL``: what :meth:`SyntheticSource.read_optical` returns."""
    scale, offset = _dn_params(mission)
    d = np.asarray(dn)
    out = (d.astype(np.float64) * scale + offset).astype(np.float32)
    return np.where(d == DN_FILL, np.float32(np.nan), out)


def _dn_params(mission: str) -> tuple[float, float]:
    try:
        return OPTICAL_DN[str(mission).upper()]
    except KeyError:
        raise SourceError(f"no DN encoding for mission {mission!r}: expected one of {', '.join(OPTICAL_DN)}") from None


# =============================================================================================
# Model parameters (see SYNTHETIC.md)

Q_PROJECTED = 1e-3  # coordinate quantum, CRS units (metres)
Q_GEOGRAPHIC = 1e-8  # coordinate quantum, degrees
M_PER_DEGREE = 111_320.0  # degrees are scaled to pseudo-metres for the model's length scales

# value-noise configurations: (lattice spacings in metres, weights)
NOISE_LANDSCAPE = ((7000.0, 2800.0, 1100.0, 450.0), (1.0, 0.6, 0.35, 0.2))
NOISE_AGBIAS = ((5000.0, 1500.0), (1.0, 0.5))
NOISE_SOIL = ((3000.0, 700.0), (1.0, 0.5))
NOISE_TEXTURE = ((90.0,), (1.0,))
NOISE_SMMOD = ((4000.0,), (1.0,))
NOISE_CLOUD = ((3500.0, 1400.0, 550.0, 220.0), (1.0, 0.55, 0.3, 0.15))
NOISE_CIRRUS = ((9000.0, 3000.0), (1.0, 0.4))

WATER_QUANTILE = 0.04  # landscape field below this quantile: water
FOREST_QUANTILE = 0.70  # above: forest
PARCEL_SIZE = (450.0, 280.0)  # metres, along the rotated axes
PARCEL_ANGLE = 0.3  # radians
BARE_PARCEL_PROB = 0.05

WET_SEASON_PEAK_DOY = 45  # day of year of the cloudiest, wettest season
CLEAR_PROB = (0.45, 0.30)  # P(clear day) = a - b * wetness
OVERCAST_PROB = (0.04, 0.22)  # P(overcast day) = a + b * wetness
# margins in standard deviations of the cloud field
CLOUD_THICK = 0.58  # above the threshold: high-probability cloud (SCL 9), else medium (SCL 8)
CLOUD_DILATION = 0.23  # below the threshold: Landsat dilated-cloud ring
CLOUD_FRINGE = 0.38  # below the threshold: unflagged thin-cloud contamination
SHADOW_MARGIN = 0.10  # a shadow needs the casting cloud this far above the threshold
# fair-weather cumulus days: small cells, AOI cloud fraction close to its large-area value
NOISE_CUMULUS = ((100.0, 45.0), (1.0, 0.45))
CUMULUS_EXTRA_PROB = 0.03  # besides every day on both the S2 and L8 global calendars (every 80 days)
CUMULUS_COVER = {"S2": 0.322, "L8": 0.2785, "L9": 0.2785}  # tuned: cloud+shadow(+dilation) ~ 52.5 %
SHADOW_OFFSET = (540.0, 720.0)  # metres: a pixel is shadowed by the cloud at (x + dx, y + dy)
CIRRUS_DATE_PROB = 0.15
CIRRUS_MAX_COVER = 0.4

OPT_SWATH_PERIOD_KM, OPT_NODATA_FRACTION, OPT_SWATH_ANGLE = 70.0, 0.08, 0.20
SAR_SWATH_PERIOD_KM, SAR_NODATA_FRACTION, SAR_SWATH_ANGLE = 160.0, 0.05, -0.17
SAR_BORDER_NOISE_KM = 1.0
SAR_ENL = 4.4
SAR_VH = (-25.5, 9.5, 1.5)  # dB: intercept, per unit NDVI (volume scattering), per unit wetness
SAR_VV = (-16.5, 6.5, 3.5)
SAR_WATER = ((-23.0, 8.0), (-29.0, 4.0))  # (VV, VH): calm-water dB, per unit wind roughness
SATURATION_PROB = 2e-5  # per S2 pixel and date: SCL 1

# =============================================================================================
# Footprints: which pixels a day's acquisition covers (granules of ``engine.sources.footprints``)
#
# A pixel is covered on a day when its centre, in lon/lat, lies inside (``shapely.contains_xy``:
# boundary points are outside) the footprint of at least one usable granule of that day, i.e.
# inside the day footprint ``footprints.day_footprints`` returns (the union; granules of one
# mission and day overlap, so the two agree). Pixel centres are the quantised coordinates the
# model uses, so every window sees the same coverage for the same pixel.

FP_CELL_DEG = 1.0  # granule lists are cached per mission, 1 x 1 degree cell and block of days
FP_BLOCK_DAYS = 256
_FP_CACHE: OrderedDict[tuple, dict[int, tuple[tuple[str, Any], ...]]] = OrderedDict()
_FP_CACHE_SIZE = 1024
_LL_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # per window: _Window
_LL_CACHE_SIZE = 8
_FP_LOCK = threading.Lock()
_EXTENT_SEGMENT = 1000.0  # CRS units: the lon/lat extent is densified to this spacing


def _fp_block(mission: str, i: int, j: int, b: int) -> dict[int, tuple[tuple[str, Any], ...]]:
    """Usable granules ``(id, footprint)`` per day of a cell (lon i, lat j) and day block b."""
    key = (mission, i, j, b)
    with _FP_LOCK:
        hit = _FP_CACHE.get(key)
        if hit is not None:
            _FP_CACHE.move_to_end(key)
            return hit
    cell = box(i * FP_CELL_DEG, j * FP_CELL_DEG, (i + 1) * FP_CELL_DEG, (j + 1) * FP_CELL_DEG)
    by_day: dict[int, list[tuple[str, Any]]] = {}
    for g in _fp.granules(mission, cell, b * FP_BLOCK_DAYS, (b + 1) * FP_BLOCK_DAYS):
        if _fp.usable(g):
            shapely.prepare(g.footprint)
            by_day.setdefault(g.day, []).append((g.id, g.footprint))
    out = {d: tuple(v) for d, v in by_day.items()}
    with _FP_LOCK:
        _FP_CACHE[key] = out
        while len(_FP_CACHE) > _FP_CACHE_SIZE:
            _FP_CACHE.popitem(last=False)
    return out


def _granules_over(mission: str, region: Any, days: Iterable[int]) -> dict[int, list[Any]]:
    """Per day in ``days``: the footprints of the usable granules intersecting the lon/lat ``region``."""
    days = sorted({int(d) for d in days})
    if not days or region.is_empty:
        return {}
    minx, miny, maxx, maxy = region.bounds
    cells = [(i, j) for i in range(math.floor(minx / FP_CELL_DEG), math.floor(maxx / FP_CELL_DEG) + 1)
             for j in range(math.floor(miny / FP_CELL_DEG), math.floor(maxy / FP_CELL_DEG) + 1)]
    shapely.prepare(region)
    out: dict[int, list[Any]] = {}
    for b in sorted({d // FP_BLOCK_DAYS for d in days}):
        want = {d for d in days if d // FP_BLOCK_DAYS == b}
        for i, j in cells:
            for d, grs in _fp_block(mission, i, j, b).items():
                if d not in want:
                    continue
                seen = out.setdefault(d, [])
                for gid, fp in grs:
                    if all(gid != s for s, _ in seen) and region.intersects(fp):
                        seen.append((gid, fp))
    return {d: [fp for _, fp in v] for d, v in sorted(out.items()) if v}


def lonlat_extent(geobox: GeoBox) -> Polygon:
    """The GeoBox's extent as a lon/lat (EPSG:4326) polygon, densified every ~1 km of its CRS."""
    crs = geobox.crs
    if crs is None:
        raise SourceError("the synthetic source needs a GeoBox with a CRS")
    ext = geobox.extent.geom
    if crs.epsg == 4326:
        return ext
    seg = _EXTENT_SEGMENT / M_PER_DEGREE if crs.geographic else _EXTENT_SEGMENT
    tr = _transformer(crs)
    return shapely.transform(ext.segmentize(seg), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _transformer(crs: Any):
    from pyproj import Transformer

    src = f"EPSG:{crs.epsg}" if crs.epsg is not None else crs.to_wkt()
    return Transformer.from_crs(src, "EPSG:4326", always_xy=True)


def _quantised_centres(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    coords = geobox.coords
    xs = np.asarray(coords["x" if "x" in coords else "longitude"].values, dtype=np.float64)
    ys = np.asarray(coords["y" if "y" in coords else "latitude"].values, dtype=np.float64)
    q = Q_GEOGRAPHIC if geobox.crs.geographic else Q_PROJECTED
    return np.round(xs / q) * q, np.round(ys / q) * q


class _Window:
    """Pixel-centre geometry of one window: quantised centres, lon/lat transform, block outlines."""

    def __init__(self, geobox: GeoBox) -> None:
        crs = geobox.crs
        if crs is None:
            raise SourceError("the synthetic source needs a GeoBox with a CRS")
        self.xc, self.yc = _quantised_centres(geobox)
        self.shape = (self.yc.size, self.xc.size)
        self.identity = crs.epsg == 4326
        self.tr = None if self.identity else _transformer(crs)
        self.step = (_MASK_SEGMENT / M_PER_DEGREE) if crs.geographic else _MASK_SEGMENT
        ny, nx = self.shape
        self.blocks = [(r0, min(r0 + _MASK_BLOCK, ny), c0, min(c0 + _MASK_BLOCK, nx))
                       for r0 in range(0, ny, _MASK_BLOCK) for c0 in range(0, nx, _MASK_BLOCK)]
        self._outlines: np.ndarray | None = None
        self._lonlat: tuple[np.ndarray, np.ndarray] | None = None
        self._block_lonlat: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.identity:
            return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        lon, lat = self.tr.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def lonlat(self, r0: int = 0, r1: int | None = None, c0: int = 0, c1: int | None = None):
        if self._lonlat is not None:
            lon, lat = self._lonlat
            return lon[r0:r1, c0:c1], lat[r0:r1, c0:c1]
        return self.transform(*np.meshgrid(self.xc[c0:c1], self.yc[r0:r1]))

    def block_lonlat(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._block_lonlat.get(b)
        if hit is None:
            hit = self._block_lonlat[b] = self.lonlat(*self.blocks[b])
        return hit

    def full_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lonlat is None:
            self._lonlat = self.lonlat()
        return self._lonlat

    def outlines(self) -> np.ndarray:
        """Per block, the lon/lat outline of its pixel centres (densified every ``_MASK_SEGMENT``
        CRS units, so its edges are within ~1e-8 degree of the true curves), buffered by
        ``_MASK_MARGIN_DEG``: it contains every centre of the block with room to spare."""
        if self._outlines is None:
            rings = []
            for r0, r1, c0, c1 in self.blocks:
                xa, xb, ya, yb = self.xc[c0], self.xc[c1 - 1], self.yc[r0], self.yc[r1 - 1]
                nxs = max(2, int(math.ceil(abs(xb - xa) / self.step)) + 1)
                nys = max(2, int(math.ceil(abs(yb - ya) / self.step)) + 1)
                tx, ty = np.linspace(xa, xb, nxs), np.linspace(ya, yb, nys)
                x = np.concatenate([tx, np.full(nys, xb), tx[::-1], np.full(nys, xa)])
                y = np.concatenate([np.full(nxs, ya), ty, np.full(nxs, yb), ty[::-1]])
                lon, lat = self.transform(x, y)
                rings.append(shapely.multipoints(np.column_stack([lon, lat])).convex_hull
                             if (r1 - r0 < 2 or c1 - c0 < 2) else shapely.Polygon(np.column_stack([lon, lat])))
            self._outlines = shapely.buffer(np.asarray(rings, dtype=object), _MASK_MARGIN_DEG, quad_segs=1)
        return self._outlines


_MASK_BLOCK = 32  # pixels: footprint masks classify 32 x 32 blocks first, then only edge blocks per pixel
_MASK_SEGMENT = 100.0  # CRS units (metres; degrees / M_PER_DEGREE): block outlines densified to this
_MASK_MARGIN_DEG = 1e-7  # block outlines buffered by ~1 cm


def _window(geobox: GeoBox) -> _Window:
    xc, yc = _quantised_centres(geobox)
    key = (geobox.crs.to_wkt(), xc.tobytes(), yc.tobytes())
    with _FP_LOCK:
        hit = _LL_CACHE.get(key)
        if hit is not None:
            _LL_CACHE.move_to_end(key)
            return hit
    w = _Window(geobox)
    with _FP_LOCK:
        _LL_CACHE[key] = w
        while len(_LL_CACHE) > _LL_CACHE_SIZE:
            _LL_CACHE.popitem(last=False)
    return w


def pixel_lonlat(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat (float64, ``(ny, nx)``) of the GeoBox's pixel centres, from the quantised centre
    coordinates the model uses (1 mm / 1e-8 degree), so coarse lattices agree with fine grids.
    Transformed with pyproj (``always_xy``) point by point: any subset gives the same numbers."""
    lon, lat = _window(geobox).full_lonlat()
    return lon.copy(), lat.copy()


def footprint_mask(geobox: GeoBox, footprint: Any) -> np.ndarray:
    """True (``(ny, nx)`` bool) where a pixel centre lies inside the lon/lat ``footprint``:
    exactly ``shapely.contains_xy(footprint, *pixel_lonlat(geobox))`` (on the boundary is outside).

    Computed by blocks: a 32 x 32 block whose (buffered) outline the footprint contains is all
    True, one it does not touch all False, and only blocks on the footprint's edge are tested
    pixel by pixel.
    """
    w = _window(geobox)
    out = np.zeros(w.shape, dtype=bool)
    shapely.prepare(footprint)
    outl = w.outlines()
    inside = shapely.contains(footprint, outl)
    touch = shapely.intersects(footprint, outl)
    for b in np.flatnonzero(inside | touch):
        r0, r1, c0, c1 = w.blocks[b]
        if inside[b]:
            out[r0:r1, c0:c1] = True
        else:
            out[r0:r1, c0:c1] = shapely.contains_xy(footprint, *w.block_lonlat(int(b)))
    return out


def coverage_days(mission: str, geobox: GeoBox, first_day: int, last_day: int) -> np.ndarray:
    """Days in ``[first_day, last_day)`` on which a usable granule of ``mission`` intersects the
    GeoBox's extent: the days of its catalog (== the keys of ``footprints.day_footprints``)."""
    days = range(int(first_day), int(last_day))
    return np.asarray(sorted(_granules_over(mission, lonlat_extent(geobox), days)), dtype=np.int64)


def _coverage(mission: str, geobox: GeoBox, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per date: mode (0 nothing covered, 1 all covered, 2 partial), index into masks, masks."""
    nt = len(days)
    mode = np.zeros(nt, dtype=np.int64)
    idx = np.zeros(nt, dtype=np.int64)
    masks: list[np.ndarray] = []
    if nt == 0:
        return mode, idx, np.zeros((0,) + tuple(geobox.shape), dtype=np.bool_)
    region = lonlat_extent(geobox)
    grs = _granules_over(mission, region, days)
    done: dict[int, tuple[int, int]] = {}
    for t, d in enumerate(np.asarray(days, dtype=np.int64).tolist()):
        if d in done:
            mode[t], idx[t] = done[d]
            continue
        fps = grs.get(d, [])
        if not fps:
            m, k = 0, 0
        elif any(fp.contains(region) for fp in fps):  # pixel centres lie well inside the extent
            m, k = 1, 0
        else:
            cov = np.zeros(tuple(geobox.shape), dtype=np.bool_)
            for fp in fps:
                cov |= footprint_mask(geobox, fp)
            m, k = (1, 0) if cov.all() else ((0, 0) if not cov.any() else (2, len(masks)))
            if m == 2:
                masks.append(cov)
        mode[t], idx[t] = m, k
        done[d] = (m, k)
    stack = np.stack(masks) if masks else np.zeros((0,) + tuple(geobox.shape), dtype=np.bool_)
    return mode, idx, stack


def coverage_mask(mission: str, day: int, geobox: GeoBox) -> np.ndarray:
    """True (``(ny, nx)`` bool) where ``mission`` covers the pixel centre on ``day``: inside a
    usable granule footprint of that day. Reads are no data wherever this is False."""
    mode, idx, masks = _coverage(str(mission).upper(), geobox, np.asarray([int(day)]))
    if mode[0] == 2:
        return masks[idx[0]].copy()
    return np.full(tuple(geobox.shape), bool(mode[0]))


# =============================================================================================
# Hashing (splitmix64) — numba kernels

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S11, _S16, _S27, _S30, _S31, _S32, _S48 = (np.uint64(v) for v in (11, 16, 27, 30, 31, 32, 48))
_LOW16 = np.uint64(0xFFFF)
_INV53 = 1.0 / 9007199254740992.0
_INV16 = 1.0 / 65536.0
_SQRT3 = 1.7320508075688772
_SQRT6 = 2.449489742783178
_LN10_10 = 0.23025850929940458  # ln(10) / 10
_10_LN10 = 4.342944819032518  # 10 / ln(10)


# numba's numpy error model: a float division by zero gives inf / NaN as in numpy instead of a
# test and a ZeroDivisionError at every division (these kernels never divide by zero).
kernel = njit(cache=True, error_model="numpy")


@kernel
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@kernel
def _h1(key, a):
    return _mix(key ^ _mix(np.uint64(a) + _GOLD))


@kernel
def _h2(key, a, b):
    return _h1(_h1(key, a), b)


@kernel
def _uniform(h):
    return np.float64(h >> _S11) * _INV53


@kernel
def _gauss4(h):
    """Approximately standard normal (Irwin-Hall of four 16-bit uniforms)."""
    s = np.float64(h & _LOW16) + np.float64((h >> _S16) & _LOW16) + np.float64((h >> _S32) & _LOW16) + np.float64(h >> _S48)
    return (s * _INV16 - 2.0) * _SQRT3


@kernel
def _tri_pair(h):
    """Two approximately standard normal numbers (triangular, unit variance) from one hash."""
    a = (np.float64(h & _LOW16) + np.float64((h >> _S16) & _LOW16)) * _INV16 - 1.0
    b = (np.float64((h >> _S32) & _LOW16) + np.float64(h >> _S48)) * _INV16 - 1.0
    return a * _SQRT6, b * _SQRT6


@kernel
def _keys(key, values):
    out = np.empty(values.shape[0], dtype=np.uint64)
    for i in range(values.shape[0]):
        out[i] = _h1(key, values[i])
    return out


@kernel
def _pixel_keys(key, xq, yq):
    out = np.empty((yq.shape[0], xq.shape[0]), dtype=np.uint64)
    for r in range(yq.shape[0]):
        ky = _h1(key, yq[r])
        for c in range(xq.shape[0]):
            out[r, c] = _h1(ky, xq[c])
    return out


@kernel
def _value_noise(out, key, xm, ym, scales, weights):
    """Add sum_o w_o * smooth-bilinear value noise (lattice spacing scales[o]) at (xm, ym) to out.

    Lattice values are uniform in [-1, 1] hashed from (key, octave, i, j): the result at a point
    depends only on its coordinates, never on the window.
    """
    ny, nx = out.shape
    ix = np.empty(nx, dtype=np.int64)
    fx = np.empty(nx)
    iy = np.empty(ny, dtype=np.int64)
    fy = np.empty(ny)
    for o in range(scales.shape[0]):
        ell = scales[o]
        w = weights[o]
        okey = _h1(key, o + 1)
        for i in range(nx):
            t = xm[i] / ell
            f = np.floor(t)
            r = t - f
            ix[i] = np.int64(f)
            fx[i] = r * r * (3.0 - 2.0 * r)
        for j in range(ny):
            t = ym[j] / ell
            f = np.floor(t)
            r = t - f
            iy[j] = np.int64(f)
            fy[j] = r * r * (3.0 - 2.0 * r)
        ix0 = ix.min()
        iy0 = iy.min()
        tw = ix.max() - ix0 + 2
        th = iy.max() - iy0 + 2
        tab = np.empty((th, tw))
        for j in range(th):
            kj = _h1(okey, iy0 + j)
            for i in range(tw):
                tab[j, i] = 2.0 * _uniform(_h1(kj, ix0 + i)) - 1.0
        # runs of columns in one lattice cell: their two lattice values are shared
        runs = np.empty(nx + 1, dtype=np.int64)
        nr = 0
        for i in range(nx):
            if i == 0 or ix[i] != ix[i - 1]:
                runs[nr] = i
                nr += 1
        runs[nr] = nx
        line = np.empty(tw)
        for j in range(ny):
            jj = iy[j] - iy0
            wy = fy[j]
            for i in range(tw):  # interpolate the lattice along y first, then along x
                line[i] = tab[jj, i] + wy * (tab[jj + 1, i] - tab[jj, i])
            if 4 * nr > nx:  # short runs (a fine octave): pixel by pixel
                for i in range(nx):
                    ii = ix[i] - ix0
                    a = line[ii]
                    out[j, i] += w * (a + fx[i] * (line[ii + 1] - a))
                continue
            for k in range(nr):  # the same arithmetic, a run's lattice values loaded once
                i0, i1 = runs[k], runs[k + 1]
                ii = ix[i0] - ix0
                a = line[ii]
                d = line[ii + 1] - a
                for i in range(i0, i1):
                    out[j, i] += w * (a + fx[i] * d)


# --- quantile tables of the noise fields (tiling-independent constants, computed once) ------

_CDF_LEVELS = np.linspace(0.0, 1.0, 2001)
_CDF_CACHE: dict[tuple, np.ndarray] = {}
_CDF_LOCK = threading.Lock()


def _noise_sigma(config) -> float:
    """Robust standard deviation of a value-noise configuration (from its quantiles)."""
    q = _noise_quantiles(config)
    i = int(np.searchsorted(_CDF_LEVELS, 0.9))
    j = int(np.searchsorted(_CDF_LEVELS, 0.1))
    return float((q[i] - q[j]) / (2.0 * 1.2815515655446004))


def _noise_quantiles(config: tuple[tuple[float, ...], tuple[float, ...]]) -> np.ndarray:
    """Quantiles of a value-noise configuration at ``_CDF_LEVELS`` (fixed-key Monte Carlo)."""
    with _CDF_LOCK:
        q = _CDF_CACHE.get(config)
        if q is None:
            scales = np.asarray(config[0], dtype=np.float64)
            weights = np.asarray(config[1], dtype=np.float64)
            step = scales.min() * 0.37
            samples = []
            for k in range(48):
                buf = np.zeros((72, 72))
                x0 = (k * 7919.0 + 0.5) * scales.max()
                y0 = -(k * 104729.0 + 0.25) * scales.max()
                xm = x0 + step * np.arange(72)
                ym = y0 - step * np.arange(72)
                _value_noise(buf, np.uint64(0x5EED0000 + k), xm, ym, scales, weights)
                samples.append(buf.ravel())
            q = np.quantile(np.concatenate(samples), _CDF_LEVELS)
            q[0], q[-1] = -np.inf, np.inf
            _CDF_CACHE[config] = q
        return q


def _to_uniform(values: np.ndarray, config) -> np.ndarray:
    q = _noise_quantiles(config)
    return np.interp(values, q[1:-1], _CDF_LEVELS[1:-1])


def _threshold(cover: np.ndarray, config) -> np.ndarray:
    """Field threshold whose exceedance probability is ``cover`` (+inf for 0, -inf for 1)."""
    q = _noise_quantiles(config)
    cover = np.asarray(cover, dtype=np.float64)
    t = np.interp(1.0 - cover, _CDF_LEVELS, q)
    t = np.where(cover <= 0.0, np.inf, t)
    return np.where(cover >= 1.0, -np.inf, t)


# =============================================================================================
# Static (date-independent) per-pixel parameters

(P_CLS, P_BASE, P_AMP, P_CENTER, P_LEN, P_RAMP, P_JT, P_JA, P_FALLOW, P_TEX, P_SOIL, P_VEGRED,
 P_VHOFF, P_VVOFF, P_SMMOD, P_SOPT, P_SSAR, P_NESZ, P_E) = range(19)
N_PARAMS = 19


@kernel
def _static_kernel(p, yearkey, lu, agu, soilu, tex, smu, pixkey, parcel_key, region_key, xm, ym):
    ny, nx = lu.shape
    ca, sa = np.cos(PARCEL_ANGLE), np.sin(PARCEL_ANGLE)
    co, so = np.cos(OPT_SWATH_ANGLE), np.sin(OPT_SWATH_ANGLE)
    cs, ss = np.cos(SAR_SWATH_ANGLE), np.sin(SAR_SWATH_ANGLE)
    for r in range(ny):
        y = ym[r]
        lpi = lpj = lri = lrj = np.int64(-(2**62))  # the last parcel and region cell hashed (none yet)
        hk = rk = np.uint64(0)
        u1 = u2 = u3 = u4 = u5 = u6 = u7 = 0.0
        for c in range(nx):
            x = xm[c]
            hp = pixkey[r, c]
            u_pix = _uniform(_mix(hp ^ _GOLD))
            g_pix = _gauss4(_mix(hp ^ _M1))
            landscape = lu[r, c] + 0.015 * tex[r, c]
            # parcels on a rotated lattice (a parcel's draws hashed once per run of its pixels)
            pu = x * ca + y * sa
            pv = -x * sa + y * ca
            pi = np.int64(np.floor(pu / PARCEL_SIZE[0]))
            pj = np.int64(np.floor(pv / PARCEL_SIZE[1]))
            if pi != lpi or pj != lpj:
                lpi, lpj = pi, pj
                hk = _h2(parcel_key, pi, pj)
                u1 = _uniform(_mix(hk ^ np.uint64(1)))
                u2 = _uniform(_mix(hk ^ np.uint64(2)))
                u3 = _uniform(_mix(hk ^ np.uint64(3)))
                u4 = _uniform(_mix(hk ^ np.uint64(4)))
                u5 = _uniform(_mix(hk ^ np.uint64(5)))
                u6 = _uniform(_mix(hk ^ np.uint64(6)))
                u7 = _uniform(_mix(hk ^ np.uint64(7)))
            # region cells (5 km) give forest / pasture / water their inter-annual variation
            ri, rj = np.int64(np.floor(x / 5000.0)), np.int64(np.floor(y / 5000.0))
            if ri != lri or rj != lrj:
                lri, lrj = ri, rj
                rk = _h2(region_key, ri, rj)
            if landscape < WATER_QUANTILE:
                cls = WATER
                yk = rk
                base, amp, center, length, ramp = -0.28 + 0.08 * agu[r, c], 0.05, 30.0, 90.0, 10.0
                jt, ja, fallow = 10.0, 0.5, 0.0
                vhoff, vvoff = 0.0, 0.0
            elif landscape > FOREST_QUANTILE:
                cls = FOREST
                yk = rk
                base = 0.64 + 0.10 * agu[r, c]
                amp = 0.07 + 0.05 * soilu[r, c]
                center, length, ramp = 320.0, 180.0, 14.0
                jt, ja, fallow = 5.0, 0.2, 0.0
                vhoff, vvoff = 1.5, 0.5
            else:
                yk = hk
                if u7 < BARE_PARCEL_PROB:
                    cls = BARE
                    base, amp, center, length, ramp = 0.07 + 0.05 * u1, 0.03, 250.0, 120.0, 15.0
                    jt, ja, fallow = 0.0, 0.0, 0.0
                    vhoff, vvoff = -1.0, 1.0
                elif u6 < 0.25 + 0.5 * agu[r, c]:
                    cls = CROP
                    base = 0.13 + 0.05 * u1
                    amp = 0.55 + 0.2 * u2
                    center = 235.0 + 50.0 * (u3 - 0.5)
                    length = 100.0 + 40.0 * u4
                    ramp = 8.0 + 5.0 * u5
                    jt, ja, fallow = 12.0, 0.15, 0.15
                    vhoff, vvoff = -0.5 + 1.2 * (u5 - 0.5), 1.6 * (u4 - 0.5)
                else:
                    cls = PASTURE
                    base = 0.27 + 0.06 * u1
                    amp = 0.25 + 0.12 * u2
                    center = 250.0 + 20.0 * (u3 - 0.5)
                    length = 160.0 + 20.0 * u4
                    ramp = 12.0 + 3.0 * u5
                    jt, ja, fallow = 8.0, 0.25, 0.0
                    vhoff, vvoff = -1.0, -0.5
            texture = 0.0
            if cls != WATER:
                texture = 0.025 * tex[r, c] + 0.01 * g_pix
            p[P_CLS, r, c] = cls
            p[P_BASE, r, c] = base
            p[P_AMP, r, c] = amp
            p[P_CENTER, r, c] = center - 1.0  # day of year -> day offset from 1 January 1970
            p[P_LEN, r, c] = length
            p[P_RAMP, r, c] = ramp
            p[P_E, r, c] = np.exp(0.5 * length / ramp)
            p[P_JT, r, c] = jt
            p[P_JA, r, c] = ja
            p[P_FALLOW, r, c] = fallow
            p[P_TEX, r, c] = texture
            p[P_SOIL, r, c] = 0.09 + 0.09 * soilu[r, c]
            p[P_VEGRED, r, c] = 0.025 + 0.015 * u_pix
            p[P_VHOFF, r, c] = vhoff
            p[P_VVOFF, r, c] = vvoff
            p[P_SMMOD, r, c] = 0.7 + 0.6 * smu[r, c]
            p[P_SOPT, r, c] = (x * co + y * so) / 1000.0 / OPT_SWATH_PERIOD_KM  # across-track position, in swath periods
            s_sar = (x * cs + y * ss) / 1000.0
            p[P_SSAR, r, c] = s_sar / SAR_SWATH_PERIOD_KM
            nesz_db = -31.0 + 2.0 * np.cos(2.0 * np.pi * s_sar / (SAR_SWATH_PERIOD_KM / 3.0))
            p[P_NESZ, r, c] = nesz_db
            yearkey[r, c] = yk


@kernel
def _season(yk, k, center, amp0, ja, fallow, jt):
    """Season-year ``k`` draws of a pixel: (season centre day, amplitude)."""
    hy = _h1(yk, np.int64(k))
    uj = _uniform(_mix(hy ^ np.uint64(11)))
    ua = _uniform(_mix(hy ^ np.uint64(12)))
    uf = _uniform(_mix(hy ^ np.uint64(13)))
    amp = amp0 * (1.0 + ja * (2.0 * ua - 1.0))
    if uf < fallow:
        amp *= 0.15
    return center + k * 365.25 + jt * (2.0 * uj - 1.0), amp


@kernel
def _season_shape(day, ck, ramp, big):
    """Double logistic 1/(1+exp(-(d+h)/s)) - 1/(1+exp(-(d-h)/s)) with big = exp(h/s): the season's
    shape on ``day``, which every pixel of a parcel (or region) shares."""
    e = np.exp(-(day - ck) / ramp)
    return 1.0 / (1.0 + e / big) - 1.0 / (1.0 + e * big)


@kernel
def _ndvi_value(g, ak, base, tex):
    """A pixel's NDVI from its season's shape ``g``: base + amplitude x shape + texture, clipped."""
    v = base + ak * g + tex
    if v < -0.6:
        v = -0.6
    elif v > 0.93:
        v = 0.93
    return v


@kernel
def _ndvi_core(day, ck, ak, ramp, big, base, tex):
    return _ndvi_value(_season_shape(day, ck, ramp, big), ak, base, tex)


# The per-pixel NDVI, inlined by hand into each kernel (numba helpers taking arrays cost an
# atomic reference count per call). ``st`` caches the season-year draws of each pixel.
#
#     center = p[P_CENTER, r, c]
#     k = np.floor((day - center) / 365.25 + 0.5)
#     if st[0, r, c] != k:
#         ck, ak = _season(yearkey[r, c], k, center, p[P_AMP, r, c], p[P_JA, r, c], p[P_FALLOW, r, c], p[P_JT, r, c])
#         st[0, r, c] = k; st[1, r, c] = ck; st[2, r, c] = ak
#     ck, ramp, big = st[1, r, c], p[P_RAMP, r, c], p[P_E, r, c]
#     if not (ck == last[0] and ramp == last[1] and big == last[2]):  # the pixel before had another season
#         lck, lramp, lbig, lg = ck, ramp, big, _season_shape(day, ck, ramp, big)
#     nd = _ndvi_value(lg, st[2, r, c], p[P_BASE, r, c], p[P_TEX, r, c])
#
# The season's shape (an exp and three divisions) is shared by every pixel of a parcel (or a
# forest / water region) on a day: a run of neighbours along a row reuses it, the same numbers.


def _new_state(ny: int, nx: int) -> np.ndarray:
    st = np.empty((3, ny, nx))
    st[0] = np.nan
    return st


@kernel
def _truth_kernel(out, p, yearkey, state, days):
    nt, ny, nx = out.shape
    for t in range(nt):
        day = np.float64(days[t])
        for r in range(ny):
            lck = lramp = lbig = np.nan  # the season's shape of the last pixel computed (none yet)
            lg = 0.0
            for c in range(nx):
                center = p[P_CENTER, r, c]
                k = np.floor((day - center) / 365.25 + 0.5)
                if state[0, r, c] != k:
                    ck, ak = _season(yearkey[r, c], k, center, p[P_AMP, r, c], p[P_JA, r, c], p[P_FALLOW, r, c], p[P_JT, r, c])
                    state[0, r, c] = k
                    state[1, r, c] = ck
                    state[2, r, c] = ak
                ck, ramp, big = state[1, r, c], p[P_RAMP, r, c], p[P_E, r, c]
                if not (ck == lck and ramp == lramp and big == lbig):  # another season than the pixel before
                    lck, lramp, lbig, lg = ck, ramp, big, _season_shape(day, ck, ramp, big)
                nd = _ndvi_value(lg, state[2, r, c], p[P_BASE, r, c], p[P_TEX, r, c])
                out[t, r, c] = nd


@kernel
def _surface(cls, soil, vegred, nd):
    if cls == WATER:
        red = 0.03 + 0.02 * (soil - 0.09)
    else:
        fc = (nd - 0.08) / 0.8
        if fc < 0.0:
            fc = 0.0
        elif fc > 1.0:
            fc = 1.0
        red = (1.0 - fc) * soil + fc * vegred
    nir = red * (1.0 + nd) / (1.0 - nd)
    return red, nir


@kernel
def _quantise(v, scale, offset):
    """Reflectance as stored in a catalog: DN = round((v - offset) / scale) clipped to [1, 65535]."""
    dn = np.rint((v - offset) / scale)
    if dn < 1.0:
        dn = 1.0
    elif dn > 65535.0:
        dn = 65535.0
    return dn * scale + offset


@kernel
def _optical_kernel(red_out, nir_out, qa_out, p, yearkey, state, pixkey, days, qcode, date_keys,
                    cloud_keys, tau, sigma, cumulus, cirrus_keys, tau_ci, nd_phase, xm, ym, xs, ys,
                    cs, cw, us, uw, ks, kw, cov_mode, cov_idx, cov_masks, dn_scale, dn_offset):
    nt, ny, nx = red_out.shape
    zc = np.empty((ny, nx))
    zs = np.empty((ny, nx))
    zi = np.empty((ny, nx))
    for t in range(nt):
        mode = qcode[t]
        cm = cov_mode[t]
        if cm == 0:  # the day's footprint covers no pixel centre of the window
            red_out[t] = np.nan
            nir_out[t] = np.nan
            qa_out[t] = 0 if mode == _M_S2 else 1
            continue
        ci = cov_idx[t]
        sc = dn_scale[t]
        off = dn_offset[t]
        day = np.float64(days[t])
        th = tau[t]
        thi = tau_ci[t]
        sg = sigma[t]
        m_thick = CLOUD_THICK * sg
        m_dil = CLOUD_DILATION * sg
        m_fringe = CLOUD_FRINGE * sg
        m_shadow = SHADOW_MARGIN * sg
        zc[:] = 0.0
        zs[:] = 0.0
        zi[:] = 0.0
        if cumulus[t]:
            fs, fw = us, uw
        else:
            fs, fw = cs, cw
        if np.isfinite(th):
            _value_noise(zc, cloud_keys[t], xm, ym, fs, fw)
            _value_noise(zs, cloud_keys[t], xs, ys, fs, fw)
        elif th < 0:  # overcast: thickness still varies
            _value_noise(zc, cloud_keys[t], xm, ym, fs, fw)
        if np.isfinite(thi):
            _value_noise(zi, cirrus_keys[t], xm, ym, ks, kw)
        dk = date_keys[t]
        phase = nd_phase[t]
        for r in range(ny):
            lck = lramp = lbig = np.nan  # the season's shape of the last pixel computed (none yet)
            lg = 0.0
            for c in range(nx):
                fr = p[P_SOPT, r, c] + phase
                fr = fr - np.floor(fr)
                if fr < OPT_NODATA_FRACTION or (cm == 2 and not cov_masks[ci, r, c]):
                    red_out[t, r, c] = np.nan
                    nir_out[t, r, c] = np.nan
                    qa_out[t, r, c] = 0 if mode == _M_S2 else 1
                    continue
                center = p[P_CENTER, r, c]
                k = np.floor((day - center) / 365.25 + 0.5)
                if state[0, r, c] != k:
                    ck, ak = _season(yearkey[r, c], k, center, p[P_AMP, r, c], p[P_JA, r, c], p[P_FALLOW, r, c], p[P_JT, r, c])
                    state[0, r, c] = k
                    state[1, r, c] = ck
                    state[2, r, c] = ak
                ck, ramp, big = state[1, r, c], p[P_RAMP, r, c], p[P_E, r, c]
                if not (ck == lck and ramp == lramp and big == lbig):  # another season than the pixel before
                    lck, lramp, lbig, lg = ck, ramp, big, _season_shape(day, ck, ramp, big)
                nd = _ndvi_value(lg, state[2, r, c], p[P_BASE, r, c], p[P_TEX, r, c])
                red, nir = _surface(p[P_CLS, r, c], p[P_SOIL, r, c], p[P_VEGRED, r, c], nd)
                h = _mix(pixkey[r, c] ^ dk)
                n1, n2 = _tri_pair(h)
                red = red * (1.0 + 0.02 * n1) + 0.002 * n1
                nir = nir * (1.0 + 0.02 * n2) + 0.002 * n2
                z = zc[r, c]
                cloud = z > th
                thick = z > th + m_thick
                if cloud:
                    a = 0.55 + (z - th) / (1.15 * sg)
                    if a > 1.0:
                        a = 1.0
                    cr = 0.30 + 0.04 * (z - th) / sg
                    red = (1.0 - a) * red + a * cr
                    nir = (1.0 - a) * nir + a * cr * 1.06
                elif z > th - m_fringe:
                    a = 0.2 * (1.0 - (th - z) / m_fringe)
                    red = (1.0 - a) * red + a * 0.30
                    nir = (1.0 - a) * nir + a * 0.318
                dilated = (not cloud) and z > th - m_dil
                shadow = (not cloud) and zs[r, c] > th + m_shadow
                if shadow:
                    red *= 0.45
                    nir *= 0.33
                cirrus = (not cloud) and zi[r, c] > thi
                if cirrus:
                    red += 0.03
                    nir += 0.035
                if red < 0.0:
                    red = 0.0
                elif red > 1.0:
                    red = 1.0
                if nir < 0.0:
                    nir = 0.0
                elif nir > 1.0:
                    nir = 1.0
                red = _quantise(red, sc, off)
                nir = _quantise(nir, sc, off)
                water = p[P_CLS, r, c] == WATER
                if mode == _M_S2:
                    if cloud:
                        q = 9 if thick else 8
                    elif shadow:
                        q = 3
                    elif cirrus:
                        q = 10
                    elif _uniform(_mix(h ^ _M2)) < SATURATION_PROB:
                        q = 1
                        red = _quantise(1.0, sc, off)
                        nir = red
                    elif water:
                        q = 6
                    elif (nir - red) > 0.25 * (nir + red):
                        q = 4
                    else:
                        q = 5
                else:
                    if cloud:
                        q = (1 << 3) | (3 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
                    elif dilated:
                        q = (1 << 1) | (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
                    else:
                        q = (1 << 6) | (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
                        if shadow:
                            q |= (1 << 4) | (3 << 10)
                        if cirrus:
                            q |= (1 << 2) | (3 << 14)
                        if water and not shadow and not cirrus:
                            q |= 1 << 7
                red_out[t, r, c] = red
                nir_out[t, r, c] = nir
                qa_out[t, r, c] = q


def _speckle_table(enl: float = SAR_ENL, n: int = 65536) -> np.ndarray:
    """10 log10 of Gamma(enl, 1/enl) quantiles at (i + 0.5) / n (Wilson-Hilferty), float64."""
    from statistics import NormalDist

    nd = NormalDist()
    a = 1.0 / (9.0 * enl)
    out = np.empty(n)
    for i in range(n):
        z = nd.inv_cdf((i + 0.5) / n)
        g = (1.0 - a + z * a**0.5) ** 3
        out[i] = 10.0 * np.log10(g)
    return out


_THERMAL_X0, _THERMAL_DX, _THERMAL_N = -50.0, 0.01, 8001


def _thermal_table() -> np.ndarray:
    """f(x) = 10 log10(1 + 10^(x/10)) on x = -50 .. 30 dB: adding noise power x dB below the signal."""
    x = _THERMAL_X0 + _THERMAL_DX * np.arange(_THERMAL_N + 1)
    return 10.0 * np.log10(1.0 + 10.0 ** (x / 10.0))


_SPECKLE_DB = _speckle_table()
_THERMAL_DB = _thermal_table()


@kernel
def _sar_kernel(vv_out, vh_out, p, yearkey, state, pixkey, days, date_keys, sm, wind, nd_phase, spk, thermal,
                cov_mode, cov_idx, cov_masks):
    nt, ny, nx = vv_out.shape
    border = SAR_NODATA_FRACTION + SAR_BORDER_NOISE_KM / SAR_SWATH_PERIOD_KM
    sig = np.zeros((2, nx))  # a row's backscatter before thermal noise (float64; finite where not kept)
    keep = np.empty(nx, dtype=np.bool_)  # the row's pixels that get it
    for r in range(ny):  # row by row, every date: a row's parameters stay in cache
        for t in range(nt):
            cm = cov_mode[t]
            if cm == 0:  # the day's footprint covers no pixel centre of the window
                vv_out[t, r] = np.nan
                vh_out[t, r] = np.nan
                continue
            ci = cov_idx[t]
            day = np.float64(days[t])
            dk = date_keys[t]
            phase = nd_phase[t]
            smt = sm[t]
            wt = wind[t]
            lck = lramp = lbig = np.nan  # the season's shape of the last pixel computed (none yet)
            lg = 0.0
            for c in range(nx):
                keep[c] = False
                h = _mix(pixkey[r, c] ^ dk)
                fr = p[P_SSAR, r, c] + phase
                fr = fr - np.floor(fr)
                if fr < SAR_NODATA_FRACTION or (cm == 2 and not cov_masks[ci, r, c]):
                    vv_out[t, r, c] = np.nan
                    vh_out[t, r, c] = np.nan
                    continue
                if fr < border:
                    u = _uniform(h)
                    vv_out[t, r, c] = -40.0 - 8.0 * u
                    vh_out[t, r, c] = -42.0 - 8.0 * u
                    continue
                center = p[P_CENTER, r, c]
                k = np.floor((day - center) / 365.25 + 0.5)
                if state[0, r, c] != k:
                    ck, ak = _season(yearkey[r, c], k, center, p[P_AMP, r, c], p[P_JA, r, c], p[P_FALLOW, r, c], p[P_JT, r, c])
                    state[0, r, c] = k
                    state[1, r, c] = ck
                    state[2, r, c] = ak
                ck, ramp, big = state[1, r, c], p[P_RAMP, r, c], p[P_E, r, c]
                if not (ck == lck and ramp == lramp and big == lbig):  # another season than the pixel before
                    lck, lramp, lbig, lg = ck, ramp, big, _season_shape(day, ck, ramp, big)
                nd = _ndvi_value(lg, state[2, r, c], p[P_BASE, r, c], p[P_TEX, r, c])
                if p[P_CLS, r, c] == WATER:
                    vv = SAR_WATER[0][0] + SAR_WATER[0][1] * wt
                    vh = SAR_WATER[1][0] + SAR_WATER[1][1] * wt
                else:
                    fc = (nd - 0.1) / 0.75
                    if fc < 0.0:
                        fc = 0.0
                    elif fc > 1.0:
                        fc = 1.0
                    wet = (smt * p[P_SMMOD, r, c] - 0.3) * (1.0 - 0.6 * fc)
                    vh = SAR_VH[0] + SAR_VH[1] * nd + p[P_VHOFF, r, c] + SAR_VH[2] * wet
                    vv = SAR_VV[0] + SAR_VV[1] * nd + p[P_VVOFF, r, c] + SAR_VV[2] * wet
                # multiplicative gamma speckle (table in dB); the thermal noise follows for the row
                sig[0, c] = vv + spk[np.int64(h & _LOW16)]
                sig[1, c] = vh + spk[np.int64((h >> _S16) & _LOW16)]
                keep[c] = True
            for pol in range(2):
                _add_thermal(sig[pol], p[P_NESZ, r], keep, thermal, vv_out[t, r] if pol == 0 else vh_out[t, r])


@kernel
def _add_thermal(sig, nesz, keep, thermal, out):
    """out[c] <- sig[c] + 10 log10(1 + 10^((nesz[c] - sig[c]) / 10)) where keep[c] (the thermal
    table, interpolated), a row at a time with selects for branches: each kept value takes the
    arithmetic of the branch its x falls in, the very bits of a branching loop."""
    top = thermal[_THERMAL_N]
    for c in range(sig.shape[0]):
        s = sig[c]
        x = nesz[c] - s
        f = (x - _THERMAL_X0) / _THERMAL_DX
        fi = f if f > 0.0 else 0.0  # the table index, clamped (NaN -> 0): read before the select
        fi = fi if fi < _THERMAL_N - 1.0 else _THERMAL_N - 1.0
        i = np.int64(fi)
        w = f - i
        inner = thermal[i] + w * (thermal[i + 1] - thermal[i])
        above = top + (x - (_THERMAL_X0 + _THERMAL_DX * _THERMAL_N))
        add = 0.0 if x <= _THERMAL_X0 else (above if f >= _THERMAL_N else inner)
        out[c] = np.float32(s + add) if keep[c] else out[c]  # a select, not a branch


# =============================================================================================
# The source


_STREAMS = {name: i + 1 for i, name in enumerate((
    "pixel", "parcel", "region", "landscape", "agbias", "soil", "texture", "smmod", "cloud", "cirrus",
    "cover", "cirrus_cover", "opt_noise_S2", "opt_noise_L8", "opt_noise_L9", "sar_noise", "swath_S2",
    "swath_L8", "swath_L9", "swath_S1", "rain", "wind", "cumulus",
))}


class SyntheticSource:
    """Deterministic synthetic Sentinel-2 / Landsat 8-9 / Sentinel-1 data with true NDVI.

    ``seed`` selects the synthetic world; ``missions`` restricts the optical missions offered
    (default S2, L8 and L9). See ``SYNTHETIC.md`` for the model.
    """

    name = "synthetic"
    synthetic = True

    def __init__(self, seed: int = 0, missions: Iterable[str] | None = None, cache_size: int = 4) -> None:
        try:
            self.seed = int(seed)
        except (TypeError, ValueError) as e:
            raise SourceError(f"synthetic seed must be an integer, got {seed!r}") from e
        ms = tuple(OPTICAL_MISSIONS if missions is None else (str(m).upper() for m in missions))
        bad = [m for m in ms if m not in OPTICAL_MISSIONS]
        if bad:
            raise SourceError(f"unknown optical mission(s) {bad}: the synthetic source offers {', '.join(OPTICAL_MISSIONS)}")
        self.missions = ms
        self._root = np.uint64(_mix(np.uint64(self.seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5A4E5448)))
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyntheticSource(seed={self.seed}, missions={list(self.missions)})"

    def __getstate__(self) -> dict:  # picklable for dask workers: no lock, no cache
        return {"seed": self.seed, "missions": self.missions, "cache_size": self._cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seed"], state["missions"], state["cache_size"])  # type: ignore[misc]

    # -- keys ----------------------------------------------------------------------------------

    def _key(self, stream: str, crs_key: int = 0) -> np.uint64:
        return np.uint64(_h2(self._root, np.int64(_STREAMS[stream]), np.int64(crs_key)))

    def _date_keys(self, stream: str, days: np.ndarray, crs_key: int = 0) -> np.ndarray:
        return _keys(self._key(stream, crs_key), np.asarray(days, dtype=np.int64))

    def _day_uniform(self, stream: str, days: np.ndarray) -> np.ndarray:
        keys = self._date_keys(stream, days)
        return (keys >> np.uint64(11)).astype(np.float64) * _INV53

    # -- catalogs ------------------------------------------------------------------------------

    def _catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        t0, t1 = to_ns(start), to_ns(end)
        if t1 <= t0:
            return empty_catalog()
        ns_day = 86_400 * 10**9
        days = coverage_days(mission, geobox, t0 // ns_day - 1, t1 // ns_day + 1)
        times = day_to_datetime64(days, OVERPASS_SECONDS[mission])
        keep = (times.astype(np.int64) >= t0) & (times.astype(np.int64) < t1)
        days, times = days[keep], times[keep]
        return pd.DataFrame({"id": [make_id(mission, d) for d in days], "time": pd.DatetimeIndex(times)})

    def optical_catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        m = str(mission).upper()
        if m not in self.missions:
            raise SourceError(f"the synthetic source has no optical mission {mission!r}: use one of {', '.join(self.missions)}")
        return self._catalog(geobox, m, start, end)

    def sar_catalog(self, geobox: GeoBox, start: Any, end: Any) -> pd.DataFrame:
        return self._catalog(geobox, SAR_MISSION, start, end)

    def coverage(self, geobox: GeoBox, ids: Sequence[str]) -> np.ndarray:
        """Per id, True where its day's footprint covers the pixel centre (``(time, y, x)`` bool)."""
        missions, days = parse_ids(ids, self.missions + (SAR_MISSION,))
        out = np.empty((len(days),) + tuple(geobox.shape), dtype=bool)
        for t, (m, d) in enumerate(zip(missions, days)):
            out[t] = coverage_mask(m, int(d), geobox)
        return out

    @staticmethod
    def _coverage_args(geobox: GeoBox, missions: Sequence[str], days: np.ndarray):
        nt = len(days)
        mode = np.zeros(nt, dtype=np.int64)
        idx = np.zeros(nt, dtype=np.int64)
        stacks, base = [], 0
        for m in sorted(set(missions)):
            sel = np.flatnonzero(np.asarray([mm == m for mm in missions]))
            md, mi, ms = _coverage(m, geobox, days[sel])
            mode[sel], idx[sel] = md, mi + base
            stacks.append(ms)
            base += ms.shape[0]
        masks = np.concatenate(stacks) if stacks else np.zeros((0,) + tuple(geobox.shape), dtype=np.bool_)
        return mode, idx, np.ascontiguousarray(masks)

    # -- per-date scalars ----------------------------------------------------------------------

    def wetness(self, days: np.ndarray) -> np.ndarray:
        """Seasonal wetness in [0, 1] (1 at the wet-season peak)."""
        days = np.asarray(days, dtype=np.float64)
        doy = (days - 0.0) % 365.25
        return 0.5 + 0.5 * np.cos(2.0 * np.pi * (doy - (WET_SEASON_PEAK_DOY - 1)) / 365.25)

    def is_cumulus(self, days: Any) -> np.ndarray:
        """Fair-weather cumulus days: every day on both the S2 and the L8 global calendar
        (``acquisition_days``; the same days everywhere, whatever a window's catalogs), plus a few."""
        days = np.asarray(days, dtype=np.int64)
        both = ((days - S2_ANCHOR) % 5 == 0) & ((days - L8_START) % 16 == 0)
        return both | (self._day_uniform("cumulus", days) < CUMULUS_EXTRA_PROB)

    def cloud_cover(self, days: Any, mission: str = "S2") -> np.ndarray:
        """Nominal cloud cover (expected cloud fraction over a large area) of each day, 0..1.

        Ordinary days draw it from a seasonal mixture of clear, broken and overcast skies;
        cumulus days have the mission's ``CUMULUS_COVER``.
        """
        days = np.asarray(days, dtype=np.int64)
        u = self._day_uniform("cover", days)
        w = self.wetness(days)
        p_clear = CLEAR_PROB[0] - CLEAR_PROB[1] * w
        p_over = OVERCAST_PROB[0] + OVERCAST_PROB[1] * w
        mid = np.clip((u - p_clear) / (1.0 - p_clear - p_over), 0.0, 1.0)
        gamma = 1.3 - 0.6 * w
        c = 0.02 + 0.95 * mid**gamma
        c = np.where(u < p_clear, 0.02 * u / p_clear, c)
        c = np.where(u > 1.0 - p_over, 0.97 + 0.03 * (u - (1.0 - p_over)) / p_over, c)
        return np.where(self.is_cumulus(days), CUMULUS_COVER.get(mission, CUMULUS_COVER["S2"]), c)

    def cirrus_cover(self, days: Any) -> np.ndarray:
        days = np.asarray(days, dtype=np.int64)
        u = self._day_uniform("cirrus_cover", days)
        v = (u / CIRRUS_DATE_PROB) * CIRRUS_MAX_COVER
        return np.where((u < CIRRUS_DATE_PROB) & ~self.is_cumulus(days), v, 0.0)

    def soil_moisture(self, days: Any) -> np.ndarray:
        """Regional surface soil moisture index 0..1 from rain on overcast days (30-day memory)."""
        days = np.asarray(days, dtype=np.int64)
        lags = np.arange(30)
        past = days[:, None] - lags[None, :]
        flat = past.ravel()
        cover = np.where(self.is_cumulus(flat), 0.0, self.cloud_cover(flat))
        rain = np.clip((cover - 0.75) / 0.25, 0.0, None) * (0.3 + self._day_uniform("rain", flat))
        rain = rain.reshape(past.shape)
        wet = (rain * np.exp(-lags / 6.0)[None, :]).sum(axis=1)
        return 0.15 + 0.85 * (1.0 - np.exp(-wet))

    # -- geometry ------------------------------------------------------------------------------

    def _static(self, geobox: GeoBox):
        crs = geobox.crs
        if crs is None:
            raise SourceError("the synthetic source needs a GeoBox with a CRS")
        if not geobox.axis_aligned:
            raise SourceError(f"the synthetic source reads axis-aligned GeoBoxes only, got {geobox!r}")
        epsg = crs.epsg
        crs_key = int(epsg) if epsg is not None else zlib.crc32(crs.to_wkt().encode())
        geographic = bool(crs.geographic)
        coords = geobox.coords
        xs = np.asarray(coords["x" if "x" in coords else "longitude"].values, dtype=np.float64)
        ys = np.asarray(coords["y" if "y" in coords else "latitude"].values, dtype=np.float64)
        ck = (crs_key, xs.tobytes(), ys.tobytes())
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None:
                self._cache.move_to_end(ck)
                return hit
        quantum = Q_GEOGRAPHIC if geographic else Q_PROJECTED
        xq = np.round(xs / quantum).astype(np.int64)
        yq = np.round(ys / quantum).astype(np.int64)
        unit = quantum * (M_PER_DEGREE if geographic else 1.0)
        xm = xq.astype(np.float64) * unit
        ym = yq.astype(np.float64) * unit
        ny, nx = ym.size, xm.size

        def field(stream: str, config) -> np.ndarray:
            buf = np.zeros((ny, nx))
            _value_noise(buf, self._key(stream, crs_key), xm, ym,
                         np.asarray(config[0], dtype=np.float64), np.asarray(config[1], dtype=np.float64))
            return buf

        lu = _to_uniform(field("landscape", NOISE_LANDSCAPE), NOISE_LANDSCAPE)
        agu = _to_uniform(field("agbias", NOISE_AGBIAS), NOISE_AGBIAS)
        soilu = _to_uniform(field("soil", NOISE_SOIL), NOISE_SOIL)
        tex = field("texture", NOISE_TEXTURE) * 1.7  # ~unit variance
        smu = _to_uniform(field("smmod", NOISE_SMMOD), NOISE_SMMOD)
        pixkey = _pixel_keys(self._key("pixel", crs_key), xq, yq)
        p = np.empty((N_PARAMS, ny, nx))
        yearkey = np.empty((ny, nx), dtype=np.uint64)
        _static_kernel(p, yearkey, lu, agu, soilu, tex, smu, pixkey,
                       self._key("parcel", crs_key), self._key("region", crs_key), xm, ym)
        out = (crs_key, xs, ys, xm, ym, p, yearkey, pixkey)
        with self._lock:
            self._cache[ck] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    @staticmethod
    def _times(missions: Sequence[str], days: np.ndarray) -> np.ndarray:
        secs = np.asarray([OVERPASS_SECONDS[m] for m in missions], dtype=np.int64)
        return day_to_datetime64(days, secs)

    @staticmethod
    def _coords(times, xs, ys, geobox) -> dict:
        return {"time": ("time", times), "y": ("y", ys), "x": ("x", xs)}

    # -- reads ---------------------------------------------------------------------------------

    def read_optical(self, geobox: GeoBox, ids: Sequence[str]) -> xr.Dataset:
        missions, days = parse_ids(ids, self.missions)
        crs_key, xs, ys, xm, ym, p, yearkey, pixkey = self._static(geobox)
        nt, ny, nx = days.size, ys.size, xs.size
        red = np.empty((nt, ny, nx), dtype=np.float32)
        nir = np.empty((nt, ny, nx), dtype=np.float32)
        qa = np.empty((nt, ny, nx), dtype=np.uint16)
        if nt:
            qcode = np.asarray([_M_S2 if m == "S2" else _M_L8 for m in missions], dtype=np.int64)
            date_keys = np.empty(nt, dtype=np.uint64)
            phase = np.empty(nt)
            for m in set(missions):
                sel = np.asarray([mm == m for mm in missions])
                date_keys[sel] = self._date_keys(f"opt_noise_{m}", days[sel], crs_key)
                phase[sel] = self._day_uniform(f"swath_{m}", days[sel])
            cumulus = self.is_cumulus(days)
            cover = np.empty(nt)
            for m in set(missions):
                sel = np.asarray([mm == m for mm in missions])
                cover[sel] = self.cloud_cover(days[sel], m)
            tau = np.where(cumulus, _threshold(cover, NOISE_CUMULUS), _threshold(cover, NOISE_CLOUD))
            sigma = np.where(cumulus, _noise_sigma(NOISE_CUMULUS), _noise_sigma(NOISE_CLOUD))
            tau_ci = _threshold(self.cirrus_cover(days), NOISE_CIRRUS)
            cloud_keys = self._date_keys("cloud", days, crs_key)
            cirrus_keys = self._date_keys("cirrus", days, crs_key)
            xsh = xm + SHADOW_OFFSET[0]
            ysh = ym + SHADOW_OFFSET[1]
            cov_mode, cov_idx, cov_masks = self._coverage_args(geobox, missions, days)
            dn_scale = np.asarray([OPTICAL_DN[m][0] for m in missions], dtype=np.float64)
            dn_offset = np.asarray([OPTICAL_DN[m][1] for m in missions], dtype=np.float64)
            _optical_kernel(red, nir, qa, p, yearkey, _new_state(ny, nx), pixkey, days, qcode, date_keys,
                            cloud_keys, tau, sigma, cumulus, cirrus_keys, tau_ci, phase, xm, ym, xsh, ysh,
                            np.asarray(NOISE_CLOUD[0]), np.asarray(NOISE_CLOUD[1]),
                            np.asarray(NOISE_CUMULUS[0]), np.asarray(NOISE_CUMULUS[1]),
                            np.asarray(NOISE_CIRRUS[0]), np.asarray(NOISE_CIRRUS[1]),
                            cov_mode, cov_idx, cov_masks, dn_scale, dn_offset)
        coords = self._coords(self._times(missions, days), xs, ys, geobox)
        ds = xr.Dataset(
            {
                "red": (("time", "y", "x"), red, {"long_name": "surface reflectance, red", "units": "1"}),
                "nir": (("time", "y", "x"), nir, {"long_name": "surface reflectance, near infrared", "units": "1"}),
                "qa": (("time", "y", "x"), qa, {"long_name": "SCL (S2) or QA_PIXEL (Landsat)"}),
            },
            coords=coords,
            attrs={"crs": str(geobox.crs), "source": "synthetic", "seed": self.seed, "SYNTHETIC": 1},
        )
        ds = ds.assign_coords(id=("time", np.asarray(list(ids), dtype=object)), mission=("time", np.asarray(missions, dtype=object)))
        return ds

    def read_sar(self, geobox: GeoBox, ids: Sequence[str]) -> xr.Dataset:
        missions, days = parse_ids(ids, (SAR_MISSION,))
        crs_key, xs, ys, xm, ym, p, yearkey, pixkey = self._static(geobox)
        nt, ny, nx = days.size, ys.size, xs.size
        vv = np.empty((nt, ny, nx), dtype=np.float32)
        vh = np.empty((nt, ny, nx), dtype=np.float32)
        if nt:
            date_keys = self._date_keys("sar_noise", days, crs_key)
            phase = self._day_uniform("swath_S1", days)
            sm = self.soil_moisture(days)
            wind = self._day_uniform("wind", days)
            cov_mode, cov_idx, cov_masks = self._coverage_args(geobox, missions, days)
            _sar_kernel(vv, vh, p, yearkey, _new_state(ny, nx), pixkey, days, date_keys, sm, wind, phase,
                        _SPECKLE_DB, _THERMAL_DB, cov_mode, cov_idx, cov_masks)
        coords = self._coords(self._times(missions, days), xs, ys, geobox)
        ds = xr.Dataset(
            {
                "vv": (("time", "y", "x"), vv, {"long_name": "backscatter VV", "units": "dB"}),
                "vh": (("time", "y", "x"), vh, {"long_name": "backscatter VH", "units": "dB"}),
            },
            coords=coords,
            attrs={"crs": str(geobox.crs), "source": "synthetic", "seed": self.seed, "SYNTHETIC": 1},
        )
        return ds.assign_coords(id=("time", np.asarray(list(ids), dtype=object)))

    def read_truth_ndvi(self, geobox: GeoBox, ids: Sequence[str]) -> xr.DataArray:
        missions, days = parse_ids(ids, self.missions + (SAR_MISSION,))
        crs_key, xs, ys, xm, ym, p, yearkey, pixkey = self._static(geobox)
        out = np.empty((days.size, ys.size, xs.size), dtype=np.float32)
        if days.size:
            _truth_kernel(out, p, yearkey, _new_state(ys.size, xs.size), days)
        da = xr.DataArray(
            out,
            dims=("time", "y", "x"),
            coords=self._coords(self._times(missions, days), xs, ys, geobox),
            name="ndvi",
            attrs={"crs": str(geobox.crs), "long_name": "true NDVI (synthetic ground truth)", "SYNTHETIC": 1},
        )
        return da.assign_coords(id=("time", np.asarray(list(ids), dtype=object)))

    def read_land_cover(self, geobox: GeoBox) -> xr.DataArray:
        """The land-cover class of each pixel (codes in ``LAND_COVER_CLASSES``)."""
        crs_key, xs, ys, xm, ym, p, yearkey, pixkey = self._static(geobox)
        return xr.DataArray(
            p[P_CLS].astype(np.uint8), dims=("y", "x"), coords={"y": ys, "x": xs}, name="land_cover",
            attrs={"crs": str(geobox.crs), "classes": str(LAND_COVER_CLASSES)},
        )

