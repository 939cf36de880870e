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
  solved in float64 by symmetric Gaussian elimination (LDL^T, Cholesky without square roots).
  The ridge makes the solution unique (the minimum-norm solution in standardised units, up to
  O(RIDGE)), so predictions are stable even when the least-squares coefficients are not
  unique; if a pivot still fails (it should not), the ridge is raised 1000-fold, up to three
  times, before the pixel is masked.
* **Masking.** Pixels with fewer than ``MIN_OBS = numX + 1 = 10`` usable observations
  (``train`` and finite ``y`` and all 8 covariates finite) get NaN in all 9 bands.

Known behaviour: like any Talwar IRLS, a small fraction of pixels (~0.5 % on realistic
synthetic data) alternate between two weight sets; they stop at ``max_iter`` with the last fit.

Speed (see ``benchmarks/regression_kernel.py``; ~0.8 Mpx/s per core at T = 46 on the
development machine, against ~0.03 Mpx/s for a batched plain-numpy formulation):

* inputs are copied block-wise (32 pixels) into small local buffers with contiguous reads, the
  usable mask is computed there branch-free, and each pixel's usable observations are then
  compacted into a contiguous float64 buffer (reading one pixel straight from the (8, T, P)
  arrays is TLB/latency bound and cost more than the whole fit);
* the 10 x 10 augmented Gram ``[1, X, y]^T [1, X, y]`` is formed once (3 x 3 register-blocked
  dot products) and then, because the weights are 0/1, down-dated / up-dated with the outer
  products of only those observations whose weight changed;
* the median is an exact rank-counting selection with branch-free inner loops;
* nothing is allocated inside the pixel loop; ``parallel=True`` spreads 2048-pixel chunks
  over numba threads with identical results (a pixel's result never depends on its
  neighbours, its block or its chunk, so tiling does not change it).
"""

from __future__ import annotations

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
ZERO_VAR_REL = 2.0**-20

# fastmath without 'nnan'/'ninf': the kernels test finiteness explicitly.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_NG = NUM_X + 1  # augmented Gram size: intercept, 8 covariates, y
_BL = 32  # pixels per block copy (Xb = 8 x T x 32 float32 ~ 47 KB at T = 46: L1-sized)
_CHUNK = 2048  # pixels per work item (buffers are allocated once per chunk)


# --------------------------------------------------------------------------------------------
# numba kernels
#
# Pixels are processed one at a time (scalar float64 maths) after a block-wise copy of their
# inputs; see the module docstring ("Speed").
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _solve1(G, var, zero, n_w, ridge, M, b):
    """Ridge-stabilised solve of the 9x9 normal equations held in G[0:9, 0:10] (upper
    triangle; column 9 is X^T y) by symmetric Gaussian elimination (LDL^T, upper triangle of
    the augmented matrix M only). Writes the coefficients into b; returns False if a pivot is
    not positive."""
    nx = _NG - 1
    for i in range(nx):
        for j in range(i, nx + 1):
            M[i, j] = G[i, j]
    lam = ridge * n_w
    for k in range(1, nx):
        if zero[k]:
            for j in range(k, nx + 1):
                M[k, j] = 0.0
            for j in range(k):
                M[j, k] = 0.0
            M[k, k] = 1.0
        else:
            M[k, k] += lam * var[k]
    for i in range(nx):
        d = M[i, i]
        if not (d > 0.0):
            return False
        inv = 1.0 / d
        M[i, i] = inv
        for j in range(i + 1, nx):
            f = M[i, j] * inv
            for c in range(j, nx + 1):
                M[j, c] -= f * M[i, c]
    for i in range(nx - 1, -1, -1):
        s = M[i, nx]
        for c in range(i + 1, nx):
            s -= M[i, c] * b[c]
        b[i] = s * M[i, i]
    return True


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _solve_escalating(G, var, zero, n_w, ridge, M, b):
    if _solve1(G, var, zero, n_w, ridge, M, b):
        return True
    r = ridge if ridge > 0.0 else 1e-12
    for _ in range(3):
        r *= 1000.0
        if _solve1(G, var, zero, n_w, r, M, b):
            return True
    return False


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _median(a, n, npad):
    """Exact median of a[0:n] (n >= 1). a[n:npad] must be +inf and npad a multiple of 8.

    The k-th smallest value is the smallest a[j] with #{i: a[i] <= a[j]} >= k + 1 (exact with
    ties), and it is a[j] itself as soon as that count equals k + 1 (early exit). The counts are
    branch-free loops, four candidates per pass over the data; for n <= ~50 this is about twice
    as fast as quickselect, whose branches mispredict."""
    r1 = (n - 1) // 2 + 1
    r2 = n // 2 + 1
    best1 = np.inf
    best2 = np.inf
    f1 = False
    f2 = False
    for j in range(0, n, 4):
        c0 = a[j]
        c1 = a[j + 1]
        c2 = a[j + 2]
        c3 = a[j + 3]
        l0 = 0
        l1 = 0
        l2 = 0
        l3 = 0
        for i in range(npad):
            ai = a[i]
            l0 += ai <= c0
            l1 += ai <= c1
            l2 += ai <= c2
            l3 += ai <= c3
        for q in range(4):
            if j + q >= n:
                break
            if q == 0:
                le = l0
                aj = c0
            elif q == 1:
                le = l1
                aj = c1
            elif q == 2:
                le = l2
                aj = c2
            else:
                le = l3
                aj = c3
            if le >= r1 and aj < best1:
                best1 = aj
            if le >= r2 and aj < best2:
                best2 = aj
            f1 = f1 or le == r1
            f2 = f2 or le == r2
        if f1 and f2:
            break
    return 0.5 * (best1 + best2)


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _gram_block(Z, G, a, c, npad):
    """G[a:a+3, c:c+3] = Z[a:a+3] . Z[c:c+3]^T (3x3 register block: 6 loads per 9 FMAs)."""
    A0 = Z[a]
    A1 = Z[a + 1]
    A2 = Z[a + 2]
    C0 = Z[c]
    C1 = Z[c + 1]
    C2 = Z[c + 2]
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = 0.0
    for j in range(npad):
        a0 = A0[j]
        a1 = A1[j]
        a2 = A2[j]
        c0 = C0[j]
        c1 = C1[j]
        c2 = C2[j]
        s00 += a0 * c0
        s01 += a0 * c1
        s02 += a0 * c2
        s10 += a1 * c0
        s11 += a1 * c1
        s12 += a1 * c2
        s20 += a2 * c0
        s21 += a2 * c1
        s22 += a2 * c2
    G[a, c] = s00
    G[a, c + 1] = s01
    G[a, c + 2] = s02
    G[a + 1, c] = s10
    G[a + 1, c + 1] = s11
    G[a + 1, c + 2] = s12
    G[a + 2, c] = s20
    G[a + 2, c + 1] = s21
    G[a + 2, c + 2] = s22


@numba.njit(cache=True, fastmath=_FM, error_model="numpy")
def _fit_range(cov, y, train, p0, p1, tuning, max_iter, ridge, out):
    """Fit pixels p0..p1-1 into out[:, p]. Buffers are allocated once per call."""
    T = y.shape[0]
    NC = cov.shape[0]
    NG = _NG
    NX = NG - 1
    iy = NG - 1
    BL = _BL
    inf = np.inf
    Xb = np.empty((NC, T, BL), dtype=np.float32)
    Yb = np.empty((T, BL), dtype=np.float32)
    Ub = np.empty((T, BL), dtype=np.uint8)
    idx = np.empty(T + 1, dtype=np.int64)
    Tp = (T + 7) & ~7
    Z = np.empty((NG, Tp))  # rows 1..8 shifted covariates, row 9 shifted y (row 0 unused)
    absr = np.empty(Tp)
    w = np.empty(T, dtype=np.bool_)
    G = np.empty((NG, NG))
    U = np.empty((NX, NX + 1))
    b = np.empty(NX)
    bprev = np.empty(NX)
    x0 = np.empty(NG)
    var = np.empty(NX)
    zero = np.empty(NX, dtype=np.bool_)
    for q0 in range(p0, p1, BL):
        nb = min(BL, p1 - q0)
        # ---- block copy (contiguous reads) and usable mask (vectorised over i):
        #      usable = train & finite y & all 8 covariates finite
        for t in range(T):
            for i in range(nb):
                yv = y[t, q0 + i]
                Yb[t, i] = yv
                Ub[t, i] = train[t, q0 + i] & (abs(yv) < inf)
            for k in range(NC):
                for i in range(nb):
                    v = cov[k, t, q0 + i]
                    Xb[k, t, i] = v
                    Ub[t, i] &= abs(v) < inf
        for i in range(nb):
            p = q0 + i
            n = 0
            for t in range(T):
                idx[n] = t
                n += Ub[t, i]
            if n < MIN_OBS:
                for k in range(NX):
                    out[k, p] = np.nan
                continue
            # pad to a multiple of 8 with zero rows so vectorised loops need no scalar tail
            npad = (n + 7) & ~7
            # ---- compact and shift by the first usable value (exact in float64)
            t0 = idx[0]
            for k in range(NC):
                xk = np.float64(Xb[k, t0, i])
                x0[k + 1] = xk
                for j in range(n):
                    Z[k + 1, j] = np.float64(Xb[k, idx[j], i]) - xk
                for j in range(n, npad):
                    Z[k + 1, j] = 0.0
            yk = np.float64(Yb[t0, i])
            x0[iy] = yk
            for j in range(n):
                Z[iy, j] = np.float64(Yb[idx[j], i]) - yk
            for j in range(n, npad):
                Z[iy, j] = 0.0
            # ---- Gram of all usable observations (upper triangle; row/col 0 = intercept)
            G[0, 0] = n
            for c in range(1, NG):
                sm = 0.0
                for j in range(npad):
                    sm += Z[c, j]
                G[0, c] = sm
            _gram_block(Z, G, 1, 1, npad)
            _gram_block(Z, G, 1, 4, npad)
            _gram_block(Z, G, 1, 7, npad)
            _gram_block(Z, G, 4, 4, npad)
            _gram_block(Z, G, 4, 7, npad)
            _gram_block(Z, G, 7, 7, npad)
            # ---- column variances, zero-variance flags, scale floor
            inv_n = 1.0 / n
            zero[0] = False
            var[0] = 0.0
            for k in range(1, NX):
                m = G[0, k] * inv_n
                v = max(G[k, k] * inv_n - m * m, 0.0)
                tol = ZERO_VAR_REL * max(abs(x0[k]), np.sqrt(G[k, k] * inv_n))
                zero[k] = v <= tol * tol
                var[k] = v
            m = G[0, iy] * inv_n
            v = max(G[iy, iy] * inv_n - m * m, 0.0)
            floor = max(SCALE_FLOOR_REL * (abs(m + x0[iy]) + np.sqrt(v)), 1e-300)
            # ---- initial (ridge) least squares on all usable observations
            for j in range(n):
                w[j] = True
            if not _solve_escalating(G, var, zero, n, ridge, U, b):
                for k in range(NX):
                    out[k, p] = np.nan
                continue
            # ---- Talwar IRLS
            for _it in range(max_iter):
                b0 = b[0]
                b1 = b[1]
                b2 = b[2]
                b3 = b[3]
                b4 = b[4]
                b5 = b[5]
                b6 = b[6]
                b7 = b[7]
                b8 = b[8]
                for j in range(npad):
                    r = (
                        Z[iy, j]
                        - b0
                        - b1 * Z[1, j]
                        - b2 * Z[2, j]
                        - b3 * Z[3, j]
                        - b4 * Z[4, j]
                        - b5 * Z[5, j]
                        - b6 * Z[6, j]
                        - b7 * Z[7, j]
                        - b8 * Z[8, j]
                    )
                    absr[j] = abs(r) if j < n else inf
                s = _median(absr, n, npad) * MAD_TO_SIGMA
                thr = tuning * max(s, floor)
                n_new = 0
                changed = 0
                for j in range(n):
                    keep = absr[j] <= thr
                    n_new += keep
                    changed += keep != w[j]
                if changed == 0 or n_new < MIN_OBS:
                    break
                # down-date / up-date the Gram with the observations whose weight changed
                for j in range(n):
                    keep = absr[j] <= thr
                    if keep == w[j]:
                        continue
                    w[j] = keep
                    sg = 1.0 if keep else -1.0
                    G[0, 0] += sg
                    for a in range(1, NG):
                        za = sg * Z[a, j]
                        G[0, a] += za
                        for c in range(a, NG):
                            G[a, c] += za * Z[c, j]
                for k in range(NX):
                    bprev[k] = b[k]
                if not _solve_escalating(G, var, zero, n_new, ridge, U, b):
                    for k in range(NX):
                        b[k] = bprev[k]
                    break
            # ---- back to original units: y = b0 + y0 + sum_k b_k (x_k - x0_k)
            c0 = b[0] + x0[iy]
            for k in range(1, NX):
                c0 -= b[k] * x0[k]
                out[k, p] = b[k]
            out[0, p] = c0


@numba.njit(cache=True, error_model="numpy")
def _fit_serial(cov, y, train, tuning, max_iter, ridge, out):
    P = y.shape[1]
    for p0 in range(0, P, _CHUNK):
        _fit_range(cov, y, train, p0, min(p0 + _CHUNK, P), tuning, max_iter, ridge, out)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _fit_parallel(cov, y, train, tuning, max_iter, ridge, out):
    P = y.shape[1]
    nchunk = (P + _CHUNK - 1) // _CHUNK
    for c in numba.prange(nchunk):
        p0 = c * _CHUNK
        _fit_range(cov, y, train, p0, min(p0 + _CHUNK, P), tuning, max_iter, ridge, out)


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


@numba.njit(cache=True, error_model="numpy")
def _predict_serial(cov, coef, out):
    P = out.shape[1]
    for p0 in range(0, P, _CHUNK):
        _predict_range(cov, coef, p0, min(p0 + _CHUNK, P), out)


@numba.njit(cache=True, parallel=True, error_model="numpy")
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
        raise ValueError(f"covariates must have shape ({NUM_COV}, T, P), got {covariates.shape}; axis 0 is {COV_BANDS}")
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
    fn(cov, y, train, float(tuning), int(max_iter), float(ridge), out)
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
