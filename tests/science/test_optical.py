from __future__ import annotations

import numpy as np
import pytest

from engine.science.optical import cloud_mask, daily_mosaic, ndvi, observe


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


@pytest.mark.parametrize("mission,qa_dtype", [("S2", np.uint8), ("L8", np.uint16), ("S2", np.float32), ("L8", np.float64)])
def test_observe_equals_cloud_mask_and_ndvi(mission, qa_dtype):
    rng = np.random.default_rng(4)
    shape = (3, 17, 11)
    red = rng.uniform(-0.05, 0.6, shape).astype(np.float32)
    nir = rng.uniform(-0.05, 0.9, shape).astype(np.float32)
    red[0, :2] = np.nan
    nir[1, 3] = 0.0
    red[1, 3] = 0.0  # NIR + red == 0
    codes = rng.integers(0, 12, shape) if mission == "S2" else rng.choice([0, 1, 2, 8, 21824, 21826, 55052, 23888], shape)
    qa = codes.astype(qa_dtype)
    if np.issubdtype(qa_dtype, np.floating):
        qa[2, 0] = np.nan
    cloudy, valid = cloud_mask(mission, qa)
    want = ndvi(red, nir)
    valid &= np.isfinite(want)
    out = (np.empty(shape, np.float32), np.empty(shape, bool), np.empty(shape, bool))
    observe(mission, red, nir, qa, *out)
    assert np.array_equal(out[0], np.where(valid, want, np.nan), equal_nan=True)  # bit for bit
    assert np.array_equal(out[1], cloudy & valid) and np.array_equal(out[2], valid)
    assert valid.any() and (cloudy & valid).any() and (~valid).any()
    flags = (np.empty(shape, bool), np.empty(shape, bool))
    observe(mission, red, nir, qa, None, *flags)  # the flags alone
    assert np.array_equal(flags[0], out[1]) and np.array_equal(flags[1], out[2])
    with pytest.raises(ValueError, match="C-contiguous"):
        observe(mission, red, nir, qa, None, np.empty((3, 11, 17), bool).transpose(0, 2, 1), flags[1])
