"""The algorithm as Earth Engine expressions: pure builders, no requests.

Every function here only composes ``ee`` objects (nothing is sent to the server); the run
module serialises them into ``value:compute`` and export requests. AOI-wide numbers (per-date
SAR means, split labels, the artificial-mask donor, the PCA basis, calibration statistics) enter
as constants, so a tile's expression depends on the tile and the global decisions only.

Collections (``../shared/docs/algorithm.md``):

* S2 ``COPERNICUS/S2_SR_HARMONIZED``: ``B4``/``B8`` x 1e-4, ``SCL`` (0 and 1 invalid **[fix]**;
  3 or >= 7 cloudy);
* L8 ``LANDSAT/LC08/C02/T1_L2`` (+ ``LANDSAT/LC09/C02/T1_L2``): ``SR_B4``/``SR_B5`` x 2.75e-5 -
  0.2, ``QA_PIXEL`` (bit 0 fill = invalid; bits 1-4 cloudy);
* S1 ``COPERNICUS/S1_GRD``, IW, with both VV and VH (already in dB).

Band conventions: a prepared optical image has ``ndvi`` (masked where invalid or NIR + Red <= 0)
and ``cloudy`` (0/1, masked where invalid). Stacks (one band per paired date) are named by image
id (``L8_20210105``). The model has the 9 bands of ``engine.science.regression.COEF_BANDS``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ee
import numpy as np

from tiling import ee_layout as layout
from engine.science.gaps import GAP_BANDS
from engine.science.regression import COEF_BANDS, COV_BANDS
from engine.science.sar import NOISE_FLOOR_DB

S2_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
L8_COLLECTION = "LANDSAT/LC08/C02/T1_L2"
L9_COLLECTION = "LANDSAT/LC09/C02/T1_L2"
S1_COLLECTION = "COPERNICUS/S1_GRD"
DAY_MS = 86_400_000
NEIGHBOURHOOD_RADIUS = 10  # 21 x 21 square (step 3)
MAX_PIXELS = 1e13  # reduceRegion / export maxPixels (tiling.limits.EXPORT_MAX_PIXELS)
TILE_SCALE = 4  # reduceRegion tileScale for the AOI-wide statistics

# Query markers: the first entry of every dictionary the engine asks ``value:compute`` for. The
# server echoes them, so the engine can check it got the answer to the question it asked (and the
# stand-in recognises the engine's queries by them).
Q_CATALOG = "sar-infill/catalog/v1"
Q_IMAGE_STATS = "sar-infill/image-stats/v2"


@dataclass(frozen=True)
class Spec:
    """The constants every builder needs (from the parameters, the plan and the AOI)."""

    mission: str  # "S2" | "L8"
    include_l9: bool
    start_day: int  # days since 1970-01-01, inclusive
    end_day: int  # exclusive
    window_days: int  # SAR half-window
    epsg: int
    resolution: float
    stats_scale: float
    aoi_coords: tuple  # exterior rings of the AOI polygon(s) in the grid CRS
    clip_ndvi: bool = False  # options of the fill (CLIP_NDVI, KEEP_CLEAR_OBSERVED)
    keep_clear: bool = False

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    def grid_transform(self) -> list[float]:
        return [self.resolution, 0, 0, 0, -self.resolution, 0]


def spec_from_context(ctx: Any) -> Spec:
    """Spec of a :class:`engine.run.context.RunContext`."""
    import datetime as dt

    import shapely

    p = ctx.params
    epoch = dt.date(1970, 1, 1)
    aoi = ctx.plan.aoi
    polys = list(aoi.geoms) if hasattr(aoi, "geoms") else [aoi]
    # a lean outline: vertices closer than a pixel add nothing to 100 m statistics
    rings = []
    for poly in polys:
        simple = shapely.simplify(poly, ctx.plan.grid.resolution / 2, preserve_topology=True)
        rings.append(tuple((round(x, 3), round(y, 3)) for x, y in simple.exterior.coords))
    return Spec(mission=p.OPTICAL_MISSION, include_l9=p.INCLUDE_LANDSAT9, start_day=(p.START_DATE - epoch).days,
                end_day=(p.END_DATE - epoch).days, window_days=p.SAR_WINDOW_DAYS, epsg=ctx.plan.grid.epsg,
                resolution=ctx.plan.grid.resolution, stats_scale=p.STATS_SCALE, aoi_coords=tuple(rings),
                clip_ndvi=p.CLIP_NDVI, keep_clear=p.KEEP_CLEAR_OBSERVED)


# --- geometry -------------------------------------------------------------------------------
def aoi_geometry(spec: Spec) -> ee.Geometry:
    """The AOI in the grid CRS (planar)."""
    rings = [[list(map(float, xy)) for xy in ring] for ring in spec.aoi_coords]
    if len(rings) == 1:
        return ee.Geometry.Polygon([rings[0]], proj=spec.crs, geodesic=False)
    return ee.Geometry.MultiPolygon([[r] for r in rings], proj=spec.crs, geodesic=False)


def window_geometry(spec: Spec, window: tuple[int, int, int, int]) -> ee.Geometry:
    """A pixel window ``(col, row, width, height)`` of the grid as a planar rectangle."""
    col, row, w, h = window
    res = spec.resolution
    return ee.Geometry.Rectangle([col * res, -(row + h) * res, (col + w) * res, -row * res], proj=spec.crs,
                                 geodesic=False)


def grid_projection(spec: Spec) -> ee.Projection:
    return ee.Projection(spec.crs, spec.grid_transform())


def masked_image(bands: Sequence[str]) -> ee.Image:
    """An image with ``bands``, masked everywhere: the bottom of composites of possibly empty
    collections, so the composite has its bands even where no image covers a pixel (Earth
    Engine's mosaic / mean of an empty collection has no bands at all)."""
    return ee.Image.constant([0] * len(bands)).rename(list(bands)).updateMask(ee.Image.constant(0))


# --- optical ----------------------------------------------------------------------------------
def _s2_bands(img: ee.Image) -> tuple[ee.Image, ee.Image, ee.Image, ee.Image, ee.Image]:
    """(red, nir, qa, valid, cloudy) of a Sentinel-2 L2A image."""
    scl = img.select("SCL")
    valid = scl.neq(0).And(scl.neq(1))  # [fix] no data / saturated are invalid, not clear
    cloudy = scl.eq(3).Or(scl.gte(7))
    return img.select("B4").multiply(1e-4), img.select("B8").multiply(1e-4), scl, valid, cloudy


def _landsat_bands(img: ee.Image) -> tuple[ee.Image, ee.Image, ee.Image, ee.Image, ee.Image]:
    """(red, nir, qa, valid, cloudy) of a Landsat Collection 2 L2 image."""
    qa = img.select("QA_PIXEL")
    valid = qa.bitwiseAnd(1).eq(0)  # bit 0: fill
    cloudy = qa.bitwiseAnd(0b11110).neq(0)  # bits 1-4: dilated cloud, cirrus, cloud, shadow
    red = img.select("SR_B4").multiply(2.75e-5).add(-0.2)
    nir = img.select("SR_B5").multiply(2.75e-5).add(-0.2)
    return red, nir, qa, valid, cloudy


def _prepare_s2(img: ee.Image) -> ee.Image:
    return _ndvi_cloudy(img, *_s2_bands(img))


def _prepare_landsat(img: ee.Image) -> ee.Image:
    return _ndvi_cloudy(img, *_landsat_bands(img))


def _ndvi_cloudy(img: ee.Image, red: ee.Image, nir: ee.Image, qa: ee.Image, valid: ee.Image,
                 cloudy: ee.Image) -> ee.Image:
    total = nir.add(red)
    ok = total.gt(0)
    ndvi = nir.subtract(red).divide(total).updateMask(ok).rename("ndvi")
    # [fix] invalid NDVI (NIR + Red <= 0) is no observation: neither clear nor cloudy
    out = ndvi.addBands(cloudy.updateMask(ok).rename("cloudy")).updateMask(valid)
    return ee.Image(out.copyProperties(img, ["system:time_start"]))


def _raw_s2(img: ee.Image) -> ee.Image:
    return _raw(img, *_s2_bands(img))


def _raw_landsat(img: ee.Image) -> ee.Image:
    return _raw(img, *_landsat_bands(img))


def _raw(img: ee.Image, red: ee.Image, nir: ee.Image, qa: ee.Image, valid: ee.Image, cloudy: ee.Image) -> ee.Image:
    """``red``, ``nir`` (reflectance), ``qa`` (the mission's QA band) and ``cloudy``, all masked where
    the prepared image's ``cloudy`` is (invalid, or NIR + Red <= 0): what a local source reads."""
    prepared = _ndvi_cloudy(img, red, nir, qa, valid, cloudy).select("cloudy")
    out = ee.Image.cat([red.rename("red"), nir.rename("nir"), qa.toFloat().rename("qa")]).updateMask(prepared.mask())
    return ee.Image(out.addBands(prepared).copyProperties(img, ["system:time_start"]))


def optical_images(mission: str, include_l9: bool, region: ee.Geometry, start_ms: Any, end_ms: Any,
                   raw: bool = False) -> ee.ImageCollection:
    """The mission's images over ``region`` in [start, end) ms, prepared (``ndvi``, ``cloudy``) or,
    with ``raw``, as read by a local source (``red``, ``nir``, ``qa``, ``cloudy``)."""
    if mission == "S2":
        col = ee.ImageCollection(S2_COLLECTION)
        prepare = _raw_s2 if raw else _prepare_s2
    else:
        col = ee.ImageCollection(L8_COLLECTION)
        if include_l9:
            col = col.merge(ee.ImageCollection(L9_COLLECTION))
        prepare = _raw_landsat if raw else _prepare_landsat
    return col.filterBounds(region).filterDate(start_ms, end_ms).map(prepare)


def optical_collection(spec: Spec, region: ee.Geometry) -> ee.ImageCollection:
    """Prepared optical images over ``region`` in [start, end): bands ``ndvi``, ``cloudy``."""
    return optical_images(spec.mission, spec.include_l9, region, spec.start_day * DAY_MS, spec.end_day * DAY_MS)


def daily_mosaic(col: ee.ImageCollection, day: Any, bands: Sequence[str] = ("ndvi", "cloudy")) -> ee.Image:
    """All images of UTC day ``day`` (days since epoch) as one: per pixel the first acquisition
    that is clear there, else the first that is valid there (algorithm.md, job 1 step 2: a pixel
    is clear that day if any image that day is clear there; the local backend's rule).

    ``mosaic`` puts the last image of a collection on top: the stack is the masked bottom, the
    day's images latest first, then the same images cut to their clear pixels, latest first.
    ``bands`` are the collection's bands (one of them ``cloudy``)."""
    t0 = ee.Number(day).multiply(DAY_MS)
    same_day = col.filterDate(t0, t0.add(DAY_MS)).sort("system:time_start", False)
    clear_only = same_day.map(lambda img: img.updateMask(img.select("cloudy").eq(0)))
    # [fix] a day without an image over this region still gives the bands (masked)
    stack = ee.ImageCollection([masked_image(list(bands))]).merge(same_day).merge(clear_only)
    return stack.mosaic().set("system:time_start", t0)


def observation(col: ee.ImageCollection, day: Any, donor_day: Any | None, validation: Any) -> ee.Image:
    """Daily NDVI and ``Mask`` (0 clear, 1 cloudy, 2 artificially hidden, 3 both).

    ``validation`` is a 0/1 number: validation images get twice the donor's cloud mask added.
    """
    img = daily_mosaic(col, day)
    # no valid observation counts as not clear (1), everywhere (sameFootprint=False: the day's
    # footprint may not cover the whole tile)
    mask = img.select("cloudy").unmask(1, False)
    if donor_day is not None:
        donor = daily_mosaic(col, donor_day).select("cloudy").unmask(0, False)
        mask = mask.add(donor.multiply(2).multiply(ee.Number(validation)))
    return img.select("ndvi").addBands(mask.rename("mask"))


# --- SAR --------------------------------------------------------------------------------------
def sar_collection(spec: Spec, region: ee.Geometry) -> ee.ImageCollection:
    """S1 GRD IW scenes with VV and VH over ``region`` in [start - window, end + window)."""
    w = spec.window_days
    return sar_images(region, (spec.start_day - w) * DAY_MS, (spec.end_day + w) * DAY_MS)


def sar_images(region: ee.Geometry, start_ms: Any, end_ms: Any) -> ee.ImageCollection:
    """S1 GRD IW scenes with VV and VH over ``region`` with start in [start, end) ms, bands VV, VH."""

    def native(img: ee.Image) -> ee.Image:
        # [fix] computed at the scene's own 10 m grid: read at 30 m, Earth Engine would take the
        # 20 m level of the mean pyramid; this keeps the nearest 10 m pixel, as a direct read does
        return img.reproject(img.select("VV").projection())

    return (ee.ImageCollection(S1_COLLECTION).filterBounds(region).filterDate(start_ms, end_ms)
            .filter(ee.Filter.eq("instrumentMode", "IW"))
            .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VV"))
            .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VH"))
            .select(["VV", "VH"]).map(native))


def _mask_noise(img: ee.Image) -> ee.Image:
    return img.updateMask(img.gt(NOISE_FLOOR_DB))


def sar_window(s1: ee.ImageCollection, day: Any, window_days: int) -> ee.ImageCollection:
    t = ee.Number(day).multiply(DAY_MS)
    return s1.filterDate(t.subtract(window_days * DAY_MS), t.add(window_days * DAY_MS))


def sar_composite(s1: ee.ImageCollection, day: Any, window_days: int) -> ee.Image:
    """Per-pixel mean in dB of the S1 scenes in [t - w, t + w), values <= -40 dB masked."""
    scenes = sar_window(s1, day, window_days).map(_mask_noise)
    # [fix] no scene in the window: masked VV / VH instead of an image without bands
    return ee.ImageCollection([masked_image(["VV", "VH"])]).merge(scenes).mean().select(["VV", "VH"])


def covariates(spec: Spec, s1: ee.ImageCollection, day: Any, vv_mean: Any, vh_mean: Any) -> ee.Image:
    """The 8 smoothed covariates of step 3-4, on the analysis grid, in ``COV_BANDS`` order."""
    comp = sar_composite(s1, day, spec.window_days).reproject(grid_projection(spec))
    means = ee.Image.constant([vv_mean, vh_mean]).rename(["VV_mean", "VH_mean"]).updateMask(comp.mask())
    diff = comp.subtract(ee.Image.constant([vv_mean, vh_mean])).rename(["VV_diff", "VH_diff"])
    # [fix] NaN-aware box mean that also fills masked centres (as the local backend), computed
    # with the cheap running-sum method
    nmean = comp.reduceNeighborhood(reducer=ee.Reducer.mean(), kernel=ee.Kernel.square(NEIGHBOURHOOD_RADIUS, "pixels"),
                                    skipMasked=False, optimization="boxcar").rename(
        ["VV_Nmean", "VH_Nmean"])
    ndiff = comp.subtract(nmean).rename(["VV_Ndiff", "VH_Ndiff"])
    cov = ee.Image.cat([means, diff, nmean, ndiff]).select(list(COV_BANDS))
    return cov.focal_median()  # Earth Engine's default: circle, radius 1.5 px (the 3 x 3 window)


# --- per-image rows as constants ----------------------------------------------------------------
def image_rows(paired: Any, donor_day: int | None) -> list[dict[str, Any]]:
    """Constant rows for server-side maps: day, AOI SAR means, labels (from the global pass)."""
    rows = []
    for _, r in paired.iterrows():
        rows.append({"id": str(r["id"]), "day": int(r["day"]), "vv": float(r["vv_mean"]), "vh": float(r["vh_mean"]),
                     "train": int(r["split"] in ("Training", "Validation")),
                     "validation": int(r["split"] == "Validation" and donor_day is not None)})
    return rows


# --- global pass queries -------------------------------------------------------------------------
def catalog_query(spec: Spec) -> ee.Dictionary:
    """Acquisition times of the optical images and ids/times of the S1 scenes over the AOI."""
    aoi = aoi_geometry(spec)
    opt = optical_collection(spec, aoi)
    s1 = sar_collection(spec, aoi)
    return ee.Dictionary({
        "query": Q_CATALOG,
        "start_day": spec.start_day, "end_day": spec.end_day, "window_days": spec.window_days,
        "optical_times": opt.aggregate_array("system:time_start"),
        "sar_ids": s1.aggregate_array("system:index"),
        "sar_times": s1.aggregate_array("system:time_start"),
    })


def image_stats_query(spec: Spec, days: Sequence[int], window: tuple[int, int, int, int]) -> ee.Dictionary:
    """One tile's share of the AOI-wide per-image statistics (``engine.backends.aoi_stats``), per
    daily image of ``days``: over the pixels of the analysis grid in ``window`` (the tile's core)
    whose centres are inside the AOI, the valid and cloudy pixel counts and the SAR composite's
    sums (integers of ``aoi_stats.SAR_QUANTUM`` dB) and counts. (The S1 scenes per window come
    from the catalog, over the whole AOI.)

    Everything is computed on the analysis grid (``reproject``, and the reduceRegion's
    ``crsTransform``): [fix] not at ``scale=STATS_SCALE``, where Earth Engine would compute from
    pyramid averages. The reducers are unweighted, so a pixel counts once; integer sums are exact
    whatever order Earth Engine adds them in, so the tiles' shares add up to the AOI's figures
    whatever the tiling."""
    from engine.backends.aoi_stats import SAR_QUANTUM

    core = window_geometry(spec, window)
    opt = optical_collection(spec, core)
    s1 = sar_collection(spec, core)
    grid = grid_projection(spec)
    inside = ee.Image.constant(1).clip(aoi_geometry(spec))  # pixel centres in the AOI
    kw = dict(geometry=core, crs=spec.crs, crsTransform=spec.grid_transform(), maxPixels=MAX_PIXELS,
              tileScale=TILE_SCALE)
    sum_count = ee.Reducer.sum().unweighted().combine(ee.Reducer.count(), sharedInputs=True)

    def one(day: Any) -> ee.Dictionary:
        cloudy = daily_mosaic(opt, day).select("cloudy").reproject(grid).updateMask(inside)
        counts = cloudy.reduceRegion(reducer=sum_count, **kw)
        comp = sar_composite(s1, day, spec.window_days).reproject(grid).updateMask(inside)
        sums = comp.divide(SAR_QUANTUM).round().reduceRegion(reducer=sum_count, **kw)
        return ee.Dictionary({
            "day": day, "valid": counts.get("cloudy_count"), "cloudy": counts.get("cloudy_sum"),
            "vv_sum": sums.get("VV_sum"), "vv_n": sums.get("VV_count"),
            "vh_sum": sums.get("VH_sum"), "vh_n": sums.get("VH_count"),
        })

    return ee.Dictionary({"query": Q_IMAGE_STATS, "days": list(map(int, days)), "window_days": spec.window_days,
                          "rows": ee.List(list(map(int, days))).map(one)})


# --- stage A: the model ----------------------------------------------------------------------------
def _with_constant(cov: ee.Image) -> ee.Image:
    return ee.Image.constant(1).rename("constant").updateMask(cov.select(0).mask()).addBands(cov)


def training_image(spec: Spec, opt: ee.ImageCollection, s1: ee.ImageCollection, row: ee.Dictionary,
                   donor_day: int | None) -> ee.Image:
    obs = observation(opt, row.get("day"), donor_day, row.get("validation"))
    cov = covariates(spec, s1, row.get("day"), row.get("vv"), row.get("vh"))
    clear = obs.select("mask").eq(0)
    return _with_constant(cov).addBands(obs.select("ndvi")).updateMask(clear)


def model_image(spec: Spec, rows: list[dict[str, Any]], donor_day: int | None, region: ee.Geometry) -> ee.Image:
    """Step 6: per-pixel robust regression NDVI ~ [1, 8 covariates] on training + validation
    images, clear pixels only; pixels with fewer than 10 clear pairs are masked."""
    opt = optical_collection(spec, region)
    s1 = sar_collection(spec, region)
    train_rows = [r for r in rows if r["train"]]
    col = ee.ImageCollection(ee.List(train_rows).map(
        lambda r: training_image(spec, opt, s1, ee.Dictionary(r), donor_day)))
    fit = col.reduce(ee.Reducer.robustLinearRegression(numX=len(COEF_BANDS), numY=1))
    coef = fit.select("coefficients").arrayProject([0]).arrayFlatten([list(COEF_BANDS)])
    enough = col.select("ndvi").count().gte(len(COEF_BANDS) + 1)
    # pixels (centres) inside the AOI only, as the local backend fits them
    return coef.updateMask(enough).clip(aoi_geometry(spec)).toFloat()


# --- predictions, smoothing, calibration -----------------------------------------------------------


def prediction_stack(spec: Spec, model: ee.Image, rows: list[dict[str, Any]], region: ee.Geometry) -> ee.Image:
    """Step 7: one band per paired image (named by id): covariates x coefficients."""
    s1 = sar_collection(spec, region)

    def one(r: Any) -> ee.Image:
        r = ee.Dictionary(r)
        cov = _with_constant(covariates(spec, s1, r.get("day"), r.get("vv"), r.get("vh")))
        terms = cov.multiply(model)
        # Image.reduce sums whichever bands are unmasked at a pixel: a prediction needs all 9 terms
        return terms.reduce(ee.Reducer.sum()).updateMask(terms.mask().reduce(ee.Reducer.min())).rename("pred")

    ids = [r["id"] for r in rows]
    return ee.ImageCollection(ee.List(rows).map(one)).toBands().rename(ids)


def observation_stacks(spec: Spec, rows: list[dict[str, Any]], donor_day: int | None,
                       region: ee.Geometry) -> tuple[ee.Image, ee.Image]:
    """(NDVI, Mask) stacks, one band per paired image, named by id."""
    opt = optical_collection(spec, region)
    ids = [r["id"] for r in rows]
    col = ee.ImageCollection(ee.List(rows).map(
        lambda r: observation(opt, ee.Dictionary(r).get("day"), donor_day, ee.Dictionary(r).get("validation"))))
    return col.select("ndvi").toBands().rename(ids), col.select("mask").toBands().rename(ids)


def pca_smooth(pred: ee.Image, mean: np.ndarray, components: np.ndarray) -> ee.Image:
    """Step 8 with an AOI basis given as constants: mean + V (V^T (pred - mean)), V the N x k
    components (two thin products instead of the N x N reconstruction matrix).

    Missing dates contribute a zero anomaly and stay masked (as ``engine.science.pca``)."""
    names = pred.bandNames()
    mean_img = ee.Image.constant([float(m) for m in mean])
    anom = pred.subtract(mean_img).unmask(0).toArray().toArray(1)
    v = np.asarray(components, dtype=float)
    scores = ee.Image(ee.Array(v.T.tolist())).matrixMultiply(anom)
    smoothed = ee.Image(ee.Array(v.tolist())).matrixMultiply(scores)
    out = smoothed.arrayProject([0]).arrayFlatten([names]).add(mean_img)
    return out.updateMask(pred.mask())


def calibrate(smoothed: ee.Image, constants: dict[str, list[float]]) -> ee.Image:
    """Step 9 with per-band constants: ``p_mean``, ``up`` / ``lo`` scales and ``o_mean``.

    Bands without statistics carry the identity (0, 1, 1, 0)."""
    pm = ee.Image.constant(constants["p_mean"])
    anom = smoothed.subtract(pm)
    scale = anom.gte(0).multiply(ee.Image.constant(constants["up"])).add(
        anom.lt(0).multiply(ee.Image.constant(constants["lo"])))
    return anom.multiply(scale).add(ee.Image.constant(constants["o_mean"]))


def fill(obs: ee.Image, mask: ee.Image, calibrated: ee.Image, keep_clear: bool = False) -> ee.Image:
    """Step 10: the observation where ``Mask == 0`` and valid, else the calibrated prediction;
    then the default focal median (and with ``keep_clear`` the clear observations put back)."""
    # [fix] ``calibrated.where(use_obs, obs)`` would do nothing where the prediction is masked
    # (``Image.where`` leaves masked input pixels alone): start from the observation instead
    clear_obs = obs.updateMask(mask.eq(0))
    filled = clear_obs.unmask(calibrated, False).focal_median()
    return clear_obs.unmask(filled, False) if keep_clear else filled


SAMPLE_NODATA = -9999.0  # masked sample values (computePixels carries no masks)


def sample_image(pred: ee.Image, obs: ee.Image, mask: ee.Image, ids: Sequence[str], spec: Spec) -> ee.Image:
    """The statistics sample's bands on the analysis grid: ``p_<id>`` (raw prediction), ``o_<id>``
    (observed NDVI), ``m_<id>`` (Mask) and ``inside`` (1 at pixel centres in the AOI), masked
    pixels unmasked to ``SAMPLE_NODATA`` (computePixels carries no masks), float32."""
    ids = list(ids)
    bands = (pred.select(ids).rename([f"p_{i}" for i in ids])
             .addBands(obs.select(ids).rename([f"o_{i}" for i in ids]))
             .addBands(mask.select(ids).rename([f"m_{i}" for i in ids]))
             .addBands(ee.Image.constant(1).clip(aoi_geometry(spec)).rename("inside")))
    return bands.reproject(grid_projection(spec)).unmask(SAMPLE_NODATA, False).toFloat()


# --- Job 1: gap statistics ---------------------------------------------------------------------------
def gap_statistics(spec: Spec, days: Sequence[int], region: ee.Geometry) -> ee.Image:
    """Per pixel over the daily images ``days`` (all of the period): ``GAP_BANDS`` in days.

    Array-image ops: the clear days of a pixel form a variable-length array (masked images drop
    out of ``ImageCollection.toArray``); gaps are its first differences."""
    opt = optical_collection(spec, region)

    def clear_day(day: Any) -> ee.Image:
        img = daily_mosaic(opt, day)
        clear = img.select("cloudy").eq(0)
        return ee.Image.constant(day).toFloat().rename("day").updateMask(clear)

    arr = ee.ImageCollection(ee.List(list(map(int, days))).map(clear_day)).toArray().arrayProject([0])
    n = arr.arrayLength(0)
    gaps = arr.arraySlice(0, 1).subtract(arr.arraySlice(0, 0, -1))
    two = n.gte(2)
    gaps_ok = gaps.updateMask(two)
    first = arr.updateMask(n.gte(1)).arrayGet([0])
    # [fix] arrayGet documents no negative index: the last element is at length - 1
    last = arr.updateMask(n.gte(1)).arrayGet(n.subtract(1))
    bands = [
        n.toFloat(),
        gaps_ok.arrayReduce(ee.Reducer.mean(), [0]).arrayGet([0]),
        gaps_ok.arrayReduce(ee.Reducer.median(), [0]).arrayGet([0]),
        gaps_ok.arrayReduce(ee.Reducer.percentile([90]), [0]).arrayGet([0]),
        gaps_ok.arrayReduce(ee.Reducer.max(), [0]).arrayGet([0]),
        first.subtract(spec.start_day),
        ee.Image.constant(spec.end_day).subtract(last),
    ]
    return ee.Image.cat(bands).rename(list(GAP_BANDS)).toFloat()


# --- stage B: one tile's outputs -------------------------------------------------------------------
@dataclass(frozen=True)
class Finish:
    """Constants of stage B (from the global pass and the global reduce)."""

    rows: tuple  # image_rows(...)
    donor_day: int | None
    pca_mean: tuple | None
    pca_components: tuple | None  # N x k
    calibration: dict  # p_mean, up, lo, o_mean lists (length N)
    all_days: tuple  # every daily optical image of the period (gap statistics)
    table_rows: tuple  # per-image metadata for the tile table


def sar_stacks(spec: Spec, rows: list[dict[str, Any]], region: ee.Geometry) -> tuple[ee.Image, ee.Image]:
    """(VV, VH) composite stacks in dB, one band per paired image, named by id."""
    s1 = sar_collection(spec, region)
    ids = [r["id"] for r in rows]
    comps = ee.ImageCollection(ee.List(rows).map(
        lambda r: sar_composite(s1, ee.Dictionary(r).get("day"), spec.window_days)))
    return comps.select("VV").toBands().rename(ids), comps.select("VH").toBands().rename(ids)


def outputs_image(stacks: dict[str, ee.Image], gaps: ee.Image | None, variables: Sequence[str],
                  ids: Sequence[str], part: layout.Part) -> ee.Image:
    """One outputs image (``tiling.ee_layout``): ``<variable>_<date>`` bands for the part's dates,
    variable by variable, then the gap bands if the part holds them; all float32."""
    ids = list(ids)
    sel = ids[part.start:part.stop]
    bands = []
    if sel:
        for v in variables:
            img = stacks[v] if len(sel) == len(ids) else stacks[v].select(sel)
            bands.append(img.rename([layout.band_name(v, i) for i in sel]))
    if part.gaps:
        bands.append(gaps)
    return ee.Image.cat(bands).toFloat()


def tile_products(spec: Spec, fin: Finish, model: ee.Image, region: ee.Geometry,
                  core: ee.Geometry | None = None, variables: Sequence[str] = layout.PER_DATE,
                  parts: Sequence[layout.Part] | None = None) -> dict[str, Any]:
    """Every stage-B export of one tile as ee objects: each outputs image by its stage (one float32
    band per variable and date, plus the gap bands; see ``tiling.ee_layout``) and the per-image
    table under ``images``.

    ``region`` (the tile with its halo) selects the input scenes; ``core`` (the exported window)
    is where the per-image MAE of the tile's table is measured, within the AOI. ``parts`` defaults
    to ``layout.output_parts`` for the rows' dates."""
    rows = list(fin.rows)
    ids = [r["id"] for r in rows]
    parts = list(parts) if parts is not None else list(layout.output_parts(len(ids), len(variables)))
    pred = prediction_stack(spec, model, rows, region)
    obs, mask = observation_stacks(spec, rows, fin.donor_day, region)
    smoothed = pred
    if fin.pca_mean is not None:
        smoothed = pca_smooth(pred, np.asarray(fin.pca_mean), np.asarray(fin.pca_components))
    cal = calibrate(smoothed, fin.calibration)
    if spec.clip_ndvi:  # an option: the method keeps whatever the calibration gives
        cal = cal.clamp(-1, 1)
    filled = fill(obs, mask, cal, spec.keep_clear)
    absdiff = obs.subtract(cal).abs().updateMask(mask.eq(0)).clip(aoi_geometry(spec))
    stats = absdiff.reduceRegion(reducer=ee.Reducer.mean().combine(ee.Reducer.count(), sharedInputs=True),
                                 geometry=core if core is not None else region, crs=grid_projection(spec),
                                 maxPixels=MAX_PIXELS, tileScale=TILE_SCALE)

    def table_row(r: Any) -> ee.Feature:
        r = ee.Dictionary(r)
        key = ee.String(r.get("ID"))
        n = ee.Number(stats.get(key.cat("_count"), 0))
        mae = ee.Algorithms.If(n.gt(0), stats.get(key.cat("_mean"), -1), -1)
        return ee.Feature(None, r.set("MAE", mae).set("MAE_n", n))

    table = ee.FeatureCollection(ee.List(list(fin.table_rows)).map(table_row))
    stacks = {"filled": filled, "mask": mask, "prediction": cal, "observation": obs, "smoothed": smoothed}
    if "vv" in variables or "vh" in variables:
        stacks["vv"], stacks["vh"] = sar_stacks(spec, rows, region)
    gaps = gap_statistics(spec, fin.all_days, region) if any(p.gaps for p in parts) else None
    products: dict[str, Any] = {p.stage: outputs_image(stacks, gaps, variables, ids, p) for p in parts}
    products[layout.TABLE] = table
    return products
