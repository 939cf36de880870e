"""SAR steps: windowed dB composites per optical date (step 3) and the 8 smoothed covariates (step 4)."""

from __future__ import annotations

import numpy as np

from engine.science.neighbourhood import box_mean, focal_median3

__all__ = ["COVARIATES", "NOISE_FLOOR_DB", "composite", "covariates"]

COVARIATES = ("VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean", "VH_Nmean", "VV_Ndiff", "VH_Ndiff")

NOISE_FLOOR_DB = -40.0  # values <= this are border noise and masked


def composite(
    sar_db: np.ndarray, sar_days: np.ndarray, target_days: np.ndarray, half_window: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean (dB) of the SAR images with day in [t - half_window, t + half_window).

    ``sar_db`` (S, y, x), ``sar_days`` (S,) and ``target_days`` (T,) are integer days. Values that
    are NaN or <= -40 dB are masked. Returns ``composite`` (T, y, x) float32 (NaN where no image
    in the window is valid) and ``counts`` (T,) int64, the number of SAR *scenes* in each window
    (not per pixel). Accumulates one window at a time in float64, never a (T, S, y, x) array.
    """
    sar_db = np.asarray(sar_db)
    sar_days = np.asarray(sar_days).astype(np.int64)
    target_days = np.asarray(target_days).astype(np.int64)
    if sar_db.ndim < 1 or sar_db.shape[0] != sar_days.shape[0]:
        raise ValueError(f"sar_db has shape {sar_db.shape} but there are {sar_days.shape[0]} SAR days")
    space = sar_db.shape[1:]
    out = np.full((target_days.shape[0],) + space, np.nan, dtype=np.float32)
    counts = np.zeros(target_days.shape[0], dtype=np.int64)
    total = np.empty(space, dtype=np.float64)
    n = np.empty(space, dtype=np.int64)
    for i, t in enumerate(target_days):
        members = np.flatnonzero((sar_days >= t - half_window) & (sar_days < t + half_window))
        counts[i] = members.size
        if members.size == 0:
            continue
        total.fill(0.0)
        n.fill(0)
        for s in members:
            img = sar_db[s]
            ok = img > NOISE_FLOOR_DB  # False for NaN
            total += np.where(ok, img, 0.0)
            n += ok
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.where(n > 0, total / n, np.nan)
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
