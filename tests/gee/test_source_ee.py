"""``--source ee``: the local backend reading Earth Engine's collections with computePixels (the stand-in
here, which serves the synthetic world) gives the same cube as reading the synthetic source directly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from engine.backends.gee.source import READ_EECU_PER_PIXEL_BAND, EarthEngineSource, planned_reads
from engine.cli import main
from engine.ee_standin import StandIn
from engine.sources import get_source

from .backend_support import QUICK, plant_credentials

pytestmark = pytest.mark.standin

CALLS = "requests.POST.image.computePixels"
SEED = 3
# 50 x 40 px of 30 m in the quick AOI's zone, a window that does not start on a tile boundary
WINDOW = GeoBox((40, 50), Affine(30, 0, 368_670, 0, -30, 8_112_990), "EPSG:32755")


def _run(tmp_path, name: str, *extra: str) -> int:
    argv = ["run", "--backend", "local", *QUICK, "--seed", str(SEED), "--run-dir", str(tmp_path / name),
            "--yes", "-q", *extra]
    return main(argv)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same quick run twice: --source synthetic, and --source ee on a stand-in of the same seed."""
    tmp = tmp_path_factory.mktemp("source-ee")
    with pytest.MonkeyPatch.context() as mp, StandIn(task_seconds=0.05, seed=SEED) as s:
        plant_credentials(tmp, mp)
        assert _run(tmp, "syn", "--source", "synthetic") == 0
        before = s.counters[CALLS]
        assert _run(tmp, "ee", "--source", "ee", "--ee-url", s.url, "--project", "p") == 0
        yield tmp, s.counters[CALLS] - before
    import ee

    ee.Reset()


def test_run_source_ee_gives_the_synthetic_cube_and_reports_its_reads(runs, capsys):
    import xarray as xr

    tmp, requests = runs
    ee_cube = xr.open_zarr(tmp / "ee" / "cube.zarr", consolidated=False)
    syn_cube = xr.open_zarr(tmp / "syn" / "cube.zarr", consolidated=False)
    assert sorted(ee_cube.data_vars) == sorted(syn_cube.data_vars)
    assert np.array_equal(ee_cube["time"].values, syn_cube["time"].values)
    for v in syn_cube.data_vars:
        assert np.array_equal(ee_cube[v].values, syn_cube[v].values, equal_nan=True), v
    assert np.isfinite(ee_cube["filled"].values).sum() > 1000  # not two empty cubes
    pd.testing.assert_frame_equal(pd.read_csv(tmp / "ee" / "images.csv"), pd.read_csv(tmp / "syn" / "images.csv"))
    # the held-out skill is the same; only the synthetic source knows the truth under the clouds
    ee_skill, syn_skill = pd.read_csv(tmp / "ee" / "skill.csv"), pd.read_csv(tmp / "syn" / "skill.csv")
    assert set(ee_skill["target"]) == {"validation", "testing"} and "truth" in set(syn_skill["target"])
    pd.testing.assert_frame_equal(ee_skill, syn_skill[syn_skill["target"] != "truth"].reset_index(drop=True))
    m = json.loads((tmp / "ee" / "manifest.json").read_text())
    reads = m["source_reads"]
    assert m["source"] == "ee" and "source_reads" not in json.loads((tmp / "syn" / "manifest.json").read_text())
    # every computePixels the stand-in answered is counted once (global pass and stage A, on the workers)
    assert reads["requests"] == requests > 0
    assert reads["eecu_seconds_estimated"] == pytest.approx(reads["pixel_bands"] * READ_EECU_PER_PIXEL_BAND, abs=1e-3)
    assert reads["pixel_bands"] > 2 * 1727 * 12  # at least the AOI's pixels x dates, optical and SAR
    # what plan announced for the run is close to what it read
    from engine.run.record import context_from_run
    from engine.run.rundir import RunDir

    rd = RunDir(tmp / "ee")
    planned = planned_reads(context_from_run(rd.root, rd.read_run()))
    assert 0.5 < planned["pixel_bands"] / reads["pixel_bands"] < 2
    assert 0.5 < planned["requests"] / reads["requests"] < 2


@pytest.fixture
def source_standin():
    with StandIn(task_seconds=0.05, seed=SEED, fault_429=0.3) as s:
        yield s
    import ee

    ee.Reset()


def test_reads_equal_the_synthetic_source_through_429s_and_small_requests(source_standin):
    """Catalogs and pixels of a window off the tile grid equal the synthetic source's, with 30 % of
    the requests answered 429 and each read split into many small computePixels requests."""
    syn = get_source("synthetic", seed=SEED)
    src = EarthEngineSource("p", source_standin.url, requests=3, request_bytes=50 * 10 * 4, poll_interval_s=0.1)
    opt = src.optical_catalog(WINDOW, "L8", "2021-01-01", "2021-03-01")
    pd.testing.assert_frame_equal(opt, syn.optical_catalog(WINDOW, "L8", "2021-01-01", "2021-03-01"))
    sar = src.sar_catalog(WINDOW, "2021-01-01", "2021-02-01")
    pd.testing.assert_frame_equal(sar, syn.sar_catalog(WINDOW, "2021-01-01", "2021-02-01"))
    ids = list(opt["id"][:3])
    got, want = src.read_optical(WINDOW, ids), syn.read_optical(WINDOW, ids)
    for band in ("red", "nir", "qa"):
        assert got[band].dtype == want[band].dtype
        assert np.array_equal(got[band].values, want[band].values, equal_nan=True), band
    assert np.isnan(want["red"].values).any() or (want["qa"].values & 0b11110).any()  # masks were exercised
    got, want = src.read_sar(WINDOW, list(sar["id"][:2])), syn.read_sar(WINDOW, list(sar["id"][:2]))
    for band in ("vv", "vh"):
        assert np.array_equal(got[band].values, want[band].values, equal_nan=True), band
    usage = src.usage()
    # 3 optical images x 3 bands and 2 SAR x 2 bands of 50 x 40 px: one band of 10 rows a request
    assert usage["requests"] == (9 + 4) * 4 and usage["pixel_bands"] == (9 + 4) * 50 * 40
    assert src.api().retries > 0  # the 429s were retried, not returned


def test_plan_announces_the_reads_and_source_ee_is_for_the_local_backend(capsys, tmp_path):
    assert main(["plan", "--source", "ee", *QUICK, "--project", "p", "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "Earth Engine reads" in out and "computePixels requests" in out and "no batch task" in out
    assert main(["plan", "--backend", "gee", "--source", "ee", "--aoi", QUICK[1], "--project", "p"]) == 2
    err = capsys.readouterr().err
    assert "--source ee" in err and "--backend local" in err and "Traceback" not in err
