"""The public catalog the stand-in serves: the synthetic source as Earth Engine's collections.

One image per granule of ``engine.sources.footprints`` (S2 MGRS tiles cut to the orbit's
swath, Landsat WRS-2 scenes with neighbouring paths overlapping, S1 slices of a track), stored
in the granule's UTM zone on a grid anchored at the CRS origin, at the band's native
resolution, as the catalog stores it:

=================================  ==========================  =======  =======================
collection                         bands                        scale    values
=================================  ==========================  =======  =======================
``COPERNICUS/S2_SR_HARMONIZED``    ``B4``, ``B8``, ``SCL``      10 m     DN (x 1e-4); SCL class
``LANDSAT/LC08/C02/T1_L2`` (LC09)  ``SR_B4``, ``SR_B5``,        30 m     DN (x 2.75e-5 - 0.2);
                                   ``QA_PIXEL``                          QA bits
``COPERNICUS/S1_GRD``              ``VV``, ``VH``               10 m     dB (float)
=================================  ==========================  =======  =======================

Simplifications, documented: the real SCL band is 20 m (served here at 10 m); real Landsat
grids are offset by 15 m from the origin; the synthetic world is a function of the CRS, so a
granule stored in a neighbouring UTM zone has its own (equally plausible) pixels. Pixels outside
a granule's footprint are masked (the read is masked by the day's footprint and, per granule,
by the granule's own footprint). Reflectance bands have MEAN pyramiding, QA bands SAMPLE
([silent]: the catalog does not publish per-band policies).
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from engine.sources import footprints as F
from engine.sources.base import make_id

from .raster import Ctx, Grid, Image, Proj, Px, stored_band

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Collection:
    mission: str
    bands: tuple[str, ...]
    res: float
    dn: tuple[float, float] | None  # scale, offset of the reflectance bands


COLLECTIONS = {
    "COPERNICUS/S2_SR_HARMONIZED": Collection("S2", ("B4", "B8", "SCL"), 10.0, (1e-4, 0.0)),
    "LANDSAT/LC08/C02/T1_L2": Collection("L8", ("SR_B4", "SR_B5", "QA_PIXEL"), 30.0, (2.75e-5, -0.2)),
    "LANDSAT/LC09/C02/T1_L2": Collection("L9", ("SR_B4", "SR_B5", "QA_PIXEL"), 30.0, (2.75e-5, -0.2)),
    "COPERNICUS/S1_GRD": Collection("S1", ("VV", "VH"), 10.0, None),
}
QA_BANDS = ("SCL", "QA_PIXEL")


def _time_ms(g: F.Granule) -> int:
    return g.day * DAY_MS + F.OVERPASS_SECONDS[g.mission] * 1000


def granule_properties(collection: str, g: F.Granule) -> dict[str, Any]:
    props = {k: v for k, v in g.properties.items() if v is not None}
    index = g.id
    props.update({"system:index": index, "system:id": f"{collection}/{index}", "system:time_start": _time_ms(g),
                  "system:time_end": _time_ms(g)})
    return props


def list_granules(collection: str, region_lonlat: Any, t0_ms: int, t1_ms: int) -> list[F.Granule]:
    """The collection's granules meeting the lon/lat region with start time in [t0, t1) ms."""
    return list(_list_granules(collection, shapely.to_wkb(region_lonlat), t0_ms, t1_ms))


@functools.lru_cache(maxsize=256)
def _list_granules(collection: str, region_wkb: bytes, t0_ms: int, t1_ms: int) -> tuple[F.Granule, ...]:
    region_lonlat = shapely.from_wkb(region_wkb)
    c = COLLECTIONS[collection]
    day0, day1 = t0_ms // DAY_MS, -(-t1_ms // DAY_MS) + 1
    if region_lonlat.area == 0:  # points and lines: granules whose footprint meets them
        region_lonlat = region_lonlat.buffer(1e-7)
    return tuple(g for g in F.granules(c.mission, region_lonlat, day0, day1) if t0_ms <= _time_ms(g) < t1_ms)


def _geobox(grid: Grid):
    from affine import Affine
    from odc.geo.geobox import GeoBox

    a, b, c, d, e, f = grid.affine()
    return GeoBox((grid.h, grid.w), Affine(a, b, c, d, e, f), grid.proj.crs)


def _inside(g: F.Granule, grid: Grid) -> np.ndarray:
    """Pixel centres of ``grid`` inside the granule's footprint (whole-window shortcuts first)."""
    a, b, c, d, e, f = grid.affine()
    outline = shapely.Polygon([(c, f), (c + a * grid.w, f), (c + a * grid.w, f + e * grid.h), (c, f + e * grid.h)])
    from .geometry import Geom
    from .raster import Proj

    window = Geom(outline, Proj(grid.proj.crs)).lonlat()
    if g.footprint.contains(window):
        return np.ones(grid.shape, bool)
    if not g.footprint.intersects(window):
        return np.zeros(grid.shape, bool)
    x, y = grid.centres_in("EPSG:4326")
    return shapely.contains_xy(g.footprint, x, y)


class _ReadCache:
    """Granule reads shared across requests (the service caches its tiles too), LRU by bytes.

    Only the stand-in's own cost: the cost model still charges every read to the request."""

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict[str, np.ndarray] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple, arrays: dict[str, np.ndarray]) -> None:
        size = sum(a.nbytes for a in arrays.values())
        with self._lock:
            if key in self._items or size > self.max_bytes:
                return
            self._items[key] = arrays
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= sum(a.nbytes for a in old.values())


READS = _ReadCache()


def _read_granule(src: Any, mission: str, gid: str, grid: Grid) -> dict[str, np.ndarray]:
    key = (repr(src), gid, grid)
    hit = READS.get(key)
    if hit is None:
        gb = _geobox(grid)
        ds = src.read_sar(gb, [gid]) if mission == "S1" else src.read_optical(gb, [gid])
        hit = {k: np.asarray(ds[k].values[0]) for k in ds.data_vars}
        READS.put(key, hit)
    return hit


def _reader(collection: str, g: F.Granule, band: str):
    c = COLLECTIONS[collection]

    def read(grid: Grid, ctx: Ctx) -> Px:
        if grid.size == 0:
            return Px(np.zeros(grid.shape), np.zeros(grid.shape))
        src = ctx.source
        gid = make_id(c.mission, g.day)
        inside = ctx.reads.get(("inside", g.id, grid))
        if inside is None:
            inside = ctx.reads[("inside", g.id, grid)] = _inside(g, grid)
        if not inside.any():
            return Px(np.zeros(grid.shape), np.zeros(grid.shape))
        key = (g.id, grid)
        ds = ctx.reads.get(key)  # one read serves every band of the granule
        if ds is None:
            ctx.cost.reserve(grid.size * 8.0 * (len(c.bands) + 2))
            ds = ctx.reads[key] = _read_granule(src, c.mission, gid, grid)
        if c.mission == "S1":
            v = np.asarray(ds[band.lower()], dtype=np.float64)
            ok = inside & np.isfinite(v)
            return Px(np.where(ok, v, 0.0), ok.astype(np.float64))
        qa = ds["qa"]
        if band in QA_BANDS:
            return Px(qa.astype(np.float64), inside.astype(np.float64))
        refl = np.asarray(ds["red" if band in ("B4", "SR_B4") else "nir"], dtype=np.float64)
        scale, offset = c.dn
        fin = np.isfinite(refl)
        dn = np.where(fin, np.clip(np.round((refl - offset) / scale), 1, 65535), 0.0)
        # DN 0 is the catalog's fill: masked, like the real assets' no-data
        ok = inside & fin
        return Px(dn, ok.astype(np.float64))

    return read


def granule_image(collection: str, g: F.Granule) -> Image:
    c = COLLECTIONS[collection]
    proj = Proj(f"EPSG:{g.epsg}", (c.res, 0.0, 0.0, 0.0, -c.res, 0.0))
    bands = [stored_band(b, proj, _reader(collection, g, b), "SAMPLE" if b in QA_BANDS else "MEAN")
             for b in c.bands]
    return Image(bands, granule_properties(collection, g), footprint=g.footprint)


