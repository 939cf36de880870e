"""SAR steps: windowed dB composites per optical date (step 3) and the 8 smoothed covariates (step 4)."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from numba.typed import List

from engine.science.neighbourhood import box_mean_rows, median3_window

__all__ = ["COVARIATES", "NOISE_FLOOR_DB", "composite", "covariates", "window_mean", "window_members"]

COVARIATES = ("VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean", "VH_Nmean", "VV_Ndiff", "VH_Ndiff")

NOISE_FLOOR_DB = -40.0  # values <= this are border noise and masked


@numba.njit(cache=True, error_model="numpy")
def _window_mean(planes, out):
    ny, nx = out.shape
    total = np.empty(nx)  # float64, members in order: the sums do not depend on how images are held
    n = np.empty(nx, np.int64)
    for r in range(ny):
        total[:] = 0.0
        n[:] = 0
        for k in range(len(planes)):
            row = planes[k][r]
            for c in range(nx):
                v = row[c]
                if v > NOISE_FLOOR_DB:  # False for NaN
                    total[c] += v
                    n[c] += 1
        for c in range(nx):
            out[r, c] = total[c] / n[c] if n[c] > 0 else np.nan


def window_mean(planes: Sequence[np.ndarray], out: np.ndarray) -> np.ndarray:
    """``out`` (y, x) <- per-pixel mean (dB) of the (y, x) ``planes`` over values above the
    noise floor, NaN where none: one pass, the images read where they are (no stack)."""
    if len(planes) == 0:
        out[...] = np.nan
        return out
    dtype = np.result_type(*(np.asarray(p).dtype for p in planes))
    dtype = dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
    typed = List()
    for plane in planes:
        if plane.shape != out.shape:
            raise ValueError(f"plane of shape {plane.shape} does not match the output {out.shape}")
        typed.append(np.ascontiguousarray(plane, dtype=dtype))
    _window_mean(typed, out)
    return out


def window_members(sar_days: np.ndarray, day: int, half_window: int) -> np.ndarray:
    """Indices of the SAR days in [day - half_window, day + half_window)."""
    return np.flatnonzero((sar_days >= day - half_window) & (sar_days < day + half_window))


def composite(
    sar_db: np.ndarray, sar_days: np.ndarray, target_days: np.ndarray, half_window: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean (dB) of the SAR images with day in [t - half_window, t + half_window).

    ``sar_db`` (S, y, x), ``sar_days`` (S,) and ``target_days`` (T,) are integer days. Values that
    are NaN or <= -40 dB are masked. Returns ``composite`` (T, y, x) float32 (NaN where no image
    in the window is valid) and ``counts`` (T,) int64, the number of SAR *scenes* in each window
    (not per pixel). Accumulates in float64 per pixel, never a (T, S, y, x) array.
    """
    sar_db = np.asarray(sar_db)
    sar_days = np.asarray(sar_days).astype(np.int64)
    target_days = np.asarray(target_days).astype(np.int64)
    if sar_db.ndim != 3 or sar_db.shape[0] != sar_days.shape[0]:
        raise ValueError(f"sar_db has shape {sar_db.shape}; expected ({sar_days.shape[0]}, y, x): one image per day")
    out = np.empty((target_days.shape[0], *sar_db.shape[1:]), dtype=np.float32)
    counts = np.zeros(target_days.shape[0], dtype=np.int64)
    for i, t in enumerate(target_days):
        members = window_members(sar_days, int(t), half_window)
        counts[i] = members.size
        window_mean([sar_db[m] for m in members], out[i])
    return out, counts


def covariates(
    vv: np.ndarray,
    vh: np.ndarray,
    vv_mean: np.ndarray,
    vh_mean: np.ndarray,
    radius: int = 10,
    crop: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """The 8 SAR covariates (8, T, y, x) float32 in ``COVARIATES`` order, each focal-median smoothed.

    ``vv``/``vh`` are the (T, y, x) composites, ``vv_mean``/``vh_mean`` the (T,) AOI-wide means.
    ``crop`` (a (rows, cols) slice pair) returns only that window, computed from the whole input, so
    a haloed tile never holds the full 8-band stack.
    ``*_mean`` = the AOI mean broadcast (NaN where the composite is NaN), ``*_diff`` = composite -
    AOI mean, ``*_Nmean`` = ``box_mean(composite, radius)``, ``*_Ndiff`` = composite - Nmean; then
    every band goes through ``focal_median3`` (step 4).

    Two shortcuts give the same smoothing with 6 medians instead of 8: the median of ``*_diff``
    is ``median(composite) - mean`` (a per-date constant shifts the median), and the smoothed
    ``*_mean`` is the constant wherever that median exists (any valid value in the 3 x 3 window).
    """
    vv = np.ascontiguousarray(vv, dtype=np.float32)
    vh = np.ascontiguousarray(vh, dtype=np.float32)
    if vv.shape != vh.shape or vv.ndim != 3:
        raise ValueError(f"vv and vh must both be (T, y, x); got {vv.shape} and {vh.shape}")
    t, h, w = vv.shape
    means = []
    for name, m in (("vv_mean", vv_mean), ("vh_mean", vh_mean)):
        m = np.ascontiguousarray(np.asarray(m, dtype=np.float32).reshape(-1))
        if m.shape != (t,):
            raise ValueError(f"{name} must have one value per date ({t}), got shape {m.shape}")
        means.append(m)
    rows, cols = crop if crop is not None else (slice(None), slice(None))
    (r0, r1, rs), (c0, c1, cs) = rows.indices(h), cols.indices(w)
    if rs != 1 or cs != 1:
        raise ValueError(f"crop must be contiguous slices, got {crop}")
    out = np.empty((len(COVARIATES), t, max(r1 - r0, 0), max(c1 - c0, 0)), dtype=np.float32)
    if out.size:
        for j, (comp, mean) in enumerate(zip((vv, vh), means)):
            _covariate_band(comp, mean, int(radius), r0, c0, out, j)
    return out


@numba.njit(cache=True, error_model="numpy")
def _covariate_band(comp, mean, radius, r0, c0, out, j):
    """Covariates j, 2 + j, 4 + j, 6 + j of one polarisation (``covariates``), a date at a time: the
    box mean and the composite minus it only on the rows the crop's medians reach."""
    t, h, w = comp.shape
    ho, wo = out.shape[2], out.shape[3]
    ya, yb = max(r0 - 1, 0), min(r0 + ho + 1, h)  # rows the 3 x 3 medians of the crop read
    nmean = np.empty((yb - ya, w), dtype=np.float32)
    raw = np.empty((yb - ya, w), dtype=np.float32)
    med = np.empty((ho, wo), dtype=np.float32)
    nan = np.float32(np.nan)
    for d in range(t):
        plane = comp[d]
        box_mean_rows(plane, radius, ya, yb, nmean)
        for y in range(yb - ya):
            for x in range(w):
                raw[y, x] = plane[ya + y, x] - nmean[y, x]
        median3_window(plane, 0, h, med, r0, c0)  # median(composite) -> *_mean and *_diff
        m = mean[d]
        for y in range(ho):
            for x in range(wo):
                v = med[y, x]
                out[j, d, y, x] = nan if np.isnan(v) else m
                out[2 + j, d, y, x] = v - m
        median3_window(nmean, ya, h, out[4 + j, d], r0, c0)
        median3_window(raw, ya, h, out[6 + j, d], r0, c0)
