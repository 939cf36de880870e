"""Neighbourhood filters on the last two axes: 3 x 3 focal median and square box mean.

Both are NaN-aware and work over the whole array they are given: at the array edge the window
is truncated to the neighbours that exist (callers pass a halo and crop it afterwards).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["focal_median3", "box_mean"]


def _as_planes(a: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """Return ``a`` as a C-contiguous float (n, y, x) stack and the output dtype."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"expected an array with at least 2 dimensions (.., y, x), got shape {a.shape}")
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    planes = np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]), dtype=dtype)
    return planes, dtype


@numba.njit(cache=True, inline="always")
def _sort3(a: float, b: float, c: float) -> tuple[float, float, float]:
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@numba.njit(cache=True)
def _focal_median3_kernel(src: np.ndarray, out: np.ndarray) -> None:
    n_planes, h, w = src.shape
    lo = np.empty(w, dtype=src.dtype)
    mid = np.empty(w, dtype=src.dtype)
    hi = np.empty(w, dtype=src.dtype)
    full = np.empty(w, dtype=np.bool_)
    buf = np.empty(9, dtype=np.float64)
    for p in range(n_planes):
        a = src[p]
        o = out[p]
        for y in range(h):
            interior_row = 0 < y < h - 1
            if interior_row:
                # Sort each 3-pixel column once; it serves three output pixels.
                for x in range(w):
                    u, v, s = a[y - 1, x], a[y, x], a[y + 1, x]
                    full[x] = not (np.isnan(u) or np.isnan(v) or np.isnan(s))
                    lo[x], mid[x], hi[x] = _sort3(u, v, s)
            for x in range(w):
                if interior_row and 0 < x < w - 1 and full[x - 1] and full[x] and full[x + 1]:
                    # Exact median of 9 from three sorted columns:
                    # med3(max of lows, med3 of mids, min of highs).
                    mx_lo = max(lo[x - 1], max(lo[x], lo[x + 1]))
                    mn_hi = min(hi[x - 1], min(hi[x], hi[x + 1]))
                    md = _sort3(mid[x - 1], mid[x], mid[x + 1])[1]
                    o[y, x] = _sort3(mx_lo, md, mn_hi)[1]
                    continue
                # General path: gather the valid neighbours, insertion sort.
                n = 0
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        v = a[yy, xx]
                        if not np.isnan(v):
                            j = n
                            while j > 0 and buf[j - 1] > v:
                                buf[j] = buf[j - 1]
                                j -= 1
                            buf[j] = v
                            n += 1
                if n == 0:
                    o[y, x] = np.nan
                elif n % 2 == 1:
                    o[y, x] = buf[n // 2]
                else:
                    o[y, x] = 0.5 * (buf[n // 2 - 1] + buf[n // 2])


def focal_median3(a: np.ndarray) -> np.ndarray:
    """NaN-aware median over each pixel's 3 x 3 window on the last two axes.

    Earth Engine's ``focalMedian()`` default (circle, radius 1.5 px) covers the full 3 x 3 window.
    NaN neighbours and neighbours beyond the array edge are skipped; the result is NaN only where
    all of them are NaN. With an even number of valid values the result is the mean of the two
    middle values (``numpy.nanmedian`` semantics), which may differ from Earth Engine's
    histogram-based median. Float input keeps its dtype; other input gives float64.
    """
    planes, dtype = _as_planes(a)
    out = np.empty_like(planes)
    if planes.size:
        _focal_median3_kernel(planes, out)
    return out.reshape(np.shape(a)).astype(dtype, copy=False)


@numba.njit(cache=True)
def _box_mean_kernel(src: np.ndarray, radius: int, out: np.ndarray) -> None:
    n_planes, h, w = src.shape
    col_sum = np.empty((h + 1, w), dtype=np.float64)
    col_cnt = np.empty((h + 1, w), dtype=np.int64)
    row_sum = np.empty(w + 1, dtype=np.float64)
    row_cnt = np.empty(w + 1, dtype=np.int64)
    for p in range(n_planes):
        a = src[p]
        # Cumulative sums down each column (values and valid counts), in float64 / int64.
        col_sum[0, :] = 0.0
        col_cnt[0, :] = 0
        for y in range(h):
            for x in range(w):
                v = a[y, x]
                if np.isfinite(v):
                    col_sum[y + 1, x] = col_sum[y, x] + v
                    col_cnt[y + 1, x] = col_cnt[y, x] + 1
                else:
                    col_sum[y + 1, x] = col_sum[y, x]
                    col_cnt[y + 1, x] = col_cnt[y, x]
        for y in range(h):
            y0 = max(y - radius, 0)
            y1 = min(y + radius + 1, h)
            # Cumulative sums along the row of the vertical window sums.
            row_sum[0] = 0.0
            row_cnt[0] = 0
            for x in range(w):
                row_sum[x + 1] = row_sum[x] + (col_sum[y1, x] - col_sum[y0, x])
                row_cnt[x + 1] = row_cnt[x] + (col_cnt[y1, x] - col_cnt[y0, x])
            for x in range(w):
                x0 = max(x - radius, 0)
                x1 = min(x + radius + 1, w)
                c = row_cnt[x1] - row_cnt[x0]
                if c > 0:
                    out[p, y, x] = (row_sum[x1] - row_sum[x0]) / c
                else:
                    out[p, y, x] = np.nan


def box_mean(a: np.ndarray, radius: int = 10) -> np.ndarray:
    """NaN-aware mean over the (2r+1) x (2r+1) square around each pixel on the last two axes.

    Sums and valid counts are accumulated in float64 / int64 (cumulative sums, so the cost does
    not depend on ``radius``). Non-finite values count as no-data. The window is truncated at the
    array edge; the result is NaN where it holds no valid value. Float input keeps its dtype;
    other input gives float64.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    planes, dtype = _as_planes(a)
    out = np.empty_like(planes)
    if planes.size:
        _box_mean_kernel(planes, int(radius), out)
    return out.reshape(np.shape(a)).astype(dtype, copy=False)
