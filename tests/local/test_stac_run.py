"""A run from a local STAC catalog of COGs gives the same outputs as the synthetic source run directly."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import xarray as xr

from engine.run.cube import open_cube
from engine.science.gaps import GAP_BANDS
from tests.local.conftest import SHORT

pytestmark = pytest.mark.slow


def test_stac_catalog_run_matches_synthetic_run(run_cli, square_aoi, tmp_path):
    common = ("--aoi", str(square_aoi), *SHORT, "--tile-size", "256")
    catalog = tmp_path / "stac"
    code, out, err = run_cli("export-stac", *common, "--out", str(catalog), "--float")
    assert code == 0, err
    assert (catalog / "catalog.json").exists() and list(catalog.rglob("*.tif"))

    syn, stac = tmp_path / "syn", tmp_path / "stacrun"
    code, out, err = run_cli("run", *common, "--run-dir", str(syn), "--yes", "-q")
    assert code == 0, err
    # --stac alone selects the STAC source; the exported catalog carries the synthetic label
    code, out, err = run_cli("run", *common, "--run-dir", str(stac), "--stac", str(catalog / "catalog.json"),
                             "--yes", "-q")
    assert code == 0, err
    assert "SYNTHETIC DATA" in out and "holds the engine's synthetic data" in out

    a, b = open_cube(syn / "cube.zarr"), open_cube(stac / "cube.zarr")
    assert a.sizes == b.sizes and (a.time.values == b.time.values).all()
    for name in ("filled", "mask", "prediction", "observation", *GAP_BANDS):
        xr.testing.assert_identical(a[name].reset_coords(drop=True), b[name].reset_coords(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(syn / "images.csv"), pd.read_csv(stac / "images.csv"))
    m = json.loads((stac / "manifest.json").read_text())
    assert m["synthetic"] is True and m["source"] == "stac" and "WARNING" in m
    # same held-out skill; the STAC run has no truth to score against
    sa, sb = pd.read_csv(syn / "skill.csv"), pd.read_csv(stac / "skill.csv")
    pd.testing.assert_frame_equal(sa[sa.target != "truth"].reset_index(drop=True), sb.reset_index(drop=True))
