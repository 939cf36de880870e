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


TALWAR_C = 2.795  # the usual Talwar tuning constant (95 % efficiency at the Gaussian)
RIDGE = 1e-6  # relative ridge on the slopes (standardised units)
SCALE_FLOOR_REL = 1e-6
ZERO_VAR_REL = 2.0 ** -20
MAX_REFITS = 10


def _regression(r: Reducer, x: np.ndarray, w: np.ndarray) -> list[Out]:
    """``linearRegression`` (least squares) or ``robustLinearRegression`` (IRLS, Talwar cost).

    Documented: inputs are numX independent then numY dependent values; outputs the (numX, numY)
    coefficients and the residuals' RMS per dependent variable; null when underdetermined (fewer
    samples than numX for the robust reducer, no more than numX for least squares).

    [silent] Earth Engine publishes neither the IRLS's scale estimate, tuning, iteration rule
    nor how its solver treats (near-)collinear inputs. The stand-in makes the choices of the
    engine's local backend (``engine/science/regression.py``), so that a gee run and a local run
    differ only where the expressions differ, never by two unpublished estimators; on the real
    service, pixels whose inputs are near-collinear may get other coefficients. The choices: a
    column equal to 1 on every usable sample is the intercept (unpenalised, the others shifted
    by their first usable value); every other column gets a ridge of ``RIDGE x kept samples x
    its variance``, and a column with no variance gets coefficient 0; start from the fit on all
    samples; residuals r; scale s = median(|r|) / 0.6745 over all usable samples (floored at
    ``SCALE_FLOOR_REL x (|mean y| + sd y)``); weights 1 where |r| <= ``TALWAR_C`` s (or
    ``beta`` when given) and 0 elsewhere; refit; stop when the weights stop changing, when fewer
    than numX + 1 samples would remain (the current fit stays), or after ``MAX_REFITS`` refits.
    Every unmasked sample has weight 1 (fractional mask weights are not applied)."""
    nx = int(r.params["numX"])
    valid = (w > 0) & np.isfinite(x).all(axis=2)
    X = np.where(valid[..., None], x[..., :nx], 0.0).transpose(1, 0, 2)  # (P, n, nx)
    Y = np.where(valid[..., None], x[..., nx:], 0.0).transpose(1, 0, 2)  # (P, n, ny)
    V = valid.T  # (P, n)
    n = V.sum(axis=1)
    if r.kind == "linearRegression":
        Xw = X * np.where(V, w.T, 0.0)[..., None]
        beta = _solve(np.einsum("pni,pnj->pij", Xw, X), np.einsum("pni,pnj->pij", Xw, Y))
        ok = n > nx
    else:
        beta = _robust(X, Y, V, r.params.get("beta"))
        ok = n >= nx
    resid = Y - np.einsum("pni,pij->pnj", X, beta)
    rms = np.sqrt((np.where(V[..., None], resid, 0.0) ** 2).sum(axis=1) / np.maximum(n, 1)[:, None])
    return [(beta, ok), (rms, ok)]


def _robust(X: np.ndarray, Y: np.ndarray, V: np.ndarray, beta_margin: Any) -> np.ndarray:
    """IRLS with Talwar weights per pixel (see :func:`_regression`); (P, nx, ny) coefficients."""
    P, _, nx = X.shape
    n = V.sum(axis=1)
    first = np.argmax(V, axis=1)
    rows = np.arange(P)
    intercept = np.where(V[..., None], X == 1.0, True).all(axis=1) & (n > 0)[:, None]
    icol = np.where(intercept.any(axis=1), np.argmax(intercept, axis=1), -1)
    has_int = icol >= 0
    slope = ~(np.arange(nx)[None, :] == icol[:, None])  # (P, nx)
    x0 = np.where(has_int[:, None] & slope, X[rows, first], 0.0)
    y0 = np.where(has_int[:, None], Y[rows, first], 0.0)
    Z = np.where(V[..., None], X - x0[:, None, :], 0.0)
    Zy = np.where(V[..., None], Y - y0[:, None, :], 0.0)
    nn = np.maximum(n, 1)[:, None]
    mean = Z.sum(axis=1) / nn
    var = np.maximum((Z ** 2).sum(axis=1) / nn - mean ** 2, 0.0)
    rms_x = np.sqrt((np.where(V[..., None], X, 0.0) ** 2).sum(axis=1) / nn)
    tol = ZERO_VAR_REL * np.maximum(np.abs(X[rows, first]), rms_x)
    zero = slope & (var <= tol ** 2)
    ym = Zy[..., 0].sum(axis=1) / nn[:, 0]
    ysd = np.sqrt(np.maximum((Zy[..., 0] ** 2).sum(axis=1) / nn[:, 0] - ym ** 2, 0.0))
    floor = np.maximum(SCALE_FLOOR_REL * (np.abs(ym + y0[:, 0]) + ysd), 1e-300)

    def fit(keep: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
        Zw = Z * keep[..., None]
        G = np.einsum("pni,pnj->pij", Zw, Z)
        b = np.einsum("pni,pnj->pij", Zw, Zy)
        lam = ridge * keep.sum(axis=1)[:, None] * var * (slope & ~zero)
        G = G + lam[..., None] * np.eye(nx)
        G = np.where(zero[:, :, None] | zero[:, None, :], 0.0, G) + zero[..., None] * np.eye(nx)
        b = np.where(zero[..., None], 0.0, b)
        coef = np.zeros((P, nx, Y.shape[2]))
        solved = np.zeros(P, bool)
        for attempt in range(4):  # a failing pivot raises the ridge 1000-fold, up to three times
            todo = ~solved
            if not todo.any():
                break
            Gi = G[todo] if attempt == 0 else G[todo] + (1000.0 ** attempt - 1) * lam[todo][..., None] * np.eye(nx)
            try:
                c = np.linalg.solve(Gi, b[todo])
                good = np.isfinite(c).all(axis=(1, 2))
            except np.linalg.LinAlgError:
                c = np.einsum("pij,pjk->pik", np.linalg.pinv(Gi), b[todo])
                good = np.isfinite(c).all(axis=(1, 2))
            idx = np.flatnonzero(todo)[good]
            coef[idx] = c[good]
            solved[idx] = True
        return coef, solved

    keep = V.copy()
    coef, solved = fit(keep)
    active = solved & (n >= nx + 1)
    for _ in range(MAX_REFITS):
        if not active.any():
            break
        res = np.abs(Zy[..., 0] - np.einsum("pni,pi->pn", Z, coef[..., 0]))
        s = np.nanmedian(np.where(V, res, np.nan), axis=1) / 0.6744897501960817
        thr = np.full(P, float(beta_margin)) if beta_margin is not None else TALWAR_C * np.maximum(s, floor)
        new = V & (res <= thr[:, None])
        changed = (new != keep).any(axis=1)
        active &= changed & (new.sum(axis=1) >= nx + 1)
        if not active.any():
            break
        keep = np.where(active[:, None], new, keep)
        refit, ok = fit(keep)
        upd = active & ok
        coef = np.where(upd[:, None, None], refit, coef)
        active &= ok
    # back to the inputs' units: the intercept absorbs the shifts
    out = coef.copy()
    shift = np.einsum("pi,pik->pk", np.where(slope, x0, 0.0), coef)
    out[rows[has_int], icol[has_int]] = (coef[rows, np.maximum(icol, 0)] + y0 - shift)[has_int]
    return out


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
