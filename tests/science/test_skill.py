"""Held-out skill and optical-only baselines (engine.science.skill)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.science.skill import (
    GAP_STRATA,
    STRATUM_LABELS,
    SkillAccumulator,
    gap_length,
    linear_interp_baseline,
    whittaker_baseline,
)

DAYS = np.array([0, 5, 13, 20, 40, 41, 60])


# ---------------------------------------------------------------------------------------------
# linear interpolation
# ---------------------------------------------------------------------------------------------
def test_linear_interp_edges_and_empty_pixel():
    obs = np.array([1, 0, 2, 3, 4, 5, 6], np.float32)[:, None].repeat(4, 1)
    usable = np.ones_like(obs, bool)
    usable[[0, 3, 4], 0] = False  # leading + interior gap
    usable[:, 1] = False  # no usable obs
    usable[[0, 1, 2, 3, 5, 6], 2] = False  # one obs -> constant
    usable[5:, 3] = False  # trailing gap
    obs[6, 3] = np.nan
    got = linear_interp_baseline(obs, usable, DAYS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], [0, 0, 2, 2 + 3 * 7 / 28, 2 + 3 * 27 / 28, 5, 6], rtol=1e-6)
    assert np.isnan(got[:, 1]).all()
    np.testing.assert_array_equal(got[:, 2], 4.0)
    np.testing.assert_allclose(got[:, 3], [1, 0, 2, 3, 4, 4, 4])
    # a usable flag on a NaN observation does not make it usable
    obs2 = obs.copy()
    obs2[2, 0] = np.nan
    usable2 = usable.copy()
    got2 = linear_interp_baseline(obs2, usable2, DAYS)
    np.testing.assert_allclose(got2[2, 0], 0 + 5 * 8 / 36, rtol=1e-6)


def test_linear_interp_matches_numpy_interp():
    rng = np.random.default_rng(0)
    days = np.cumsum(rng.integers(1, 20, 30))
    obs = rng.random((30, 50))
    usable = rng.random((30, 50)) < 0.4
    got = linear_interp_baseline(obs, usable, days)
    assert got.dtype == np.float64
    for p in range(50):
        u = usable[:, p]
        if u.any():
            np.testing.assert_allclose(got[:, p], np.interp(days, days[u], obs[u, p]), rtol=1e-12)
        else:
            assert np.isnan(got[:, p]).all()


def test_days_must_increase():
    with pytest.raises(ValueError):
        linear_interp_baseline(np.zeros((3, 1)), np.ones((3, 1), bool), [0, 5, 5])
    with pytest.raises(ValueError):
        whittaker_baseline(np.zeros((3, 1)), np.ones((3, 1), bool), [0, 7, 5])
    with pytest.raises(ValueError):
        gap_length(np.ones((3, 1), bool), [0, 1])


# ---------------------------------------------------------------------------------------------
# Whittaker
# ---------------------------------------------------------------------------------------------
def dense_whittaker(y, w, days, lam):
    """Dense reference: (W + lam * D^T V D) z = W y with the documented divided differences."""
    T = len(days)
    h = np.diff(days.astype(float))
    D = np.zeros((T - 2, T))
    for i in range(T - 2):
        H = h[i] + h[i + 1]
        # 2 * second divided difference
        D[i, i : i + 3] = np.array([1 / h[i], -(1 / h[i] + 1 / h[i + 1]), 1 / h[i + 1]]) * 2 / H
        D[i] *= math.sqrt(H / 2)
    A = np.diag(w) + lam * D.T @ D
    return np.linalg.solve(A, w * y)


def test_whittaker_reproduces_a_line_with_irregular_spacing():
    days = np.array([3, 4, 10, 11, 30, 55, 56, 57, 90, 200])
    line = 0.2 + 0.003 * days
    obs = np.repeat(line[:, None], 3, 1)
    usable = np.ones_like(obs, bool)
    usable[[0, 4, 9], 1] = False  # extrapolation at both ends, interior gap
    usable[:, 2] = False
    usable[[2, 7], 2] = True  # exactly two obs: the line through them
    for lam in (1.0, 1e4, 1e8):
        got = whittaker_baseline(obs, usable, days, lam=lam)
        np.testing.assert_allclose(got, obs, atol=1e-9 * max(lam, 1) ** 0.5 + 1e-10)


def test_whittaker_matches_dense_reference_and_units():
    rng = np.random.default_rng(1)
    days = np.cumsum(rng.integers(1, 16, 25))
    y = rng.random((25, 20))
    usable = rng.random((25, 20)) < 0.6
    got = whittaker_baseline(y, usable, days, lam=1e4)
    for p in range(20):
        if usable[:, p].sum() >= 2:
            np.testing.assert_allclose(got[:, p], dense_whittaker(y[:, p], usable[:, p].astype(float), days, 1e4), rtol=1e-7, atol=1e-9)
    # units: on a uniform step of h days, lam (days) == classical per-step lambda lam / h^3
    h, lam = 8, 1e4
    days_u = np.arange(25) * h
    D2 = np.diff(np.eye(25), 2, axis=0)
    w = usable[:, 0].astype(float)
    classical = np.linalg.solve(np.diag(w) + lam / h**3 * D2.T @ D2, w * y[:, 0])
    np.testing.assert_allclose(whittaker_baseline(y[:, :1], usable[:, :1], days_u, lam=lam)[:, 0], classical, rtol=1e-8, atol=1e-10)


def test_whittaker_smooths_noise_and_masks_sparse_pixels():
    rng = np.random.default_rng(2)
    days = np.cumsum(rng.integers(3, 12, 46))
    truth = 0.5 + 0.3 * np.sin(2 * np.pi * days / 365.0)
    T, P = len(days), 200
    obs = truth[:, None] + rng.normal(0, 0.05, (T, P))
    usable = np.ones((T, P), bool)
    got = whittaker_baseline(obs.astype(np.float32), usable, days, lam=1e4)
    assert got.dtype == np.float32
    rmse_raw = np.sqrt(np.mean((obs - truth[:, None]) ** 2))
    rmse_smooth = np.sqrt(np.mean((got - truth[:, None]) ** 2))
    assert rmse_smooth < 0.6 * rmse_raw
    sparse = np.zeros((T, 2), bool)
    sparse[5, 1] = True
    assert np.isnan(whittaker_baseline(obs[:, :2], sparse, days)).all()  # 0 and 1 usable obs
    # lam = 0 interpolates the usable observations
    z = whittaker_baseline(obs[:, :3], usable[:, :3], days, lam=0.0)
    np.testing.assert_allclose(z, obs[:, :3], atol=1e-12)


def test_whittaker_speed_shape():
    rng = np.random.default_rng(3)
    days = np.cumsum(rng.integers(3, 12, 46))
    obs = rng.random((46, 20000)).astype(np.float32)
    usable = rng.random((46, 20000)) < 0.5
    got = whittaker_baseline(obs, usable, days)
    assert got.shape == obs.shape and np.isfinite(got).all()


# ---------------------------------------------------------------------------------------------
# gap length
# ---------------------------------------------------------------------------------------------
def test_gap_length_hand_example():
    usable = np.array([
        [0, 1, 0],
        [1, 1, 0],
        [1, 0, 0],
        [0, 1, 1],
        [0, 1, 0],
        [1, 1, 0],
        [0, 1, 0],
    ], bool)
    got = gap_length(usable, DAYS)
    inf = np.inf
    np.testing.assert_array_equal(got[:, 0], [inf, inf, 41 - 5, 41 - 13, 41 - 13, inf, inf])
    np.testing.assert_array_equal(got[:, 1], [inf, 20 - 0, 20 - 5, 40 - 5, 41 - 20, 60 - 40, inf])
    np.testing.assert_array_equal(got[:, 2], inf)  # a single usable obs: open both sides


# ---------------------------------------------------------------------------------------------
# skill accumulator
# ---------------------------------------------------------------------------------------------
def test_strata_constants():
    assert GAP_STRATA == ((0, 16), (16, 32), (32, 64), (64, math.inf))
    assert STRATUM_LABELS == ("<16 d", "16-32 d", "32-64 d", ">=64 d", "open", "all")


def test_metrics_hand_example():
    pred = np.array([1.0, 2.0, 4.0, 0.0, 9.0, np.nan])
    y = np.array([1.0, 3.0, 2.0, 1.0, 9.0, 1.0])
    gap = np.array([3.0, 15.99, 16.0, 64.0, np.inf, 5.0])
    where = np.array([True, True, True, True, False, True])
    acc = SkillAccumulator().add("sar", pred, y, gap, where)
    t = acc.table().set_index(["method", "stratum"])
    assert list(acc.table().columns) == ["method", "stratum", "n", "MAE", "RMSE", "bias", "R2"]
    allrow = t.loc[("sar", "all")]
    # points used: (1,1), (2,3), (4,2), (0,1): errors 0, -1, 2, -1
    assert allrow.n == 4
    assert allrow.MAE == pytest.approx(1.0)
    assert allrow.RMSE == pytest.approx(math.sqrt(6 / 4))
    assert allrow.bias == pytest.approx(0.0)
    # y = 1, 3, 2, 1: mean 1.75, SST = 0.5625 + 1.5625 + 0.0625 + 0.5625 = 2.75
    assert allrow.R2 == pytest.approx(1 - 6 / 2.75)
    assert t.loc[("sar", "<16 d")].n == 2 and t.loc[("sar", "16-32 d")].n == 1
    assert t.loc[("sar", ">=64 d")].n == 1 and t.loc[("sar", "open")].n == 0
    assert math.isnan(t.loc[("sar", "16-32 d")].R2)  # n < 2
    assert math.isnan(t.loc[("sar", "open")].MAE)
    assert t.loc[("sar", "<16 d")].MAE == pytest.approx(0.5)
    # constant y: SST == 0 -> R2 undefined
    const = SkillAccumulator().add("linear", np.array([1.0, 2.0]), np.array([0.3, 0.3]), np.array([1.0, 1.0]))
    assert math.isnan(const.table().set_index("stratum").loc["all", "R2"])


def test_methods_order_and_json_roundtrip():
    rng = np.random.default_rng(0)
    acc = SkillAccumulator()
    for m in ("whittaker", "zzz", "sar", "linear"):
        acc.add(m, rng.random(50), rng.random(50), rng.choice([1.0, 20.0, 40.0, 100.0, np.inf], 50))
    assert acc.methods == ["sar", "linear", "whittaker", "zzz"]
    back = SkillAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
    assert back.to_dict() == acc.to_dict()
    assert acc.table().equals(back.table())
    with pytest.raises(ValueError):
        SkillAccumulator.from_dict({"strata": ["a"], "methods": {}})


@st.composite
def scored(draw):
    n = draw(st.integers(0, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pred = rng.normal(0.5, 0.2, n)
    pred[rng.random(n) < 0.1] = np.nan
    y = rng.normal(0.5, 0.2, n)
    gap = rng.choice([0.0, 8.0, 16.0, 31.0, 32.0, 63.0, 64.0, 500.0, np.inf], n)
    where = rng.random(n) < 0.8
    split = draw(st.integers(0, n))
    return pred, y, gap, where, split


@settings(max_examples=200, deadline=None)
@given(scored(), st.sampled_from(["sar", "linear", "whittaker"]))
def test_merge_of_halves_equals_whole(data, method):
    pred, y, gap, where, k = data
    whole = SkillAccumulator().add(method, pred, y, gap, where)
    a = SkillAccumulator().add(method, pred[:k], y[:k], gap[:k], where[:k])
    b = SkillAccumulator().add(method, pred[k:], y[k:], gap[k:], where[k:])
    for merged in (a + b, a.merge(b), sum([a, b])):
        dw, dm = whole.to_dict()["methods"][method], merged.to_dict()["methods"][method]
        assert dm["n"] == dw["n"]
        for f in dw:
            np.testing.assert_allclose(dm[f], dw[f], rtol=1e-12, atol=1e-12)
    # the strata partition "all"
    d = whole.to_dict()["methods"][method]
    assert sum(d["n"][:-1]) == d["n"][-1] == int((where & np.isfinite(pred)).sum())
    np.testing.assert_allclose(sum(d["sum_abs_err"][:-1]), d["sum_abs_err"][-1], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["C", "F", "broadcast"]))
def test_accumulator_equals_gathered_numpy_sums_for_every_layout(seed, layout):
    """The one-pass kernel adds, per stratum, exactly what gathering the points (C order) and
    np.bincount add, whatever the arrays' memory layout; the "all" row agrees to rounding."""
    rng = np.random.default_rng(seed)
    T, P = int(rng.integers(1, 9)), int(rng.integers(1, 40))
    pred = rng.normal(0.5, 0.2, (T, P)).astype(np.float32)
    pred[rng.random((T, P)) < 0.1] = np.nan
    y = rng.normal(0.5, 0.2, (T, P)).astype(np.float32)
    gap = rng.choice([0.0, 8.0, 16.0, 31.0, 64.0, 500.0, np.inf, np.nan], (T, P)).astype(np.float32)
    where = rng.random((T, P)) < 0.8
    if layout == "F":
        pred, y, gap, where = (np.asfortranarray(a) for a in (pred, y, gap, where))
    elif layout == "broadcast":
        where = (rng.random(T) < 0.7)[:, None]
    d = SkillAccumulator().add("sar", pred, y, gap, where).to_dict()["methods"]["sar"]
    sel = np.broadcast_to(where, (T, P)) & np.isfinite(pred) & np.isfinite(y)
    err = pred[sel].astype(np.float64) - y[sel].astype(np.float64)
    yy = y[sel].astype(np.float64)
    g = gap[sel].astype(np.float64)
    k = np.where(np.isinf(g), 4, np.searchsorted([16.0, 32.0, 64.0], g, side="right"))
    k, keep = np.where(np.isnan(g), 0, k), ~np.isnan(g)
    assert d["n"] == [*np.bincount(k[keep], minlength=5).tolist(), int(sel.sum())]
    for f, v in zip(("sum_err", "sum_abs_err", "sum_sq_err", "sum_y", "sum_y2"),
                    (err, np.abs(err), err * err, yy, yy * yy)):
        assert d[f][:5] == np.bincount(k[keep], weights=v[keep], minlength=5).tolist(), f
        assert d[f][5] == pytest.approx(v.sum(), rel=1e-12, abs=1e-12), f
