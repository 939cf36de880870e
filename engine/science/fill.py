"""Step 10: fill masked observations with the calibrated prediction, and smooth."""

from __future__ import annotations

import numpy as np

from engine.science.neighbourhood import focal_median3

__all__ = ["fill"]


def fill(obs: np.ndarray, mask: np.ndarray, calibrated: np.ndarray, keep_clear: bool = False) -> np.ndarray:
    """Filled NDVI (float32): the calibrated prediction where ``mask != 0``, else the observation.

    Also takes the prediction where the observation is NaN (invalid) and the prediction is not.
    Where the chosen value is NaN (masked and no prediction, or neither available) the pixel is
    NaN before smoothing. Then ``focal_median3`` per date, which can fill such a NaN from its
    valid neighbours. With ``keep_clear`` the clear observations (``mask == 0``) are put back
    after the median (the method smooths them too).
    """
    obs = np.asarray(obs, dtype=np.float32)
    cal = np.asarray(calibrated, dtype=np.float32)
    mask = np.asarray(mask)
    if not (obs.shape == cal.shape == mask.shape):
        raise ValueError(f"shapes differ: obs {obs.shape}, mask {mask.shape}, calibrated {cal.shape}")
    use_pred = (mask != 0) | (np.isnan(obs) & ~np.isnan(cal))
    out = focal_median3(np.where(use_pred, cal, obs))
    if keep_clear:
        clear = (mask == 0) & ~np.isnan(obs)
        out = np.where(clear, obs, out)
    return out
