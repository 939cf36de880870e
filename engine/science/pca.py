"""Step 8: temporal PCA smoothing of the per-date predictions with an AOI-wide basis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PCABasis", "n_components", "pca_basis", "pca_smooth"]

SMOOTH_CHUNK = 4096  # pixels projected at once
BASIS_BLOCK = 16384  # sample rows per float64 block of the basis


@dataclass(frozen=True, eq=False)
class PCABasis:
    """AOI-wide PCA basis: per-date ``mean`` (N,), ``components`` (N, k), eigenvalues ``explained`` (k,)."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray


def n_components(n_dates: int, ratio: float) -> int:
    """floor(n_dates x ratio), clamped to [1, n_dates] (at least one component is always kept).

    A 1e-9 tolerance is added before flooring so float error (0.29 x 100 = 28.999...) does not
    lose a component.
    """
    if n_dates < 1:
        raise ValueError(f"n_dates must be >= 1, got {n_dates}")
    return int(min(n_dates, max(1, math.floor(n_dates * ratio + 1e-9))))


def pca_basis(samples: np.ndarray, ratio: float) -> PCABasis:
    """PCA basis from an (S, N) sample of predictions (S pixels, N dates), NaN = missing.

    Uses complete rows only, in float64: mean per date, covariance with ddof=1, ``eigh``; keeps the
    ``n_components(N, ratio)`` leading components by decreasing eigenvalue. Sign convention: each
    component's largest-magnitude loading (first on ties) is positive, so reruns are identical.
    Raises ``ValueError`` with fewer than 2 complete rows.
    """
    x = np.asarray(samples)
    if x.ndim != 2:
        raise ValueError(f"samples must be (pixels, dates), got shape {x.shape}")
    n = x.shape[1]
    rows = np.flatnonzero(np.all(np.isfinite(x), axis=1))
    if rows.size < 2:
        raise ValueError(
            f"PCA needs at least 2 sample pixels with a prediction on all {n} dates, got "
            f"{rows.size}; use a larger AOI or a longer period, or --set PCA_SMOOTH=false"
        )
    # mean and covariance of the complete rows in float64, a block of rows at a time (no float64
    # copy of the whole sample)
    blocks = [rows[a : a + BASIS_BLOCK] for a in range(0, rows.size, BASIS_BLOCK)]
    mean = sum((x[b].astype(np.float64).sum(axis=0) for b in blocks), np.zeros(n)) / rows.size
    cov = np.zeros((n, n))
    for b in blocks:
        anom = x[b].astype(np.float64) - mean
        cov += anom.T @ anom
    cov /= rows.size - 1
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals, kind="stable")[::-1]
    k = n_components(n, ratio)
    vals = vals[order][:k]
    vecs = vecs[:, order][:, :k]
    lead = np.argmax(np.abs(vecs), axis=0)
    signs = np.where(vecs[lead, np.arange(k)] < 0, -1.0, 1.0)
    vecs = np.ascontiguousarray(vecs * signs)
    vals = np.ascontiguousarray(vals)
    for a in (mean, vecs, vals):
        a.setflags(write=False)
    return PCABasis(mean=mean, components=vecs, explained=vals)


def pca_smooth(pred: np.ndarray, basis: PCABasis, out: np.ndarray | None = None) -> np.ndarray:
    """Project each pixel's N-date series on the basis and reconstruct; returns float32, same shape.

    ``pred`` is (N, y, x) or (N, P). Anomalies from ``basis.mean`` are projected on the components
    and reconstructed, then the means are added back. Missing (NaN) dates contribute a zero
    anomaly to the projection and stay NaN in the output; all-NaN pixels stay NaN. ``out``: a
    float32 array of ``pred``'s shape to write into (``pred`` itself included).
    """
    pred = np.asarray(pred)
    n = basis.mean.shape[0]
    if pred.ndim < 1 or pred.shape[0] != n:
        raise ValueError(f"pred has {pred.shape[0] if pred.ndim else 0} dates but the PCA basis has {n}")
    x = pred.reshape(n, -1)
    if out is None:
        out = np.empty(pred.shape, np.float32)
    elif out.shape != pred.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {pred.shape}")
    res = out.reshape(n, -1)
    if not np.shares_memory(res, out):
        raise ValueError("out must be reshapeable to (dates, pixels) without a copy")
    comps = basis.components
    for a in range(0, x.shape[1], SMOOTH_CHUNK):  # cache-sized float64 blocks: the same numbers, no big temporaries
        block = x[:, a : a + SMOOTH_CHUNK].astype(np.float64)
        missing = np.isnan(block)
        anom = block - basis.mean[:, None]
        anom[missing] = 0.0
        recon = comps @ (comps.T @ anom) + basis.mean[:, None]
        recon[missing] = np.nan
        res[:, a : a + SMOOTH_CHUNK] = recon
    return out
