"""Data source over a STAC catalog: a static ``catalog.json`` (path or URL) or a STAC API.

Catalogs list one row per UTC day (id ``<MISSION>_<YYYYMMDD>``, time of the day's first item);
reads load each of the day's items (granules) with ``odc.stac.load`` on the requested GeoBox
(reprojected when the item is on another grid or UTM zone: nearest for QA, bilinear otherwise),
undo each asset's ``raster:bands`` scale/offset, turn nodata into NaN, (for
``sar_units="linear"``) convert SAR to dB, and merge the day's granules by the engine's rules: per
pixel the first clear granule, else the first valid one. A day with no granule over a window is
no data there, not an error: real footprints (partial swaths, MGRS tiles) cover part of an AOI.

Defaults follow the public catalogs: Sentinel-2 L2A on Earth Search (``red``, ``nir``, ``scl``),
Landsat Collection 2 Level-2 on Planetary Computer (``red``, ``nir08``, ``qa_pixel``) and
Sentinel-1 GRD (``vv``, ``vh``).
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from engine.errors import SourceError
from engine.sources.base import (
    OPTICAL_MISSIONS,
    SAR_MISSION,
    empty_catalog,
    make_id,
    parse_id,
    to_ns,
)

if TYPE_CHECKING:  # pragma: no cover
    import pystac
    from odc.geo.geobox import GeoBox

log = logging.getLogger(__name__)

__all__ = ["StacSource", "DEFAULT_COLLECTIONS", "DEFAULT_ASSET_KEYS", "DEFAULT_SCALING"]

DEFAULT_COLLECTIONS = {"S2": "sentinel-2-l2a", "L8": "landsat-c2-l2", "L9": "landsat-c2-l2", "S1": "sentinel-1-grd"}
DEFAULT_ASSET_KEYS = {
    "S2": {"red": "red", "nir": "nir", "qa": "scl"},
    "L8": {"red": "red", "nir": "nir08", "qa": "qa_pixel"},
    "L9": {"red": "red", "nir": "nir08", "qa": "qa_pixel"},
    "S1": {"vv": "vv", "vh": "vh"},
}
#: (scale, offset, nodata) used for an asset whose item declares no ``raster:bands``.
DEFAULT_SCALING = {
    "S2": {"red": (1e-4, 0.0, 0), "nir": (1e-4, 0.0, 0), "qa": (1.0, 0.0, 0)},
    "L8": {"red": (2.75e-5, -0.2, 0), "nir": (2.75e-5, -0.2, 0), "qa": (1.0, 0.0, 1)},
    "L9": {"red": (2.75e-5, -0.2, 0), "nir": (2.75e-5, -0.2, 0), "qa": (1.0, 0.0, 1)},
    "S1": {"vv": (1.0, 0.0, None), "vh": (1.0, 0.0, None)},
}
#: Item ``platform`` values accepted per mission (when the item has one).
PLATFORMS = {
    "S2": ("sentinel-2a", "sentinel-2b", "sentinel-2c", "sentinel-2d"),
    "L8": ("landsat-8",),
    "L9": ("landsat-9",),
    "S1": ("sentinel-1a", "sentinel-1b", "sentinel-1c", "sentinel-1d"),
}
_QA_FILL = {"S2": 0, "L8": 1, "L9": 1}
NATIVE_RES = {"S2": 10.0, "L8": 30.0, "L9": 30.0, "S1": 10.0}  # metres
_NS_PER_DAY = 86_400 * 10**9


def _item_ns(item: pystac.Item) -> int:
    dt = item.datetime
    if dt is None:
        s = item.common_metadata.start_datetime
        if s is None:
            raise SourceError(f"STAC item {item.id!r} has neither datetime nor start_datetime")
        dt = s
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return int(round(dt.timestamp() * 1e6)) * 1000


def _utc_day(item: pystac.Item) -> int:
    return _item_ns(item) // _NS_PER_DAY


def _is_api(catalog: str) -> bool:
    if os.path.exists(catalog):
        return False
    low = catalog.lower().split("?")[0]
    return low.startswith(("http://", "https://")) and not low.endswith(".json")


class StacSource:
    """Optical and SAR acquisitions from a STAC catalog (static catalog or STAC API).

    Parameters
    ----------
    catalog:
        Path or URL of a static ``catalog.json``, or a STAC API root URL (needs ``pystac-client``).
    optical_collection:
        Collection id for all optical missions, or a mapping mission -> id; default per mission
        ``sentinel-2-l2a`` (S2), ``landsat-c2-l2`` (L8, L9).
    sar_collection:
        Collection id of Sentinel-1 GRD items (default ``sentinel-1-grd``).
    asset_keys:
        Overrides of the asset key per engine band, e.g. ``{"S2": {"nir": "B08"}}``.
    sar_units:
        ``"db"`` if SAR assets hold backscatter in dB, ``"linear"`` for linear power.
    patch_url:
        Optional callable applied to asset URLs before reading (e.g. a URL signer).
    """

    name = "stac"

    def __init__(
        self,
        catalog: str,
        optical_collection: str | Mapping[str, str] | None = None,
        sar_collection: str | None = "sentinel-1-grd",
        asset_keys: Mapping[str, Mapping[str, str]] | None = None,
        sar_units: str = "db",
        patch_url: Callable[[str], str] | None = None,
    ) -> None:
        if not catalog:
            raise SourceError("the stac data source needs a catalog: a catalog.json path/URL or a STAC API URL (STAC_CATALOG)")
        self.catalog = str(catalog)
        self.collections = dict(DEFAULT_COLLECTIONS)
        if isinstance(optical_collection, str):
            for m in OPTICAL_MISSIONS:
                self.collections[m] = optical_collection
        elif optical_collection:
            for m, c in optical_collection.items():
                self.collections[str(m).upper()] = c
        if sar_collection:
            self.collections[SAR_MISSION] = sar_collection
        self.asset_keys = {m: dict(v) for m, v in DEFAULT_ASSET_KEYS.items()}
        for m, overrides in (asset_keys or {}).items():
            m = str(m).upper()
            if m not in self.asset_keys:
                raise SourceError(f"asset_keys names unknown mission {m!r}: use {', '.join(self.asset_keys)}")
            self.asset_keys[m].update(overrides)
        self.sar_units = str(sar_units).lower()
        if self.sar_units not in ("db", "linear"):
            raise SourceError(f"sar_units must be 'db' or 'linear', got {sar_units!r} (STAC_SAR_UNITS)")
        self.patch_url = patch_url
        self._args = dict(catalog=catalog, optical_collection=optical_collection, sar_collection=sar_collection,
                          asset_keys=asset_keys, sar_units=sar_units, patch_url=patch_url)
        self.is_api = _is_api(self.catalog)
        self._lock = threading.Lock()
        self._static_items: list[pystac.Item] | None = None
        self._client: Any = None
        self._synthetic: bool | None = None
        if self.is_api:
            self._client = self._open_api()

    def __repr__(self) -> str:
        return f"StacSource({self.catalog!r}, sar_units={self.sar_units!r})"

    @property
    def synthetic(self) -> bool:
        """True when the catalog holds the engine's synthetic data (``engine export-stac`` marks the
        catalog, its collections and items ``"synthetic": true``): the label travels with the data."""
        if self._synthetic is None:
            if self.is_api:
                flags = []
                for coll in set(self.collections.values()):
                    try:
                        flags.append(bool(self._client.get_collection(coll).extra_fields.get("synthetic")))
                    except Exception:  # noqa: BLE001 - a collection the API lacks is not synthetic
                        flags.append(False)
                self._synthetic = any(flags)
            else:
                self._synthetic = any(bool(it.properties.get("synthetic")) for it in self._all_static_items())
        return self._synthetic

    def __getstate__(self) -> dict:  # picklable for dask workers: items and clients are re-read
        return dict(self._args)

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # -- item discovery ------------------------------------------------------------------------

    def _open_api(self) -> Any:
        try:
            import pystac_client
        except ImportError as e:
            raise SourceError(
                f"{self.catalog!r} looks like a STAC API, which needs pystac-client: "
                "pip install pystac-client (or point STAC_CATALOG at a static catalog.json)"
            ) from e
        try:
            return pystac_client.Client.open(self.catalog)
        except Exception as e:  # noqa: BLE001 - any transport/parse failure
            raise SourceError(f"cannot open STAC API {self.catalog!r}: {e}") from e

    def _all_static_items(self) -> list[pystac.Item]:
        with self._lock:
            if self._static_items is None:
                import pystac

                try:
                    cat = pystac.Catalog.from_file(self.catalog)
                except Exception as e:  # noqa: BLE001
                    raise SourceError(f"cannot read STAC catalog {self.catalog!r}: {e}") from e
                cat.make_all_asset_hrefs_absolute()
                items = list(cat.get_items(recursive=True))
                for it in items:
                    if it.collection_id is None and it.get_parent() is not None:
                        it.collection_id = it.get_parent().id
                self._static_items = items
                log.debug("read %d items from %s", len(items), self.catalog)
            return self._static_items

    def _intersects(self, item: pystac.Item, geobox: GeoBox) -> bool:
        if item.geometry is None:
            return True
        from odc.geo.geom import Geometry

        try:
            g = Geometry(item.geometry, "EPSG:4326").to_crs(geobox.crs)
        except Exception:  # noqa: BLE001 - unprojectable footprints are kept, odc decides
            return True
        ext = geobox.extent
        inter = g.intersection(ext)
        return (not inter.is_empty) and inter.area > 1e-6 * ext.area

    def _mission_ok(self, item: pystac.Item, mission: str) -> bool:
        plat = item.properties.get("platform")
        if plat is not None and str(plat).lower() not in PLATFORMS[mission]:
            return False
        if mission == SAR_MISSION:
            mode = item.properties.get("sar:instrument_mode")
            if mode is not None and str(mode).upper() != "IW":
                return False
            pols = item.properties.get("sar:polarizations")
            if pols is not None and not {"VV", "VH"} <= {str(p).upper() for p in pols}:
                return False
        keys = self.asset_keys[mission].values()
        return all(k in item.assets for k in keys)

    def _items(self, geobox: GeoBox, mission: str, t0: int, t1: int) -> list[pystac.Item]:
        coll = self.collections[mission]
        if self.is_api:
            lonlat = geobox.extent.to_crs("EPSG:4326").boundingbox
            start = pd.Timestamp(t0, unit="ns").isoformat() + "Z"
            end = pd.Timestamp(t1 - 1, unit="ns").isoformat() + "Z"
            try:
                search = self._client.search(collections=[coll], bbox=list(lonlat), datetime=f"{start}/{end}")
                candidates = list(search.items())
            except Exception as e:  # noqa: BLE001
                raise SourceError(f"STAC search of {coll!r} at {self.catalog!r} failed: {e}") from e
        else:
            candidates = [it for it in self._all_static_items() if it.collection_id == coll]
        out = []
        for it in candidates:
            ns = _item_ns(it)
            if t0 <= ns < t1 and self._mission_ok(it, mission) and self._intersects(it, geobox):
                out.append(it)
        out.sort(key=lambda it: (_item_ns(it), it.id))
        return out

    # -- catalogs ------------------------------------------------------------------------------

    def _catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        t0, t1 = to_ns(start), to_ns(end)
        if t1 <= t0:
            return empty_catalog()
        first: dict[int, int] = {}
        for it in self._items(geobox, mission, t0, t1):
            d = _utc_day(it)
            ns = _item_ns(it)
            first[d] = min(first.get(d, ns), ns)
        days = sorted(first)
        return pd.DataFrame({
            "id": [make_id(mission, d) for d in days],
            "time": pd.DatetimeIndex(np.asarray([first[d] for d in days], dtype="datetime64[ns]")),
        })

    def optical_catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        m = str(mission).upper()
        if m not in OPTICAL_MISSIONS:
            raise SourceError(f"unknown optical mission {mission!r}: use one of {', '.join(OPTICAL_MISSIONS)}")
        return self._catalog(geobox, m, start, end)

    def sar_catalog(self, geobox: GeoBox, start: Any, end: Any) -> pd.DataFrame:
        return self._catalog(geobox, SAR_MISSION, start, end)

    # -- reads ---------------------------------------------------------------------------------

    def _scaling(self, item: pystac.Item, mission: str, band: str) -> tuple[float, float, Any]:
        key = self.asset_keys[mission][band]
        scale, offset, nodata = DEFAULT_SCALING[mission][band]
        rb = item.assets[key].extra_fields.get("raster:bands")
        if rb:
            b0 = rb[0]
            scale = b0.get("scale", 1.0) if b0.get("scale") is not None else 1.0
            offset = b0.get("offset", 0.0) if b0.get("offset") is not None else 0.0
            if "nodata" in b0:
                nodata = b0["nodata"]
        if isinstance(nodata, str):
            nodata = float(nodata) if nodata.lower() in ("nan", "inf", "-inf") else None
        return float(scale), float(offset), nodata

    def _resampling(self, mission: str, geobox: GeoBox) -> dict[str, str]:
        """Per asset: nearest for QA classes and bit masks, bilinear for reflectance and backscatter
        (an item on another grid or in another UTM zone is reprojected to the window; an item
        on the window's own grid is copied, whatever the resampling). A window coarser than the
        mission's native pixels is a lattice of sample points (the engine's statistics lattice):
        every band is read nearest there, as GDAL's bilinear would average the pixels a coarse
        cell spans instead of sampling the point."""
        keys = self.asset_keys[mission]
        res = abs(float(geobox.resolution.x))
        if geobox.crs is not None and geobox.crs.units[0] in ("metre", "m") and res > 1.01 * NATIVE_RES[mission]:
            return {"*": "nearest"}
        return {"*": "bilinear", **({keys["qa"]: "nearest"} if "qa" in keys else {})}

    def _load(self, items: list[pystac.Item], mission: str, bands: Sequence[str], geobox: GeoBox) -> dict[int, dict[str, np.ndarray]]:
        """Per UTC day: the day's granules read one by one, scaled to physical units (float32, NaN
        no-data) and merged by the engine's own rules (``engine.science.optical.daily_mosaic``):
        per pixel the first clear granule, else the first valid one, every band from that granule.
        Granules are in (time, id) order; SAR slices merge first-valid."""
        from engine.science.optical import cloud_mask, daily_mosaic, ndvi

        keys = [self.asset_keys[mission][b] for b in bands]
        raw = self._raw_layers(items, mission, keys, geobox)
        layers = {b: np.stack([self._scaled(raw[k][key], self._scaling(it, mission, b), mission, b)
                               for k, it in enumerate(items)]) for b, key in zip(bands, keys)}
        times = np.asarray([_item_ns(it) for it in items], dtype="datetime64[ns]")
        if "qa" in layers:
            cloudy, valid = cloud_mask("S2" if mission == "S2" else "L8", layers["qa"])
            valid &= np.isfinite(ndvi(layers["red"], layers["nir"]))
            clear = valid & ~cloudy
        else:
            valid = np.all([np.isfinite(layers[b]) for b in bands], axis=0)
            clear = None
        day_times, merged = daily_mosaic(times, *(layers[b] for b in bands), valid=valid, clear=clear)
        days = day_times.astype("datetime64[D]").astype(np.int64)
        return {int(d): {b: merged[i][k] for i, b in enumerate(bands)} for k, d in enumerate(days)}

    def _raw_layers(self, items: list[pystac.Item], mission: str, keys: Sequence[str],
                    geobox: GeoBox) -> list[dict[str, np.ndarray]]:
        """Each item's assets on ``geobox`` as stored (DN, nodata where it has no data).

        Items in the window's CRS load through ``odc.stac.load`` (a copy when on the same pixel
        grid). Items in another CRS (the neighbouring UTM zone) are read on their own grid around
        the window and sampled at each window pixel's exact position (:meth:`_reprojected`):
        ``odc.stac.load`` would leave GDAL's warper to size the bilinear kernel and approximate
        the transform from the window, so a pixel's value would depend on the tile it is read
        through (up to 0.01 reflectance across the 55 / 56 zone boundary)."""
        import odc.stac

        kw: dict[str, Any] = {"use_overviews": False}  # reads of a coarse lattice hit grid pixels, not overviews
        if self.patch_url is not None:
            kw["patch_url"] = self.patch_url
        resampling = self._resampling(mission, geobox)

        def load(its: list[pystac.Item], gbox: GeoBox, how: Any) -> xr.Dataset:
            try:
                return odc.stac.load(its, bands=list(keys), geobox=gbox, resampling=how,
                                     groupby=lambda item, parsed, idx: idx, chunks=None, fail_on_error=True, **kw)
            except Exception as e:  # noqa: BLE001
                raise SourceError(f"reading {len(its)} {mission} STAC item(s) failed: {e}") from e

        out: list[dict[str, np.ndarray] | None] = [None] * len(items)
        native = [odc.stac.parse_item(it).geoboxes() for it in items]
        here = [k for k, g in enumerate(native) if not g or g[0].crs == geobox.crs]
        if here:
            ds = load([items[k] for k in here], geobox, resampling)
            for j, k in enumerate(here):
                out[k] = {key: ds[key].values[j] for key in keys}
        for k in sorted(set(range(len(items))) - set(here)):
            out[k] = self._reprojected(items[k], native[k][0], keys, geobox, resampling, load)
        return out  # type: ignore[return-value]

    def _reprojected(self, item: pystac.Item, native: GeoBox, keys: Sequence[str], geobox: GeoBox,
                     resampling: Mapping[str, str], load: Callable) -> dict[str, np.ndarray]:
        """One item in another CRS: read on its own (finest) grid around the window, then sampled
        at the exact position of every window pixel centre (``pyproj``), bilinear
        (``scipy.ndimage.map_coordinates``, order 1) or nearest (order 0) as :meth:`_resampling`
        says. A pixel's value depends on its position only, never on the window it is read
        through, so tiles agree with an untiled read. A bilinear sample touching the granule's
        no-data is no data (GDAL would reweight the remaining neighbours instead)."""
        from pyproj import Transformer
        from scipy.ndimage import map_coordinates

        h, w = geobox.shape
        xs, ys = np.meshgrid(geobox.coords["x"].values, geobox.coords["y"].values)
        sx, sy = Transformer.from_crs(geobox.crs.to_wkt(), native.crs.to_wkt(), always_xy=True).transform(xs, ys)
        inv = ~native.transform
        cols = inv.a * sx + inv.b * sy + inv.c - 0.5  # index space: pixel i's centre at i
        rows = inv.d * sx + inv.e * sy + inv.f - 0.5
        c0, c1 = max(0, math.floor(np.nanmin(cols)) - 2), min(native.shape[1], math.ceil(np.nanmax(cols)) + 3)
        r0, r1 = max(0, math.floor(np.nanmin(rows)) - 2), min(native.shape[0], math.ceil(np.nanmax(rows)) + 3)
        overlap = c1 > c0 and r1 > r0
        ds = load([item], native[r0:r1, c0:c1] if overlap else native[0:1, 0:1], {"*": "nearest"})
        result = {}
        for key in keys:
            src = ds[key].values[0]
            nodata = ds[key].attrs.get("nodata")
            order = 0 if resampling.get(key, resampling["*"]) == "nearest" else 1
            out = np.full((h, w), np.nan)
            if overlap:
                data = src.astype(np.float64)
                if nodata is not None:
                    data[src == nodata] = np.nan
                out = map_coordinates(data, [rows - r0, cols - c0], order=order, mode="constant", cval=np.nan,
                                      prefilter=False)
            if order == 0 and np.issubdtype(src.dtype, np.integer):  # classes, bit masks: integers as stored
                fill = 0 if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else nodata
                result[key] = np.where(np.isnan(out), fill, out).astype(src.dtype)
            else:  # interpolated DN or values, no data as NaN
                result[key] = out.astype(np.float32)
        return result

    def _scaled(self, raw: np.ndarray, sc: tuple[float, float, Any], mission: str, band: str) -> np.ndarray:
        """One granule's band in physical units: QA as uint16 (uncovered areas as fill), others
        float32 with nodata as NaN, scale / offset applied, linear SAR power converted to dB."""
        scale, offset, nodata = sc
        if band == "qa":
            a = raw.astype(np.uint16, copy=True)
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                a[raw == nodata] = _QA_FILL[mission]
            a[raw == 0] = _QA_FILL[mission]  # areas the granule does not cover
            return a
        a = raw.astype(np.float32)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            a[raw == nodata] = np.nan
        if scale != 1.0 or offset != 0.0:
            a = (a.astype(np.float64) * scale + offset).astype(np.float32)
        if band in ("vv", "vh") and self.sar_units == "linear":
            with np.errstate(divide="ignore", invalid="ignore"):
                a = (10.0 * np.log10(a.astype(np.float64))).astype(np.float32)
        return a

    def _no_data(self, mission: str, bands: Sequence[str], geobox: GeoBox) -> dict[str, np.ndarray]:
        """A day no granule covers over this window: no valid pixel."""
        shape = geobox.shape
        return {b: (np.full(shape, _QA_FILL[mission], np.uint16) if b == "qa" else np.full(shape, np.nan, np.float32))
                for b in bands}

    def _read(self, geobox: GeoBox, ids: Sequence[str], kind: str, bands: Sequence[str]) -> tuple[dict, list, list]:
        if isinstance(ids, str):
            ids = [ids]
        parsed = [parse_id(i) for i in ids]
        for i, (m, _) in zip(ids, parsed):
            ok = (m == SAR_MISSION) if kind == "sar" else (m in OPTICAL_MISSIONS)
            if not ok:
                raise SourceError(f"image id {i!r} is not a {kind} image")
        per_mission: dict[str, set[int]] = defaultdict(set)
        for m, d in parsed:
            per_mission[m].add(d)
        loaded: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        times: dict[tuple[str, int], int] = {}
        for m, days in per_mission.items():
            t0 = min(days) * _NS_PER_DAY
            t1 = (max(days) + 1) * _NS_PER_DAY
            items = [it for it in self._items(geobox, m, t0, t1) if _utc_day(it) in days]
            for it in items:
                key = (m, _utc_day(it))
                times[key] = min(times.get(key, _item_ns(it)), _item_ns(it))
            if items:
                for d, arrs in self._load(items, m, bands, geobox).items():
                    loaded[(m, d)] = arrs
            for d in days - {_utc_day(it) for it in items}:  # no granule over this window that day
                loaded[(m, d)] = self._no_data(m, bands, geobox)
                times[(m, d)] = d * _NS_PER_DAY
        return loaded, parsed, [times[k] for k in parsed]

    def _dataset(self, geobox: GeoBox, ids: Sequence[str], loaded: dict, parsed: list, times: list,
                 bands: Sequence[str], dtypes: Mapping[str, Any], attrs: Mapping[str, Mapping[str, str]]) -> xr.Dataset:
        ny, nx = geobox.shape
        coords = geobox.coords
        ys = np.asarray(coords["y" if "y" in coords else "latitude"].values)
        xs = np.asarray(coords["x" if "x" in coords else "longitude"].values)
        data = {}
        for b in bands:
            arr = np.empty((len(parsed), ny, nx), dtype=dtypes[b])
            for k, key in enumerate(parsed):
                arr[k] = loaded[key][b]
            data[b] = (("time", "y", "x"), arr, dict(attrs.get(b, {})))
        ds = xr.Dataset(
            data,
            coords={"time": ("time", np.asarray(times, dtype="datetime64[ns]")), "y": ("y", ys), "x": ("x", xs)},
            attrs={"crs": str(geobox.crs), "source": "stac", "catalog": self.catalog},
        )
        return ds.assign_coords(id=("time", np.asarray(list(ids), dtype=object)))

    def read_optical(self, geobox: GeoBox, ids: Sequence[str]) -> xr.Dataset:
        bands = ("red", "nir", "qa")
        loaded, parsed, times = self._read(geobox, ids, "optical", bands)
        ds = self._dataset(geobox, ids, loaded, parsed, times, bands,
                           {"red": np.float32, "nir": np.float32, "qa": np.uint16},
                           {"red": {"units": "1"}, "nir": {"units": "1"}})
        return ds.assign_coords(mission=("time", np.asarray([m for m, _ in parsed], dtype=object)))

    def read_sar(self, geobox: GeoBox, ids: Sequence[str]) -> xr.Dataset:
        bands = ("vv", "vh")
        loaded, parsed, times = self._read(geobox, ids, "sar", bands)
        return self._dataset(geobox, ids, loaded, parsed, times, bands,
                             {"vv": np.float32, "vh": np.float32},
                             {"vv": {"units": "dB"}, "vh": {"units": "dB"}})

    def read_truth_ndvi(self, geobox: GeoBox, ids: Sequence[str]) -> None:
        return None
