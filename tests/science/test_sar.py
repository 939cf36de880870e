from __future__ import annotations

import numpy as np
import pytest

from engine.science.neighbourhood import box_mean, focal_median3
from engine.science.sar import COVARIATES, composite, covariates


def test_composite_window_edges_and_noise_floor():
    days = np.array([87, 88, 90, 100, 111, 112])
    values = np.array([-1.0, -10.0, -12.0, -14.0, -16.0, -2.0])
    sar = np.repeat(values[:, None, None], 4, axis=1).astype(np.float32)  # (6, 4, 1)
    sar[2, 1, 0] = -40.0  # exactly at the floor: masked
    sar[2, 2, 0] = -39.5  # above the floor: kept
    sar[1:5, 3, 0] = [np.nan, -40.5, -41.0, -50.0]  # pixel with nothing valid in the window
    comp, counts = composite(sar, days, np.array([100, 300]))
    assert comp.shape == (2, 4, 1) and comp.dtype == np.float32
    # window [88, 112): 88 included, 111 included, 87 and 112 excluded
    np.testing.assert_array_equal(counts, [4, 0])
    np.testing.assert_allclose(comp[0, :, 0], [-13.0, -40.0 / 3.0, (-10 - 39.5 - 14 - 16) / 4.0, np.nan], equal_nan=True)
    assert np.all(np.isnan(comp[1]))


def test_composite_half_window_parameter():
    sar = np.arange(5, dtype=np.float32)[:, None, None] - 20.0
    comp, counts = composite(sar, np.array([0, 1, 2, 3, 4]), np.array([2]), half_window=1)
    assert counts[0] == 2  # days 1 and 2
    assert comp[0, 0, 0] == np.float32(-18.5)


def test_covariates_constant_composite():
    vv = np.full((2, 5, 6), -10.0, dtype=np.float32)
    vh = np.full((2, 5, 6), -20.0, dtype=np.float32)
    out = covariates(vv, vh, np.array([-11.0, -12.0]), np.array([-19.0, -18.0]), radius=2)
    assert out.shape == (8, 2, 5, 6) and out.dtype == np.float32
    assert COVARIATES == ("VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean", "VH_Nmean", "VV_Ndiff", "VH_Ndiff")
    expected = {0: [-11, -12], 1: [-19, -18], 2: [1, 2], 3: [-1, -2], 4: [-10, -10], 5: [-20, -20], 6: [0, 0], 7: [0, 0]}
    for band, per_date in expected.items():
        for t, v in enumerate(per_date):
            np.testing.assert_allclose(out[band, t], v, err_msg=COVARIATES[band])


def test_covariates_smoothing_and_nan_handling():
    rng = np.random.default_rng(5)
    vv = rng.normal(-12, 2, size=(3, 9, 8)).astype(np.float32)
    vh = rng.normal(-19, 2, size=(3, 9, 8)).astype(np.float32)
    vv[0, 4, 4] = np.nan
    vv[2] = np.nan  # a date with no SAR at all
    vv_mean = np.array([-12.5, -11.0, np.nan])
    vh_mean = np.array([-19.5, -18.0, -20.0])
    out = covariates(vv, vh, vv_mean, vh_mean, radius=3)
    # every band is focal-median smoothed
    np.testing.assert_allclose(out[4], focal_median3(box_mean(vv, 3)), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(out[6], focal_median3(vv - box_mean(vv, 3)), rtol=1e-5, atol=1e-6, equal_nan=True)
    # mean + diff reproduces the median-filtered composite
    np.testing.assert_allclose(out[0] + out[2], focal_median3(vv), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(out[1] + out[3], focal_median3(vh), rtol=1e-6)
    # a lone NaN in the composite is filled by the smoothing; a NaN date stays NaN everywhere
    assert out[0, 0, 4, 4] == np.float32(-12.5)
    assert np.all(np.isnan(out[[0, 2, 4, 6], 2]))
    assert np.all(np.isfinite(out[[1, 3, 5, 7], 2]))


def _covariates_by_whole_planes(vv, vh, vv_mean, vh_mean, radius, rows, cols):
    """The covariates as defined: whole-plane box means and focal medians, then the crop."""
    out = []
    for comp, mean in ((vv, vv_mean), (vh, vh_mean)):
        m = np.asarray(mean, np.float32)[:, None, None]
        nmean = box_mean(comp, radius)
        med = focal_median3(comp)
        out.append({0: np.where(np.isnan(med), np.float32(np.nan), m), 2: med - m,
                    4: focal_median3(nmean), 6: focal_median3(comp - nmean)})
    bands = [out[k % 2][k - k % 2] for k in range(8)]
    return np.stack([b[:, rows, cols] for b in bands])


@pytest.mark.parametrize("rows,cols", [(slice(None), slice(None)), (slice(4, 9), slice(3, 20)),
                                       (slice(0, 1), slice(0, 25)), (slice(20, 26), slice(22, 25)),
                                       (slice(11, 12), slice(0, 1))])
def test_covariates_of_a_crop_equal_the_whole_planes_cropped(rows, cols):
    rng = np.random.default_rng(7)
    vv = rng.normal(-12, 3, (3, 26, 25)).astype(np.float32)
    vh = rng.normal(-19, 3, (3, 26, 25)).astype(np.float32)
    vv[0, 5:9, 2:6] = np.nan  # a gap inside the crops
    vh[1, :, 0] = np.nan  # a NaN edge column
    vv[2] = np.nan  # a date with no composite
    means = (np.array([-11.5, -12.2, np.nan], np.float32), np.array([-18.9, -19.4, -19.0], np.float32))
    got = covariates(vv, vh, *means, radius=4, crop=(rows, cols))
    want = _covariates_by_whole_planes(vv, vh, *means, 4, rows, cols)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.array_equal(got, want, equal_nan=True)  # bit for bit
