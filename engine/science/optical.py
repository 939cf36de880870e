"""Optical steps: NDVI, cloud masks (S2 SCL, Landsat QA_PIXEL) and same-day mosaicking."""

from __future__ import annotations

import numba
import numpy as np

from engine.errors import ConfigError

__all__ = ["MISSIONS", "ndvi", "cloud_mask", "observe", "daily_mosaic"]

MISSIONS = ("S2", "L8")

# Landsat Collection 2 QA_PIXEL bits: 0 fill; 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow.
_L8_FILL = 1 << 0
_L8_CLOUDY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(NIR - Red) / (NIR + Red) as float32; NaN where either band is NaN or NIR + Red <= 0."""
    red = np.asarray(red, dtype=np.float32)
    nir = np.asarray(nir, dtype=np.float32)
    total = nir + red
    ok = total > 0  # False for NaN too
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - red) / total
    return np.where(ok, out, np.float32(np.nan)).astype(np.float32, copy=False)


def cloud_mask(mission: str, qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(cloudy, valid)`` bool arrays from the mission's QA band.

    S2 (``SCL``): valid = SCL not in {0 no data, 1 saturated}; cloudy = SCL == 3 (shadow) or
    SCL >= 7 (unclassified, cloud medium/high, cirrus, snow). L8 (``QA_PIXEL``): valid = bit 0
    (fill) clear; cloudy = any of bits 1-4 (dilated cloud, cirrus, cloud, shadow) set. ``cloudy``
    is False wherever ``valid`` is False, so clear = ``valid & ~cloudy``. A float ``qa`` with NaN
    is accepted; NaN is invalid. Unknown missions raise ``ConfigError`` (a ``ValueError``).
    """
    mode = _mode(mission)
    qa = np.asarray(qa)
    cloudy = np.empty(qa.shape, dtype=bool)
    valid = np.empty(qa.shape, dtype=bool)
    _cloud_mask(mode, np.ascontiguousarray(qa).reshape(-1), cloudy.reshape(-1), valid.reshape(-1))
    return cloudy, valid


_MODE = {"S2": 0, "L8": 1}


def _mode(mission: str) -> int:
    key = str(mission).strip().upper()
    if key not in MISSIONS:
        raise ConfigError(f"unknown mission {mission!r}: expected one of {', '.join(MISSIONS)}")
    return _MODE[key]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _qa_flags(mode, value):
    """(cloudy, valid) of one QA value (``cloud_mask``'s rules); NaN is invalid."""
    q = np.float64(value)
    if not abs(q) < np.inf:
        return False, False
    code = np.int64(q)
    if mode == 0:
        valid = code != 0 and code != 1
        return valid and (code == 3 or code >= 7), valid
    valid = (code & _L8_FILL) == 0
    return valid and (code & _L8_CLOUDY) != 0, valid


@numba.njit(cache=True, error_model="numpy")
def _cloud_mask(mode, qa, cloudy_out, valid_out):
    for i in range(qa.size):
        cloudy_out[i], valid_out[i] = _qa_flags(mode, qa[i])


@numba.njit(cache=True, error_model="numpy")
def _observe(mode, red, nir, qa, ndvi_out, cloudy_out, valid_out):
    """One pass of ``cloud_mask`` and ``ndvi`` (same float32 arithmetic, so the same bits)."""
    nan = np.float32(np.nan)
    for i in range(qa.size):
        cloudy, valid = _qa_flags(mode, qa[i])
        r = np.float32(red[i])
        n = np.float32(nir[i])
        total = n + r
        v = (n - r) / total if total > np.float32(0.0) else nan
        valid = valid and abs(v) < np.inf
        valid_out[i] = valid
        cloudy_out[i] = cloudy and valid
        if ndvi_out.size:
            ndvi_out[i] = v if valid else nan


def observe(
    mission: str,
    red: np.ndarray,
    nir: np.ndarray,
    qa: np.ndarray,
    ndvi_out: np.ndarray | None,
    cloudy_out: np.ndarray,
    valid_out: np.ndarray,
) -> None:
    """``cloud_mask`` and ``ndvi`` of one read in one pass, into C-contiguous outputs of ``qa``'s
    shape: ``valid`` (QA valid and NDVI finite), ``cloudy`` (and valid), ``ndvi`` (NaN where not
    valid; ``None``: not computed). The same values as the two functions and ``np.where``."""
    mode = _mode(mission)
    shape = np.shape(qa)
    outs = [o for o in (ndvi_out, cloudy_out, valid_out) if o is not None]
    if any(o.shape != shape or not o.flags.c_contiguous for o in outs):
        raise ValueError(f"outputs must be C-contiguous arrays of shape {shape}")
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (red, nir, qa)]
    nd = np.empty(0, np.float32) if ndvi_out is None else ndvi_out.reshape(-1)
    _observe(mode, flat[0], flat[1], flat[2], nd, cloudy_out.reshape(-1), valid_out.reshape(-1))


def daily_mosaic(
    times: np.ndarray, *arrays: np.ndarray, valid: np.ndarray | None = None, clear: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Mosaic images acquired on the same UTC day into one image per day.

    ``times`` (N,) are UTC datetime64; each array is (N, ...). Returns ``day_times`` (D,), the
    distinct days ascending as datetime64[ns] at 00:00 UTC, and the arrays mosaicked to (D, ...).
    Per pixel (algorithm.md, job 1 step 2: a pixel is clear that day if any image that day is
    clear there) the first image of the day in input order that is *clear* there wins, else the
    first that is valid there, and *all* arrays take that image's value, so bands and QA stay
    from the same acquisition. ``clear`` and ``valid`` are (N, ...) bool (e.g. from
    ``cloud_mask``); without ``clear`` every valid pixel counts as clear; without ``valid`` a pixel
    is valid where every float array is non-NaN. Where no image of the day is valid, the day's
    first image is kept.
    """
    times = np.asarray(times).astype("datetime64[ns]")
    if times.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {times.shape}")
    n = times.shape[0]
    arrays = tuple(np.asarray(a) for a in arrays)
    for a in arrays:
        if a.shape[:1] != (n,):
            raise ValueError(f"array of shape {a.shape} does not have {n} images on axis 0")
    if valid is None:
        floats = [a for a in arrays if np.issubdtype(a.dtype, np.floating)]
        if floats:
            shape = np.broadcast_shapes(*(a.shape for a in floats))
            ok = np.ones(shape, dtype=bool)
            for a in floats:
                ok &= ~np.isnan(a)
        else:
            ok = np.ones((n,), dtype=bool)
    else:
        ok = np.asarray(valid, dtype=bool)
    best = ok if clear is None else np.asarray(clear, dtype=bool) & ok
    for name, m in (("valid", ok), ("clear", best)):
        if m.shape[:1] != (n,):
            raise ValueError(f"{name} of shape {m.shape} does not have {n} images on axis 0")

    day = times.astype("datetime64[D]")
    day_values = np.unique(day)
    out: list[list[np.ndarray]] = [[] for _ in arrays]
    for d in day_values:
        idx = np.flatnonzero(day == d)  # input order
        mosaics = [a[idx[0]].copy() for a in arrays]
        filled = np.zeros(np.broadcast_shapes(ok.shape[1:], best.shape[1:]), dtype=bool)
        for rank in (best, ok):  # clear images first, then valid ones
            for j in idx:
                take = np.asarray(~filled & rank[j])
                if not take.any():
                    continue
                for m, a in zip(mosaics, arrays):
                    t = np.broadcast_to(take, m.shape)
                    m[t] = a[j][t]
                filled |= take
        for lst, m in zip(out, mosaics):
            lst.append(m)
    stacked = tuple(
        np.stack(lst) if lst else np.empty((0,) + a.shape[1:], dtype=a.dtype) for lst, a in zip(out, arrays)
    )
    return day_values.astype("datetime64[ns]"), stacked
