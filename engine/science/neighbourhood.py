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


@numba.njit(cache=True, inline="always")
def _cmpswap(b: np.ndarray, i: int, j: int) -> None:
    x = b[i]
    y = b[j]
    b[i] = min(x, y)
    b[j] = max(x, y)


@numba.njit(cache=True, inline="always")
def _sort9(b: np.ndarray) -> None:
    """Sort b[0:9] in place with an optimal 25-comparator network (Knuth, TAOCP 5.3.4)."""
    _cmpswap(b, 0, 3)
    _cmpswap(b, 1, 7)
    _cmpswap(b, 2, 5)
    _cmpswap(b, 4, 8)
    _cmpswap(b, 0, 7)
    _cmpswap(b, 2, 4)
    _cmpswap(b, 3, 8)
    _cmpswap(b, 5, 6)
    _cmpswap(b, 0, 2)
    _cmpswap(b, 1, 3)
    _cmpswap(b, 4, 5)
    _cmpswap(b, 7, 8)
    _cmpswap(b, 1, 4)
    _cmpswap(b, 3, 6)
    _cmpswap(b, 5, 7)
    _cmpswap(b, 0, 1)
    _cmpswap(b, 2, 4)
    _cmpswap(b, 3, 5)
    _cmpswap(b, 6, 8)
    _cmpswap(b, 2, 3)
    _cmpswap(b, 4, 5)
    _cmpswap(b, 6, 7)
    _cmpswap(b, 1, 2)
    _cmpswap(b, 3, 4)
    _cmpswap(b, 5, 6)


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
                # General path (edges, NaN): NaN and off-array neighbours become +inf and sort
                # last; a branch-free sorting network then orders all 9, the n valid ones first.
                n = 0
                k = 0
                for yy in range(y - 1, y + 2):
                    for xx in range(x - 1, x + 2):
                        v = a[yy, xx] if (0 <= yy < h and 0 <= xx < w) else np.nan
                        ok = not np.isnan(v)
                        buf[k] = v if ok else np.inf
                        n += ok
                        k += 1
                _sort9(buf)
                if n == 0:
                    o[y, x] = np.nan
                elif n % 2 == 1:
                    o[y, x] = buf[n // 2]
                else:
                    o[y, x] = 0.5 * (buf[n // 2 - 1] + buf[n // 2])


def focal_median3(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """NaN-aware median over each pixel's 3 x 3 window on the last two axes.

    Earth Engine's ``focalMedian()`` default (circle, radius 1.5 px) covers the full 3 x 3 window.
    NaN neighbours and neighbours beyond the array edge are skipped; the result is NaN only where
    all of them are NaN. With an even number of valid values the result is the mean of the two
    middle values (``numpy.nanmedian`` semantics), which may differ from Earth Engine's
    histogram-based median. Float input keeps its dtype; other input gives float64. ``out``
    (optional, C-contiguous, same shape and dtype, not ``a`` itself) receives the result.
    """
    planes, dtype = _as_planes(a)
    if out is None:
        res = np.empty_like(planes)
    else:
        if out.shape != np.shape(a) or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous {dtype} of shape {np.shape(a)}")
        if np.may_share_memory(out, planes):
            raise ValueError("out must not overlap the input")
        res = out.reshape(planes.shape)
    if planes.size:
        _focal_median3_kernel(planes, res)
    return res.reshape(np.shape(a)) if out is None else out


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
