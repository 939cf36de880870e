"""Step 10: fill masked observations with the calibrated prediction, smooth, and score."""
from __future__ import annotations

import numpy as np

from engine.science.neighbourhood import focal_median3

__all__ = ["fill", "image_mae"]


def fill(obs: np.ndarray, mask: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
    """Filled NDVI (float32): the calibrated prediction where ``mask != 0``, else the observation.

    Also takes the prediction where the observation is NaN (invalid) and the prediction is not.
    Where the chosen value is NaN (masked and no prediction, or neither available) the pixel is
    NaN before smoothing. Then ``focal_median3`` per date, which can fill such a NaN from its
    valid neighbours.
    """
    obs = np.asarray(obs, dtype=np.float32)
    cal = np.asarray(calibrated, dtype=np.float32)
    mask = np.asarray(mask)
    if not (obs.shape == cal.shape == mask.shape):
        raise ValueError(f"shapes differ: obs {obs.shape}, mask {mask.shape}, calibrated {cal.shape}")
    use_pred = (mask != 0) | (np.isnan(obs) & ~np.isnan(cal))
    return focal_median3(np.where(use_pred, cal, obs))


def image_mae(obs: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Mean |obs - pred| over pixels with ``mask == 0`` where both are finite; -1.0 when none."""
    obs = np.asarray(obs, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    sel = (np.asarray(mask) == 0) & np.isfinite(obs) & np.isfinite(pred)
    if not sel.any():
        return -1.0
    return float(np.mean(np.abs(obs[sel] - pred[sel])))
