"""Job 1: per-pixel statistics of the gaps between clear optical observations."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["GAP_BANDS", "gap_statistics"]

GAP_BANDS = ("clear_count", "gap_mean", "gap_median", "gap_p90", "gap_max", "lead_gap", "trail_gap")


@numba.njit(cache=True, inline="always", error_model="numpy")
def _percentile_linear(g: np.ndarray, m: int, q: float) -> float:
    """numpy's 'linear' percentile of the sorted g[:m] (same lerp, so results match bit for bit)."""
    virtual = q * (m - 1)
    lo = int(np.floor(virtual))
    if lo >= m - 1:
        return g[m - 1]
    t = virtual - lo
    a = g[lo]
    b = g[lo + 1]
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


@numba.njit(cache=True, error_model="numpy")
def _gap_kernel(clear: np.ndarray, days: np.ndarray, start: int, end: int, out: np.ndarray) -> None:
    n_t, n_p = clear.shape
    gaps = np.empty(max(n_t, 1), dtype=np.float64)
    for p in range(n_p):
        count = 0
        first = 0
        last = 0
        total = 0.0
        biggest = 0.0
        for t in range(n_t):
            if clear[t, p]:
                d = days[t]
                if count == 0:
                    first = d
                else:
                    gap = float(d - last)
                    gaps[count - 1] = gap
                    total += gap
                    if gap > biggest:
                        biggest = gap
                last = d
                count += 1
        out[0, p] = count
        if count == 0:
            for k in range(1, 7):
                out[k, p] = np.nan
            continue
        out[5, p] = first - start
        out[6, p] = end - last
        m = count - 1
        if m == 0:
            for k in range(1, 5):
                out[k, p] = np.nan
            continue
        g = gaps[:m]
        g.sort()
        out[1, p] = total / m
        out[2, p] = 0.5 * (g[(m - 1) // 2] + g[m // 2])
        out[3, p] = _percentile_linear(g, m, 0.9)
        out[4, p] = biggest


def gap_statistics(clear: np.ndarray, days: np.ndarray, start_day: int, end_day: int) -> dict[str, np.ndarray]:
    """Per-pixel gap statistics (days) between clear observations, float32 (y, x) per ``GAP_BANDS``.

    ``clear`` (T, y, x) bool on daily images with ``days`` (T,) sorted, unique integer days. Only
    days in [start_day, end_day) count (end exclusive). With clear days d1 < ... < dn: gaps are
    d(i+1) - d(i); ``gap_mean``/``gap_median``/``gap_p90`` (numpy 'linear')/``gap_max`` are NaN
    where n < 2; ``lead_gap`` = d1 - start_day and ``trail_gap`` = end_day - dn are NaN where
    n == 0; ``clear_count`` = n is always defined.
    """
    clear = np.asarray(clear)
    days = np.asarray(days).astype(np.int64)
    if clear.ndim < 1 or days.shape != clear.shape[:1]:
        raise ValueError(f"clear has shape {clear.shape} but days has shape {days.shape}")
    if days.size > 1 and np.any(np.diff(days) <= 0):
        raise ValueError("days must be sorted and unique (mosaic same-day images first)")
    if end_day <= start_day:
        raise ValueError(f"end_day ({end_day}) must be after start_day ({start_day})")
    t0, t1 = np.searchsorted(days, [start_day, end_day], side="left")
    space = clear.shape[1:]
    # pixel-major (each pixel's dates contiguous): the kernel walks one pixel's series at a time
    sub = np.asfortranarray(clear[t0:t1].reshape(t1 - t0, int(np.prod(space))), dtype=np.bool_)
    out = np.empty((len(GAP_BANDS), sub.shape[1]), dtype=np.float32)
    _gap_kernel(sub, np.ascontiguousarray(days[t0:t1]), int(start_day), int(end_day), out)
    return {name: out[k].reshape(space) for k, name in enumerate(GAP_BANDS)}
