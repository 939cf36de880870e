"""Resolve ``--aoi`` into a geometry: WRS-2 path/row, a built-in site, a vector file or a bbox."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from engine.errors import AOIError

HERE = Path(__file__).resolve().parent
SITES_PATH = HERE / "sites.geojson"
WRS2_PATH = HERE / "wrs2_descending.parquet"
VECTOR_SUFFIXES = (".shp", ".geojson", ".json", ".gpkg", ".parquet", ".fgb", ".kml")
WRS2_PATHS = range(1, 234)
WRS2_ROWS = range(1, 249)
_WRS_RE = re.compile(r"^\s*p?(\d{1,3})\s*(?:[/_\-, ]|r)\s*(\d{1,3})\s*$|^\s*(\d{3})(\d{3})\s*$", re.IGNORECASE)
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BBOX_RE = re.compile(rf"^\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*$")


@dataclass(frozen=True)
class AOI:
    """A resolved area of interest: lon/lat geometry, its grid CRS, and how it was named."""

    name: str
    kind: str  # "wrs2" | "site" | "file" | "bbox"
    geometry: BaseGeometry  # EPSG:4326, (Multi)Polygon
    epsg: int
    notes: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        # a bbox keeps its signs (m for minus): -2,10,1,11 and -2,10,-1,11 are different places
        name = self.name.replace("-", "m") if self.kind == "bbox" else self.name
        return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "aoi"

    def projected(self) -> BaseGeometry:
        """The geometry in the grid CRS (metres)."""
        tr = Transformer.from_crs("EPSG:4326", f"EPSG:{self.epsg}", always_xy=True)
        return shapely.transform(self.geometry, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    @property
    def area_km2(self) -> float:
        return self.projected().area / 1e6


@lru_cache(maxsize=1)
def sites() -> gpd.GeoDataFrame:
    """The seven case-study sites shipped with the engine."""
    return gpd.read_file(SITES_PATH)


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def _wrs2() -> gpd.GeoDataFrame:
    return gpd.read_parquet(WRS2_PATH)


def wrs2_paths(geometry: BaseGeometry) -> int:
    """How many WRS-2 paths (descending, daytime rows) have a scene footprint meeting the lon/lat
    ``geometry``: the Landsat tracks that acquire it, each on its own day of the 16-day cycle."""
    wrs = _wrs2()
    hit = wrs.iloc[wrs.sindex.query(geometry, predicate="intersects")]
    return max(1, int(hit["path"].nunique()))


def utm_epsg(lon: float, lat: float) -> int:
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def _polygonal(geom: BaseGeometry, what: str) -> BaseGeometry:
    if geom is None or geom.is_empty:
        raise AOIError(f"{what} has an empty geometry; give a polygon with an area")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, (Polygon, MultiPolygon))]
    if not polys:
        raise AOIError(f"{what} is a {geom.geom_type}, not a polygon; an AOI needs an area")
    geom = shapely.unary_union(polys)
    if geom.area == 0:
        raise AOIError(f"{what} has zero area; give a polygon with an area")
    return geom


def _check_lonlat(geom: BaseGeometry, what: str) -> None:
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise AOIError(f"{what} has coordinates outside longitude/latitude range: bounds {geom.bounds}")


def _finish(name: str, kind: str, geom: BaseGeometry, crs: str | None, notes: list[str]) -> AOI:
    _check_lonlat(geom, name)
    if crs:
        epsg = CRS.from_user_input(crs).to_epsg()
        if epsg is None:
            raise AOIError(f"--crs {crs!r} has no EPSG code; give one, e.g. EPSG:32755")
        notes.append(f"grid CRS EPSG:{epsg} (given)")
    else:
        c = geom.centroid
        epsg = utm_epsg(c.x, c.y)
        minx, _, maxx, _ = geom.bounds
        zones = {int((x + 180) // 6) + 1 for x in (minx, maxx)}
        if len(zones) > 1:
            notes.append(
                f"AOI spans UTM zones {sorted(zones)}; using EPSG:{epsg}, the zone of its centroid "
                "(set --crs to choose)"
            )
    return AOI(name=name, kind=kind, geometry=geom, epsg=int(epsg), notes=tuple(notes))


def parse_wrs2(text: str) -> tuple[int, int] | None:
    m = _WRS_RE.match(text)
    if not m:
        return None
    a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(a), int(b)


def from_wrs2(path: int, row: int, crs: str | None = None) -> AOI:
    if path not in WRS2_PATHS or row not in WRS2_ROWS:
        raise AOIError(
            f"WRS-2 path/row {path}/{row} does not exist: paths run 1-233 and rows 1-248 (e.g. --aoi 091084)"
        )
    wrs = _wrs2()
    hit = wrs[(wrs["path"] == path) & (wrs["row"] == row)]
    if hit.empty:
        raise AOIError(f"WRS-2 path/row {path}/{row} has no descending footprint in the USGS table")
    geom = _polygonal(hit.geometry.iloc[0], f"WRS-2 {path:03d}/{row:03d}")
    return _finish(f"WRS2_{path:03d}{row:03d}", "wrs2", geom, crs, [])


def from_site(name: str, crs: str | None = None) -> AOI | None:
    table = sites()
    hit = table[table["name"].str.casefold() == name.strip().casefold()]
    if hit.empty:
        return None
    row = hit.iloc[0]
    return _finish(row["name"], "site", _polygonal(row.geometry, row["name"]), crs, [])


def from_bbox(text: str, crs: str | None = None) -> AOI | None:
    m = _BBOX_RE.match(text)
    if not m:
        return None
    minx, miny, maxx, maxy = (float(v) for v in m.groups())
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise AOIError(f"bbox {text!r} has a non-finite number")
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise AOIError(
            f"bbox {text!r} is not minx,miny,maxx,maxy in degrees with minx<maxx in [-180,180] "
            "and miny<maxy in [-90,90]"
        )
    return _finish(f"bbox_{minx:g}_{miny:g}_{maxx:g}_{maxy:g}", "bbox", box(minx, miny, maxx, maxy), crs, [])


def _name_column(frame: gpd.GeoDataFrame) -> str | None:
    for col in frame.columns:
        if col.lower() in ("name", "aoi_name", "site", "id") and col != frame.geometry.name:
            return col
    return None


def from_file(path: Path, feature: str | None = None, crs: str | None = None) -> AOI:
    if not path.exists():
        raise AOIError(f"AOI file {str(path)!r} does not exist")
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise AOIError(f"AOI file {str(path)!r} is not a vector file; use one of {', '.join(VECTOR_SUFFIXES)}")
    try:
        frame = gpd.read_parquet(path) if path.suffix.lower() == ".parquet" else gpd.read_file(path)
    except Exception as e:  # pyogrio/fiona/arrow raise many types for unreadable files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AOIError(f"cannot read AOI file {str(path)!r}: {first}") from e
    if frame.empty or frame.geometry.isna().all():
        raise AOIError(f"AOI file {str(path)!r} has no features")
    notes: list[str] = []
    if frame.crs is None:
        notes.append(f"{path.name} has no CRS; assuming EPSG:4326 longitude/latitude")
        frame = frame.set_crs("EPSG:4326")
    frame = frame.to_crs("EPSG:4326")
    name = path.stem
    if feature is not None:
        col = _name_column(frame)
        if col is None:
            raise AOIError(f"AOI file {str(path)!r} has no 'name' column to pick feature {feature!r} from")
        names = frame[col].astype(str)
        picked = frame[names.str.casefold() == feature.casefold()]
        if picked.empty:
            close = difflib.get_close_matches(feature, list(names), n=1, cutoff=0.6)
            listed = ", ".join(sorted(names.unique())[:20]) + (", ..." if names.nunique() > 20 else "")
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AOIError(f"no feature named {feature!r} in {str(path)!r}; {hint}its {col!r} values: {listed}")
        frame = picked
        name = feature
    elif len(frame) > 1:
        notes.append(f"{len(frame)} features in {path.name} unioned into one AOI (pick one with --aoi-name)")
    geom = _polygonal(shapely.unary_union(frame.geometry.values), f"AOI file {str(path)!r}")
    return _finish(name, "file", geom, crs, notes)


def resolve_aoi(spec: str, feature: str | None = None, crs: str | None = None) -> AOI:
    """Resolve an ``--aoi`` value. Raises :class:`AOIError` with the remedy when it cannot."""
    text = spec.strip()
    if not text:
        raise AOIError("--aoi is empty; give a WRS-2 path/row (091084), a site name, a vector file or a bbox")
    path = Path(text).expanduser()
    if path.suffix.lower() in VECTOR_SUFFIXES or path.exists():
        return from_file(path, feature, crs)
    wrs = parse_wrs2(text)
    if wrs is not None:
        return from_wrs2(*wrs, crs=crs)
    for resolver in (from_site, from_bbox):
        aoi = resolver(text, crs=crs)
        if aoi is not None:
            return aoi
    names = ", ".join(sites()["name"])
    raise AOIError(
        f"cannot resolve --aoi {text!r}: not a WRS-2 path/row (e.g. 091084, 91/84, p091r084), "
        f"a site ({names}), an existing vector file, or a bbox minx,miny,maxx,maxy"
    )
