"""A static STAC catalog shaped like the public ones (Earth Search / Planetary Computer), made
independently of the engine's own export (rasterio + pystac here).

Near the UTM zone 55 / 56 boundary (150 E), over ``AOI`` plus a margin:

* Sentinel-2 L2A, two granules a day: ``A`` in EPSG:32755 (the engine's grid zone) covering the
  west of the AOI, its east edge a diagonal swath edge at 55-70 % of the AOI's width (nodata
  beyond it, footprint = the valid part), and ``B`` in EPSG:32756 covering the east from 35 %;
  they overlap in between. ``red`` / ``nir`` at 10 m,
  ``scl`` at 20 m, uint16 DN with ``raster:bands`` scale 1e-4 and offset 0 (-0.1 from processing
  baseline 04.00, 2022-01-25), nodata 0. Some days have one granule only.
* In the overlap (35-55 %) the granules' masks disagree, in three thirds of the AOI's rows: ``A`` saturated
  (SCL 1, invalid) while ``B`` is valid; ``B`` cloudy (SCL 9) while ``A`` is as observed; ``A``
  cloudy while ``B`` is clear (SCL 4). ``A`` is acquired first.
* Sentinel-1 GRD, two slices a day (north and south, overlapping), EPSG:32755, float32 dB (or
  linear power), nodata NaN.

Pixel values come from the synthetic source sampled at each granule's own pixel centres, so the
same place has (nearly) the same value in both granules, as with real overlapping tiles.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

AOI = (149.975, -27.005, 149.988, -26.994)  # lon/lat bbox, 1.3 km x 1.2 km, west of 150 E
START, END = "2021-11-01", "2022-03-01"  # spans Sentinel-2 baseline 04.00 (2022-01-25)
MARGIN_M = 1500.0  # the catalog covers the AOI plus this (tiles, halos)
BASELINE_04 = dt.date(2022, 1, 25)
ROW_BANDS = ("A saturated", "B cloudy", "A cloudy, B clear")


def _geobox(bounds, crs: str, res: float):
    from odc.geo.geobox import GeoBox

    x0, y0, x1, y1 = (np.floor(bounds[0] / res) * res, np.floor(bounds[1] / res) * res,
                      np.ceil(bounds[2] / res) * res, np.ceil(bounds[3] / res) * res)
    return GeoBox.from_bbox((x0, y0, x1, y1), crs, resolution=res)


def _write_cog(path: Path, data: np.ndarray, geobox, nodata) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = data.shape
    with rasterio.open(path, "w", driver="COG", width=w, height=h, count=1, dtype=data.dtype.name,
                       crs=str(geobox.crs), transform=geobox.transform, nodata=nodata, compress="DEFLATE",
                       blocksize=256) as dst:
        dst.write(data, 1)


def _extent(crs: str):
    """The catalog's area (AOI + margin) in ``crs``."""
    from odc.geo.geom import box

    aoi = box(*AOI, "EPSG:4326").to_crs(crs)
    b = aoi.boundingbox
    return (b.left - MARGIN_M, b.bottom - MARGIN_M, b.right + MARGIN_M, b.top + MARGIN_M)


def _dn(reflectance: np.ndarray, offset: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        dn = np.rint((reflectance.astype(np.float64) - offset) / 1e-4)
    return np.where(np.isfinite(dn), np.clip(dn, 1, 65535), 0).astype(np.uint16)


def _footprint(valid: np.ndarray, geobox):
    """The lon/lat polygon of a granule's valid pixels (its data footprint)."""
    import rasterio.features
    import shapely
    from odc.geo.geom import Geometry
    from shapely.geometry import shape

    polys = [shape(g) for g, v in rasterio.features.shapes(valid.astype(np.uint8), transform=geobox.transform)
             if v == 1]
    geom = shapely.unary_union(polys).simplify(geobox.resolution.x)
    return Geometry(geom, geobox.crs).to_crs("EPSG:4326")


def _item(pystac, item_id: str, when: dt.datetime, footprint, props: dict, assets: dict, collection: str):
    from shapely.geometry import mapping

    item = pystac.Item(id=item_id, geometry=mapping(footprint.geom), bbox=list(footprint.boundingbox),
                       datetime=when, properties=props, collection=collection)
    item.stac_extensions += ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                             "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]
    for key, (path, geobox, band) in assets.items():
        asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"])
        asset.extra_fields.update({"proj:code": str(geobox.crs), "proj:shape": list(geobox.shape),
                                   "proj:transform": list(geobox.transform)[:6], "raster:bands": [band]})
        item.add_asset(key, asset)
    return item


def build(out: Path, seed: int = 5, sar_units: str = "db") -> str:
    """Write the catalog under ``out``; returns the path of its ``catalog.json``."""
    import pystac

    from engine.sources.synthetic import SyntheticSource

    src = SyntheticSource(seed=seed)
    out = Path(out)
    cat = pystac.Catalog(id="realistic", description="footprints, overlaps and two UTM zones, as real catalogs")
    s2 = pystac.Collection(id="sentinel-2-l2a", description="S2 L2A granules", license="proprietary",
                           extent=pystac.Extent(pystac.SpatialExtent([list(AOI)]), pystac.TemporalExtent([[None, None]])))
    s1 = pystac.Collection(id="sentinel-1-grd", description="S1 GRD slices", license="proprietary",
                           extent=pystac.Extent(pystac.SpatialExtent([list(AOI)]), pystac.TemporalExtent([[None, None]])))
    cat.add_children([s2, s1])

    from odc.geo.geom import box as geo_box
    from pyproj import Transformer

    ext55, ext56 = _extent("EPSG:32755"), _extent("EPSG:32756")
    a = geo_box(*AOI, "EPSG:4326").to_crs("EPSG:32755").boundingbox
    ax0, ay0, aw, ah = a.left, a.bottom, a.right - a.left, a.top - a.bottom
    # granule A (zone 55): west of a diagonal swath edge at 55-70 % of the AOI's width; granule B
    # (zone 56): east of 35 % of it; they overlap in between
    box_a = _geobox((ext55[0], ext55[1], ax0 + 0.75 * aw, ext55[3]), "EPSG:32755", 10)
    to56 = Transformer.from_crs("EPSG:32755", "EPSG:32756", always_xy=True)
    bx0 = min(to56.transform(ax0 + 0.35 * aw, y)[0] for y in (ext55[1], ext55[3]))
    box_b = _geobox((bx0, ext56[1], ext56[2], ext56[3]), "EPSG:32756", 10)
    whole = _geobox(_extent("EPSG:32755"), "EPSG:32755", 10)

    def frame55(gb):
        """Pixel centres of ``gb`` as fractions of the AOI in zone 55: (u across, v down)."""
        xs, ys = np.meshgrid(gb.coords["x"].values, gb.coords["y"].values)
        if str(gb.crs) != "EPSG:32755":
            xs, ys = Transformer.from_crs(str(gb.crs), "EPSG:32755", always_xy=True).transform(xs, ys)
        return (xs - ax0) / aw, (ay0 + ah - ys) / ah

    days = list(src.optical_catalog(whole, "S2", START, END).itertuples())
    for k, row in enumerate(days):
        when = row.time.to_pydatetime().replace(tzinfo=dt.timezone.utc)
        offset = -0.1 if when.date() >= BASELINE_04 else 0.0
        granules = [("A", box_a), ("B", box_b)]
        if k % 4 == 1:
            granules = granules[:1]  # B's orbit misses this day: the east has no data
        elif k % 4 == 3:
            granules = granules[1:]
        for name, gb in granules:
            fine = src.read_optical(gb, [row.id])
            coarse = gb.zoom_out(2)
            scl = src.read_optical(coarse, [row.id]).qa.values[0].astype(np.uint16)
            u, v = frame55(coarse)
            band = np.clip((3 * v).astype(int), 0, 2)  # thirds of the AOI's height
            overlap = (u > 0.35) & (u < 0.55)
            if name == "A":
                edge = u > 0.55 + 0.15 * np.clip(v, 0, 1)  # the swath edge: nodata beyond it
                scl = np.where(overlap & (band == 0), 1, scl)
                scl = np.where(overlap & (band == 2), 9, scl)
            else:
                edge = np.zeros(u.shape, dtype=bool)
                scl = np.where(overlap & (band == 1), 9, scl)
                scl = np.where(overlap & (band == 2), 4, scl)
            scl = np.where(edge, 0, scl).astype(np.uint16)
            red, nir = fine.red.values[0], fine.nir.values[0]
            edge10 = np.repeat(np.repeat(edge, 2, 0), 2, 1)[:red.shape[0], :red.shape[1]]
            item_dir = out / "sentinel-2-l2a" / f"{name}_{row.id}"
            paths = {}
            for key, arr, g in (("red", np.where(edge10, 0, _dn(red, offset)), gb),
                                ("nir", np.where(edge10, 0, _dn(nir, offset)), gb), ("scl", scl, coarse)):
                _write_cog(item_dir / f"{key}.tif", arr.astype(np.uint16), g, 0)
                meta = {"nodata": 0, "data_type": "uint16"}
                if key != "scl":
                    meta.update(scale=1e-4, offset=offset)
                paths[key] = (item_dir / f"{key}.tif", g, meta)
            props = {"platform": "sentinel-2a", "constellation": "sentinel-2", "eo:cloud_cover": 50.0,
                     "s2:processing_baseline": "04.00" if offset else "02.14", "proj:code": str(gb.crs)}
            t = when + dt.timedelta(seconds=0 if name == "A" else 5)
            s2.add_item(_item(pystac, f"S2A_{'55' if name == 'A' else '56'}JXX_{row.id[3:]}_0_L2A", t,
                              _footprint(scl > 0, coarse), props, paths, "sentinel-2-l2a"))

    north = _geobox((ext55[0], ext55[1] + 0.45 * (ext55[3] - ext55[1]), ext55[2], ext55[3]), "EPSG:32755", 10)
    south = _geobox((ext55[0], ext55[1], ext55[2], ext55[1] + 0.6 * (ext55[3] - ext55[1])), "EPSG:32755", 10)
    for row in src.sar_catalog(whole, "2021-10-01", "2022-04-01").itertuples():
        when = row.time.to_pydatetime().replace(tzinfo=dt.timezone.utc)
        for j, gb in enumerate((north, south)):
            ds = src.read_sar(gb, [row.id])
            item_dir = out / "sentinel-1-grd" / f"{j}_{row.id}"
            paths = {}
            for key in ("vv", "vh"):
                arr = ds[key].values[0].astype(np.float32)
                if sar_units == "linear":
                    with np.errstate(invalid="ignore"):
                        arr = np.power(np.float32(10), arr / np.float32(10)).astype(np.float32)
                _write_cog(item_dir / f"{key}.tif", arr, gb, np.nan)
                paths[key] = (item_dir / f"{key}.tif", gb, {"nodata": "nan", "data_type": "float32", "unit": sar_units})
            props = {"platform": "sentinel-1a", "constellation": "sentinel-1", "sar:instrument_mode": "IW",
                     "sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD"}
            fp = gb.extent.to_crs("EPSG:4326")
            s1.add_item(_item(pystac, f"S1A_IW_GRDH_1SDV_{row.id[3:]}_{j}", when + dt.timedelta(seconds=25 * j), fp,
                              props, paths, "sentinel-1-grd"))
    for coll in (s1, s2):
        coll.extent = pystac.Extent.from_items(list(coll.get_items()))
    cat.normalize_hrefs(str(out))
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return str(out / "catalog.json")
