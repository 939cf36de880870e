"""``--source ee``: Earth Engine as a data source of the local backend (the low-EECU way to run whole
scenes).

The catalogs and the pixels come from Earth Engine's collections through the same builders the gee
backend uses (:mod:`engine.backends.gee.expressions`: the mission's collection and scaling, its
QA band and the daily-mosaic rule of a clear acquisition first; the S1 IW VV+VH filter at each
scene's native grid); the science then runs locally, on the dask workers, with the code of every
other local source. A read is one or more ``image:computePixels`` requests on the window's own grid
(its CRS and affine transform), each within the response limits (48 MiB, 32,768 px a side, 1,024
bands; :func:`engine.backends.gee.download.plan_chunks`), sent concurrently under this process's
share of ``MAX_INTERACTIVE_REQUESTS`` and retried on 429 / 5xx by :class:`EEApi`. Masked pixels are
unmasked to a no-data value first (computePixels carries no masks) and read back as NaN
(reflectance, backscatter) or the mission's QA no-data code.

The source pickles without its connection: each dask worker process initialises ``ee`` on its first
read (:func:`engine.backends.gee.session.initialize`, the same credentials rules as the gee
backend). Interactive requests report no EECU usage (Earth Engine publishes it only in Cloud
Monitoring, per ``workloadTag``): :meth:`EarthEngineSource.usage` counts requests and pixel-bands
read, and :func:`estimated_eecu_seconds` prices them at a documented prior.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.backends.gee import expressions as X
from engine.backends.gee.download import NODATA, plan_chunks
from engine.backends.gee.session import is_loopback
from engine.errors import SourceError
from engine.sources.base import SAR_MISSION, day_to_datetime64, empty_catalog, make_id, parse_ids, to_ns

if TYPE_CHECKING:  # pragma: no cover
    import xarray
    from odc.geo.geobox import GeoBox

    from engine.backends.gee.api import EEApi

#: [assumption] EECU-seconds per pixel-band a computePixels read of a collection mosaic costs: the
#: engine's guess (Earth Engine publishes no per-request figure), the gee backend's mosaic rate.
READ_EECU_PER_PIXEL_BAND = 2.0e-6
CHUNK_IMAGES = 24  # images the local backend reads at once (engine.backends.local.inputs.CHUNK_IMAGES)
QA_NODATA = {"S2": 0, "L8": 1, "L9": 1}  # SCL no data; QA_PIXEL bit 0 (fill)
OPTICAL_BANDS = ("red", "nir", "qa")
SAR_BANDS = ("VV", "VH")
WORKLOAD_TAG = "sar-infill-source"

_CONNECTIONS: dict[tuple[str, str], EEApi] = {}  # one initialised client per process
_CONNECT_LOCK = threading.Lock()


def estimated_eecu_seconds(pixel_bands: float) -> float:
    """The prior price of ``pixel_bands`` read with computePixels (see :data:`READ_EECU_PER_PIXEL_BAND`)."""
    return float(pixel_bands) * READ_EECU_PER_PIXEL_BAND


class EarthEngineSource:
    """Optical and Sentinel-1 catalogs and reads from Earth Engine (``DATA_SOURCE: ee``)."""

    name = "ee"

    def __init__(self, project: str | None, url: str, include_l9: bool = False, requests: int = 4,
                 request_bytes: int | None = None, poll_interval_s: float = 30.0) -> None:
        self.project, self.url, self.include_l9 = project, url.rstrip("/"), include_l9
        self.requests = max(1, int(requests))  # concurrent computePixels of this process
        self.request_bytes = request_bytes
        self.poll_interval_s = poll_interval_s
        # a loopback server is the executing stand-in, which serves the synthetic world
        self.synthetic = is_loopback(self.url)
        self._local = threading.local()  # reads counted per calling thread (one dask task at a time)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local")  # each process, each thread counts its own reads
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # --- connection ---
    def api(self) -> EEApi:
        """This process's client, initialised once (credentials per :mod:`engine.backends.gee.session`)."""
        from engine.backends.gee.api import EEApi, RetryPolicy
        from engine.backends.gee.session import initialize

        key = (str(self.project), self.url)
        with _CONNECT_LOCK:
            api = _CONNECTIONS.get(key)
            if api is None:
                session = initialize(self.project, self.url)
                api = EEApi(session.project, RetryPolicy.for_poll_interval(self.poll_interval_s), self.requests)
                _CONNECTIONS.clear()  # ee keeps one global state: connecting elsewhere replaces it
                _CONNECTIONS[key] = api
            return api

    def usage(self) -> dict[str, float]:
        """The computePixels requests and pixel-bands this thread has read so far, with their estimated
        EECU-seconds (a caller measures a task's reads as the difference of two calls)."""
        requests, pixel_bands = getattr(self._local, "counts", (0, 0))
        return {"requests": requests, "pixel_bands": pixel_bands,
                "eecu_seconds_estimated": estimated_eecu_seconds(pixel_bands)}

    # --- catalogs ---
    def optical_catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        m = str(mission).upper()
        if m not in QA_NODATA:
            raise SourceError(f"Earth Engine source: no optical mission {mission!r}; use S2 or L8")
        self.api()  # ee builds expressions only once initialised
        t0, t1 = to_ns(start) // 10**6, to_ns(end) // 10**6
        col = X.optical_images(m, self.include_l9, _region(geobox), t0, t1)
        return self._catalog(col, m, f"{m} catalog")

    def sar_catalog(self, geobox: GeoBox, start: Any, end: Any) -> pd.DataFrame:
        self.api()
        t0, t1 = to_ns(start) // 10**6, to_ns(end) // 10**6
        return self._catalog(X.sar_images(_region(geobox), t0, t1), SAR_MISSION, "S1 catalog")

    def _catalog(self, col: Any, mission: str, what: str) -> pd.DataFrame:
        """One row per UTC day with an image: the id ``<MISSION>_<YYYYMMDD>`` and the day's first time."""
        times = self.api().compute(col.aggregate_array("system:time_start"), what)
        if not times:
            return empty_catalog()
        ms = np.sort(np.asarray(times, dtype=np.int64))
        days = ms // X.DAY_MS
        first = np.unique(days, return_index=True)[1]
        return pd.DataFrame({"id": [make_id(mission, int(d)) for d in days[first]],
                             "time": pd.DatetimeIndex(ms[first].astype("datetime64[ms]").astype("datetime64[ns]"))})

    # --- reads ---
    def read_optical(self, geobox: GeoBox, ids: Sequence[str]) -> xarray.Dataset:
        missions, days = parse_ids(ids, tuple(QA_NODATA))
        self.api()
        region = _region(geobox)
        images = []
        for m, d in zip(missions, days):
            col = X.optical_images(m, self.include_l9, region, int(d) * X.DAY_MS, (int(d) + 1) * X.DAY_MS, raw=True)
            images.append(X.daily_mosaic(col, int(d), ("red", "nir", "qa", "cloudy")).select(list(OPTICAL_BANDS)))
        arrays = self._read(geobox, images, OPTICAL_BANDS, f"{missions[0] if missions else ''} pixels")
        nodata = np.asarray([QA_NODATA[m] for m in missions], np.float32)[:, None, None]
        qa = np.where(np.isnan(arrays["qa"]), nodata, arrays["qa"]).astype(np.uint16)
        return _dataset({"red": arrays["red"], "nir": arrays["nir"], "qa": qa}, geobox, ids, missions, days)

    def read_sar(self, geobox: GeoBox, ids: Sequence[str]) -> xarray.Dataset:
        missions, days = parse_ids(ids, (SAR_MISSION,))
        self.api()
        region = _region(geobox)
        # the day's scenes over the masked bottom, the first acquisition on top (mosaic: last on top)
        images = [ee_empty(SAR_BANDS).merge(X.sar_images(region, int(d) * X.DAY_MS, (int(d) + 1) * X.DAY_MS)
                                            .sort("system:time_start", False)).mosaic().select(list(SAR_BANDS))
                  for d in days]
        arrays = self._read(geobox, images, SAR_BANDS, "S1 pixels")
        return _dataset({"vv": arrays["VV"], "vh": arrays["VH"]}, geobox, ids, missions, days)

    def read_truth_ndvi(self, geobox: GeoBox, ids: Sequence[str]) -> None:
        return None  # observations have no ground truth

    def _read(self, geobox: GeoBox, images: list[Any], bands: Sequence[str], what: str) -> dict[str, np.ndarray]:
        """``bands`` of every image over ``geobox``, float32 (time, y, x), NaN where masked."""
        import ee

        h, w = geobox.shape
        out = {b: np.full((len(images), h, w), np.nan, np.float32) for b in bands}
        if not images:
            return out
        names = [f"{b}_{t}" for t in range(len(images)) for b in bands]
        stack = ee.Image.cat([img.rename([f"{b}_{t}" for b in bands]) for t, img in enumerate(images)])
        stack = stack.unmask(NODATA, False).toFloat()
        kw = {} if self.request_bytes is None else {"limit": self.request_bytes}
        chunks = plan_chunks(what, names, (0, 0, w, h), **kw)
        a = geobox.affine
        crs = _crs(geobox)
        api = self.api()

        def fetch(chunk: Any) -> None:
            grid = {"crsCode": crs, "dimensions": {"width": chunk.width, "height": chunk.height},
                    "affineTransform": {"scaleX": a.a, "shearX": a.b, "translateX": a.c + chunk.col * a.a,
                                        "shearY": a.d, "scaleY": a.e, "translateY": a.f + chunk.row * a.e}}
            arr = api.compute_pixels(stack.select(list(chunk.bands)), grid, f"{what} ({chunk.bands[0]}..)",
                                     workload_tag=WORKLOAD_TAG)
            for name in chunk.bands:
                band, t = name.rsplit("_", 1)
                values = np.asarray(arr[name], np.float32)
                out[band][int(t), chunk.row:chunk.row + chunk.height, chunk.col:chunk.col + chunk.width] = np.where(
                    values == NODATA, np.float32(np.nan), values)

        with ThreadPoolExecutor(max_workers=min(self.requests, len(chunks))) as pool:
            list(pool.map(fetch, chunks))
        requests, pixel_bands = getattr(self._local, "counts", (0, 0))
        self._local.counts = (requests + len(chunks),
                              pixel_bands + sum(c.width * c.height * len(c.bands) for c in chunks))
        return out


def ee_empty(bands: Sequence[str]) -> Any:
    """A one-image collection holding the masked ``bands``: the bottom of a day's mosaic, so a day
    without a scene over the window still has its bands (masked)."""
    import ee

    return ee.ImageCollection([X.masked_image(list(bands))])


def _region(geobox: GeoBox) -> Any:
    """The window as a planar rectangle in its own CRS."""
    import ee

    x0, y0, x1, y1 = geobox.extent.boundingbox
    return ee.Geometry.Rectangle([x0, y0, x1, y1], proj=_crs(geobox), geodesic=False)


def _crs(geobox: GeoBox) -> str:
    """The window's CRS as Earth Engine takes it: its EPSG code, else its WKT."""
    return f"EPSG:{geobox.crs.epsg}" if geobox.crs.epsg else geobox.crs.to_wkt()


def _dataset(arrays: dict[str, np.ndarray], geobox: GeoBox, ids: Sequence[str], missions: list[str],
             days: list[int]) -> xarray.Dataset:
    import xarray as xr

    coords = geobox.coords
    times = day_to_datetime64(np.asarray(days, np.int64))
    ds = xr.Dataset({k: (("time", "y", "x"), v) for k, v in arrays.items()},
                    coords={"time": times, "y": coords["y"].values, "x": coords["x"].values},
                    attrs={"crs": str(geobox.crs), "source": "ee"})
    return ds.assign_coords(id=("time", np.asarray(list(ids), dtype=object)),
                            mission=("time", np.asarray(missions, dtype=object)))


def planned_reads(ctx: Any) -> dict[str, float]:
    """What a ``--source ee`` run will read (planning only): every tile's optical dates (3 bands) and S1
    scenes (2 bands) twice, on its compute window for the global pass and with its halo for stage A,
    in read calls of at most ``CHUNK_IMAGES`` images and requests of at most 48 MiB."""
    import math

    from engine.backends.gee.download import MAX_RESPONSE_BYTES
    from engine.run.context import estimated_dates

    p, plan = ctx.params, ctx.plan
    dates = plan.budget.dates
    scenes = estimated_dates(p, ctx.aoi, SAR_MISSION, 2 * p.SAR_WINDOW_DAYS)
    halo = plan.budget.halo
    requests = pixel_bands = 0.0
    for tile in plan.tiles:
        window = plan.compute_window(tile)
        if window is None:
            continue
        for px in (window.width * window.height, (window.width + 2 * halo) * (window.height + 2 * halo)):
            for images, bands in ((dates, len(OPTICAL_BANDS)), (scenes, len(SAR_BANDS))):
                calls = math.ceil(images / CHUNK_IMAGES)
                requests += max(calls, math.ceil(px * images * bands * 4 / MAX_RESPONSE_BYTES))
                pixel_bands += px * images * bands
    return {"requests": requests, "pixel_bands": pixel_bands, "eecu_seconds_estimated": estimated_eecu_seconds(pixel_bands)}


def source_for_params(params: Any) -> EarthEngineSource:
    """The Earth Engine source of a run's parameters: its project, URL and this process's share of the
    interactive request cap (the cap split over the local workers)."""
    workers = max(1, int(params.WORKERS or 1))
    return EarthEngineSource(params.EE_PROJECT, params.EE_API_URL, params.INCLUDE_LANDSAT9,
                             requests=max(1, params.MAX_INTERACTIVE_REQUESTS // workers),
                             poll_interval_s=params.POLL_INTERVAL_S)


__all__ = ["EarthEngineSource", "estimated_eecu_seconds", "planned_reads", "source_for_params",
           "READ_EECU_PER_PIXEL_BAND"]
