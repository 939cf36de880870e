"""End-to-end local runs on the synthetic source (real dask LocalCluster, real Zarr/COG files)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import MultiPolygon, box

from engine.run.cube import open_cube
from engine.run.ledger import Ledger
from engine.science.gaps import GAP_BANDS
from tests.local.conftest import SHORT, SQUARE_UTM, write_aoi

pytestmark = pytest.mark.slow


def run_args(aoi, run_dir, *extra):
    return ("run", "--aoi", str(aoi), *SHORT, "--run-dir", str(run_dir), "--workers", "2", "--yes", "-q", *extra)


def test_tiling_is_transparent(run_cli, square_aoi, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    code, out, err = run_cli(*run_args(square_aoi, one, "--tile-size", "512"))
    assert code == 0, err + out
    code, out, err = run_cli(*run_args(square_aoi, many, "--tile-size", "128"))
    assert code == 0, err + out
    m1 = json.loads((one / "manifest.json").read_text())
    m2 = json.loads((many / "manifest.json").read_text())
    assert len(m1["tiles"]) == 1 and len(m2["tiles"]) >= 4
    # compare on the common pixel grid (each cube spans its own tiles' extent)
    a, b = xr.align(open_cube(one / "cube.zarr"), open_cube(many / "cube.zarr"), join="inner")
    assert a.sizes["x"] >= 300 and a.sizes["y"] >= 300
    for name in ("filled", "prediction", "observation", *GAP_BANDS):
        x, y = a[name].values, b[name].values
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.nanmax(np.abs(x - y)) <= 1e-4, name
    assert (a["mask"].values == b["mask"].values).all()
    # not empty: over 8 months many pixels have too few clear training dates for a model
    assert np.isfinite(a["filled"].values).sum() > 0.3 * a["filled"].size
    t1 = pd.read_csv(one / "images.csv")
    t2 = pd.read_csv(many / "images.csv")
    pd.testing.assert_frame_equal(t1.drop(columns=["MAE"]), t2.drop(columns=["MAE"]))
    np.testing.assert_allclose(t1["MAE"], t2["MAE"], atol=1e-5)


def test_second_run_skips_complete_tiles(run_cli, square_aoi, tmp_path):
    run_dir = tmp_path / "r"
    assert run_cli(*run_args(square_aoi, run_dir, "--tile-size", "256"))[0] == 0
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        before = {(r.tile_id, r.stage): r.attempts for r in ledger.records() if r.stage != "merge"}
    manifest_before = json.loads((run_dir / "manifest.json").read_text())
    code, out, err = run_cli(*run_args(square_aoi, run_dir, "--tile-size", "256"))
    assert code == 0, err
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        after = {(r.tile_id, r.stage): r.attempts for r in ledger.records() if r.stage != "merge"}
    assert before == after and all(v == 1 for v in after.values())
    assert json.loads((run_dir / "manifest.json").read_text())["tiles"] == manifest_before["tiles"]


def test_too_few_pairs_is_a_clear_error_and_writes_nothing(run_cli, square_aoi, tmp_path):
    run_dir = tmp_path / "r"
    code, out, err = run_cli("run", "--aoi", str(square_aoi), "--start", "2021-01-01", "--end", "2021-01-25",
                             "--run-dir", str(run_dir), "--yes", "-q")
    assert code != 0
    assert err.startswith("error: only") and "pairs" in err and "extend the period" in err
    assert not run_dir.exists()


def test_tile_without_valid_data_is_skipped_and_recorded(run_cli, tmp_path):
    # the square plus a 2 m wide sliver in another tile: that tile touches the AOI but holds no pixel centre
    sliver = box(745_001, 8_112_200, 745_003, 8_113_000)  # pixel centres sit at x = ...5
    aoi = write_aoi(tmp_path / "with_sliver.geojson", MultiPolygon([SQUARE_UTM, sliver]))
    run_dir = tmp_path / "r"
    code, out, err = run_cli(*run_args(aoi, run_dir, "--tile-size", "512"))
    assert code == 0, err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    statuses = {t["id"]: t["status"] for t in manifest["tiles"]}
    assert sorted(statuses.values()) == ["done", "empty"]
    assert manifest["complete"] is True


def test_default_site_run_prints_skill_and_synthetic_label(run_cli, tmp_path):
    run_dir = tmp_path / "nq"
    code, out, err = run_cli("run", "--aoi", "North Qld", *SHORT, "--run-dir", str(run_dir), "--yes")
    assert code == 0, err
    assert "SYNTHETIC DATA" in out
    assert "Held-out skill" in out and "whittaker" in out and "linear" in out
    assert "synthetic truth" in out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["WARNING"]
    cube = open_cube(run_dir / "cube.zarr")
    assert cube.attrs["synthetic"] == 1
    assert cube["filled"].dims == ("time", "y", "x")
    assert np.issubdtype(cube["time"].dtype, np.datetime64)
    assert "EPSG" in cube["spatial_ref"].attrs["crs_wkt"] and "GeoTransform" in cube["spatial_ref"].attrs
    skill = pd.read_csv(run_dir / "skill.csv")
    truth = skill[(skill.target == "truth") & (skill.stratum == "all")].set_index("method")
    assert truth.loc["sar", "n"] > 0 and np.isfinite(truth.loc["sar", "MAE"])
    assert truth.loc["sar", "MAE"] < 0.2
