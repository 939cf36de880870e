"""Step 9: spatial calibration of a prediction to the observation's mean and interval means."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["CalStats", "interval_stats", "calibrate"]

LOWER_BAND = (5.0, 15.0)  # percentiles
UPPER_BAND = (85.0, 95.0)


class CalStats(NamedTuple):
    """Mean, lower interval mean (5th-15th percentile band) and upper interval mean (85th-95th)."""

    mean: float
    lower: float
    upper: float


def _band_mean(v: np.ndarray, lo: float, hi: float) -> float:
    """Mean of ``v`` within [lo, hi]; the band midpoint if no value falls inside it."""
    inside = v[(v >= lo) & (v <= hi)]
    return float(inside.mean()) if inside.size else 0.5 * (lo + hi)


def interval_stats(values: np.ndarray) -> CalStats:
    """Calibration statistics of the finite values (float64; NaN stats if there are none).

    ``lower`` = mean of the values within [p5, p15], ``upper`` = mean within [p85, p95]
    (``numpy.percentile``, linear, inclusive bounds). With very few values a band can hold no
    value at all (e.g. two values); it then falls back to the band's percentile midpoint.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return CalStats(np.nan, np.nan, np.nan)
    p5, p15, p85, p95 = np.percentile(v, [LOWER_BAND[0], LOWER_BAND[1], UPPER_BAND[0], UPPER_BAND[1]])
    return CalStats(float(v.mean()), _band_mean(v, p5, p15), _band_mean(v, p85, p95))


def calibrate(pred: np.ndarray, p: CalStats, o: CalStats) -> np.ndarray:
    """Map ``pred`` from the prediction's statistics ``p`` to the observation's ``o`` (float32).

    Where pred >= p.mean: (pred - p.mean) / (p.upper - p.mean) x (o.upper - o.mean) + o.mean;
    elsewhere the same with ``lower``. A zero prediction range on a side (p.upper == p.mean or
    p.lower == p.mean) falls back to the observed one, used unscaled: pred - p.mean + o.mean.
    If any statistic is NaN (e.g. no clear pixels) the prediction is returned uncalibrated.
    """
    pred = np.asarray(pred)
    x = pred.astype(np.float64)
    stats = np.array([*p, *o], dtype=np.float64)
    if not np.all(np.isfinite(stats)):
        return x.astype(np.float32)
    up_range = p.upper - p.mean
    lo_range = p.lower - p.mean
    up_scale = (o.upper - o.mean) / up_range if up_range != 0 else 1.0
    lo_scale = (o.lower - o.mean) / lo_range if lo_range != 0 else 1.0
    anom = x - p.mean
    out = np.where(x >= p.mean, anom * up_scale, anom * lo_scale) + o.mean
    return out.astype(np.float32)
