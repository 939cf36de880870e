from __future__ import annotations

import numpy as np

from engine.science.fill import fill
from engine.science.neighbourhood import focal_median3


def test_fill_takes_prediction_where_masked():
    obs = np.full((1, 4, 4), 0.5, dtype=np.float32)
    cal = np.full((1, 4, 4), 0.9, dtype=np.float32)
    mask = np.zeros((1, 4, 4), dtype=np.uint8)
    mask[0, :, :2] = [1, 2]  # cloudy and artificially hidden both count as masked
    out = fill(obs, mask, cal)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], np.tile([0.9, 0.9, 0.5, 0.5], (4, 1)))


def test_fill_nan_handling_and_median():
    rng = np.random.default_rng(2)
    obs = rng.random((2, 6, 5)).astype(np.float32)
    cal = rng.random((2, 6, 5)).astype(np.float32)
    mask = (rng.random((2, 6, 5)) < 0.3).astype(np.uint8)
    obs[0, 1, 1] = np.nan  # invalid observation, prediction available -> prediction
    mask[0, 1, 1] = 0
    mask[1, 2, 2] = 1
    cal[1, 2, 2] = np.nan  # masked, no prediction -> NaN before the median
    pre = np.where(mask != 0, cal, obs)
    pre[0, 1, 1] = cal[0, 1, 1]
    out = fill(obs, mask, cal)
    np.testing.assert_array_equal(out, focal_median3(pre))
    assert np.isfinite(out[1, 2, 2])  # the median fills the hole from its neighbours
    nothing = fill(np.full((3, 3), np.nan, np.float32), np.ones((3, 3), np.uint8), np.full((3, 3), np.nan, np.float32))
    assert np.all(np.isnan(nothing))



def test_fill_of_a_crop_equals_the_whole_fill_cropped():
    rng = np.random.default_rng(5)
    obs = rng.random((3, 9, 8)).astype(np.float32)
    cal = rng.random((3, 9, 8)).astype(np.float32)
    mask = rng.choice(np.array([0, 1, 2, 3], np.uint8), (3, 9, 8))
    obs[0, 2:4, 3] = np.nan
    cal[1, 5, :] = np.nan
    for keep in (False, True):
        whole = fill(obs, mask, cal, keep_clear=keep)
        want = np.where((mask == 0) & ~np.isnan(obs), obs, focal_median3(np.where(
            (mask != 0) | (np.isnan(obs) & ~np.isnan(cal)), cal, obs))) if keep else focal_median3(
            np.where((mask != 0) | (np.isnan(obs) & ~np.isnan(cal)), cal, obs))
        assert np.array_equal(whole, want, equal_nan=True)
        for crop in (1, 2):
            assert np.array_equal(fill(obs, mask, cal, keep_clear=keep, crop=crop),
                                  whole[:, crop:-crop, crop:-crop], equal_nan=True)
