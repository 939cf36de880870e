"""Write a source's data for one window as Cloud-Optimized GeoTIFFs plus a static STAC catalog.

The layout and metadata follow the public catalogs the :class:`~engine.sources.stac.StacSource`
reads, so the same reader serves real data and this synthetic export:

=========  ====================  ==========================  ===========================================
mission    collection            assets                      encoding
=========  ====================  ==========================  ===========================================
``S2``     ``sentinel-2-l2a``    ``red``, ``nir``, ``scl``    uint16 DN, scale 1e-4, offset 0 (-0.1 from
                                                             2022-01-25, as Earth Search), nodata 0
``L8/L9``  ``landsat-c2-l2``     ``red``, ``nir08``,          uint16 DN, scale 2.75e-5, offset -0.2,
                                 ``qa_pixel``                nodata 0; qa_pixel nodata 1 (fill)
``S1``     ``sentinel-1-grd``    ``vv``, ``vh``               float32 dB (or linear power), nodata NaN
=========  ====================  ==========================  ===========================================

With ``scaled=False`` reflectance is written as float32 (scale 1, offset 0, nodata NaN), which
round-trips bit-exactly. Scale, offset and nodata are declared per asset in ``raster:bands``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import SourceError
from engine.io import atomic_path
from engine.sources.base import OPTICAL_MISSIONS, SAR_MISSION, parse_id
from engine.sources.stac import DEFAULT_ASSET_KEYS, DEFAULT_COLLECTIONS

if TYPE_CHECKING:  # pragma: no cover
    from odc.geo.geobox import GeoBox

    from engine.sources.base import Source

log = logging.getLogger(__name__)

__all__ = ["write_stac_catalog", "COLLECTIONS", "ASSET_KEYS", "S2_OFFSET_FROM"]

#: Collection id per mission (as Earth Search / Planetary Computer name them).
COLLECTIONS = DEFAULT_COLLECTIONS
#: Asset key per engine band, per mission (the reader's defaults, so the two always agree).
ASSET_KEYS = DEFAULT_ASSET_KEYS
#: Sentinel-2 processing baseline 04.00 (from 2022-01-25) adds a -0.1 reflectance offset.
S2_OFFSET_FROM = _dt.date(2022, 1, 25)
_REFLECTANCE = {"S2": (1e-4, 0.0), "L8": (2.75e-5, -0.2), "L9": (2.75e-5, -0.2)}
_QA_NODATA = {"S2": 0, "L8": 1, "L9": 1}


def _platform(mission: str, day: int) -> str:
    from engine.sources import synthetic as syn

    if mission == "S2":
        return "sentinel-2a" if (day - syn.S2_ANCHOR) % 10 == 0 else "sentinel-2b"
    if mission == "S1":
        if (day - syn.S1_ANCHOR) % 12 == 0:
            return "sentinel-1a"
        return "sentinel-1c" if day >= syn.S1C_START else "sentinel-1b"
    return {"L8": "landsat-8", "L9": "landsat-9"}[mission]


def _scale_offset(mission: str, day: int) -> tuple[float, float]:
    scale, offset = _REFLECTANCE[mission]
    if mission == "S2" and _dt.date(1970, 1, 1) + _dt.timedelta(days=day) >= S2_OFFSET_FROM:
        offset = -0.1
    return scale, offset


def _write_cog(path: Path, data: np.ndarray, geobox: GeoBox, nodata: Any) -> None:
    """Write one band as a COG (deflate, tiled, overviews) atomically (temp file + os.replace)."""
    import rasterio

    h, w = data.shape
    profile = dict(
        driver="COG", width=w, height=h, count=1, dtype=data.dtype.name, crs=str(geobox.crs),
        transform=geobox.transform, nodata=nodata, compress="DEFLATE", blocksize=256,
        overview_resampling="nearest",
    )
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)


def _geobox_tag(geobox: GeoBox) -> str:
    key = f"{geobox.crs}|{tuple(geobox.transform)[:6]}|{geobox.shape}".encode()
    return hashlib.sha1(key).hexdigest()[:8]


def _item_id(mission: str, day: int, tag: str) -> str:
    d = _dt.date(1970, 1, 1) + _dt.timedelta(days=day)
    plat = _platform(mission, day)
    if mission == "S2":
        return f"S2{plat[-1].upper()}_SYN_{d:%Y%m%d}_0_L2A_{tag}"
    if mission in ("L8", "L9"):
        return f"LC0{mission[1]}_L2SP_SYN_{d:%Y%m%d}_02_T1_{tag}"
    return f"S1{plat[-1].upper()}_IW_GRDH_1SDV_{d:%Y%m%d}_SYN_{tag}"


def write_stac_catalog(
    source: Source,
    geobox: GeoBox,
    mission: str,
    start: Any,
    end: Any,
    out_dir: str | os.PathLike,
    *,
    scaled: bool = True,
    sar_units: str = "db",
    chunk: int = 8,
) -> str:
    """Export ``source``'s ``mission`` acquisitions in ``[start, end)`` over ``geobox`` to ``out_dir``.

    Writes one STAC item per acquisition (COG assets beside the item JSON) under a collection
    named as in :data:`COLLECTIONS`, inside ``out_dir/catalog.json``. An existing catalog there is
    extended (items with the same id are replaced), so several missions and windows can share
    one catalog. Returns the path of ``catalog.json``.
    """
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
    from shapely.geometry import mapping

    mission = str(mission).upper()
    if mission not in OPTICAL_MISSIONS + (SAR_MISSION,):
        raise SourceError(f"cannot export mission {mission!r}: use one of {', '.join(OPTICAL_MISSIONS + (SAR_MISSION,))}")
    sar_units = str(sar_units).lower()
    if sar_units not in ("db", "linear"):
        raise SourceError(f"sar_units must be 'db' or 'linear', got {sar_units!r}")
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    root_href = out / "catalog.json"

    if mission == SAR_MISSION:
        cat = source.sar_catalog(geobox, start, end)
    else:
        cat = source.optical_catalog(geobox, mission, start, end)
    ids = list(cat["id"])

    if root_href.exists():
        catalog = pystac.Catalog.from_file(str(root_href))
    else:
        catalog = pystac.Catalog(id="synthetic", description="Synthetic data exported by engine.sources.stac_export",
                                 title="sar-infill synthetic export")
    coll_id = COLLECTIONS[mission]
    collection = catalog.get_child(coll_id)
    if collection is None:
        collection = pystac.Collection(
            id=coll_id,
            description=f"Synthetic {coll_id} (engine.sources.synthetic)",
            extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                                 pystac.TemporalExtent([[None, None]])),
            license="proprietary",
        )
        catalog.add_child(collection)

    footprint = geobox.extent.to_crs("EPSG:4326")
    geom = mapping(footprint.geom)
    bbox = list(footprint.boundingbox)
    tag = _geobox_tag(geobox)
    epsg = geobox.crs.epsg
    keys = ASSET_KEYS[mission]
    synthetic = bool(getattr(source, "synthetic", False))
    if synthetic:  # the label travels with the data (StacSource.synthetic reads it back)
        catalog.extra_fields["synthetic"] = True
        collection.extra_fields["synthetic"] = True

    for i0 in range(0, len(ids), max(1, int(chunk))):
        part = ids[i0:i0 + chunk]
        ds = source.read_sar(geobox, part) if mission == SAR_MISSION else source.read_optical(geobox, part)
        for k, image_id in enumerate(part):
            _, day = parse_id(image_id)
            t = ds["time"].values[k]
            when = _dt.datetime.fromtimestamp(int(t.astype("datetime64[ns]").astype(np.int64)) / 1e9, tz=_dt.timezone.utc)
            item_id = _item_id(mission, day, tag)
            item_dir = out / coll_id / item_id
            props: dict[str, Any] = {
                "platform": _platform(mission, day),
                "engine:image_id": image_id,
                "synthetic": synthetic,
            }
            assets: dict[str, tuple[Path, dict]] = {}
            if mission == SAR_MISSION:
                props.update({"constellation": "sentinel-1", "sar:instrument_mode": "IW",
                              "sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD",
                              "sar:frequency_band": "C"})
                for band in ("vv", "vh"):
                    arr = ds[band].values[k].astype(np.float32)
                    if sar_units == "linear":
                        with np.errstate(invalid="ignore"):
                            arr = np.power(np.float32(10.0), arr / np.float32(10.0)).astype(np.float32)
                    path = item_dir / f"{keys[band]}.tif"
                    _write_cog(path, arr, geobox, np.nan)
                    assets[keys[band]] = (path, {"nodata": "nan", "data_type": "float32", "unit": sar_units,
                                                 "scale": 1.0, "offset": 0.0})
            else:
                qa = ds["qa"].values[k].astype(np.uint16)
                props["constellation"] = "sentinel-2" if mission == "S2" else "landsat"
                if mission == "S2":
                    valid = (qa != 0) & (qa != 1)
                    cloudy = (qa == 3) | (qa >= 7)
                else:
                    valid = (qa & 1) == 0
                    cloudy = (qa & 0b11110) != 0
                nvalid = int(valid.sum())
                props["eo:cloud_cover"] = float(100.0 * (cloudy & valid).sum() / nvalid) if nvalid else 100.0
                if mission == "S2" and scaled:
                    props["s2:processing_baseline"] = "04.00" if _scale_offset(mission, day)[1] else "02.14"
                for band in ("red", "nir"):
                    arr = ds[band].values[k]
                    path = item_dir / f"{keys[band]}.tif"
                    if scaled:
                        scale, offset = _scale_offset(mission, day)
                        with np.errstate(invalid="ignore"):
                            dn = np.rint((arr.astype(np.float64) - offset) / scale)
                        dn = np.where(np.isfinite(dn), np.clip(dn, 1, 65535), 0).astype(np.uint16)
                        _write_cog(path, dn, geobox, 0)
                        assets[keys[band]] = (path, {"nodata": 0, "data_type": "uint16", "scale": scale, "offset": offset})
                    else:
                        _write_cog(path, arr.astype(np.float32), geobox, np.nan)
                        assets[keys[band]] = (path, {"nodata": "nan", "data_type": "float32", "scale": 1.0, "offset": 0.0})
                path = item_dir / f"{keys['qa']}.tif"
                _write_cog(path, qa, geobox, _QA_NODATA[mission])
                assets[keys["qa"]] = (path, {"nodata": _QA_NODATA[mission], "data_type": "uint16"})

            item = pystac.Item(id=item_id, geometry=geom, bbox=bbox, datetime=when, properties=props,
                               collection=coll_id)
            proj = ProjectionExtension.ext(item, add_if_missing=True)
            proj.epsg = epsg
            proj.transform = list(geobox.transform)[:6]
            proj.shape = list(geobox.shape)
            RasterExtension.add_to(item)
            for key, (path, meta) in assets.items():
                role = ["data"] if key not in ("scl", "qa_pixel") else ["metadata"]
                asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=role, title=key)
                band = RasterBand.create(
                    nodata=NoDataStrings.NAN if meta["nodata"] == "nan" else meta["nodata"],
                    data_type=DataType(meta["data_type"]),
                    scale=meta.get("scale"), offset=meta.get("offset"), unit=meta.get("unit"),
                )
                item.add_asset(key, asset)
                RasterExtension.ext(asset).apply([band])
            old = collection.get_item(item_id)
            if old is not None:
                collection.remove_item(item_id)
            collection.add_item(item)
        log.debug("exported %d %s items to %s", len(part), mission, out)

    items = list(collection.get_items())
    if items:
        collection.extent = pystac.Extent.from_items(items)
    catalog.normalize_hrefs(str(out))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return str(root_href)
