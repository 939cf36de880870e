"""AOI-wide per-image statistics from per-tile sums (both backends).

Per optical image: the valid and cloudy pixel counts and the sums and counts of the SAR
composite (VV, VH) over the pixels whose centres are inside the AOI, at full resolution. Each tile
contributes the pixels of its core; the AOI's totals are their sums, which do not depend on the
tiling: counts are integers, and SAR values are summed as integers of ``SAR_QUANTUM`` dB, exact in
any order. (Statistics from one lattice pixel per 100 m-ish cell were up to 0.25 dB and several
cloud points off the AOI's own figures, enough to move an image across the 50 % calibration
threshold.)
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numba
import numpy as np
import pandas as pd

SAR_QUANTUM = 1e-6  # dB: SAR values enter the sums as round(value / SAR_QUANTUM)
FIELDS = ("valid", "cloudy", "vv_sum", "vv_n", "vh_sum", "vh_n")


def quantise(values: np.ndarray) -> np.ndarray:
    """SAR values (dB, NaN masked) as int64 multiples of ``SAR_QUANTUM`` (0 where masked), ties
    half away from zero (as Earth Engine's ``Image.round`` in the gee backend's sums)."""
    v = np.asarray(values, dtype=np.float64) / SAR_QUANTUM
    return np.where(np.isfinite(v), np.sign(v) * np.floor(np.abs(v) + 0.5), 0).astype(np.int64)


@numba.njit(cache=True, error_model="numpy")
def _flag_counts(valid, cloudy, inside, out_valid, out_cloudy):
    for t in range(valid.shape[0]):
        nv = 0
        nc = 0
        for k in range(inside.size):
            if inside[k] and valid[t, k]:
                nv += 1
                nc += cloudy[t, k]
        out_valid[t] += nv
        out_cloudy[t] += nc


@numba.njit(cache=True, error_model="numpy")
def _quantised_sum(plane, inside):
    total = 0
    n = 0
    for k in range(inside.size):
        if inside[k]:
            v = np.float64(plane[k]) / SAR_QUANTUM  # as ``quantise``: the same float64 steps
            if abs(v) < np.inf:
                q = np.floor(abs(v) + 0.5)
                total += np.int64(q) if v >= 0 else -np.int64(q)
                n += 1
    return total, n


def add_flags(sums: dict[str, np.ndarray], index: slice, valid: np.ndarray, cloudy: np.ndarray,
              inside: np.ndarray) -> None:
    """Add the ``valid`` / ``cloudy`` counts of images ``index`` ((t, y, x) bool) over ``inside``."""
    t = valid.shape[0]
    _flag_counts(valid.reshape(t, -1), cloudy.reshape(t, -1), np.ascontiguousarray(inside).reshape(-1),
                 sums["valid"][index], sums["cloudy"][index])


def add_sar(sums: dict[str, np.ndarray], i: int, vv: np.ndarray, vh: np.ndarray, inside: np.ndarray) -> None:
    """Add image ``i``'s quantised composite sums and counts ((y, x) dB, NaN masked) over ``inside``."""
    flat = np.ascontiguousarray(inside).reshape(-1)
    for name, comp in (("vv", vv), ("vh", vh)):
        total, n = _quantised_sum(np.ascontiguousarray(comp).reshape(-1), flat)
        sums[f"{name}_sum"][i] += total
        sums[f"{name}_n"][i] += n


def add(parts: Iterable[Mapping[str, np.ndarray]], n_images: int) -> dict[str, np.ndarray]:
    """The AOI's sums: the tiles' sums added (int64, exact)."""
    total = {f: np.zeros(n_images, np.int64) for f in FIELDS}
    for part in parts:
        for f in FIELDS:
            total[f] += np.asarray(part[f], dtype=np.int64)
    return total


def image_table(sums: Mapping[str, np.ndarray], resolution: float, stats_scale: float = 100.0) -> pd.DataFrame:
    """``cloud_pct``, ``pixel_count`` (valid pixels as ``stats_scale`` pixels, the spec's
    PIXEL_COUNT_AOI), ``vv_mean`` and ``vh_mean`` per image from the AOI's sums."""
    valid = np.asarray(sums["valid"], dtype=np.float64)
    cloudy = np.asarray(sums["cloudy"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = {"cloud_pct": np.where(valid > 0, 100.0 * cloudy / np.maximum(valid, 1), np.nan),
                 "pixel_count": valid * (resolution / stats_scale) ** 2}
        for name in ("vv", "vh"):
            n = np.asarray(sums[f"{name}_n"], dtype=np.float64)
            s = np.asarray(sums[f"{name}_sum"], dtype=np.float64) * SAR_QUANTUM
            table[f"{name}_mean"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return pd.DataFrame(table)


def scene_counts(scene_times: pd.Series, days: np.ndarray, window_days: int) -> np.ndarray:
    """Distinct S1 acquisition times in each image's window [t - w, t + w) (days since epoch; a
    scene sliced into several items or granules with one time counts once)."""
    if len(scene_times) == 0:
        return np.zeros(len(days), np.int64)
    t = pd.to_datetime(scene_times, utc=True)
    ms = np.unique(((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(np.int64))
    day_ms = 86_400_000
    return np.array([int(((ms >= (d - window_days) * day_ms) & (ms < (d + window_days) * day_ms)).sum())
                     for d in np.asarray(days, dtype=np.int64)], dtype=np.int64)
