"""The executing stand-in behaves as Earth Engine documents it, probed through the real client."""
from __future__ import annotations

import numpy as np
import pytest

ee = pytest.importorskip("ee")


UTM = "EPSG:32755"
S2 = "COPERNICUS/S2_SR_HARMONIZED"
L8 = "LANDSAT/LC08/C02/T1_L2"
S1 = "COPERNICUS/S1_GRD"
# a 600 m square on the 10 m / 20 m / 30 m lattices near the North Qld site
X0, Y0 = 320_040.0, 8_112_000.0


@pytest.fixture(scope="module")
def standin(computing_standin):
    return computing_standin


def square(x0=X0, y0=Y0, size=600.0):
    return ee.Geometry.Rectangle([x0, y0, x0 + size, y0 + size], proj=UTM, geodesic=False)


def rr(img, reducer, geom=None, **kw):
    kw.setdefault("crs", UTM)
    return img.reduceRegion(reducer, geom or square(), **kw).getInfo()


def s2_day(day="2021-01-10", next_day="2021-01-11"):
    return ee.ImageCollection(S2).filterBounds(square()).filterDate(day, next_day).mosaic()


def test_count_is_pixel_centres_in_region(standin):
    # 600 m at 30 m: 20 x 20 pixel centres; a box offset by 10 m still holds 20 x 20 centres
    assert rr(ee.Image(1), ee.Reducer.count(), scale=30) == {"constant": 400}
    assert rr(ee.Image(1), ee.Reducer.count(), square(X0 + 10, Y0 + 10), scale=30) == {"constant": 400}
    assert rr(ee.Image(1), ee.Reducer.count(), square(size=45), scale=30) == {"constant": 1}  # 1 centre at 15, 15


def test_where_and_unmask_follow_the_documentation(standin):
    masked = ee.Image(1).updateMask(ee.Image(0))
    # "If the input is masked, nothing is done"
    assert rr(masked.where(ee.Image(1), 5), ee.Reducer.count(), scale=30) == {"constant": 0}
    # "If ... test or value is masked, the input value is used"
    assert rr(ee.Image(2).where(ee.Image(1), masked), ee.Reducer.mean(), scale=30) == {"constant": 2}
    assert rr(masked.unmask(7), ee.Reducer.mean(), scale=30) == {"constant": 7}


def test_composites_of_empty_collections_have_no_bands(standin):
    empty = ee.ImageCollection(S2).filterBounds(square()).filterDate("2021-01-06", "2021-01-07")
    assert empty.size().getInfo() == 0
    assert empty.mosaic().bandNames().getInfo() == []
    with pytest.raises(ee.EEException, match="Image.select: Pattern 'B4' did not match any bands."):
        empty.mosaic().select("B4").bandNames().getInfo()


def test_composites_have_the_default_projection(standin):
    proj = ee.ImageCollection([ee.Image(1).reproject(UTM, None, 30)]).mosaic().projection().getInfo()
    assert proj["crs"] == "EPSG:4326" and abs(proj["transform"][0]) == 1.0
    native = ee.ImageCollection(S2).filterBounds(square()).filterDate("2021-01-05", "2021-01-06").first()
    p = native.select("B4").projection().getInfo()
    assert p["crs"] == UTM and p["transform"][0] == 10


def test_catalog_serves_dn_with_the_properties_the_engine_filters_on(standin):
    s1 = ee.ImageCollection(S1).filterBounds(square()).filterDate("2021-01-01", "2021-02-01")
    pols = s1.aggregate_array("transmitterReceiverPolarisation").getInfo()
    assert pols and all("VV" in p for p in pols)
    b4 = rr(s2_day().select("B4"), ee.Reducer.min().combine(ee.Reducer.max(), sharedInputs=True), scale=10)
    assert 1 <= b4["B4_min"] <= b4["B4_max"] <= 10000 and float(b4["B4_min"]).is_integer()


def test_coarser_requests_read_the_mean_pyramid(standin):
    b4 = s2_day().select("B4")
    cell = square(size=20)  # one 20 m pixel = 2 x 2 native 10 m pixels
    at10 = rr(b4, ee.Reducer.mean(), cell, scale=10)["B4"]
    assert at10 is not None  # the day covers the cell
    at20 = rr(b4, ee.Reducer.mean(), cell, scale=20)["B4"]
    assert at20 == pytest.approx(at10, abs=1e-9)  # the 20 m level is the 2 x 2 mean
    # the 20 m centre (X0 + 10, Y0 + 10) is a corner of four 10 m pixels: nearest takes the pixel
    # its pixel coordinates floor to (column right of the corner, row below it)
    one10 = rr(b4, ee.Reducer.mean(), square(X0 + 10, Y0, 10), scale=10)["B4"]
    assert one10 is not None
    # reproject intervenes: computed at 10 m, sampled (nearest) at the 20 m centre
    forced = rr(b4.reproject(UTM, None, 10), ee.Reducer.mean(), cell, scale=20)["B4"]
    assert forced == pytest.approx(one10)


def test_kernels_count_pixels_of_the_request_grid(standin):
    b4 = s2_day().select("B4")
    box3 = b4.reduceNeighborhood(ee.Reducer.mean(), ee.Kernel.square(1, "pixels"))
    centre = square(X0 + 20, Y0 + 20, 20)  # the 20 m pixel centred on (X0 + 30, Y0 + 30)
    at20 = rr(box3, ee.Reducer.mean(), centre, scale=20)["B4_mean"]
    ref = rr(b4, ee.Reducer.mean(), square(X0, Y0, 60), scale=20)["B4"]  # 3 x 3 pixels of 20 m
    assert at20 == pytest.approx(ref)


def test_reduce_region_max_pixels_is_worded_as_the_service(standin):
    with pytest.raises(ee.EEException, match="Too many pixels in the region. Found 3600, but maxPixels allows only 100"):
        rr(ee.Image(1), ee.Reducer.count(), scale=10, maxPixels=100)


def test_reducers(standin):
    # y = 1 + 2 x1 - 3 x2 over 40 images, 3 of them gross outliers: robust regression recovers it
    rng = np.random.default_rng(0)
    n = 40
    xs = rng.normal(size=(n, 2))
    ys = 1 + 2 * xs[:, 0] - 3 * xs[:, 1]
    ys[:3] += 50
    imgs = [ee.Image.constant([1.0, float(a), float(b), float(y)]).rename(["c", "x1", "x2", "y"]) for (a, b), y in zip(xs, ys)]
    col = ee.ImageCollection(imgs)
    fit = col.reduce(ee.Reducer.robustLinearRegression(numX=3, numY=1))
    got = fit.select("coefficients").arrayProject([0]).arrayFlatten([["c", "x1", "x2"]])
    vals = rr(got, ee.Reducer.mean(), square(size=30), scale=30)
    # exact up to the stand-in's relative ridge of 1e-6 ([silent] choice, see reducers.RIDGE)
    assert vals["c"] == pytest.approx(1, rel=1e-5) and vals["x1"] == pytest.approx(2, rel=1e-5)
    assert vals["x2"] == pytest.approx(-3, rel=1e-5)
    ols = col.reduce(ee.Reducer.linearRegression(numX=3, numY=1)).select("coefficients")
    o = rr(ols.arrayProject([0]).arrayFlatten([["c", "x1", "x2"]]), ee.Reducer.mean(), square(size=30), scale=30)
    assert abs(o["c"] - 1) > 0.5  # least squares is pulled by the outliers
    few = ee.ImageCollection(imgs[:2]).reduce(ee.Reducer.linearRegression(numX=3, numY=1)).select("coefficients")
    assert rr(few.arrayProject([0]).arrayFlatten([["c", "x1", "x2"]]), ee.Reducer.count(), square(size=30),
              scale=30) == {"c": 0, "x1": 0, "x2": 0}  # underdetermined: null
    v = [ee.Image(float(x)) for x in (1, 2, 3, 4, 10)]
    stats = ee.ImageCollection(v).reduce(ee.Reducer.median().combine(ee.Reducer.percentile([90]), sharedInputs=True)
                                         .combine(ee.Reducer.intervalMean(20, 80), sharedInputs=True))
    got = rr(stats, ee.Reducer.mean(), square(size=30), scale=30)
    assert got["constant_median"] == 3 and got["constant_p90"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))
    assert got["constant_mean"] == pytest.approx(3.0)  # values within [p20, p80] = [1.8, 5.2]: 2, 3, 4


def test_centered_covariance_requires_centred_input(standin):
    img = ee.Image.constant([1.0, 2.0]).toArray()
    got = rr(img, ee.Reducer.centeredCovariance(), square(size=60), scale=30)
    # 4 identical pixels, not centred: sum of outer products / (n - 1), not zero
    assert np.allclose(got["array"], np.outer([1, 2], [1, 2]) * 4 / 3)


def test_cost_model_fails_big_interactive_requests(standin):
    standin.state.configure(interactive_pixel_ops=1e5)
    try:
        with pytest.raises(ee.EEException, match="Computation timed out."):
            rr(ee.Image(1).add(1), ee.Reducer.count(), square(size=6000), scale=10, maxPixels=1e9)
    finally:
        standin.state.configure(interactive_pixel_ops=2e9)
    standin.state.configure(memory_bytes=1e5)
    try:
        with pytest.raises(ee.EEException, match="User memory limit exceeded."):
            rr(ee.Image(1), ee.Reducer.count(), square(size=6000), scale=10, maxPixels=1e9)
    finally:
        standin.state.configure(memory_bytes=2 * 2 ** 30)


def _wait(task, timeout=60):
    import time

    t0 = time.time()
    while time.time() - t0 < timeout:
        st = task.status()
        if st["state"] in ("COMPLETED", "SUCCEEDED", "FAILED", "CANCELLED"):
            return st
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def _served_as_cloud_storage(standin, path, obj):
    """The file at the stand-in's storage endpoint: whole, by byte range, by suffix; 404 elsewhere."""
    import urllib.error
    import urllib.request

    data = path.read_bytes()

    def get(name, **headers):
        with urllib.request.urlopen(urllib.request.Request(standin.storage_url + name, headers=headers)) as r:
            return r.status, r.headers.get("Content-Range"), r.read()

    assert get(obj) == (200, None, data)
    assert get(obj, Range="bytes=10-19") == (206, f"bytes 10-19/{len(data)}", data[10:20])
    assert get(obj, Range="bytes=-7") == (206, f"bytes {len(data) - 7}-{len(data) - 1}/{len(data)}", data[-7:])
    for missing in ("bkt/dir/none.tif", "other/dir/x.tif", "bkt/../gcs/bkt/dir/x.tif"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(missing)
        assert e.value.code == 404, missing


def test_exports_land_as_files_and_assets(standin):
    import rasterio

    img = ee.Image.constant([1.5, 2.0]).rename(["a", "b"]).updateMask(ee.Image(1).clip(square(size=300)))
    t = ee.batch.Export.image.toCloudStorage(img, "gcs", bucket="bkt", fileNamePrefix="dir/x", crs=UTM,
                                             crsTransform=[30, 0, X0, 0, -30, Y0 + 600], dimensions="20x20",
                                             formatOptions={"noData": -9999})
    t.start()
    assert _wait(t)["state"] in ("COMPLETED", "SUCCEEDED")
    path = standin.data_dir / "gcs" / "bkt" / "dir" / "x.tif"
    with rasterio.open(path) as src:
        a = src.read(1)
        assert src.nodata == -9999 and src.crs.to_epsg() == 32755 and src.transform.c == X0
        assert src.descriptions == ("a", "b")
    assert (a == 1.5).sum() == 100 and (a == -9999).sum() == 300  # the clip keeps 10 x 10 pixels
    _served_as_cloud_storage(standin, path, "bkt/dir/x.tif")
    t2 = ee.batch.Export.image.toAsset(img.select("a"), "asset", assetId="projects/standin-project/assets/a1",
                                       crs=UTM, crsTransform=[30, 0, X0, 0, -30, Y0 + 600], dimensions="20x20",
                                       pyramidingPolicy={"a": "SAMPLE"})
    t2.start()
    assert _wait(t2)["state"] in ("COMPLETED", "SUCCEEDED")
    back = ee.Image("projects/standin-project/assets/a1")
    assert rr(back, ee.Reducer.count(), square(), scale=30) == {"a": 100}
    assert rr(back, ee.Reducer.sum(), square(), scale=30) == {"a": 150.0}


def test_robust_regression_makes_the_local_backends_silent_choices():
    """Earth Engine publishes no IRLS tuning: the stand-in's robustLinearRegression makes the
    local backend's choices, so on near-collinear covariates with outliers both give one fit."""
    from engine.ee_standin.reducers import Reducer, _regression
    from engine.science.regression import robust_fit

    rng = np.random.default_rng(0)
    T, P = 30, 300
    vv, vh = rng.normal(-12, 2, (T, P)), rng.normal(-18, 2, (T, P))
    vvm, vhm = np.repeat(rng.normal(-12, 0.5, (T, 1)), P, 1), np.repeat(rng.normal(-18, 0.5, (T, 1)), P, 1)
    vvn, vhn = vv + rng.normal(0, 0.3, (T, P)), vh + rng.normal(0, 0.3, (T, P))
    cov = np.stack([vvm, vhm, vv - vvm, vh - vhm, vvn, vhn, vv - vvn, vh - vhn]).astype(np.float32)  # rank 7 of 8
    y = (0.5 + 0.02 * cov[2] - 0.01 * cov[4] + rng.normal(0, 0.03, (T, P))).astype(np.float32)
    y[rng.random((T, P)) < 0.1] += 0.5  # outliers
    y[rng.random((T, P)) < 0.1] = np.nan
    train = rng.random((T, P)) < 0.8
    local = robust_fit(cov, y, train)
    x = np.concatenate([np.ones((T, P, 1)), np.moveaxis(cov, 0, -1), y[..., None]], axis=2).astype(np.float64)
    r = Reducer("robustLinearRegression", 10, ("coefficients", "residuals"), {"numX": 9, "numY": 1})
    (beta, ok), _ = _regression(r, x, np.where(train & np.isfinite(y), 1.0, 0.0))
    both = ok & np.isfinite(local).all(axis=0)
    assert both.sum() > 250
    np.testing.assert_allclose(beta[both, :, 0].T, local[:, both], atol=1e-5)
