"""A tile stage's science is apart from its I/O: ``train_products`` and ``finish_products`` turn
hand-made arrays and AOI-wide statistics into products, with no run directory, source or cluster."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from config.parameters import Parameters
from engine.backends.local.finish import finish_products
from engine.backends.local.inputs import Optical
from engine.backends.local.train import train_products
from engine.run.stages import GlobalStats, Reduction
from engine.science.gaps import GAP_BANDS
from engine.science.sar import composite
from tiling.grid import GridSpec, Tile

N, SIZE, HALO = 24, 32, 12


@pytest.fixture
def tile_inputs():
    rng = np.random.default_rng(7)
    tile = Tile(GridSpec(32755, 30.0, SIZE, HALO), 3, -5)
    side = SIZE + 2 * HALO
    days = 18_628 + 16 * np.arange(N)  # 2021-01-01 onwards
    images = pd.DataFrame({
        "id": [f"L8_{d}" for d in range(N)], "time": pd.to_datetime(days, unit="D", utc=True), "day": days,
        "cloud_pct": 20.0, "pixel_count": 1000.0, "s1_count": 1, "vv_mean": -11.0, "vh_mean": -17.0,
        "paired": True, "random": rng.random(N), "split": ["Training"] * 20 + ["Testing"] * 4})
    stats = GlobalStats(images, pd.DataFrame({"id": [f"S1_{d}" for d in range(N)], "time": images["time"],
                                              "day": days}), None, 3, 1)
    vv = (-11 + rng.normal(0, 1.5, (N, side, side))).astype(np.float32)
    vh = (-17 + rng.normal(0, 1.5, (N, side, side))).astype(np.float32)
    ndvi = np.clip(0.5 + 0.03 * (vv + 11) + rng.normal(0, 0.01, vv.shape), -1, 1).astype(np.float32)
    cloudy = rng.random(ndvi.shape) < 0.2
    opt = Optical(np.where(cloudy, np.nan, ndvi).astype(np.float32), cloudy, np.ones_like(cloudy))
    inside = np.ones((side, side), bool)
    inside[:, :8] = False  # the AOI cuts the tile's western edge
    params = Parameters(OPTICAL_MISSION="L8", START_DATE="2021-01-01", END_DATE="2022-01-15", KEEP_CLEAR_OBSERVED=True)
    vv_c, vh_c = (composite(a, days, days, params.SAR_WINDOW_DAYS)[0] for a in (vv, vh))  # every date paired
    return params, stats, tile, inside, opt, vv_c, vh_c


def test_train_then_finish_from_arrays_alone(tile_inputs, tmp_path, monkeypatch):
    params, stats, tile, inside, opt, vv_c, vh_c = tile_inputs
    monkeypatch.chdir(tmp_path)  # nothing may be written anywhere
    a = train_products(params, stats, tile.window, HALO, inside, opt, vv_c, vh_c)
    again = train_products(params, stats, tile.window, HALO, inside, opt, vv_c, vh_c)
    assert np.array_equal(a.coef, again.coef, equal_nan=True)  # deterministic
    assert a.coef.shape == (9, SIZE, SIZE) and set(a.cube) == set(GAP_BANDS)
    assert {k: v.shape for k, v in a.work.items()} == {k: (N, SIZE + 2, SIZE + 2) for k in ("pred", "obs", "mask")}
    core_inside = inside[HALO:-HALO, HALO:-HALO]
    assert np.isnan(a.coef[:, ~core_inside]).all()  # outside the AOI: no model
    assert np.isfinite(a.coef[:, core_inside]).mean() > 0.9  # 20 training dates, 20 % cloud
    assert a.stats["pixels"] == core_inside.sum() and len(a.sample["key"]) == a.stats["sample_rows"] > 0

    f = finish_products(params, stats, Reduction(None, {}, 0), tile.window, core_inside, *(a.work[k] for k in ("pred", "obs", "mask")))
    obs, mask, filled = a.work["obs"][:, 1:-1, 1:-1], a.work["mask"][:, 1:-1, 1:-1], f.cube["filled"]
    clear = (mask == 0) & core_inside
    assert np.array_equal(filled[clear], obs[clear])  # KEEP_CLEAR_OBSERVED
    assert np.isfinite(filled[(mask == 1) & core_inside]).mean() > 0.9  # cloudy pixels filled from SAR
    assert np.isnan(filled[:, ~core_inside]).all() and (f.cube["mask"][:, ~core_inside] == 255).all()
    assert sum(f.stats["mae"]["n"]) > 0 and "testing" in f.stats["skill"]
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("with_basis", [False, True])
def test_finish_spends_its_inputs_only_when_allowed(tile_inputs, with_basis):
    """``overwrite=False`` leaves the caller's arrays as they were; ``overwrite=True`` (the stage's
    own loaded work files) gives the same products while calibrating and masking in place."""
    from engine.science.pca import pca_basis

    params, stats, tile, inside, opt, vv_c, vh_c = tile_inputs
    params = params.model_copy(update={"EXPORT_PCA": True, "CLIP_NDVI": True})
    a = train_products(params, stats, tile.window, HALO, inside, opt, vv_c, vh_c)
    work = [a.work[k] for k in ("pred", "obs", "mask")]
    basis = pca_basis(a.work["pred"].reshape(N, -1).T[::7], 0.3) if with_basis else None
    reduction = Reduction(basis, {}, 0)
    core_inside = inside[HALO:-HALO, HALO:-HALO]
    kept = [w.copy() for w in work]
    safe = finish_products(params, stats, reduction, tile.window, core_inside, *work)
    assert all(np.array_equal(w, k, equal_nan=True) for w, k in zip(work, kept, strict=True))
    spent = finish_products(params, stats, reduction, tile.window, core_inside, *work, overwrite=True)
    assert set(safe.cube) == set(spent.cube) == {"filled", "mask", "prediction", "observation", "smoothed"}
    for name in safe.cube:
        assert np.array_equal(safe.cube[name], spent.cube[name], equal_nan=True), name
    assert np.isnan(spent.cube["smoothed"][:, ~core_inside]).all()
    assert safe.stats == spent.stats
