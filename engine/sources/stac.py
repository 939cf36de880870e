"""Data source over a STAC catalog: a static ``catalog.json`` (path or URL) or a STAC API.

Catalogs list one row per UTC day (id ``<MISSION>_<YYYYMMDD>``, time of the day's first item);
reads load the day's items with ``odc.stac.load`` on the requested GeoBox (nearest-neighbour),
mosaicking the items of one UTC day first-valid-wins, then undo each asset's ``raster:bands``
scale/offset, turn nodata into NaN, and (for ``sar_units="linear"``) convert SAR to dB.

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
    synthetic = False

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
        if self.is_api:
            self._client = self._open_api()

    def __repr__(self) -> str:
        return f"StacSource({self.catalog!r}, sar_units={self.sar_units!r})"

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

    @staticmethod
    def _footprint(geobox: GeoBox):
        return geobox.extent

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

    def _load(self, items: list[pystac.Item], mission: str, bands: Sequence[str], geobox: GeoBox) -> dict[int, dict[str, np.ndarray]]:
        """Per UTC day: the day's mosaic per band, scaled to physical units (float32, NaN no-data)."""
        import odc.stac

        by_day: dict[int, list[pystac.Item]] = defaultdict(list)
        for it in items:
            by_day[_utc_day(it)].append(it)
        # days whose items share scale/offset/nodata per band load together; others item by item
        uniform, mixed = [], []
        for d, its in by_day.items():
            sigs = {repr(tuple(self._scaling(it, mission, b) for b in bands)) for it in its}
            if len(sigs) == 1:
                uniform.extend(its)
            else:
                mixed.append((d, its))
        keys = [self.asset_keys[mission][b] for b in bands]
        out: dict[int, dict[str, np.ndarray]] = {}

        def odc_load(its: list[pystac.Item], groupby: Any) -> xr.Dataset:
            # nearest reads of a coarse grid (the statistics lattice) must hit grid pixels, not
            # the COG's overviews, so a STAC run matches the source the catalog was written from
            kw: dict[str, Any] = {"use_overviews": False}
            if self.patch_url is not None:
                kw["patch_url"] = self.patch_url
            try:
                return odc.stac.load(its, bands=keys, geobox=geobox, resampling="nearest", groupby=groupby,
                                     chunks=None, fail_on_error=True, **kw)
            except Exception as e:  # noqa: BLE001
                raise SourceError(f"reading {len(its)} {mission} STAC item(s) failed: {e}") from e

        def scaled(raw: np.ndarray, sc: tuple[float, float, Any], band: str) -> np.ndarray:
            scale, offset, nodata = sc
            if band == "qa":
                a = raw.astype(np.uint16, copy=True)
                if mission in _QA_FILL and _QA_FILL[mission] != 0:
                    a[a == 0] = _QA_FILL[mission]  # areas no item covers: fill
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

        if uniform:
            ds = odc_load(uniform, lambda item, parsed, idx: _utc_day(item))
            days = sorted({_utc_day(it) for it in uniform})
            for k, d in enumerate(days):
                ref = by_day[d][0]
                out[d] = {b: scaled(ds[key].values[k], self._scaling(ref, mission, b), b) for b, key in zip(bands, keys)}
        for d, its in mixed:
            mosaic: dict[str, np.ndarray] = {}
            for it in its:  # first valid wins, in time then id order
                ds = odc_load([it], "id")
                for b, key in zip(bands, keys):
                    a = scaled(ds[key].values[0], self._scaling(it, mission, b), b)
                    if b not in mosaic:
                        mosaic[b] = a
                    elif b == "qa":
                        fill = _QA_FILL.get(mission, 0)
                        m = mosaic[b] == fill
                        mosaic[b][m] = a[m]
                    else:
                        m = np.isnan(mosaic[b])
                        mosaic[b][m] = a[m]
            out[d] = mosaic
        return out

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
            missing = sorted(days - {_utc_day(it) for it in items})
            if missing:
                raise SourceError(
                    f"no {m} STAC items in {self.collections[m]!r} cover the window on "
                    f"{', '.join(make_id(m, d) for d in missing)} (check the catalog and the ids' dates)"
                )
            for it in items:
                key = (m, _utc_day(it))
                times[key] = min(times.get(key, _item_ns(it)), _item_ns(it))
            for d, arrs in self._load(items, m, bands, geobox).items():
                loaded[(m, d)] = arrs
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
