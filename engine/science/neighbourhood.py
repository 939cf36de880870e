"""Neighbourhood filters on the last two axes: 3 x 3 focal median and square box mean.

Both are NaN-aware and work over the whole array they are given: at the array edge the window
is truncated to the neighbours that exist (callers pass a halo and crop it afterwards).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["focal_median3", "box_mean", "box_mean_rows", "median3_window"]


def _as_planes(a: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """Return ``a`` as a C-contiguous float (n, y, x) stack and the output dtype."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"expected an array with at least 2 dimensions (.., y, x), got shape {a.shape}")
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    planes = np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]), dtype=dtype)
    return planes, dtype


@numba.njit(cache=True, inline="always", error_model="numpy")
def _sort3(a: float, b: float, c: float) -> tuple[float, float, float]:
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cmpswap(b: np.ndarray, i: int, j: int) -> None:
    x = b[i]
    y = b[j]
    b[i] = min(x, y)
    b[j] = max(x, y)


@numba.njit(cache=True, inline="always", error_model="numpy")
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


@numba.njit(cache=True, error_model="numpy")
def median3_window(a, oy, h, o, r0, c0):
    """o[y, x] <- the NaN-aware 3 x 3 median at pixel (r0 + y, c0 + x) of a plane of ``h`` rows and
    ``a.shape[1]`` columns whose rows ``oy .. oy + a.shape[0]`` ``a`` holds (every row the window
    reaches). The window is truncated at the plane's edges, not ``a``'s."""
    w = a.shape[1]
    ho, wo = o.shape
    lo = np.empty(wo + 2, dtype=a.dtype)  # the sorted 3-pixel columns c0 - 1 .. c0 + wo
    mid = np.empty(wo + 2, dtype=a.dtype)
    hi = np.empty(wo + 2, dtype=a.dtype)
    full = np.zeros(wo + 2, dtype=np.bool_)
    buf = np.empty(9, dtype=np.float64)
    for y in range(ho):
        yy0 = r0 + y
        interior_row = 0 < yy0 < h - 1
        if interior_row:
            # Sort each 3-pixel column once; it serves three output pixels.
            for k in range(wo + 2):
                xx = c0 - 1 + k
                if 0 <= xx < w:
                    u, v, s = a[yy0 - 1 - oy, xx], a[yy0 - oy, xx], a[yy0 + 1 - oy, xx]
                    full[k] = not (np.isnan(u) or np.isnan(v) or np.isnan(s))
                    lo[k], mid[k], hi[k] = _sort3(u, v, s)
                else:
                    full[k] = False
        for x in range(wo):
            xx0 = c0 + x
            k = x + 1
            if interior_row and 0 < xx0 < w - 1 and full[k - 1] and full[k] and full[k + 1]:
                # Exact median of 9 from three sorted columns:
                # med3(max of lows, med3 of mids, min of highs).
                mx_lo = max(lo[k - 1], max(lo[k], lo[k + 1]))
                mn_hi = min(hi[k - 1], min(hi[k], hi[k + 1]))
                md = _sort3(mid[k - 1], mid[k], mid[k + 1])[1]
                o[y, x] = _sort3(mx_lo, md, mn_hi)[1]
                continue
            # General path (edges, NaN): NaN and off-plane neighbours become +inf and sort
            # last; a branch-free sorting network then orders all 9, the n valid ones first.
            n = 0
            m = 0
            for yy in range(yy0 - 1, yy0 + 2):
                for xx in range(xx0 - 1, xx0 + 2):
                    v = a[yy - oy, xx] if (0 <= yy < h and 0 <= xx < w) else np.nan
                    ok = not np.isnan(v)
                    buf[m] = v if ok else np.inf
                    n += ok
                    m += 1
            _sort9(buf)
            if n == 0:
                o[y, x] = np.nan
            elif n % 2 == 1:
                o[y, x] = buf[n // 2]
            else:
                o[y, x] = 0.5 * (buf[n // 2 - 1] + buf[n // 2])


@numba.njit(cache=True, error_model="numpy")
def _focal_median3_kernel(src: np.ndarray, out: np.ndarray) -> None:
    for p in range(src.shape[0]):
        median3_window(src[p], 0, src.shape[1], out[p], 0, 0)


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


@numba.njit(cache=True, error_model="numpy")
def box_mean_rows(a, radius, ya, yb, out):
    """out[y - ya, x] <- the NaN-aware (2r+1)^2 box mean of the plane ``a`` for rows ya .. yb - 1.
    Column sums are cumulative from the plane's first row whatever ``ya``, so any row range gets
    the very numbers of the whole plane's computation."""
    h, w = a.shape
    top = max(ya - radius, 0)  # the first and last cumulative rows the windows use
    bottom = min(yb + radius, h)
    col_sum = np.empty((bottom - top + 1, w), dtype=np.float64)  # col_sum[k] = rows < top + k
    col_cnt = np.empty((bottom - top + 1, w), dtype=np.int64)
    run_sum = np.zeros(w, dtype=np.float64)
    run_cnt = np.zeros(w, dtype=np.int64)
    for y in range(bottom):
        if y >= top:
            col_sum[y - top] = run_sum
            col_cnt[y - top] = run_cnt
        for x in range(w):
            v = a[y, x]
            if np.isfinite(v):
                run_sum[x] = run_sum[x] + v
                run_cnt[x] = run_cnt[x] + 1
    col_sum[bottom - top] = run_sum
    col_cnt[bottom - top] = run_cnt
    row_sum = np.empty(w + 1, dtype=np.float64)
    row_cnt = np.empty(w + 1, dtype=np.int64)
    for y in range(ya, yb):
        y0 = max(y - radius, 0) - top
        y1 = min(y + radius + 1, h) - top
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
                out[y - ya, x] = (row_sum[x1] - row_sum[x0]) / c
            else:
                out[y - ya, x] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _box_mean_kernel(src: np.ndarray, radius: int, out: np.ndarray) -> None:
    for p in range(src.shape[0]):
        box_mean_rows(src[p], radius, 0, src.shape[1], out[p])


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
