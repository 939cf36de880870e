from __future__ import annotations

import numpy as np
import pytest

from engine.science.optical import cloud_mask, daily_mosaic, ndvi


def test_ndvi_values_and_invalid_cases():
    red = np.array([0.1, np.nan, 0.0, 0.2, -0.1, 0.2], dtype=np.float32)
    nir = np.array([0.3, 0.5, 0.0, np.nan, 0.05, 0.2], dtype=np.float32)
    out = ndvi(red, nir)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, np.nan, np.nan, np.nan, np.nan, 0.0], rtol=1e-6, equal_nan=True)


def test_cloud_mask_s2_scl_classes():
    scl = np.arange(12, dtype=np.uint16)
    cloudy, valid = cloud_mask("S2", scl)
    np.testing.assert_array_equal(valid, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(cloudy, [0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1])


def test_cloud_mask_l8_qa_bits():
    qa = np.array([0, 1, 2, 4, 8, 16, 32, 21824, 1 | 8, 55052], dtype=np.uint16)
    cloudy, valid = cloud_mask("L8", qa)
    np.testing.assert_array_equal(valid, [1, 0, 1, 1, 1, 1, 1, 1, 0, 1])
    # fill + cloud: invalid, and cloudy never holds where invalid
    np.testing.assert_array_equal(cloudy, [0, 0, 1, 1, 1, 1, 0, 0, 0, 1])


def test_cloud_mask_float_qa_nan_is_invalid():
    cloudy, valid = cloud_mask("S2", np.array([np.nan, 4.0, 9.0]))
    np.testing.assert_array_equal(valid, [0, 1, 1])
    np.testing.assert_array_equal(cloudy, [0, 0, 1])


def test_cloud_mask_unknown_mission():
    with pytest.raises(ValueError, match="MODIS"):
        cloud_mask("MODIS", np.zeros(3, dtype=np.uint16))


def test_daily_mosaic_first_valid_wins_and_bands_stay_together():
    times = np.array(
        ["2021-01-02T10:00", "2021-01-01T23:59", "2021-01-02T10:05", "2021-01-02T00:00"], dtype="datetime64[ns]"
    )
    red = np.array(
        [
            [[1.0, np.nan], [np.nan, np.nan]],
            [[9.0, 9.0], [9.0, 9.0]],
            [[2.0, 2.0], [np.nan, np.nan]],
            [[3.0, 3.0], [3.0, np.nan]],
        ],
        dtype=np.float32,
    )
    qa = np.array([[[10, 11], [12, 13]], [[90, 90], [90, 90]], [[20, 21], [22, 23]], [[30, 31], [32, 33]]], dtype=np.uint16)
    days, (r, q) = daily_mosaic(times, red, qa)
    np.testing.assert_array_equal(days, np.array(["2021-01-01", "2021-01-02"], dtype="datetime64[ns]"))
    assert days.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(r[0], red[1])
    np.testing.assert_array_equal(q[0], qa[1])
    # 2 Jan: images 0, 2, 3 in input order
    np.testing.assert_array_equal(r[1], [[1.0, 2.0], [3.0, np.nan]])
    np.testing.assert_array_equal(q[1], [[10, 21], [32, 13]])  # no valid image -> first image's values
    assert r.dtype == np.float32 and q.dtype == np.uint16


def test_daily_mosaic_explicit_valid():
    times = np.array(["2021-01-02T10:00", "2021-01-02T10:05"], dtype="datetime64[ns]")
    qa = np.array([[0, 4], [5, 6]], dtype=np.uint16)
    _, valid = cloud_mask("S2", qa)
    days, (q,) = daily_mosaic(times, qa, valid=valid)
    np.testing.assert_array_equal(q, [[5, 4]])


def test_daily_mosaic_prefers_the_first_clear_image_then_the_first_valid():
    times = np.array(["2021-01-02T10:00", "2021-01-02T10:05", "2021-01-02T10:09"], dtype="datetime64[ns]")
    # SCL: 9 cloud, 4 vegetation (clear), 1 saturated (invalid), 0 no data
    qa = np.array([[9, 9, 1, 0], [4, 9, 4, 0], [4, 8, 9, 0]], dtype=np.uint16)
    red = np.array([[0.1, 0.1, 0.1, np.nan], [0.2, 0.2, 0.2, np.nan], [0.3, 0.3, 0.3, np.nan]], np.float32)
    cloudy, valid = cloud_mask("S2", qa)
    _, (q, r) = daily_mosaic(times, qa, red, valid=valid, clear=valid & ~cloudy)
    # px 0: first clear (2nd image); px 1: none clear -> first valid (1st); px 2: first valid is clear;
    # px 3: nothing valid -> the first image
    np.testing.assert_array_equal(q, [[4, 9, 4, 0]])
    np.testing.assert_array_equal(r, np.array([[0.2, 0.1, 0.2, np.nan]], np.float32))
    _, (q_valid,) = daily_mosaic(times, qa, valid=valid)  # without clear: first valid wins
    np.testing.assert_array_equal(q_valid, [[9, 9, 4, 0]])
