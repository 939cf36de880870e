from __future__ import annotations

import numpy as np
import pytest

from engine.science.pca import n_components, pca_basis, pca_smooth


def test_n_components():
    assert n_components(10, 0.3) == 3
    assert n_components(46, 0.5) == 23
    assert n_components(3, 0.99) == 2
    assert n_components(10, 0.05) == 1  # at least one
    assert n_components(10, 1.5) == 10  # at most n
    assert n_components(100, 0.29) == 29  # not 28 from float error


def _rank1_plus_small(n_dates: int = 6):
    mean = np.linspace(0.2, 0.7, n_dates)
    v = np.array([1.0, 2.0, -1.0, 0.5, 0.0, 1.5])[:n_dates]
    v /= np.linalg.norm(v)
    w = np.array([2.0, -1.0, 0.0, 0.0, 1.0, 0.0])[:n_dates]
    w -= (w @ v) * v
    w /= np.linalg.norm(w)
    a = np.array([2.0, -2.0, 2.0, -2.0])  # centred
    b = np.array([1.0, 1.0, -1.0, -1.0]) * 0.1  # centred and orthogonal to a
    return mean, v, w, a, b


def test_rank1_signal_recovered_exactly_with_one_component():
    mean, v, w, a, b = _rank1_plus_small()
    signal = mean + a[:, None] * v
    samples = signal + b[:, None] * w
    basis = pca_basis(samples, ratio=1 / 6)
    assert basis.components.shape == (6, 1) and basis.explained.shape == (1,)
    np.testing.assert_allclose(basis.mean, mean, atol=1e-12)
    np.testing.assert_allclose(basis.components[:, 0], v * np.sign(v[np.argmax(abs(v))]), atol=1e-12)
    np.testing.assert_allclose(basis.explained, [a @ a / 3], rtol=1e-12)
    smoothed = pca_smooth(samples.T, basis)  # (N, P)
    assert smoothed.dtype == np.float32 and smoothed.shape == (6, 4)
    np.testing.assert_allclose(smoothed, signal.T, atol=1e-6)  # the orthogonal part is removed
    # unseen pixels of the same form, in (N, y, x) layout
    new = (mean[:, None] + np.outer(v, [0.3, -1.0, 5.0, 0.0])).reshape(6, 2, 2)
    np.testing.assert_allclose(pca_smooth(new, basis), new, atol=1e-6)


def test_basis_is_deterministic_orthonormal_and_sign_fixed():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    basis = pca_basis(samples, ratio=0.6)
    k = basis.components.shape[1]
    assert k == 3
    np.testing.assert_allclose(basis.components.T @ basis.components, np.eye(k), atol=1e-12)
    assert np.all(np.diff(basis.explained) <= 0)
    lead = basis.components[np.argmax(abs(basis.components), axis=0), np.arange(k)]
    assert np.all(lead > 0)
    # mirrored data has the same covariance: identical basis thanks to the sign convention
    mirrored = pca_basis(2 * basis.mean - samples, ratio=0.6)
    np.testing.assert_allclose(mirrored.components, basis.components, atol=1e-12)
    with pytest.raises(ValueError):
        basis.components[0, 0] = 1.0  # read-only


def test_basis_ignores_incomplete_rows_and_needs_two():
    mean, v, w, a, b = _rank1_plus_small()
    samples = mean + a[:, None] * v
    noisy = np.vstack([samples, [[np.nan, 100.0, -100.0, 100.0, -100.0, 100.0]]])
    b1, b2 = pca_basis(samples, 0.5), pca_basis(noisy, 0.5)
    np.testing.assert_array_equal(b1.mean, b2.mean)
    np.testing.assert_array_equal(b1.components, b2.components)
    with pytest.raises(ValueError, match="at least 2"):
        pca_basis(np.vstack([samples[:1], np.full((5, 6), np.nan)]), 0.5)


def test_pca_smooth_missing_dates():
    mean, v, w, a, b = _rank1_plus_small()
    basis = pca_basis(mean + a[:, None] * v, ratio=0.2)
    x = mean + 1.5 * v
    x[2] = np.nan
    pred = np.stack([x, np.full(6, np.nan)], axis=1)  # (N, 2): one gappy pixel, one all-NaN
    out = pca_smooth(pred, basis)
    anom = np.where(np.isnan(x), 0.0, x - mean)
    expected = mean + v * (v @ anom)  # v v^T does not depend on the sign of v
    expected[2] = np.nan
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-6, equal_nan=True)
    assert np.all(np.isnan(out[:, 1]))
    with pytest.raises(ValueError):
        pca_smooth(pred[:5], basis)
