from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.science.neighbourhood import box_mean, focal_median3


def brute_median3(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    out = np.full((h, w), np.nan)
    for y in range(h):
        for x in range(w):
            win = a[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[y, x] = np.nanmedian(win)
    return out


def brute_box_mean(a: np.ndarray, r: int) -> np.ndarray:
    h, w = a.shape
    out = np.full((h, w), np.nan)
    for y in range(h):
        for x in range(w):
            win = a[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
            ok = np.isfinite(win)
            if ok.any():
                out[y, x] = win[ok].mean()
    return out


def test_focal_median3_hand_made_5x5_with_nans():
    a = np.arange(25, dtype=np.float32).reshape(5, 5)
    a[1, 1] = np.nan  # value 6
    m = focal_median3(a)
    assert m.dtype == np.float32
    assert m[0, 0] == 1.0  # {0, 1, 5}: corner window truncated, NaN skipped
    assert m[1, 1] == 6.0  # {0,1,2,5,7,10,11,12}: even count -> mean of 5 and 7
    assert m[2, 2] == 12.5  # {7,8,11,12,13,16,17,18} -> mean of 12 and 13
    assert m[3, 3] == 18.0  # full window {12..14, 17..19, 22..24}
    assert m[4, 4] == 21.0  # {18, 19, 23, 24} -> mean of 19 and 23
    np.testing.assert_array_equal(m, brute_median3(a).astype(np.float32))


def test_focal_median3_nan_only_where_all_neighbours_nan():
    a = np.full((5, 5), np.nan, dtype=np.float32)
    a[0, 0] = 7.0
    m = focal_median3(a)
    expected = np.full((5, 5), np.nan, dtype=np.float32)
    expected[:2, :2] = 7.0
    np.testing.assert_array_equal(m, expected)


def test_focal_median3_fast_path_matches_brute_force_and_keeps_stack_shape():
    rng = np.random.default_rng(3)
    a = rng.permutation(4 * 2 * 9 * 11).astype(np.float32).reshape(4, 2, 9, 11)
    a[0, 1, 4, 5] = np.nan
    m = focal_median3(a)
    assert m.shape == a.shape
    for i in range(4):
        for j in range(2):
            np.testing.assert_array_equal(m[i, j], brute_median3(a[i, j]).astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 9), st.integers(1, 9)),
        elements=st.one_of(st.just(np.nan), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, 1.0, 2.0])),
    )
)
def test_focal_median3_equals_brute_force_nanmedian(a):
    np.testing.assert_allclose(focal_median3(a), brute_median3(a), rtol=1e-12, atol=0, equal_nan=True)


def test_box_mean_radius_10_vs_brute_force():
    rng = np.random.default_rng(7)
    a = rng.normal(-12.0, 3.0, size=(30, 27)).astype(np.float32)
    a[rng.random(a.shape) < 0.2] = np.nan
    a[:, 20] = np.nan
    m = box_mean(a, radius=10)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, brute_box_mean(a.astype(np.float64), 10), rtol=1e-6, equal_nan=True)


def test_box_mean_window_is_a_21x21_square():
    a = np.full((25, 25), np.nan, dtype=np.float32)
    a[12, 12] = 5.0
    m = box_mean(a, radius=10)
    yy, xx = np.mgrid[:25, :25]
    inside = np.maximum(abs(yy - 12), abs(xx - 12)) <= 10  # Chebyshev distance: corners included
    np.testing.assert_array_equal(np.isfinite(m), inside)
    assert np.all(m[inside] == 5.0)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.one_of(st.just(np.nan), st.floats(-100, 100, allow_nan=False)),
    ),
    st.integers(0, 4),
)
def test_box_mean_equals_brute_force(a, r):
    np.testing.assert_allclose(box_mean(a, r), brute_box_mean(a, r), rtol=1e-9, atol=1e-9, equal_nan=True)


def test_focal_median3_into_out():
    a = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    a[1, 2, 3] = np.nan
    out = np.full_like(a, -1.0)
    res = focal_median3(a, out=out)
    assert res is out
    np.testing.assert_array_equal(out, focal_median3(a))
    with pytest.raises(ValueError):
        focal_median3(a, out=a)
    with pytest.raises(ValueError):
        focal_median3(a, out=np.empty((2, 4, 5), dtype=np.float64))
