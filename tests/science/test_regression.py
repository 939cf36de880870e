"""Per-pixel robust regression (engine.science.regression)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.science import regression as reg
from engine.science.regression import COEF_BANDS, MIN_OBS, NUM_COV, predict, robust_fit


# ---------------------------------------------------------------------------------------------
# an independent (slow, plain numpy) implementation of the documented algorithm
# ---------------------------------------------------------------------------------------------
def reference_fit(X: np.ndarray, y: np.ndarray, c=reg.TALWAR_C, max_iter=reg.MAX_ITER, ridge=reg.RIDGE) -> np.ndarray:
    """X (n, 8), y (n,) usable observations of one pixel -> 9 coefficients (float64)."""
    X = X.astype(np.float64)
    y = y.astype(np.float64)
    n = len(y)
    if n < MIN_OBS:
        return np.full(9, np.nan)
    x0, y0 = X[0].copy(), y[0]
    Z, yz = X - x0, y - y0
    var = Z.var(axis=0)
    rms = np.sqrt((Z**2).mean(axis=0))
    zero = var <= (reg.ZERO_VAR_REL * np.maximum(np.abs(x0), rms)) ** 2
    floor = reg.SCALE_FLOOR_REL * (abs(y.mean()) + y.std())
    D = np.column_stack([np.ones(n), Z])

    def solve(w):
        A = D[w].T @ D[w]
        rhs = D[w].T @ yz[w]
        A[1:, 1:] += np.diag(ridge * w.sum() * var)
        keep = np.concatenate([[True], ~zero])
        b = np.zeros(9)
        b[keep] = np.linalg.solve(A[np.ix_(keep, keep)], rhs[keep])
        return b

    w = np.ones(n, bool)
    b = solve(w)
    for _ in range(max_iter):
        r = np.abs(yz - D @ b)
        s = max(np.median(r) / 0.6744897501960817, floor)
        new = r <= c * s
        if (new == w).all() or new.sum() < MIN_OBS:
            break
        w = new
        b = solve(w)
    return np.concatenate([[b[0] + y0 - b[1:] @ x0], b[1:]])


def planted(P=300, T=46, noise=0.01, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    cov = rng.normal(0.0, 1.0, (NUM_COV, T, P)).astype(np.float32)
    coef = rng.normal(0.0, 0.5, (9, P))
    y = coef[0] + np.einsum("ktp,kp->tp", cov.astype(np.float64), coef[1:]) + rng.normal(0, noise, (T, P))
    outl = np.zeros((T, P), bool)
    for p in range(P):
        outl[rng.choice(T, n_out, replace=False), p] = True
    y = np.where(outl, y + rng.choice([-1.0, 1.0], (T, P)) * rng.uniform(2, 4, (T, P)), y)
    return cov, y.astype(np.float32), coef, outl


def test_constants_and_bands():
    assert COEF_BANDS == ("constant", "VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean", "VH_Nmean", "VV_Ndiff", "VH_Ndiff")
    assert MIN_OBS == 10 and reg.TALWAR_C == pytest.approx(2.795)


def test_recovers_planted_coefficients_and_rejects_outliers():
    cov, y, coef, outl = planted()
    train = np.ones_like(y, bool)
    got = robust_fit(cov, y, train)
    assert got.shape == (9, y.shape[1]) and got.dtype == np.float32
    err_robust = np.abs(got - coef)
    # OLS on the same data, for comparison
    ols = np.empty_like(coef)
    for p in range(y.shape[1]):
        D = np.column_stack([np.ones(y.shape[0]), cov[:, :, p].T])
        ols[:, p] = np.linalg.lstsq(D, y[:, p].astype(np.float64), rcond=None)[0]
    err_ols = np.abs(ols - coef)
    assert np.median(err_robust) < 0.005  # noise 0.01 over 46 obs
    assert np.percentile(err_robust, 99) < 0.05
    assert np.median(err_robust) < 0.1 * np.median(err_ols)
    # the gross outliers are exactly the observations with large residuals
    res = np.abs(predict(cov, got) - y)
    assert (res[outl] > 0.5).all() and np.percentile(res[~outl], 99) < 0.05


def test_matches_reference_implementation():
    cov, y, _, _ = planted(P=120, T=30, noise=0.05, n_out=4, seed=3)
    rng = np.random.default_rng(4)
    train = rng.random(y.shape) < 0.75
    got = robust_fit(cov, y, train)
    for p in range(y.shape[1]):
        u = train[:, p]
        ref = reference_fit(cov[:, u, p].T, y[u, p])
        if np.isnan(ref).all():
            assert np.isnan(got[:, p]).all()
        else:
            np.testing.assert_allclose(got[:, p], ref, rtol=1e-4, atol=1e-5)


def test_min_obs_masking_and_unusable_observations():
    cov, y, _, _ = planted(P=4, T=20, n_out=0)
    train = np.zeros_like(y, bool)
    train[:9, 0] = True  # 9 usable -> masked
    train[:10, 1] = True  # exactly 10 -> fitted
    train[:12, 2] = True
    y[0, 2] = np.nan  # train but NaN y: not usable -> 11
    cov[3, 1, 2] = np.inf  # train but a covariate is inf: not usable -> 10
    train[:11, 3] = True
    cov[5, 4, 3] = np.nan  # -> 10 usable
    y[15, 3] = np.nan  # outside train anyway
    got = robust_fit(cov, y, train)
    assert np.isnan(got[:, 0]).all()
    assert np.isfinite(got[:, 1:]).all()
    train[2, 2] = False  # 9 usable now
    assert np.isnan(robust_fit(cov, y, train)[:, 2]).all()
    # all-NaN input pixel
    got = robust_fit(np.full_like(cov, np.nan), y, np.ones_like(train))
    assert np.isnan(got).all()


def test_exactly_collinear_design_is_finite_and_fits():
    """VV_mean + VV_diff == VV exactly, VV_mean constant across pixels, a constant column."""
    rng = np.random.default_rng(7)
    T, P = 40, 50
    q = lambda *shape: (rng.integers(-80, 80, shape) / 8.0).astype(np.float32)  # exact in float32  # noqa: E731
    vv_mean = q(T)[:, None].repeat(P, 1)
    vh_mean = q(T)[:, None].repeat(P, 1)
    vv, vh = q(T, P), q(T, P)
    cov = np.stack([vv_mean, vh_mean, vv - vv_mean, vh - vh_mean, q(T, P), q(T, P), q(T, P), np.full((T, P), -12.5, np.float32)])
    cov[6] = cov[4] + cov[5]  # another exact linear dependency
    y = (0.3 + 0.02 * vv + 0.01 * vh - 0.03 * cov[4] + 0.005 * cov[5]).astype(np.float32)
    train = rng.random((T, P)) < 0.8
    got = robust_fit(cov, y, train)
    assert np.isfinite(got).all()
    pred = predict(cov, got)
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred, y, atol=2e-4)  # everywhere, not only on training dates
    assert (got[8] == 0).all()  # the constant column gets coefficient 0
    # non-unique coefficients, stable predictions: a design with a duplicated column predicts the same
    cov2 = cov.copy()
    cov2[5] = cov[4]
    y2 = (0.3 + 0.05 * cov[4] + 0.01 * cov[0]).astype(np.float32)
    c2 = robust_fit(cov2, y2, train)
    assert np.isfinite(c2).all()
    np.testing.assert_allclose(c2[5], c2[6], rtol=1e-3, atol=1e-6)  # minimum-norm split of the duplicate
    np.testing.assert_allclose(predict(cov2, c2), y2, atol=2e-4)


def test_all_constant_covariates_give_intercept_only():
    T, P = 25, 3
    cov = np.full((8, T, P), 3.25, np.float32)
    y = np.random.default_rng(1).normal(0.5, 0.01, (T, P)).astype(np.float32)
    got = robust_fit(cov, y, np.ones((T, P), bool))
    assert (got[1:] == 0).all()
    assert np.abs(got[0] - np.median(y, axis=0)).max() < 0.02


def test_near_collinear_realistic_covariates():
    """The benchmark's synthetic covariates (float32 rounding makes them near-collinear)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "regression_kernel.py"
    spec = importlib.util.spec_from_file_location("regression_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cov, y, train = mod.synthetic(46, 2000, seed=5)
    coef = robust_fit(cov, y, train)
    assert np.isfinite(coef).all()
    pred = predict(cov, coef)
    res = np.abs(pred - y)
    assert np.median(res[train]) < 0.03  # noise sd 0.03 -> median |r| ~ 0.02
    assert np.median(res[~train]) < 0.035  # held-out dates too


def test_parallel_and_tiling_invariance():
    cov, y, _, _ = planted(P=5000, T=46, noise=0.05, n_out=5, seed=11)
    train = np.random.default_rng(2).random(y.shape) < 0.7
    a = robust_fit(cov, y, train)
    b = robust_fit(cov, y, train, parallel=True)
    np.testing.assert_array_equal(a, b)
    # a pixel's result does not depend on its neighbours / position (tiles, blocks, chunks)
    perm = np.random.default_rng(3).permutation(y.shape[1])[:777]
    c = robust_fit(cov[:, :, perm], y[:, perm], train[:, perm])
    np.testing.assert_array_equal(c, a[:, perm])
    np.testing.assert_array_equal(predict(cov, a, parallel=True), predict(cov, a))


def test_input_validation():
    cov, y, _, _ = planted(P=3, T=12, n_out=0)
    with pytest.raises(ValueError):
        robust_fit(cov[:7], y, np.ones_like(y, bool))
    with pytest.raises(ValueError):
        robust_fit(cov, y[:5], np.ones_like(y, bool))
    with pytest.raises(ValueError):
        predict(cov, np.zeros((8, 3), np.float32))
    assert robust_fit(cov[:, :, :0], y[:, :0], np.ones((12, 0), bool)).shape == (9, 0)


@st.composite
def small_problem(draw):
    T = draw(st.integers(1, 30))
    P = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cov = rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 30.0])), (8, T, P)) + draw(st.sampled_from([0.0, -15.0]))
    if draw(st.booleans()):  # exact collinearity as in the engine
        cov[0] = cov[0, :, :1]
        cov[2] = rng.normal(0, 1, (T, P))
        cov[6] = cov[4] - cov[5]
    if draw(st.booleans()):
        cov[7] = 2.0  # constant column
    cov = cov.astype(np.float32)
    beta = rng.normal(0, 0.1, (9, P))
    y = beta[0] + np.einsum("ktp,kp->tp", cov, beta[1:]) + rng.normal(0, draw(st.sampled_from([0.0, 0.01, 0.3])), (T, P))
    n_out = draw(st.integers(0, max(T // 4, 0)))
    y[:n_out] += rng.normal(0, 5, (n_out, P))
    y = y.astype(np.float32)
    train = rng.random((T, P)) < draw(st.floats(0.2, 1.0))
    if draw(st.booleans()):  # scattered NaNs in inputs
        y[rng.random((T, P)) < 0.05] = np.nan
        cov[rng.random((8, T, P)) < 0.01] = np.nan
    return cov, y, train


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problem())
def test_property_finite_or_masked_and_matches_reference(problem):
    cov, y, train = problem
    got = robust_fit(cov, y, train)
    usable = train & np.isfinite(y) & np.isfinite(cov).all(axis=0)
    n = usable.sum(axis=0)
    nan_px = np.isnan(got).all(axis=0)
    assert (nan_px == (n < MIN_OBS)).all()  # all-NaN exactly when too few usable observations
    assert np.isfinite(got[:, ~nan_px]).all()  # never NaN/inf otherwise
    pred = predict(cov, got)
    for p in np.flatnonzero(~nan_px):
        u = usable[:, p]
        assert np.isfinite(pred[u, p]).all()
        ref = reference_fit(cov[:, u, p].T, y[u, p])
        # compare predictions on the usable dates (coefficients need not be unique); the model
        # is stored in float32, so allow its rounding, amplified by |coef * covariate|
        X = cov[:, u, p].T.astype(np.float64)
        ref_pred = ref[0] + X @ ref[1:]
        amp = np.abs(ref[0]) + np.abs(X * ref[1:]).sum(axis=1)
        tol = 1e-4 * (1 + np.abs(y[u, p]).max()) + 1e-6 * amp
        assert (np.abs(pred[u, p] - ref_pred) <= tol).all(), (p, np.abs(pred[u, p] - ref_pred).max())
