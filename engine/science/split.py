"""Step 5: split labels per image and the artificial cloud mask for validation images."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "TRAINING",
    "VALIDATION",
    "TESTING",
    "DONOR_RANGE",
    "split_labels",
    "artificial_mask_donor",
    "apply_artificial_mask",
]

TRAINING, VALIDATION, TESTING = "Training", "Validation", "Testing"
DONOR_RANGE = (50.0, 55.0)  # CLOUD_PERCENTAGE_AOI band of the artificial-mask donor, inclusive


def split_labels(
    days: np.ndarray, seed: int, train_test_split: float, val_split: float, random_split: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(random, labels)`` per image, in the input order of ``days``.

    ``random`` is ``numpy.random.default_rng(seed).random(n)`` handed out to the images in
    chronological order (stable for equal days), so it depends only on the seed and the image
    order, not on tiling or on anything else in the run. ``random_split``: 'Training' if
    r < train_test_split else 'Testing'. Otherwise the first floor(train_test_split * n) images by
    date are 'Training' and the rest 'Testing'. In both modes a 'Training' image with
    r < val_split becomes 'Validation'.
    """
    days = np.asarray(days)
    if days.ndim != 1:
        raise ValueError(f"days must be 1-D, got shape {days.shape}")
    n = days.shape[0]
    order = np.argsort(days, kind="stable")
    r = np.empty(n, dtype=np.float64)
    r[order] = np.random.default_rng(seed).random(n)
    if random_split:
        train = r < train_test_split
    else:
        train = np.zeros(n, dtype=bool)
        # The tiny epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
        train[order[: math.floor(train_test_split * n + 1e-9)]] = True
    labels = np.full(n, TESTING, dtype="<U10")
    labels[train] = TRAINING
    labels[train & (r < val_split)] = VALIDATION
    return r, labels


def artificial_mask_donor(cloud_pct: np.ndarray) -> int | None:
    """Index of the image whose cloud ``Mask`` is lent to the validation images, or None.

    The first image (input order, which callers keep chronological) with CLOUD_PERCENTAGE_AOI in
    [50, 55]. If there is none (where the original fails), the engine falls back to the image
    whose value is nearest to 52.5 among those strictly inside (0, 100), the first on ties.
    None when no image qualifies (no image is partly cloudy). NaN values never qualify.
    """
    pct = np.asarray(cloud_pct, dtype=np.float64).reshape(-1)
    lo, hi = DONOR_RANGE
    in_band = np.flatnonzero((pct >= lo) & (pct <= hi))
    if in_band.size:
        return int(in_band[0])
    partly = np.flatnonzero((pct > 0) & (pct < 100))
    if partly.size == 0:
        return None
    dist = np.abs(pct[partly] - 0.5 * (lo + hi))
    return int(partly[np.argmin(dist)])


def apply_artificial_mask(mask: np.ndarray, labels: np.ndarray, donor_mask: np.ndarray) -> np.ndarray:
    """Add 2 x the donor's cloud mask to the ``Mask`` of every 'Validation' image.

    ``mask`` (T, y, x) uint8 with codes 0 clear / 1 cloudy; ``donor_mask`` (y, x) 0/1. Where the
    donor is 1, validation images get 2 added: 2 = artificially hidden but truly clear, 3 = both.
    Returns a new uint8 array; the input is not modified.
    """
    mask = np.asarray(mask)
    labels = np.asarray(labels)
    donor = np.asarray(donor_mask) == 1
    if mask.ndim != 3 or labels.shape != mask.shape[:1] or donor.shape != mask.shape[1:]:
        raise ValueError(f"shapes do not match: mask {mask.shape}, labels {labels.shape}, donor_mask {donor.shape}")
    out = mask.astype(np.uint8, copy=True)
    val = labels == VALIDATION
    out[val] += (2 * donor).astype(np.uint8)[None]
    return out
