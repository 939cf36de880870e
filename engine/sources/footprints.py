"""Where and when the synthetic satellites acquire: granules (one image of a catalog) and footprints.

Pure (no I/O beyond the shipped WRS-2 table): the synthetic source masks its reads with these
footprints and the Earth Engine stand-in serves one image per granule, so both see the same
coverage. Footprints are lon/lat polygons (EPSG:4326); every granule is stored in the WGS84 UTM
zone of its centre (``326zz`` north, ``327zz`` south) on a grid anchored at that CRS's origin.

Acquisition model (simplified orbits: ground tracks are meridian strips):

* **Landsat 8 / 9** (``LANDSAT/LC08/C02/T1_L2``, ``LC09``): one granule per WRS-2 descending
  scene (daytime rows 1-122 of ``AOI/wrs2_descending.parquet``). Path ``p`` is acquired every 16
  days, adjacent paths 7 days apart: ``(day - L8_START - 7 (p - 1)) % 16 == 0`` (Landsat 9: 8 days
  later). Neighbouring paths overlap (sidelap), so an AOI on an overlap has two partial dates
  per cycle; rows of one path on one day overlap with identical data.
* **Sentinel-2** (``COPERNICUS/S2_SR_HARMONIZED``): 143 relative orbits, ground track ``k`` at
  longitude ``-180 + (k + 0.5) 360 / 143``, swath 290 km; orbit ``k`` is acquired when
  ``(day - S2A_START - 3 k) % 10`` is 0 (S2A) or 5 (S2B/C, from S2B_START). Granules are 109.8 km
  tiles of a 100 km lattice in each UTM zone (9.8 km overlaps), cut to the swath, whose edges are
  145 km from the track at latitudes on a fixed 0.5 degree lattice (straight in lon/lat between
  them), so a granule's footprint does not depend on the region it was looked up with.
* **Sentinel-1** (``COPERNICUS/S1_GRD``, IW): 175 relative orbits, track ``k`` at
  ``-180 + (k + 0.5) 360 / 175``, swath 250 km; acquired when ``(day - S1_ANCHOR - 5 k) % 12`` is
  0 (S1A) or 6 (S1B in [S1B_START, S1B_END), S1C from S1C_START). Granules are slices of 1.5
  degrees of latitude (0.05 degree overlaps). About 6 % of slices are single-polarisation (VV
  only), as some real acquisitions are. No scene is acquired during ``S1_OUTAGES`` (a synthetic
  anomaly, so some optical dates have no SAR within their window).

Per granule the calendars are exact; what a daily image of a source holds is the union of that
day's granules (:func:`day_footprint`).
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry


def _d(s: str) -> int:
    return (_dt.date.fromisoformat(s) - _dt.date(1970, 1, 1)).days


S2A_START = _d("2015-07-04")
S2B_START = _d("2017-07-06")
L8_START = _d("2013-04-11")
L9_START = _d("2021-10-31")
S1_ANCHOR = _d("2014-10-03")
S1B_START, S1B_END = _d("2016-09-26"), _d("2021-12-23")
S1C_START = _d("2025-05-20")
S1_OUTAGES = ((_d("2021-06-04"), _d("2021-07-16")),)  # [start, end): no Sentinel-1 acquisition

S2_ORBITS, S2_SWATH_KM = 143, 290.0
S1_ORBITS, S1_SWATH_KM = 175, 250.0
S1_SLICE_DEG, S1_SLICE_OVERLAP_DEG = 1.5, 0.05
S1_SINGLE_POL_FRACTION = 0.06
MGRS_STEP_M, MGRS_SIZE_M = 100_000.0, 109_800.0
KM_PER_DEG = 111.32
LANDSAT_ROWS = range(1, 123)  # daytime descending rows

#: Overpass time of day (UTC seconds) of each mission.
OVERPASS_SECONDS = {"S2": 30 * 60, "L8": 10 * 60, "L9": 10 * 60, "S1": 8 * 3600 + 30 * 60}
WRS2_PATH = Path(__file__).resolve().parents[2] / "AOI" / "wrs2_descending.parquet"


@dataclass(frozen=True)
class Granule:
    """One image of a catalog: mission, UTC day, id, native CRS, lon/lat footprint, properties."""

    mission: str
    day: int
    id: str
    epsg: int
    footprint: BaseGeometry
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def utm_epsg(lon: float, lat: float) -> int:
    zone = int(min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60))
    return (32600 if lat >= 0 else 32700) + zone


def _date(day: int) -> str:
    return f"{_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day)):%Y%m%d}"


def _strip(centre_lon: float, half_km: float, lat0: float, lat1: float) -> Polygon:
    """A meridian strip ``half_km`` either side of ``centre_lon`` between two latitudes (lon/lat)."""
    lat_mid = 0.5 * (lat0 + lat1)
    half = half_km / (KM_PER_DEG * max(math.cos(math.radians(lat_mid)), 0.05))
    return box(centre_lon - half, lat0, centre_lon + half, lat1)


SWATH_LAT_STEP = 0.5  # degrees: latitudes of the vertices of a Sentinel-2 swath's edges


def _swath(centre_lon: float, half_km: float, lat0: float, lat1: float) -> Polygon:
    """A ground track's swath, ``half_km`` either side of the meridian ``centre_lon``, covering at
    least latitudes [lat0, lat1]; its vertices sit on the fixed ``SWATH_LAT_STEP`` lattice, so the
    swaths asked for with different latitude ranges have the very same edges where they overlap."""
    a = max(math.floor(lat0 / SWATH_LAT_STEP), -int(89.5 / SWATH_LAT_STEP))
    b = min(math.ceil(lat1 / SWATH_LAT_STEP), int(89.5 / SWATH_LAT_STEP))
    lats = np.arange(a, b + 1, dtype=np.float64) * SWATH_LAT_STEP
    half = half_km / (KM_PER_DEG * np.maximum(np.cos(np.radians(lats)), 0.05))
    east = np.column_stack([centre_lon + half, lats])
    west = np.column_stack([centre_lon - half, lats])[::-1]
    return Polygon(np.vstack([east, west]))


_S2_CUT: dict[tuple[int, str], BaseGeometry] = {}


def _s2_cut(k: int, tid: str, tile: BaseGeometry) -> BaseGeometry:
    """Tile ``tid`` cut to orbit ``k``'s swath (a pure function of the two; cached)."""
    hit = _S2_CUT.get((k, tid))
    if hit is None:
        _, miny, _, maxy = tile.bounds
        hit = tile.intersection(_swath(_track_lon(k, S2_ORBITS), S2_SWATH_KM / 2, miny - 0.5, maxy + 0.5))
        if len(_S2_CUT) > 65536:
            _S2_CUT.clear()
        _S2_CUT[(k, tid)] = hit
    return hit


def _track_lon(k: int, n: int) -> float:
    return -180.0 + (k + 0.5) * 360.0 / n


def _tracks_near(region: BaseGeometry, n: int, swath_km: float) -> list[int]:
    minx, miny, maxx, maxy = region.bounds
    lat = max(abs(miny), abs(maxy))
    pad = swath_km / 2 / (KM_PER_DEG * max(math.cos(math.radians(min(lat, 85.0))), 0.05))
    step = 360.0 / n
    k0 = math.floor((minx - pad + 180.0) / step - 0.5)
    k1 = math.ceil((maxx + pad + 180.0) / step - 0.5)
    return [k % n for k in range(k0, k1 + 1)]


def _in_outage(day: int) -> bool:
    return any(a <= day < b for a, b in S1_OUTAGES)


def _hash01(*values: int) -> float:
    h = 0x9E3779B97F4A7C15
    for v in values:
        h ^= (int(v) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return (h >> 11) / float(1 << 53)


# --- Landsat ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _wrs2() -> tuple[np.ndarray, np.ndarray, np.ndarray, shapely.STRtree]:
    import geopandas as gpd

    g = gpd.read_parquet(WRS2_PATH)
    g = g[g["row"].isin(list(LANDSAT_ROWS))].reset_index(drop=True)
    geoms = np.asarray(g.geometry.values, dtype=object)
    return g["path"].to_numpy(), g["row"].to_numpy(), geoms, shapely.STRtree(geoms)


def landsat_path_acquires(mission: str, path: int, day: int) -> bool:
    start, shift = (L8_START, 0) if mission == "L8" else (L9_START, 8)
    return day >= start and (day - L8_START - shift - 7 * (int(path) - 1)) % 16 == 0


def _landsat(mission: str, region: BaseGeometry, day0: int, day1: int) -> list[Granule]:
    paths, rows, geoms, tree = _wrs2()
    out = []
    for i in tree.query(region, predicate="intersects"):
        p, r, fp = int(paths[i]), int(rows[i]), geoms[i]
        c = fp.centroid
        for day in range(day0, day1):
            if landsat_path_acquires(mission, p, day):
                sat = "LC08" if mission == "L8" else "LC09"
                gid = f"{sat}_{p:03d}{r:03d}_{_date(day)}"
                out.append(Granule(mission, day, gid, utm_epsg(c.x, c.y), fp, {
                    "WRS_PATH": p, "WRS_ROW": r, "SPACECRAFT_ID": "LANDSAT_8" if mission == "L8" else "LANDSAT_9",
                    "CLOUD_COVER": None}))
    return out


# --- Sentinel-2 -------------------------------------------------------------------------------
def s2_orbit_acquires(k: int, day: int) -> bool:
    if day < S2A_START:
        return False
    ph = (day - S2A_START - 3 * k) % 10
    return ph == 0 or (ph == 5 and day >= S2B_START)


def _utm_to_lonlat(epsg: int):
    from pyproj import Transformer

    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)


@lru_cache(maxsize=4096)
def mgrs_tile(epsg: int, i: int, j: int) -> tuple[str, BaseGeometry]:
    """Id and lon/lat footprint of tile (i, j) of the 100 km lattice of a UTM zone (109.8 km tiles)."""
    x0, y0 = i * MGRS_STEP_M, j * MGRS_STEP_M
    ring = box(x0, y0, x0 + MGRS_SIZE_M, y0 + MGRS_SIZE_M).segmentize(10_000.0)
    tr = _utm_to_lonlat(epsg)
    ll = shapely.transform(ring, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    zone, hemi = epsg % 100, "N" if epsg < 32700 else "S"
    return f"T{zone:02d}{hemi}{i:02d}{j:+04d}", ll


def _zones_near(region: BaseGeometry) -> list[int]:
    minx, miny, maxx, maxy = region.bounds
    out = set()
    for lon in np.linspace(minx - 1.2, maxx + 1.2, 8):
        for lat in (miny, maxy, 0.5 * (miny + maxy)):
            out.add(utm_epsg(float(lon), float(lat)))
    return sorted(out)


def _mgrs_tiles(region: BaseGeometry) -> list[tuple[int, str, BaseGeometry]]:
    from pyproj import Transformer

    tiles = []
    for epsg in _zones_near(region):
        zone_lon = -180.0 + 6.0 * ((epsg % 100) - 1)
        zone_box = box(zone_lon, -80.0, zone_lon + 6.0, 84.0)
        part = region.intersection(zone_box.buffer(0.6))
        if part.is_empty:
            continue
        tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
        xs, ys = tr.transform(*np.asarray(part.envelope.exterior.coords).T)
        i0, i1 = math.floor((min(xs) - MGRS_SIZE_M) / MGRS_STEP_M), math.floor(max(xs) / MGRS_STEP_M)
        j0, j1 = math.floor((min(ys) - MGRS_SIZE_M) / MGRS_STEP_M), math.floor(max(ys) / MGRS_STEP_M)
        for i in range(i0 + 1, i1 + 1):
            for j in range(j0 + 1, j1 + 1):
                tid, fp = mgrs_tile(epsg, i, j)
                core = fp.intersection(zone_box.buffer(0.5))  # tiles are used inside their zone
                if core.intersects(region):
                    tiles.append((epsg, tid, fp))
    return tiles


def _sentinel2(region: BaseGeometry, day0: int, day1: int) -> list[Granule]:
    out = []
    tiles = _mgrs_tiles(region)
    for k in _tracks_near(region, S2_ORBITS, S2_SWATH_KM):
        cut = [(epsg, tid, _s2_cut(k, tid, fp)) for epsg, tid, fp in tiles]
        cut = [(e, t, f) for e, t, f in cut if f.area > 0 and f.intersects(region)]
        for day in range(day0, day1):
            if not s2_orbit_acquires(k, day):
                continue
            sat = "S2A" if (day - S2A_START - 3 * k) % 10 == 0 else ("S2B" if day < _d("2025-01-01") else "S2C")
            stamp = f"{_date(day)}T003000"
            for epsg, tid, fp in cut:
                out.append(Granule("S2", day, f"{stamp}_{stamp}_{tid}", epsg, fp, {
                    "MGRS_TILE": tid[1:], "SENSING_ORBIT_NUMBER": k + 1, "SPACECRAFT_NAME": f"Sentinel-2{sat[-1]}"}))
    return out


# --- Sentinel-1 -------------------------------------------------------------------------------
def s1_track_acquires(k: int, day: int) -> str | None:
    """The platform ('A', 'B', 'C') acquiring track ``k`` on ``day``, or None."""
    if day < S1_ANCHOR or _in_outage(day):
        return None
    ph = (day - S1_ANCHOR - 5 * k) % 12
    if ph == 0:
        return "A"
    if ph == 6 and S1B_START <= day < S1B_END:
        return "B"
    if ph == 6 and day >= S1C_START:
        return "C"
    return None


def _sentinel1(region: BaseGeometry, day0: int, day1: int) -> list[Granule]:
    out = []
    minx, miny, maxx, maxy = region.bounds
    j0, j1 = math.floor(miny / S1_SLICE_DEG) - 1, math.floor(maxy / S1_SLICE_DEG) + 1
    for k in _tracks_near(region, S1_ORBITS, S1_SWATH_KM):
        lon = _track_lon(k, S1_ORBITS)
        slices = []
        for j in range(j0, j1 + 1):
            lat0, lat1 = j * S1_SLICE_DEG, (j + 1) * S1_SLICE_DEG + S1_SLICE_OVERLAP_DEG
            fp = _strip(lon, S1_SWATH_KM / 2, lat0, lat1)
            if fp.intersects(region):
                slices.append((j, fp))
        for day in range(day0, day1):
            sat = s1_track_acquires(k, day)
            if sat is None:
                continue
            for j, fp in slices:
                single = _hash01(k, j, day) < S1_SINGLE_POL_FRACTION
                pol = ["VV"] if single else ["VV", "VH"]
                c = fp.centroid
                gid = f"S1{sat}_IW_GRDH_1S{'SV' if single else 'DV'}_{_date(day)}T083000_{k + 1:03d}{j:+03d}"
                out.append(Granule("S1", day, gid, utm_epsg(c.x, c.y), fp, {
                    "instrumentMode": "IW", "transmitterReceiverPolarisation": pol,
                    "orbitProperties_pass": "DESCENDING", "relativeOrbitNumber_start": k + 1,
                    "platform_number": sat, "resolution_meters": 10}))
    return out


def granules(mission: str, region: BaseGeometry, day0: int, day1: int) -> list[Granule]:
    """Granules of ``mission`` (S2, L8, L9, S1) intersecting the lon/lat ``region`` with day in [day0, day1)."""
    if region.is_empty or day1 <= day0:
        return []
    if mission in ("L8", "L9"):
        found = _landsat(mission, region, day0, day1)
    elif mission == "S2":
        found = _sentinel2(region, day0, day1)
    elif mission == "S1":
        found = _sentinel1(region, day0, day1)
    else:
        raise ValueError(f"unknown mission {mission!r}")
    return sorted((g for g in found if g.footprint.intersects(region)), key=lambda g: (g.day, g.id))


def usable(g: Granule) -> bool:
    """Granules a query of the engine's kind keeps: S1 needs IW with both VV and VH."""
    if g.mission != "S1":
        return True
    pol = g.properties.get("transmitterReceiverPolarisation", [])
    return g.properties.get("instrumentMode") == "IW" and "VV" in pol and "VH" in pol


def day_footprints(mission: str, region: BaseGeometry, day0: int, day1: int) -> dict[int, BaseGeometry]:
    """Per UTC day, the union of the usable granules' footprints over ``region`` (lon/lat)."""
    by_day: dict[int, list[BaseGeometry]] = {}
    for g in granules(mission, region, day0, day1):
        if usable(g):
            by_day.setdefault(g.day, []).append(g.footprint)
    return {d: shapely.union_all(fps) for d, fps in sorted(by_day.items())}


__all__ = ["Granule", "granules", "usable", "day_footprints", "utm_epsg", "OVERPASS_SECONDS", "S1_OUTAGES",
           "landsat_path_acquires", "s2_orbit_acquires", "s1_track_acquires", "mgrs_tile"]
