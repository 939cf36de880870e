"""The engine's expressions, computed by the executing stand-in: one test per defect of issue 10.

Each test builds the engine's own expression (``engine.backends.gee.expressions`` / ``exports``) and
checks the number Earth Engine's documented semantics give for it against a numpy computation
from ``computePixels`` of the same inputs. The defective expressions they replaced fail them
(the note of each test says how).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

ee = pytest.importorskip("ee")

from engine.backends.gee import expressions as X  # noqa: E402
from engine.backends.gee.exports import NODATA, image_body  # noqa: E402
from engine.ee_standin.client import DEFAULT_PROJECT  # noqa: E402

UTM = "EPSG:32755"
RES = 30.0
X0, Y0, SIZE = 320_040.0, 8_112_000.0, 600.0  # a 20 x 20 px square of the 30 m grid near North Qld
COL, ROW = int(X0 / RES), int(-(Y0 + SIZE) / RES)
L8_DAYS = [18631, 18647, 18663, 18679]  # the stand-in's Landsat days over the square (Jan-Feb 2021)
NO_IMAGE_DAY = 18632  # no Landsat image over the square
SPEC = X.Spec(mission="L8", include_l9=False, start_day=18628, end_day=18690, window_days=1, epsg=32755,
              resolution=RES, stats_scale=100.0,
              aoi_coords=(((X0, Y0), (X0 + SIZE, Y0), (X0 + SIZE, Y0 + SIZE), (X0, Y0 + SIZE), (X0, Y0)),))


@pytest.fixture(scope="module")
def standin(computing_standin):
    return computing_standin


def region() -> ee.Geometry:
    return X.aoi_geometry(SPEC)


def pixels(img: ee.Image, window=(COL, ROW, 20, 20), fill: float = np.nan) -> dict[str, np.ndarray]:
    """Each band of ``img`` on the analysis grid over ``window``, masked pixels as ``fill``."""
    col, row, w, h = window
    sentinel = -12345.0
    grid = {"crsCode": UTM, "dimensions": {"width": w, "height": h},
            "affineTransform": {"scaleX": RES, "shearX": 0, "translateX": col * RES,
                                "shearY": 0, "scaleY": -RES, "translateY": -row * RES}}
    arr = ee.data.computePixels({"expression": ee.Image(img).unmask(sentinel, False).toDouble(),
                                 "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    return {b: np.where(arr[b] == sentinel, fill, arr[b]) for b in arr.dtype.names}


def count(img: ee.Image) -> dict[str, int]:
    return img.reduceRegion(ee.Reducer.count(), region(), crs=UTM, crsTransform=SPEC.grid_transform()).getInfo()


def test_1_a_day_without_an_image_gives_masked_bands_not_a_bandless_image(standin):
    # old: ``same_day.mosaic()`` / ``scenes.mean()``: no bands, so ``select`` fails on the service
    opt = X.optical_collection(SPEC, region())
    assert opt.filterDate(NO_IMAGE_DAY * X.DAY_MS, (NO_IMAGE_DAY + 1) * X.DAY_MS).size().getInfo() == 0
    obs = X.observation(opt, NO_IMAGE_DAY, None, 0)
    assert count(obs) == {"ndvi": 0, "mask": 400}
    assert set(np.unique(pixels(obs.select("mask"))["mask"])) == {1.0}  # no observation: not clear
    s1 = X.sar_collection(SPEC, region())
    assert X.sar_window(s1, NO_IMAGE_DAY, SPEC.window_days).size().getInfo() == 0
    assert count(X.sar_composite(s1, NO_IMAGE_DAY, SPEC.window_days)) == {"VV": 0, "VH": 0}
    # and the prediction of a date without SAR is masked, not an error
    model = ee.Image.constant([0.1] * 9).rename(list(X.COEF_BANDS))
    row = {"id": "L8_x", "day": NO_IMAGE_DAY, "vv": -10.0, "vh": -16.0, "train": 1, "validation": 0}
    assert count(X.prediction_stack(SPEC, model, [row], region())) == {"L8_x": 0}


def test_4_fill_keeps_clear_observations_where_the_prediction_is_masked(standin):
    # old: ``calibrated.where(use_obs, obs)`` does nothing where ``calibrated`` is masked
    left = ee.Image(1).clip(ee.Geometry.Rectangle([X0, Y0, X0 + SIZE / 2, Y0 + SIZE], proj=UTM, geodesic=False))
    obs = ee.Image(0.5).rename("a")
    mask = ee.Image(0).where(left.unmask(0), 1).rename("a")  # cloudy on the left half
    cal = ee.Image(0.2).rename("a").updateMask(ee.Image(0))  # no prediction anywhere
    out = pixels(X.fill(obs, mask, cal))["a"]
    assert (out[:, 12:] == 0.5).all()  # clear observations kept (the median reaches 1 px)
    assert np.isnan(out[1:-1, 1:9]).all()  # cloudy and no prediction: nothing (clear around the square)
    cal2 = ee.Image(0.2).rename("a")
    out2 = pixels(X.fill(obs, mask, cal2))["a"]
    assert (out2[1:-1, 1:9] == np.float32(0.2)).all() and (out2[:, 12:] == 0.5).all()


def test_5_file_exports_write_masked_pixels_as_nodata(standin):
    # old: no ``noData``, so Earth Engine writes masked pixels as 0: a valid NDVI, "clear" in a mask
    import rasterio

    img = ee.Image(0.0).rename("a").updateMask(
        ee.Image(1).clip(ee.Geometry.Rectangle([X0, Y0, X0 + SIZE / 2, Y0 + SIZE], proj=UTM, geodesic=False)))
    body = image_body(img, (COL, ROW, 20, 20), SPEC, "nodata", {"gcs": ("bkt", "defect5")}, False, {})
    op = ee.data._get_cloud_projects().image().export(project=f"projects/{DEFAULT_PROJECT}", body=body).execute()
    deadline = time.time() + 30
    while not ee.data.getOperation(op["name"]).get("done"):
        assert time.time() < deadline, "export did not finish"
        time.sleep(0.05)
    with rasterio.open(standin.data_dir / "gcs" / "bkt" / "defect5.tif") as src:
        a = src.read(1)
        assert src.nodata == NODATA
    assert (a[:, :10] == 0).all() and (a[:, 10:] == NODATA).all()


def test_7_invalid_ndvi_is_neither_clear_nor_cloudy(standin):
    # old: ``cloudy`` was masked by validity only, so NIR + Red <= 0 counted as a clear pixel
    qa_clear = 0b1000000  # bit 6: clear; bits 0-4 unset
    img = ee.Image.constant([7000, 7000, qa_clear]).rename(["SR_B4", "SR_B5", "QA_PIXEL"])  # reflectance -0.0075
    assert count(X._prepare_landsat(img)) == {"ndvi": 0, "cloudy": 0}
    ok = ee.Image.constant([9000, 20000, qa_clear]).rename(["SR_B4", "SR_B5", "QA_PIXEL"])
    assert count(X._prepare_landsat(ok)) == {"ndvi": 400, "cloudy": 400}


def test_8_image_statistics_count_every_pixel_once_at_full_resolution(standin):
    # old: a mask-weighted ``sum`` at scale=100 (pyramid means, fractional masks) over an unweighted
    # ``count``: neither the AOI's pixels nor whole numbers
    from engine.backends.aoi_stats import quantise

    stats = ee.Dictionary(X.image_stats_query(SPEC, L8_DAYS, (COL, ROW, 20, 20))).getInfo()
    opt, s1 = X.optical_collection(SPEC, region()), X.sar_collection(SPEC, region())
    some_cloud = False
    for row in stats["rows"]:
        cloudy = pixels(X.daily_mosaic(opt, row["day"]).select("cloudy"))["cloudy"]
        assert row["valid"] == int(np.isfinite(cloudy).sum()) and row["cloudy"] == int((cloudy == 1).sum()), row
        some_cloud |= 0 < row["cloudy"] < row["valid"]
        comp = pixels(X.sar_composite(s1, row["day"], SPEC.window_days))
        for band in ("VV", "VH"):
            v = comp[band]
            assert row[f"{band.lower()}_n"] == int(np.isfinite(v).sum())
            assert abs(row[f"{band.lower()}_sum"] - int(quantise(v).sum())) <= row[f"{band.lower()}_n"] // 2
    assert some_cloud


def test_9_gap_statistics_use_the_last_clear_day(standin):
    # old: ``arrayGet([-1])``: negative indices are documented for List.get, not arrayGet, so the
    # trailing gap was masked everywhere
    days = [*L8_DAYS, NO_IMAGE_DAY]
    gaps = pixels(X.gap_statistics(SPEC, days, region()))
    opt = X.optical_collection(SPEC, region())
    clear = np.stack([pixels(X.daily_mosaic(opt, d).select("cloudy"))["cloudy"] == 0 for d in days])
    n = clear.sum(axis=0)
    assert (gaps["clear_count"] == n).all()
    seen = n >= 1
    assert seen.sum() > 100, "the square should have clear days"
    d = np.array(days)[:, None, None]
    last = np.where(clear, d, -1).max(axis=0)
    first = np.where(clear, d, 10**9).min(axis=0)
    assert (gaps["trail_gap"][seen] == (SPEC.end_day - last)[seen]).all()
    assert (gaps["lead_gap"][seen] == (first - SPEC.start_day)[seen]).all()
    assert np.isnan(gaps["trail_gap"][~seen]).all() and np.isnan(gaps["lead_gap"][~seen]).all()


def test_statistics_sample_splits_its_dates_on_a_memory_error(standin):
    """A tile whose sample request is too big is asked for in halves of its dates, same numbers."""
    import pandas as pd

    from engine.run.stages import GlobalStats
    from engine.errors import MemoryLimitError
    from engine.backends.gee.api import EEApi
    from engine.backends.gee.reduce import tile_samples
    from tiling.grid import GridSpec, Tile, Window

    class OneDatePerRequest(EEApi):
        dates: list[int] = []

        def compute_pixels(self, image, grid, what="computePixels"):
            n = sum(b.startswith("p_") for b in ee.Image(image).bandNames().getInfo())
            self.dates.append(n)
            if n > 1:
                raise MemoryLimitError("User memory limit exceeded.")
            return super().compute_pixels(image, grid, what)

    rows = [{"id": f"L8_{d}", "day": d, "vv": -10.0, "vh": -16.0, "train": 1, "validation": 0} for d in L8_DAYS[:3]]
    images = pd.DataFrame({"id": [r["id"] for r in rows], "day": [r["day"] for r in rows], "paired": True})
    stats = GlobalStats(images=images, sar=pd.DataFrame(), donor_id=None, sample_step=3, skill_step=1)
    tile = Tile(GridSpec(32755, RES, 48), COL // 48, ROW // 48)  # holds the square (cut to it)
    model = ee.Image.constant([0.5] + [0.01] * 8).rename(list(X.COEF_BANDS))
    window = Window.covering((X0, Y0, X0 + SIZE, Y0 + SIZE), RES).intersection(tile.window)
    whole = tile_samples(EEApi(DEFAULT_PROJECT), SPEC, stats, tile, model, rows, window)
    api = OneDatePerRequest(DEFAULT_PROJECT)
    split = tile_samples(api, SPEC, stats, tile, model, rows, window)
    assert api.dates == [3, 1, 2, 1, 1]
    assert whole["pred"].shape[1] == 3 and whole["pred"].shape[0] >= 36 and np.isfinite(whole["obs"]).any()
    for k in whole:
        np.testing.assert_array_equal(split[k], whole[k])


def test_same_day_images_merge_first_clear_then_first_valid(standin):
    """algorithm.md job 1 step 2: a pixel is clear that day if any image that day is clear there."""
    t = NO_IMAGE_DAY * X.DAY_MS
    left = ee.Image(1).clip(ee.Geometry.Rectangle([X0, Y0, X0 + SIZE / 2, Y0 + SIZE], proj=UTM, geodesic=False))

    def prepared(ndvi, cloudy, hours, mask=None):
        img = ee.Image.constant([ndvi, cloudy]).rename(["ndvi", "cloudy"])
        return (img.updateMask(mask) if mask is not None else img).set("system:time_start", t + hours * 3_600_000)

    # first: cloudy everywhere; second: clear on the left half only (nothing on the right)
    col = ee.ImageCollection([prepared(0.6, 1, 2, left.unmask(0)), prepared(0.2, 1, 1)])
    col = col.merge(ee.ImageCollection([prepared(0.4, 0, 3, left)]))
    out = pixels(X.daily_mosaic(col, NO_IMAGE_DAY))
    assert (out["ndvi"][:, :10] == np.float32(0.4)).all() and (out["cloudy"][:, :10] == 0).all()  # clear wins
    assert (out["ndvi"][:, 10:] == np.float32(0.2)).all() and (out["cloudy"][:, 10:] == 1).all()  # else first valid


def test_image_statistics_split_their_dates_on_a_memory_error(standin):
    import pandas as pd

    from engine.errors import MemoryLimitError
    from engine.backends.gee.api import EEApi
    from engine.backends.gee.global_pass import image_stats

    class TwoDaysPerRequest(EEApi):
        sizes: list[int] = []

        def compute(self, obj, what="value:compute"):
            n = len(ee.Dictionary(obj).get("days").getInfo())
            self.sizes.append(n)
            if n > 2:
                raise MemoryLimitError("User memory limit exceeded.")
            return super().compute(obj, what)

    windows = [(COL, ROW, 10, 20), (COL + 10, ROW, 10, 20)]  # two tile cores covering the square
    whole = image_stats(EEApi(DEFAULT_PROJECT), SPEC, L8_DAYS, windows, 1)
    api = TwoDaysPerRequest(DEFAULT_PROJECT)
    split = image_stats(api, SPEC, L8_DAYS, windows, 1)
    assert sorted(api.sizes) == [2, 2, 2, 2, 4, 4]  # 4 days < BATCH_IMAGES: one request per core, halved
    pd.testing.assert_frame_equal(split, whole)
    assert whole["pixel_count"].max() == 400 * (RES / 100) ** 2  # the two cores add up to the square


def test_fill_options_clip_and_keep_clear_agree_with_the_local_fill(standin):
    """CLIP_NDVI and KEEP_CLEAR_OBSERVED (issue 12): the gee fill equals the local one on the same
    pixels; a clear 1-px stripe that the focal median removes is kept with ``keep_clear``."""
    from engine.science.fill import fill as local_fill

    def rect(x0, y0, x1, y1):
        return ee.Geometry.Rectangle([X0 + x0 * RES, Y0 + y0 * RES, X0 + x1 * RES, Y0 + y1 * RES], proj=UTM,
                                     geodesic=False)

    stripe = ee.Image(1).clip(rect(14, 0, 15, 20)).unmask(0)
    cloudy = ee.Image(1).clip(rect(0, 0, 8, 20)).unmask(0)
    obs = ee.Image(0.5).where(stripe, 0.9).rename("a")
    mask = ee.Image(0).where(cloudy, 1).rename("a")
    cal = ee.Image(3.0).where(cloudy.eq(0), -2.0).rename("a")  # outside the physical range
    arrays = {k: pixels(v)["a"] for k, v in (("obs", obs), ("mask", mask), ("cal", cal))}
    assert np.nanmax(arrays["cal"]) == 3.0 and (arrays["obs"][:, 14] == np.float32(0.9)).all()
    for keep in (False, True):
        for clip in (False, True):
            gee_cal = cal.clamp(-1, 1) if clip else cal
            got = pixels(X.fill(obs, mask, gee_cal, keep))["a"]
            local_cal = np.clip(arrays["cal"], -1, 1) if clip else arrays["cal"]
            want = local_fill(arrays["obs"][None], arrays["mask"][None], local_cal[None], keep_clear=keep)[0]
            inner = (slice(1, -1), slice(1, -1))  # the local median has no neighbours beyond the window
            np.testing.assert_allclose(got[inner], want[inner], atol=1e-6, err_msg=f"keep={keep} clip={clip}")
            assert (got[inner][:, 13] == np.float32(0.9 if keep else 0.5)).all()  # column 14 of the window
            assert got[inner][:, :6].max() == pytest.approx(1.0 if clip else 3.0)
