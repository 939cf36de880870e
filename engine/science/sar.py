"""SAR steps: windowed dB composites per optical date (step 3) and the 8 smoothed covariates (step 4)."""

from __future__ import annotations

import numba
import numpy as np

from engine.science.neighbourhood import box_mean, focal_median3

__all__ = ["COVARIATES", "NOISE_FLOOR_DB", "composite", "covariates", "window_mean", "window_members"]

COVARIATES = ("VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean", "VH_Nmean", "VV_Ndiff", "VH_Ndiff")

NOISE_FLOOR_DB = -40.0  # values <= this are border noise and masked


@numba.njit(cache=True)
def _window_mean(images, members, out):
    _, ny, nx = images.shape
    for r in range(ny):
        for c in range(nx):
            total = 0.0  # float64, members in order: the sums do not depend on how images are held
            n = 0
            for s in members:
                v = images[s, r, c]
                if v > NOISE_FLOOR_DB:  # False for NaN
                    total += v
                    n += 1
            out[r, c] = total / n if n > 0 else np.nan


def window_mean(images: np.ndarray, members: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (y, x) <- per-pixel mean (dB) of ``images[members]`` (S, y, x) over values above the
    noise floor, NaN where none: one fused pass, no temporaries."""
    members = np.asarray(members, dtype=np.int64)
    if members.size == 0:
        out[...] = np.nan
    else:
        _window_mean(np.ascontiguousarray(images), members, out)
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
        window_mean(sar_db, members, out[i])
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
    vv = np.asarray(vv, dtype=np.float32)
    vh = np.asarray(vh, dtype=np.float32)
    if vv.shape != vh.shape or vv.ndim != 3:
        raise ValueError(f"vv and vh must both be (T, y, x); got {vv.shape} and {vh.shape}")
    t = vv.shape[0]
    means = []
    for name, m in (("vv_mean", vv_mean), ("vh_mean", vh_mean)):
        m = np.asarray(m, dtype=np.float32).reshape(-1)
        if m.shape != (t,):
            raise ValueError(f"{name} must have one value per date ({t}), got shape {m.shape}")
        means.append(m[:, None, None])
    rows, cols = crop if crop is not None else (slice(None), slice(None))
    shape = vv[:, rows, cols].shape
    out = np.empty((len(COVARIATES), *shape), dtype=np.float32)
    raw = np.empty(vv.shape, dtype=np.float32)  # one band before smoothing, reused
    smooth = np.empty(vv.shape, dtype=np.float32)  # one smoothed band, reused
    for j, (comp, mean) in enumerate(zip((vv, vh), means)):
        nmean = box_mean(comp, radius)
        focal_median3(comp, out=smooth)  # median(composite) -> *_mean and *_diff
        out[0 + j] = np.where(np.isnan(smooth[:, rows, cols]), np.float32(np.nan), mean)
        np.subtract(smooth[:, rows, cols], mean, out=out[2 + j])
        focal_median3(nmean, out=smooth)
        out[4 + j] = smooth[:, rows, cols]
        np.subtract(comp, nmean, out=raw)
        focal_median3(raw, out=smooth)
        out[6 + j] = smooth[:, rows, cols]
    return out
