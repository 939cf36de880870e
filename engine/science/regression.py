"""Per-pixel robust multiple linear regression (algorithm.md, Job 2, steps 6 and 7).

For every pixel the model is ``NDVI(t) ~ b0 + sum_k b_k * cov_k(t)`` over the training dates,
fitted by iteratively reweighted least squares (IRLS) with the **Talwar** cost, which is the
documented choice of ``ee.Reducer.robustLinearRegression``. The 9 coefficients per pixel are the
model (:data:`COEF_BANDS`). Earth Engine publishes neither its tuning constant, its scale
estimate nor its iteration rule, so this module fixes them as follows.

Choices (the module constants)
------------------------------
* **Cost / weights.** Talwar: weight 1 if ``|r| <= c * s`` else 0, with ``c = TALWAR_C = 2.795``
  (the usual Talwar constant, 95 % Gaussian efficiency).
* **Scale** ``s``: ``median(|r|) / 0.6745`` over *all* usable observations (rejected ones
  included) of the current fit's residuals, i.e. the MAD about zero, which is the right centre
  for residuals of a fit with an intercept. It is floored at
  ``SCALE_FLOOR_REL * (|mean y| + sd y)`` (over the usable observations) so that an exact fit
  never rejects points on rounding noise.
* **Iterations.** Start from the (ridge-stabilised) least-squares fit on all usable observations;
  then repeat: residuals -> scale -> weights -> refit. Stop as soon as the weight set no longer
  changes (Talwar weights are 0/1, so this is exact convergence), after ``max_iter``
  (``MAX_ITER = 10``) refits, or - as a safeguard - when a new weight set would keep fewer than
  ``MIN_OBS`` observations (the previous fit is then kept). Since at least half the residuals
  are ``<= median(|r|) < c * s``, at least half the observations are always kept.
* **Rank-robust solve.** The 9 columns are (near-)collinear by construction
  (``VV_mean + VV_diff`` is the median-filtered VV exactly; ``VV_mean`` is the same number for
  every pixel of a date). Each pixel's columns are shifted by their first usable value (exact in
  float64, so a column that is constant over the pixel's usable dates becomes exactly zero) and
  a ridge ``RIDGE * n_w * var_k`` is added to the diagonal of each slope column ``k``, where
  ``var_k`` is the column's variance over the pixel's usable observations and ``n_w`` the number
  of observations currently kept. In standardised units that is a ridge of ``RIDGE`` (1e-6)
  relative to the Gram diagonal (= trace / 9); the intercept is not penalised, so the fit is
  invariant to column shifts. Columns with zero variance (standard deviation below
  ``2**-20 * max(|x0|, rms)``, i.e. float32 resolution) get coefficient 0. The 9 x 9 system is
  solved by Cholesky in float64. The ridge makes the solution unique (the minimum-norm
  solution in standardised units, up to O(RIDGE)), so predictions are stable even when the
  least-squares coefficients are not unique; if a Cholesky pivot still fails (it should not),
  the ridge is raised 1000-fold, up to three times, before the pixel is masked.
* **Masking.** Pixels with fewer than ``MIN_OBS = numX + 1 = 10`` usable observations
  (``train`` and finite ``y`` and all 8 covariates finite) get NaN in all 9 bands.

Speed: the kernel (numba) gathers a pixel's usable observations into a contiguous float64
buffer, forms the 10 x 10 augmented Gram ``[1, X, y]^T [1, X, y]`` once, and then - because the
weights are 0/1 - down-dates / up-dates it with the outer products of only those observations
whose weight changed, instead of recomputing it each iteration. The median uses an in-place
quickselect; nothing is allocated inside the pixel loop.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

__all__ = [
    "COEF_BANDS",
    "COV_BANDS",
    "NUM_COV",
    "NUM_X",
    "MIN_OBS",
    "TALWAR_C",
    "MAX_ITER",
    "RIDGE",
    "SCALE_FLOOR_REL",
    "robust_fit",
    "predict",
]

#: Covariate order of the ``covariates`` array (axis 0).
COV_BANDS: tuple[str, ...] = (
    "VV_mean",
    "VH_mean",
    "VV_diff",
    "VH_diff",
    "VV_Nmean",
    "VH_Nmean",
    "VV_Ndiff",
    "VH_Ndiff",
)
#: Band order of the model image (the coefficients).
COEF_BANDS: tuple[str, ...] = ("constant",) + COV_BANDS

NUM_COV = len(COV_BANDS)  # 8
NUM_X = NUM_COV + 1  # 9, as in robustLinearRegression(numX=9, numY=1)
MIN_OBS = NUM_X + 1  # 10: fewer usable observations -> masked

TALWAR_C = 2.795
MAX_ITER = 10
RIDGE = 1e-6
SCALE_FLOOR_REL = 1e-6
MAD_TO_SIGMA = 1.0 / 0.6744897501960817
ZERO_VAR_REL = 2.0 ** -20

# fastmath without 'nnan'/'ninf': the kernels test finiteness explicitly.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_NG = NUM_X + 1  # augmented Gram size: intercept, 8 covariates, y
_B = 8  # pixels per SIMD block (lanes)
_CHUNK = 2048  # pixels per work item (buffers are allocated once per chunk); multiple of _B


# --------------------------------------------------------------------------------------------
# numba kernels
#
# The fit kernel works on blocks of _B pixels with the pixel index innermost, so every step
# (Gram, Cholesky, residuals, the median's sorting network) is a loop over _B independent lanes
# that LLVM vectorises. Lanes never interact: a pixel's result does not depend on which block
# (tile, chunk) it is processed in, or on the other pixels of its block.
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _sorting_network(n: int) -> np.ndarray:
    """Batcher's merge-exchange sorting network for n keys (Knuth, TAOCP 5.2.2, Algorithm M),
    as an (m, 2) int64 array of compare-exchange pairs (i < j)."""
    pairs = []
    if n > 1:
        t = int(np.ceil(np.log2(n)))
        p = 1 << (t - 1)
        while p > 0:
            q = 1 << (t - 1)
            r = 0
            d = p
            while True:
                for i in range(n - d):
                    if (i & p) == r:
                        pairs.append((i, i + d))
                if q == p:
                    break
                d = q - p
                q >>= 1
                r = p
            p >>= 1
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _solve1(G, var, zero, n_w, ridge, A, b):
    """Scalar ridge-stabilised Cholesky solve of the 9x9 normal equations in G[0:9, 0:10]
    (fallback for the rare pixel whose vectorised solve hit a non-positive pivot).
    Writes the coefficients into b; returns False if a pivot failed."""
    nx = _NG - 1
    for i in range(nx):
        for j in range(i, nx):
            A[i, j] = G[i, j]
        b[i] = G[i, nx]
    for k in range(1, nx):
        if zero[k]:
            for j in range(nx):
                if j >= k:
                    A[k, j] = 0.0
                else:
                    A[j, k] = 0.0
            A[k, k] = 1.0
            b[k] = 0.0
        else:
            A[k, k] += ridge * n_w * var[k]
    for i in range(nx):
        s = A[i, i]
        for k in range(i):
            s -= A[k, i] * A[k, i]
        if not (s > 0.0):
            return False
        d = np.sqrt(s)
        A[i, i] = d
        for j in range(i + 1, nx):
            s2 = A[i, j]
            for k in range(i):
                s2 -= A[k, i] * A[k, j]
            A[i, j] = s2 / d
    for i in range(nx):
        s = b[i]
        for k in range(i):
            s -= A[k, i] * b[k]
        b[i] = s / A[i, i]
    for i in range(nx - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, nx):
            s -= A[i, k] * b[k]
        b[i] = s / A[i, i]
    return True


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _solve1_escalating(G, var, zero, n_w, ridge, A, b):
    r = ridge if ridge > 0.0 else 1e-12
    for _ in range(3):
        r *= 1000.0
        if _solve1(G, var, zero, n_w, r, A, b):
            return True
    return False


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _solve_block(G, var, zero, n_w, ridge, A, b, ok, s, inv):
    """Vectorised (over the _B lanes) version of _solve1; ok[i] False where a pivot failed."""
    B = _B
    nx = _NG - 1
    for r in range(nx):
        for c in range(r, nx):
            for i in range(B):
                A[r, c, i] = G[r, c, i]
        for i in range(B):
            b[r, i] = G[r, nx, i]
    for k in range(1, nx):
        for c in range(nx):
            rr = min(k, c)
            cc = max(k, c)
            for i in range(B):
                if zero[k, i]:
                    A[rr, cc, i] = 0.0
        for i in range(B):
            if zero[k, i]:
                A[k, k, i] = 1.0
                b[k, i] = 0.0
            else:
                A[k, k, i] += ridge * n_w[i] * var[k, i]
    for i in range(B):
        ok[i] = True
    for r in range(nx):
        for i in range(B):
            s[i] = A[r, r, i]
        for k in range(r):
            for i in range(B):
                s[i] -= A[k, r, i] * A[k, r, i]
        for i in range(B):
            v = s[i]
            if not (v > 0.0):
                ok[i] = False
                v = 1.0
            d = np.sqrt(v)
            A[r, r, i] = d
            inv[i] = 1.0 / d
        for c in range(r + 1, nx):
            for i in range(B):
                s[i] = A[r, c, i]
            for k in range(r):
                for i in range(B):
                    s[i] -= A[k, r, i] * A[k, c, i]
            for i in range(B):
                A[r, c, i] = s[i] * inv[i]
    for r in range(nx):
        for k in range(r):
            for i in range(B):
                b[r, i] -= A[k, r, i] * b[k, i]
        for i in range(B):
            b[r, i] = b[r, i] / A[r, r, i]
    for r in range(nx - 1, -1, -1):
        for k in range(r + 1, nx):
            for i in range(B):
                b[r, i] -= A[r, k, i] * b[k, i]
        for i in range(B):
            b[r, i] = b[r, i] / A[r, r, i]


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _fit_range(cov, y, train, p0, p1, tuning, max_iter, ridge, pairs, out):
    """Fit pixels p0..p1-1 into out[:, p], _B pixels at a time. Buffers are allocated once."""
    T = y.shape[0]
    NC = cov.shape[0]
    B = _B
    NG = _NG
    NX = NG - 1
    iy = NG - 1
    inf = np.inf
    npairs = pairs.shape[0]
    # Z[0] = usable (0/1), Z[1..8] = shifted covariates, Z[9] = shifted y; zero where unusable
    Z = np.empty((NG, T, B))
    W = np.empty((T, B))  # current Talwar weights (0/1)
    R = np.empty((T, B))  # |residual|, +inf where unusable
    S = np.empty((T, B))  # sorting buffer
    D = np.empty((T, B))  # weight changes (-1, 0, +1)
    G = np.empty((NG, NG, B))  # upper triangle of the weighted augmented Gram
    A = np.empty((NX, NX, B))
    b = np.empty((NX, B))
    bn = np.empty((NX, B))
    x0 = np.empty((NG, B))
    var = np.empty((NX, B))
    zero = np.empty((NX, B), dtype=np.bool_)
    nobs = np.empty(B)
    n_w = np.empty(B)
    floor = np.empty(B)
    thr = np.empty(B)
    cnt = np.empty(B)
    chg = np.empty(B)
    tmp1 = np.empty(B)
    tmp2 = np.empty(B)
    tf = np.empty(B, dtype=np.int64)
    active = np.empty(B, dtype=np.bool_)
    fitted = np.empty(B, dtype=np.bool_)
    ok = np.empty(B, dtype=np.bool_)
    G1 = np.empty((NG, NG))
    A1 = np.empty((NX, NX))
    b1 = np.empty(NX)
    v1 = np.empty(NX)
    z1 = np.empty(NX, dtype=np.bool_)

    for q0 in range(p0, p1, B):
        nb = min(B, p1 - q0)
        # ---- load a block; usable = train & finite(y) & all covariates finite
        for t in range(T):
            for i in range(B):
                Z[0, t, i] = 0.0
                Z[iy, t, i] = 0.0
            for i in range(nb):
                yv = np.float64(y[t, q0 + i])
                Z[iy, t, i] = yv
                Z[0, t, i] = 1.0 if (train[t, q0 + i] and abs(yv) < inf) else 0.0
            for k in range(NC):
                for i in range(B):
                    Z[k + 1, t, i] = 0.0
                for i in range(nb):
                    v = np.float64(cov[k, t, q0 + i])
                    Z[k + 1, t, i] = v
                    if not (abs(v) < inf):
                        Z[0, t, i] = 0.0
        for i in range(B):
            nobs[i] = 0.0
            tf[i] = -1
        for t in range(T):
            for i in range(B):
                nobs[i] += Z[0, t, i]
        for i in range(B):
            for t in range(T):
                if Z[0, t, i] > 0.0:
                    tf[i] = t
                    break
        any_fit = False
        for i in range(B):
            fitted[i] = nobs[i] >= MIN_OBS
            any_fit = any_fit or fitted[i]
        if not any_fit:
            for i in range(nb):
                for k in range(NX):
                    out[k, q0 + i] = np.nan
            continue
        # ---- shift each column by its first usable value (exact), zero the unusable entries
        for a in range(1, NG):
            for i in range(B):
                x0[a, i] = Z[a, tf[i], i] if tf[i] >= 0 else 0.0
            for t in range(T):
                for i in range(B):
                    Z[a, t, i] = (Z[a, t, i] - x0[a, i]) if Z[0, t, i] > 0.0 else 0.0
        # ---- Gram of all usable observations
        for a in range(NG):
            for c in range(a, NG):
                for i in range(B):
                    G[a, c, i] = 0.0
                for t in range(T):
                    for i in range(B):
                        G[a, c, i] += Z[a, t, i] * Z[c, t, i]
        # ---- column variances, zero-variance flags, scale floor
        for i in range(B):
            tmp1[i] = 1.0 / max(nobs[i], 1.0)
            zero[0, i] = False
            var[0, i] = 0.0
        for k in range(1, NX):
            for i in range(B):
                m = G[0, k, i] * tmp1[i]
                v = max(G[k, k, i] * tmp1[i] - m * m, 0.0)
                mag = max(abs(x0[k, i]), np.sqrt(G[k, k, i] * tmp1[i]))
                tol = ZERO_VAR_REL * mag
                zero[k, i] = v <= tol * tol
                var[k, i] = v
        for i in range(B):
            m = G[0, iy, i] * tmp1[i]
            v = max(G[iy, iy, i] * tmp1[i] - m * m, 0.0)
            floor[i] = max(SCALE_FLOOR_REL * (abs(m + x0[iy, i]) + np.sqrt(v)), 1e-300)
        # ---- initial (ridge) least squares on all usable observations
        for t in range(T):
            for i in range(B):
                W[t, i] = Z[0, t, i]
        for i in range(B):
            n_w[i] = nobs[i]
        _solve_block(G, var, zero, n_w, ridge, A, b, ok, tmp1, tmp2)
        for i in range(B):
            active[i] = fitted[i]
            if fitted[i] and not ok[i]:
                for a in range(NG):
                    for c in range(a, NG):
                        G1[a, c] = G[a, c, i]
                for k in range(NX):
                    v1[k] = var[k, i]
                    z1[k] = zero[k, i]
                if _solve1_escalating(G1, v1, z1, n_w[i], ridge, A1, b1):
                    for k in range(NX):
                        b[k, i] = b1[k]
                else:
                    fitted[i] = False
                    active[i] = False
        # ---- Talwar IRLS
        for it in range(max_iter):
            n_active = 0
            for i in range(B):
                n_active += active[i]
            if n_active == 0:
                break
            for t in range(T):
                for i in range(B):
                    R[t, i] = Z[iy, t, i] - b[0, i] * Z[0, t, i]
            for k in range(1, NX):
                for t in range(T):
                    for i in range(B):
                        R[t, i] -= b[k, i] * Z[k, t, i]
            for t in range(T):
                for i in range(B):
                    r = abs(R[t, i]) if Z[0, t, i] > 0.0 else inf
                    R[t, i] = r
                    S[t, i] = r
            # median of |r| over the usable observations: sort each lane (unusable = +inf last)
            for q in range(npairs):
                ia = pairs[q, 0]
                ib = pairs[q, 1]
                for i in range(B):
                    u = S[ia, i]
                    w = S[ib, i]
                    S[ia, i] = min(u, w)
                    S[ib, i] = max(u, w)
            for i in range(B):
                if active[i]:
                    n = np.int64(nobs[i])
                    med = 0.5 * (S[(n - 1) // 2, i] + S[n // 2, i])
                    thr[i] = tuning * max(med * MAD_TO_SIGMA, floor[i])
                else:
                    thr[i] = -1.0
                cnt[i] = 0.0
                chg[i] = 0.0
            for t in range(T):
                for i in range(B):
                    nwt = 1.0 if R[t, i] <= thr[i] else 0.0
                    d = nwt - W[t, i]
                    D[t, i] = d
                    cnt[i] += nwt
                    chg[i] += abs(d)
            n_active = 0
            for i in range(B):
                if active[i] and (chg[i] == 0.0 or cnt[i] < MIN_OBS):
                    active[i] = False
                n_active += active[i]
            if n_active == 0:
                break
            # down-date / up-date the Gram with the observations whose weight changed
            for t in range(T):
                anyd = False
                for i in range(B):
                    if not active[i]:
                        D[t, i] = 0.0
                    anyd = anyd or D[t, i] != 0.0
                if not anyd:
                    continue
                for i in range(B):
                    W[t, i] += D[t, i]
                for a in range(NG):
                    for i in range(B):
                        tmp1[i] = D[t, i] * Z[a, t, i]
                    for c in range(a, NG):
                        for i in range(B):
                            G[a, c, i] += tmp1[i] * Z[c, t, i]
            for i in range(B):
                if active[i]:
                    n_w[i] = cnt[i]
            _solve_block(G, var, zero, n_w, ridge, A, bn, ok, tmp1, tmp2)
            for i in range(B):
                if not active[i]:
                    continue
                if ok[i]:
                    for k in range(NX):
                        b[k, i] = bn[k, i]
                    continue
                for a in range(NG):
                    for c in range(a, NG):
                        G1[a, c] = G[a, c, i]
                for k in range(NX):
                    v1[k] = var[k, i]
                    z1[k] = zero[k, i]
                if _solve1_escalating(G1, v1, z1, n_w[i], ridge, A1, b1):
                    for k in range(NX):
                        b[k, i] = b1[k]
                else:  # keep the previous fit
                    active[i] = False
        # ---- back to original units: y = b0 + y0 + sum_k b_k (x_k - x0_k)
        for i in range(nb):
            p = q0 + i
            if not fitted[i]:
                for k in range(NX):
                    out[k, p] = np.nan
                continue
            c0 = b[0, i] + x0[iy, i]
            for k in range(1, NX):
                c0 -= b[k, i] * x0[k, i]
                out[k, p] = b[k, i]
            out[0, p] = c0


@numba.njit(cache=True)
def _fit_serial(cov, y, train, tuning, max_iter, ridge, pairs, out):
    P = y.shape[1]
    for p0 in range(0, P, _CHUNK):
        _fit_range(cov, y, train, p0, min(p0 + _CHUNK, P), tuning, max_iter, ridge, pairs, out)


@numba.njit(cache=True, parallel=True)
def _fit_parallel(cov, y, train, tuning, max_iter, ridge, pairs, out):
    P = y.shape[1]
    nchunk = (P + _CHUNK - 1) // _CHUNK
    for c in numba.prange(nchunk):
        p0 = c * _CHUNK
        _fit_range(cov, y, train, p0, min(p0 + _CHUNK, P), tuning, max_iter, ridge, pairs, out)


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _predict_range(cov, coef, p0, p1, out):
    nc, T, _ = cov.shape
    n = p1 - p0
    acc = np.empty(n)
    for t in range(T):
        for j in range(n):
            acc[j] = np.float64(coef[0, p0 + j])
        for k in range(nc):
            for j in range(n):
                acc[j] += np.float64(coef[k + 1, p0 + j]) * np.float64(cov[k, t, p0 + j])
        for j in range(n):
            out[t, p0 + j] = acc[j]


@numba.njit(cache=True)
def _predict_serial(cov, coef, out):
    P = out.shape[1]
    for p0 in range(0, P, _CHUNK):
        _predict_range(cov, coef, p0, min(p0 + _CHUNK, P), out)


@numba.njit(cache=True, parallel=True)
def _predict_parallel(cov, coef, out):
    P = out.shape[1]
    nchunk = (P + _CHUNK - 1) // _CHUNK
    for c in numba.prange(nchunk):
        p0 = c * _CHUNK
        _predict_range(cov, coef, p0, min(p0 + _CHUNK, P), out)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_cov(covariates: np.ndarray) -> np.ndarray:
    covariates = np.asarray(covariates)
    if covariates.ndim != 3 or covariates.shape[0] != NUM_COV:
        raise ValueError(
            f"covariates must have shape ({NUM_COV}, T, P), got {covariates.shape}; "
            f"axis 0 is {COV_BANDS}"
        )
    return np.ascontiguousarray(covariates, dtype=np.float32)


def robust_fit(
    covariates: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    *,
    tuning: float = TALWAR_C,
    max_iter: int = MAX_ITER,
    ridge: float = RIDGE,
    parallel: bool = False,
) -> np.ndarray:
    """Per-pixel Talwar IRLS fit of ``y ~ [1, covariates]``.

    Parameters
    ----------
    covariates : float32 (8, T, P), axis 0 in :data:`COV_BANDS` order (intercept implicit).
    y : float32 (T, P) NDVI.
    train : bool (T, P): observations allowed in the fit (training/validation dates, clear
        pixels). Observations whose ``y`` or any covariate is not finite are skipped as well.
    tuning : Talwar constant ``c`` (weights ``|r| <= c * s``).
    max_iter : maximum number of reweighted refits after the initial least-squares fit.
    ridge : relative ridge in standardised units (see module docstring).
    parallel : use numba threads over pixel chunks (results are identical to serial).

    Returns
    -------
    float32 (9, P) coefficients in :data:`COEF_BANDS` order; all-NaN for pixels with fewer than
    :data:`MIN_OBS` usable observations, finite otherwise.
    """
    cov = _check_cov(covariates)
    _, T, P = cov.shape
    y = np.ascontiguousarray(y, dtype=np.float32)
    train = np.ascontiguousarray(train, dtype=np.bool_)
    if y.shape != (T, P) or train.shape != (T, P):
        raise ValueError(
            f"y {y.shape} and train {train.shape} must both have shape (T, P) = {(T, P)} "
            f"to match covariates {cov.shape}"
        )
    if not (tuning > 0):
        raise ValueError(f"tuning must be > 0, got {tuning}")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not (ridge >= 0):
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    out = np.empty((NUM_X, P), dtype=np.float32)
    if P == 0:
        return out
    fn = _fit_parallel if parallel else _fit_serial
    fn(cov, y, train, float(tuning), int(max_iter), float(ridge), _sorting_network(T), out)
    return out


def predict(covariates: np.ndarray, coef: np.ndarray, *, parallel: bool = False) -> np.ndarray:
    """Prediction ``coef[0] + sum_k coef[k+1] * covariates[k]`` (float64 accumulation).

    covariates (8, T, P), coef (9, P) -> float32 (T, P); NaN where a coefficient or a
    covariate is NaN.
    """
    cov = _check_cov(covariates)
    _, T, P = cov.shape
    coef = np.ascontiguousarray(coef, dtype=np.float32)
    if coef.shape != (NUM_X, P):
        raise ValueError(f"coef must have shape ({NUM_X}, {P}), got {coef.shape}")
    out = np.empty((T, P), dtype=np.float32)
    if P == 0 or T == 0:
        return out
    (_predict_parallel if parallel else _predict_serial)(cov, coef, out)
    return out
