"""Earth Engine reducers, vectorised over pixels: ``apply(x, w) -> outputs``.

``x`` is (n, P, k): n samples (images of a collection, pixels of a region, elements of an array
axis) for P independent reductions with k inputs; array inputs (``centeredCovariance``) are
(n, P, N). ``w`` is (n, P): the sample weights, 0 where masked. Earth Engine weights samples by
their mask in "weighted" reducers (``sum``, ``mean``, the regressions, the covariance) and
counts every unmasked sample once in unweighted ones (``count``, ``min``, ``max``,
``median`` / ``percentile`` / ``intervalMean``; ``Reducer.unweighted()`` makes any reducer so).
Each output is ``(values (P, ...), valid (P,))``; an invalid output is null (a masked pixel, or a
null entry of a ``reduceRegion`` dictionary).

Choices where the documentation is silent (``Reducer.*`` entries of the wheel's
``algorithms.json``) are marked "[silent]".
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Out = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Reducer:
    kind: str
    n_inputs: int = 1
    outputs: tuple[str, ...] = ()
    params: dict = field(default_factory=dict, hash=False, compare=False)
    weighted: bool = True
    parts: tuple["Reducer", ...] = ()  # combine(sharedInputs=True)

    def with_outputs(self, names: list[str]) -> "Reducer":
        if len(names) != len(self.outputs):
            raise ValueError(f"Reducer.setOutputs: expected {len(self.outputs)} names, got {len(names)}.")
        return replace(self, outputs=tuple(names))

    def apply(self, x: np.ndarray, w: np.ndarray, region: bool = False) -> list[Out]:
        """Reduce axis 0. ``region``: a region reduction (``reduceRegion``), where a sum of no
        pixels is 0; per-pixel reductions (``Image.reduce``, ``ImageCollection.reduce``) mask a
        pixel with no unmasked input ([silent]: the documentation does not say; a sum over an
        all-masked stack is masked in Earth Engine's composites, an empty region sums to 0)."""
        if self.kind == "combine":
            out: list[Out] = []
            for p in self.parts:
                out.extend(p.apply(x, w, region))
            return out
        if not self.weighted:
            w = (w > 0).astype(np.float64)
        out = _KERNELS[self.kind](self, x, w)
        if region and self.kind == "sum":
            out = [(v, np.ones(v.shape, bool)) for v, _ in out]
        return out


def make(kind: str, **params: Any) -> Reducer:
    """The reducer ``Reducer.<kind>`` with Earth Engine's default output names."""
    if kind in ("count", "sum", "mean", "min", "max", "median"):
        return Reducer(kind, 1, (kind,), params, weighted=kind in ("sum", "mean"))
    if kind == "percentile":
        names = params.get("outputNames") or [f"p{_fmt(p)}" for p in params["percentiles"]]
        return Reducer(kind, 1, tuple(names), params, weighted=False)
    if kind == "intervalMean":
        return Reducer(kind, 1, ("mean",), params, weighted=False)
    if kind in ("linearRegression", "robustLinearRegression"):
        nx, ny = int(params["numX"]), int(params.get("numY") or 1)
        return Reducer(kind, nx + ny, ("coefficients", "residuals"), params)
    if kind == "centeredCovariance":
        return Reducer(kind, 1, ("array",), params)
    raise KeyError(kind)


def combine(r1: Reducer, r2: Reducer, prefix: str = "", shared: bool = False) -> Reducer:
    if not shared:
        # [silent-free] documented, but the engine never needs it; refuse clearly
        raise ValueError("Reducer.combine: only sharedInputs=true is implemented by the stand-in.")
    if r1.n_inputs != r2.n_inputs:
        raise ValueError("Reducer.combine: reducers with shared inputs must have the same number of inputs.")
    parts = (r1.parts or (r1,)) + tuple(replace(p, outputs=tuple(prefix + o for o in p.outputs))
                                         for p in (r2.parts or (r2,)))
    return Reducer("combine", r1.n_inputs, tuple(o for p in parts for o in p.outputs), {}, True, parts)


def _fmt(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p)


# --- kernels ------------------------------------------------------------------------------------
def _count(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    n = (w > 0).sum(axis=0).astype(np.float64)
    return [(n, np.ones(n.shape, bool))]


def _sum(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    s = np.where(w > 0, x[..., 0] * w, 0.0).sum(axis=0)
    return [(s, (w > 0).any(axis=0))]


def _mean(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    ws = w.sum(axis=0)
    s = np.where(w > 0, x[..., 0] * w, 0.0).sum(axis=0)
    ok = ws > 0
    return [(np.where(ok, s / np.where(ok, ws, 1.0), 0.0), ok)]


def _minmax(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    ok = (w > 0).any(axis=0)
    fill = np.inf if r.kind == "min" else -np.inf
    v = np.where(w > 0, x[..., 0], fill)
    v = v.min(axis=0) if r.kind == "min" else v.max(axis=0)
    return [(np.where(ok, v, 0.0), ok)]


def _sorted(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid values sorted ascending along axis 0 (NaN-padded) and their counts."""
    v = np.where(w > 0, x[..., 0], np.nan)
    return np.sort(v, axis=0), (w > 0).sum(axis=0)


def _quantile(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear interpolation between closest ranks (numpy's default; [silent]: Earth Engine
    documents exact percentiles below ``maxRaw`` without the interpolation rule)."""
    pos = (np.maximum(n, 1) - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    frac = pos - lo
    idx = np.arange(s.shape[1])
    a, b = s[lo, idx], s[hi, idx]
    return a + (b - a) * frac


def _percentile(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    s, n = _sorted(x, w)
    ok = n > 0
    qs = r.params.get("percentiles") if r.kind == "percentile" else [50]
    return [(np.where(ok, _quantile(s, n, float(p) / 100.0), 0.0), ok) for p in qs]


def _interval_mean(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    """Mean of the values whose percentile lies in [min, max]: values v with
    q(min) <= v <= q(max) (q as :func:`_quantile`; [silent] on inclusivity: both bounds in)."""
    s, n = _sorted(x, w)
    ok = n > 0
    lo = _quantile(s, n, float(r.params["minPercentile"]) / 100.0)
    hi = _quantile(s, n, float(r.params["maxPercentile"]) / 100.0)
    inside = (s >= lo[None]) & (s <= hi[None])
    cnt = inside.sum(axis=0)
    mean = np.where(inside, s, 0.0).sum(axis=0) / np.maximum(cnt, 1)
    return [(np.where(ok & (cnt > 0), mean, 0.0), ok & (cnt > 0))]


def _solve(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched least-squares normal equations; [silent] Earth Engine's solver is unpublished:
    a ridge of 1e-10 x mean diagonal keeps rank-deficient systems solvable."""
    k = G.shape[-1]
    lam = 1e-10 * np.trace(G, axis1=-2, axis2=-1) / k
    lam = np.where(lam > 0, lam, 1.0)  # empty systems (outputs null anyway) stay solvable
    G = G + lam[..., None, None] * np.eye(k)
    try:
        return np.linalg.solve(G, b)
    except np.linalg.LinAlgError:
        return np.einsum("pij,pjk->pik", np.linalg.pinv(G), b)


def _regression(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    """Least squares (``linearRegression``) or IRLS with Talwar weights (``robust...``).

    IRLS ([silent]: Earth Engine names the method and the Talwar cost, not the tuning): start
    from the least-squares fit; residuals r; scale s = median(|r|) / 0.6745 over the samples
    (the MAD about zero); weights 1 where |r| <= beta and 0 elsewhere, with beta = 2.795 s (the
    usual Talwar constant) unless ``beta`` is given; refit; stop when the weights stop changing
    or after 10 refits. Outputs are null when there are fewer samples than ``numX`` (robust;
    documented) or no more than ``numX`` (least squares, documented)."""
    nx = int(r.params["numX"])
    ny = r.n_inputs - nx
    valid = (w > 0) & np.isfinite(x).all(axis=2)
    X = np.where(valid[..., None], x[..., :nx], 0.0).transpose(1, 0, 2)  # (P, n, nx)
    Y = np.where(valid[..., None], x[..., nx:], 0.0).transpose(1, 0, 2)  # (P, n, ny)
    W = np.where(valid, w, 0.0).T  # (P, n)
    n = valid.sum(axis=0)
    ok = n >= nx if r.kind == "robustLinearRegression" else n > nx

    def fit(wts: np.ndarray) -> np.ndarray:
        Xw = X * wts[..., None]
        return _solve(np.einsum("pni,pnj->pij", Xw, X), np.einsum("pni,pnj->pij", Xw, Y))

    beta = fit(W)
    if r.kind == "robustLinearRegression":
        given = r.params.get("beta")
        keep = W > 0
        for _ in range(10):
            res = np.abs(Y - np.einsum("pni,pij->pnj", X, beta))[..., 0]
            a = np.where(W > 0, res, np.nan)
            with np.errstate(all="ignore"):
                s = np.nanmedian(np.where(ok[:, None], a, 0.0), axis=1) / 0.6745
            thr = np.full(len(W), float(given)) if given is not None else 2.795 * s
            new = (W > 0) & (res <= thr[:, None])
            # a weight set too small to solve keeps the previous fit ([silent])
            new = np.where((new.sum(axis=1) >= nx)[:, None], new, keep)
            if np.array_equal(new, keep):
                break
            keep = new
            beta = fit(np.where(keep, W, 0.0))
    resid = Y - np.einsum("pni,pij->pnj", X, beta)
    rms = np.sqrt((np.where(valid.T[..., None], resid, 0.0) ** 2).sum(axis=1) / np.maximum(n, 1)[:, None])
    return [(beta, ok), (rms, ok)]


def _centered_covariance(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    """Sum of outer products / (n - 1): the documented reducer assumes mean-centred input and
    does not centre it ([silent] on the denominator: the sample covariance's n - 1)."""
    m = (w > 0).astype(np.float64)
    xx = np.where(m[..., None] > 0, x, 0.0)
    n = m.sum(axis=0)
    S = np.einsum("npi,npj->pij", xx, xx)
    ok = n > 1
    return [(S / np.maximum(n - 1, 1)[:, None, None], ok)]


_KERNELS = {"count": _count, "sum": _sum, "mean": _mean, "min": _minmax, "max": _minmax,
            "median": _percentile, "percentile": _percentile, "intervalMean": _interval_mean,
            "linearRegression": _regression, "robustLinearRegression": _regression,
            "centeredCovariance": _centered_covariance}
