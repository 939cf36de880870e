from __future__ import annotations

import numpy as np

from engine.science.calibration import CalStats, calibrate, interval_stats


def test_interval_stats_inclusive_percentile_bands():
    v = np.arange(21.0) ** 2  # p5 = 1, p15 = 9, p85 = 289, p95 = 361 (all on samples)
    s = interval_stats(np.append(v, [np.nan, np.inf]))
    assert s.mean == v.mean()
    assert s.lower == (1 + 4 + 9) / 3
    assert s.upper == (289 + 324 + 361) / 3


def test_interval_stats_interpolated_bounds_and_edge_cases():
    s = interval_stats(np.arange(101.0))
    assert (s.mean, s.lower, s.upper) == (50.0, 10.0, 90.0)
    # two values: no sample inside [0.5, 1.5] -> band midpoint
    s = interval_stats(np.array([0.0, 10.0]))
    assert (s.mean, s.lower, s.upper) == (5.0, 1.0, 9.0)
    assert all(np.isnan(interval_stats(np.array([np.nan]))))


def test_calibrate_formula():
    p = CalStats(0.5, 0.3, 0.8)
    o = CalStats(0.4, 0.1, 0.9)
    pred = np.array([0.8, 0.5, 0.3, 0.65, 0.4, np.nan], dtype=np.float32)
    out = calibrate(pred, p, o)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.9, 0.4, 0.1, 0.65, 0.25, np.nan], atol=1e-6, equal_nan=True)


def test_calibrate_zero_range_uses_observed_range_unscaled():
    o = CalStats(0.4, 0.1, 0.9)
    out = calibrate(np.array([0.7, 0.4]), CalStats(0.5, 0.3, 0.5), o)  # upper == mean
    np.testing.assert_allclose(out, [0.6, 0.25], atol=1e-6)
    out = calibrate(np.array([0.7, 0.4]), CalStats(0.5, 0.5, 0.8), o)  # lower == mean
    np.testing.assert_allclose(out, [0.4 + 0.2 / 0.3 * 0.5, 0.3], atol=1e-6)


def test_calibrate_without_stats_returns_prediction():
    pred = np.array([[0.2, 0.7]], dtype=np.float32)
    out = calibrate(pred, CalStats(0.5, 0.3, 0.8), CalStats(np.nan, np.nan, np.nan))
    np.testing.assert_array_equal(out, pred)
    assert out.shape == (1, 2)
