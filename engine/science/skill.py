"""Held-out skill and optical-only baselines (algorithm.md, end of Job 2).

The SAR prediction is scored on held-out pixels (``Validation`` images on ``Mask == 2``
pixels, ``Testing`` images on clear pixels) next to two optical-only gap fillers that see only
the usable (clear, not hidden) observations, on the same pixels, stratified by the length of the
gap the scored date sits in.

Baselines (all on ``(T, P)`` series, ``days`` = integer days of the T dates, strictly
increasing):

* :func:`linear_interp_baseline` - per pixel, linear interpolation in time between usable
  observations; constant (nearest) extrapolation before the first / after the last; NaN for a
  pixel without usable observations.
* :func:`whittaker_baseline` - weighted Whittaker smoother (Eilers 2003) with second-order
  *divided* differences for the uneven spacing, weights 1 on usable observations and 0
  elsewhere. **Lambda units: days.** The penalty is
  ``lam * sum_i (2 f[t_i, t_i+1, t_i+2])**2 * (t_i+2 - t_i) / 2``, where ``f[...]`` is the
  second divided difference (``z'' / 2``), i.e. a discretisation of ``lam * integral z''(t)**2 dt``
  with t in days. On a daily series it equals the classical per-step penalty
  ``lam * sum (Delta^2 z)**2``; on a uniform step of h days it equals the per-step penalty with
  ``lam / h**3``. So ``lam = 1e4`` is the "daily-grid" Whittaker lambda of 1e4 (smoothing length
  ``~ (lam * h)**(1/4)`` days for observations every h days), independent of how many dates
  the series has. Straight lines are reproduced exactly. NaN where a pixel has fewer than 2
  usable observations.

Gap length (:func:`gap_length`): for date t, next usable day after t minus previous usable day
before t (t itself excluded), ``inf`` when the gap is open on either side.

Skill (:class:`SkillAccumulator`): decomposable sums per (method, stratum) - count, sum(err),
sum|err|, sum(err^2), sum(y), sum(y^2) with ``err = pred - y`` (y = truth or the held-out
observation) - so per-tile accumulators combine exactly by addition; :meth:`SkillAccumulator.table`
turns them into MAE, RMSE, bias and R^2 (``1 - SSE/SST``).

Strata (:data:`GAP_STRATA`): half-open ``[lo, hi)`` day ranges over *finite* gap lengths;
open-ended gaps (leading/trailing, ``inf``) go to a separate ``"open"`` stratum, and ``"all"``
takes everything, so the five strata partition ``"all"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numba
import numpy as np
import pandas as pd

__all__ = [
    "GAP_STRATA",
    "STRATUM_LABELS",
    "METHODS",
    "WHITTAKER_LAMBDA",
    "linear_interp_baseline",
    "whittaker_baseline",
    "gap_length",
    "SkillAccumulator",
]

#: Gap-length strata in days, half-open [lo, hi) over finite gap lengths.
GAP_STRATA: tuple[tuple[float, float], ...] = ((0, 16), (16, 32), (32, 64), (64, math.inf))
#: Labels of the strata (GAP_STRATA order), then open-ended gaps, then everything.
STRATUM_LABELS: tuple[str, ...] = ("<16 d", "16-32 d", "32-64 d", ">=64 d", "open", "all")
#: The methods the engine scores, in table order (others are accepted and listed after).
METHODS: tuple[str, ...] = ("sar", "linear", "whittaker")
WHITTAKER_LAMBDA = 1e4

_FIELDS = ("sum_err", "sum_abs_err", "sum_sq_err", "sum_y", "sum_y2")


def _check(obs: np.ndarray, usable: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(obs)
    usable = np.asarray(usable, dtype=bool)
    days = np.asarray(days)
    if obs.ndim != 2 or usable.shape != obs.shape:
        raise ValueError(f"obs {obs.shape} and usable {usable.shape} must both be (T, P)")
    if days.shape != (obs.shape[0],):
        raise ValueError(f"days must have shape (T,) = ({obs.shape[0]},), got {days.shape}")
    d = days.astype(np.float64)
    if d.size > 1 and not np.all(np.diff(d) > 0):
        raise ValueError("days must be strictly increasing (one daily composite per date)")
    return obs, usable, d


def _out_dtype(obs: np.ndarray):
    return np.result_type(obs.dtype, np.float32) if obs.dtype.kind == "f" else np.float64


# --------------------------------------------------------------------------------------------
# linear interpolation
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def _linear_kernel(obs, usable, days, out):
    T, P = obs.shape
    for p in range(P):
        prev = -1
        first = True
        for t in range(T):
            v = obs[t, p]
            if not (usable[t, p] and np.isfinite(v)):
                continue
            if first:  # constant extrapolation before the first usable observation
                for s in range(t):
                    out[s, p] = v
                first = False
            else:
                v0 = np.float64(obs[prev, p])
                d0 = days[prev]
                slope = (np.float64(v) - v0) / (days[t] - d0)
                for s in range(prev + 1, t):
                    out[s, p] = v0 + slope * (days[s] - d0)
            out[t, p] = v
            prev = t
        if first:
            for s in range(T):
                out[s, p] = np.nan
        else:
            v = obs[prev, p]
            for s in range(prev + 1, T):
                out[s, p] = v


def linear_interp_baseline(obs: np.ndarray, usable: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Per-pixel linear interpolation in time between usable observations.

    obs (T, P), usable (T, P) bool, days (T,) -> (T, P) (float32 for float32 input). Constant
    extrapolation before the first / after the last usable observation; NaN for pixels with no
    usable observation. Non-finite observations are treated as not usable.
    """
    obs, usable, d = _check(obs, usable, days)
    out = np.empty_like(obs, dtype=_out_dtype(obs))  # the input's layout (pixel-major reads)
    if obs.size:
        _linear_kernel(obs, usable, d, out)
    return out


# --------------------------------------------------------------------------------------------
# Whittaker smoother
# --------------------------------------------------------------------------------------------
def _penalty_bands(days: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bands (diagonal, first and second super-diagonal) of lam * D^T V D for the divided-
    difference penalty described in the module docstring."""
    T = days.size
    a0 = np.zeros(T)
    a1 = np.zeros(max(T - 1, 0))
    a2 = np.zeros(max(T - 2, 0))
    if T >= 3:
        h = np.diff(days)
        h0, h1 = h[:-1], h[1:]
        H = h0 + h1
        # 2 f[t_i, t_i+1, t_i+2] = (g . z) * 2 / H with g below; weighted by H / 2 and lam, row i
        # of the penalty contributes v_i (g . z)**2 with v_i = lam * (2 / H)**2 * H / 2 = 2 lam / H
        g = (1.0 / h0, -(1.0 / h0 + 1.0 / h1), 1.0 / h1)
        v = 2.0 * lam / H
        i = np.arange(T - 2)
        np.add.at(a0, i, v * g[0] ** 2)
        np.add.at(a0, i + 1, v * g[1] ** 2)
        np.add.at(a0, i + 2, v * g[2] ** 2)
        np.add.at(a1, i, v * g[0] * g[1])
        np.add.at(a1, i + 1, v * g[1] * g[2])
        a2 += v * g[0] * g[2]
    return a0, a1, a2


@numba.njit(cache=True, error_model="numpy")
def _whittaker_kernel(obs, usable, a0, a1, a2, out):
    T, P = obs.shape
    d = np.empty(T)
    l1 = np.zeros(T)
    l2 = np.zeros(T)
    u = np.empty(T)
    for p in range(P):
        n = 0
        for t in range(T):
            if usable[t, p] and np.isfinite(obs[t, p]):
                n += 1
        if n < 2:
            for t in range(T):
                out[t, p] = np.nan
            continue
        ok = True
        # banded LDL^T of A = diag(w) + penalty; L[i+1, i] = l1[i], L[i+2, i] = l2[i]
        for i in range(T):
            v = obs[i, p]
            wi = 1.0 if (usable[i, p] and np.isfinite(v)) else 0.0
            di = a0[i] + wi
            if i >= 1:
                di -= l1[i - 1] * l1[i - 1] * d[i - 1]
            if i >= 2:
                di -= l2[i - 2] * l2[i - 2] * d[i - 2]
            if not (di > 0.0):
                ok = False
                break
            d[i] = di
            if i + 1 < T:
                s = a1[i]
                if i >= 1:
                    s -= l2[i - 1] * l1[i - 1] * d[i - 1]
                l1[i] = s / di
            if i + 2 < T:
                l2[i] = a2[i] / di
            # forward substitution on the fly: u = L^-1 (w y)
            r = wi * v if wi > 0.0 else 0.0
            if i >= 1:
                r -= l1[i - 1] * u[i - 1]
            if i >= 2:
                r -= l2[i - 2] * u[i - 2]
            u[i] = r
        if not ok:
            for t in range(T):
                out[t, p] = np.nan
            continue
        for i in range(T):
            u[i] /= d[i]
        for i in range(T - 1, -1, -1):
            z = u[i]
            if i + 1 < T:
                z -= l1[i] * u[i + 1]
            if i + 2 < T:
                z -= l2[i] * u[i + 2]
            u[i] = z
            out[i, p] = z


def whittaker_baseline(
    obs: np.ndarray, usable: np.ndarray, days: np.ndarray, lam: float = WHITTAKER_LAMBDA
) -> np.ndarray:
    """Weighted Whittaker smoother with divided second differences (lambda in days, see the
    module docstring), weights 1 on usable observations and 0 elsewhere.

    obs (T, P), usable (T, P) bool, days (T,) -> (T, P) (float32 for float32 input); NaN for
    pixels with fewer than 2 usable observations. Non-finite observations are not usable.
    """
    if not (lam >= 0 and np.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    obs, usable, d = _check(obs, usable, days)
    out = np.empty_like(obs, dtype=_out_dtype(obs))  # the input's layout (pixel-major reads)
    if obs.size:
        a0, a1, a2 = _penalty_bands(d, float(lam))
        _whittaker_kernel(obs, usable, a0, a1, a2, out)
    return out


# --------------------------------------------------------------------------------------------
# gap length
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def _gap_kernel(usable, days, out):
    T, P = usable.shape
    inf = np.inf
    for p in range(P):
        prev = -inf
        for t in range(T):  # out <- previous usable day strictly before t
            out[t, p] = prev
            if usable[t, p]:
                prev = days[t]
        nxt = inf
        for t in range(T - 1, -1, -1):
            pv = out[t, p]
            out[t, p] = nxt - pv if (nxt < inf and pv > -inf) else inf
            if usable[t, p]:
                nxt = days[t]


def gap_length(usable: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Length in days of the gap each (date, pixel) sits in: next usable day after t minus the
    previous usable day before t (t itself excluded); ``inf`` if open on either side.

    usable (T, P) bool, days (T,) -> float32 (T, P) (integer-valued, exact).
    """
    usable = np.asarray(usable, dtype=bool)
    if usable.ndim != 2:
        raise ValueError(f"usable must be (T, P), got {usable.shape}")
    _, _, d = _check(np.zeros(usable.shape, np.float32), usable, days)
    out = np.empty_like(usable, dtype=np.float32)  # the input's layout (pixel-major reads)
    if usable.size:
        _gap_kernel(usable, d, out)
    return out


# --------------------------------------------------------------------------------------------
# skill accumulator
# --------------------------------------------------------------------------------------------
_EDGES = np.array([hi for _, hi in GAP_STRATA[:-1]], dtype=np.float64)


@numba.njit(cache=True, error_model="numpy")
def _add_point(p, y, g, edges, n, s):
    """One point into counts ``n`` and float64 sums ``s`` (err, |err|, err^2, y, y^2): its stratum's
    row (finite gaps by ``edges`` into GAP_STRATA, infinite ones "open", NaN ones none) and the last."""
    last = n.shape[0] - 1
    e = p - y
    n[last] += 1
    k = -1
    if np.isinf(g):
        k = edges.size + 1
    elif not np.isnan(g):
        k = 0
        while k < edges.size and edges[k] <= g:
            k += 1
    if k >= 0:
        n[k] += 1
    for row in (k, last):
        if row >= 0:
            s[row, 0] += e
            s[row, 1] += abs(e)
            s[row, 2] += e * e
            s[row, 3] += y
            s[row, 4] += y * y


@numba.njit(cache=True, error_model="numpy")
def _accumulate(pred, obs, gap, where, edges, n, s):
    """Add the (T, P) points where ``where`` holds and pred, obs are finite, in C order (t, then p)
    whatever the arrays' layouts: the order in which numpy gathers ``a[where]``."""
    T, P = pred.shape
    for t in range(T):
        for i in range(P):
            if where[t, i]:
                p = np.float64(pred[t, i])
                y = np.float64(obs[t, i])
                if np.isfinite(p) and np.isfinite(y):
                    _add_point(p, y, np.float64(gap[t, i]), edges, n, s)


def _as_2d(a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` broadcast to ``shape`` as a 2-D array in the same C order (a view where possible)."""
    b = np.broadcast_to(np.asarray(a), shape)
    return b if b.ndim == 2 else b.reshape(-1, shape[-1]) if b.ndim > 2 else b.reshape(1, -1)


class SkillAccumulator:
    """Decomposable skill sums per (method, stratum); exact combination by addition.

    ``acc.add(method, pred, y, gap_len, where)`` adds the points where ``where`` holds and
    both ``pred`` and ``y`` are finite (pass the same ``where``, ANDed with every method's
    finiteness, to score all methods on identical pixels). Sums are float64; counts int64.
    """

    def __init__(self) -> None:
        self._n: dict[str, np.ndarray] = {}
        self._s: dict[str, np.ndarray] = {}

    # -- accumulation ------------------------------------------------------------------------
    def _slot(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(method, str) or not method:
            raise ValueError(f"method must be a non-empty string, got {method!r}")
        if method not in self._n:
            self._n[method] = np.zeros(len(STRATUM_LABELS), dtype=np.int64)
            self._s[method] = np.zeros((len(STRATUM_LABELS), len(_FIELDS)), dtype=np.float64)
        return self._n[method], self._s[method]

    def add(
        self, method: str, pred: np.ndarray, obs: np.ndarray, gap_len: np.ndarray, where: np.ndarray | None = None
    ) -> SkillAccumulator:
        shape = np.broadcast_shapes(
            np.shape(pred), np.shape(obs), np.shape(gap_len), np.shape(where) if where is not None else ()
        )
        p2, y2, g2 = (_as_2d(a, shape) for a in (pred, obs, gap_len))
        w = _as_2d(np.asarray(True if where is None else where, dtype=bool), shape)
        n, s = self._slot(method)
        # one pass in C order, without copies, into fresh sums added to the slot's as np.bincount's
        # were (per-stratum sums bit for bit the same); the "all" row is a running sum where numpy
        # summed the gathered values pairwise (the same to rounding, ~1e-16 relative)
        n_add, s_add = np.zeros_like(n), np.zeros_like(s)
        _accumulate(p2, y2, g2, w, _EDGES, n_add, s_add)
        n += n_add
        s += s_add
        return self

    # -- combination -------------------------------------------------------------------------
    def merge(self, other: SkillAccumulator) -> SkillAccumulator:
        """A new accumulator holding the sums of both."""
        if not isinstance(other, SkillAccumulator):
            raise TypeError(f"cannot merge SkillAccumulator with {type(other).__name__}")
        out = SkillAccumulator()
        for acc in (self, other):
            for m in acc._n:
                n, s = out._slot(m)
                n += acc._n[m]
                s += acc._s[m]
        return out

    def __add__(self, other: SkillAccumulator) -> SkillAccumulator:
        return self.merge(other)

    def __radd__(self, other):  # sum([...]) starts from 0
        if other == 0:
            return self.merge(SkillAccumulator())
        return NotImplemented

    @property
    def methods(self) -> list[str]:
        known = [m for m in METHODS if m in self._n]
        return known + sorted(m for m in self._n if m not in METHODS)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (plain lists of ints / floats)."""
        return {
            "strata": list(STRATUM_LABELS),
            "methods": {
                m: {"n": self._n[m].tolist(), **{f: self._s[m][:, i].tolist() for i, f in enumerate(_FIELDS)}}
                for m in self.methods
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SkillAccumulator:
        strata = tuple(d.get("strata", ()))
        if strata != STRATUM_LABELS:
            raise ValueError(f"skill sums have strata {strata}, expected {STRATUM_LABELS}")
        acc = cls()
        for m, sums in d.get("methods", {}).items():
            n, s = acc._slot(m)
            n[:] = np.asarray(sums["n"], dtype=np.int64)
            for i, f in enumerate(_FIELDS):
                s[:, i] = np.asarray(sums[f], dtype=np.float64)
        return acc

    # -- metrics -----------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """One row per (method, stratum): n, MAE, RMSE, bias, R2 (NaN where undefined)."""
        rows = []
        for m in self.methods:
            for j, label in enumerate(STRATUM_LABELS):
                rows.append(
                    {"method": m, "stratum": label, "n": int(self._n[m][j]), **_metrics(self._n[m][j], self._s[m][j])}
                )
        cols = ["method", "stratum", "n", "MAE", "RMSE", "bias", "R2"]
        return pd.DataFrame(rows, columns=cols).astype({"n": "int64"})

    def __repr__(self) -> str:
        return f"SkillAccumulator(methods={self.methods}, n_all={[int(self._n[m][-1]) for m in self.methods]})"


def _metrics(n: int, s: Iterable[float]) -> dict[str, float]:
    sum_err, sum_abs, sum_sq, sum_y, sum_y2 = (float(v) for v in s)
    nan = float("nan")
    if n <= 0:
        return {"MAE": nan, "RMSE": nan, "bias": nan, "R2": nan}
    sst = sum_y2 - sum_y * sum_y / n
    # SST at the rounding level of sum(y^2) is a constant y: R2 undefined
    r2 = nan if (n < 2 or not sst > 1e-12 * max(sum_y2, 1e-300)) else 1.0 - sum_sq / sst
    return {"MAE": sum_abs / n, "RMSE": math.sqrt(max(sum_sq, 0.0) / n), "bias": sum_err / n, "R2": r2}
