"""Step 10: fill masked observations with the calibrated prediction, and smooth."""

from __future__ import annotations

import numba
import numpy as np

from engine.science.neighbourhood import median3_window

__all__ = ["fill"]


@numba.njit(cache=True, error_model="numpy")
def _fill_kernel(obs, mask, cal, keep_clear, crop, out):
    n, h, w = obs.shape
    chosen = np.empty((h, w), dtype=np.float32)
    for t in range(n):
        for y in range(h):
            for x in range(w):
                o = obs[t, y, x]
                c = cal[t, y, x]
                use_pred = mask[t, y, x] != 0 or (np.isnan(o) and not np.isnan(c))
                chosen[y, x] = c if use_pred else o
        median3_window(chosen, 0, h, out[t], crop, crop)
        if keep_clear:
            for y in range(out.shape[1]):
                for x in range(out.shape[2]):
                    o = obs[t, y + crop, x + crop]
                    if mask[t, y + crop, x + crop] == 0 and not np.isnan(o):
                        out[t, y, x] = o


def fill(
    obs: np.ndarray, mask: np.ndarray, calibrated: np.ndarray, keep_clear: bool = False, crop: int = 0
) -> np.ndarray:
    """Filled NDVI (float32): the calibrated prediction where ``mask != 0``, else the observation.

    Also takes the prediction where the observation is NaN (invalid) and the prediction is not.
    Where the chosen value is NaN (masked and no prediction, or neither available) the pixel is
    NaN before smoothing. Then ``focal_median3`` per date, which can fill such a NaN from its
    valid neighbours. With ``keep_clear`` the clear observations (``mask == 0``) are put back
    after the median (the method smooths them too). ``crop``: only the window ``crop`` pixels in
    from every edge is computed and returned (its medians read the pixels around it). One pass
    per date, no whole-stack temporaries.
    """
    obs = np.asarray(obs, dtype=np.float32)
    cal = np.asarray(calibrated, dtype=np.float32)
    mask = np.asarray(mask)
    if not (obs.shape == cal.shape == mask.shape):
        raise ValueError(f"shapes differ: obs {obs.shape}, mask {mask.shape}, calibrated {cal.shape}")
    if obs.ndim < 2:
        raise ValueError(f"expected (.., y, x) arrays, got shape {obs.shape}")
    h, w = obs.shape[-2:]
    if crop < 0 or 2 * crop >= min(h, w) and obs.size:
        raise ValueError(f"crop {crop} leaves nothing of a {h} x {w} window")
    planes = [np.ascontiguousarray(a.reshape((-1, h, w))) for a in (obs, mask, cal)]
    out = np.empty((planes[0].shape[0], h - 2 * crop, w - 2 * crop), dtype=np.float32)
    if out.size:
        _fill_kernel(planes[0], planes[1], planes[2], bool(keep_clear), int(crop), out)
    return out.reshape(obs.shape[:-2] + out.shape[-2:])
