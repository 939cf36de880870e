"""The paths users take, in the order they take them (issue 12): plan then run, plans over runs, bboxes."""
from __future__ import annotations

import pytest

from tests.local.conftest import SHORT


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Work in an empty folder, as a user in a fresh clone does (default run directories under runs/)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_plan_then_run_then_status_then_report_with_default_directories(run_cli, square_aoi, in_tmp):
    job = ["--aoi", str(square_aoi), *SHORT, "--tile-size", "256"]
    code, out, err = run_cli("plan", *job)
    assert code == 0, err
    [run_dir] = (in_tmp / "runs").iterdir()
    assert (run_dir / "tiles.parquet").exists() and not (run_dir / "run.json").exists()

    code, out, err = run_cli("run", *job, "-q")
    assert code == 0, err
    assert (run_dir / "run.json").exists() and (run_dir / "manifest.json").exists()
    index = (run_dir / "tiles.parquet").read_bytes()
    import json

    import pandas as pd

    assert json.loads((run_dir / "manifest.json").read_text())["mission"] == "S2"
    images = pd.read_csv(run_dir / "images.csv")
    assert images["Pixel_count"].dtype.kind == "i"
    assert not (images["MAE"] < 0).any() and images["MAE"].notna().any()
    assert images.loc[images["Paired"] & (images["Cloud_cover"] == 100), "MAE"].isna().all()
    # products are as readable as any file the user makes (the umask's mode, not mkstemp's 0600)
    from engine.io import FILE_MODE

    modes = {str(p.relative_to(run_dir)): p.stat().st_mode & 0o777 for p in run_dir.rglob("*")
             if p.is_file() and p.name != ".lock"}
    assert {"manifest.json", "run.json", "images.csv", "tiles.parquet", "global/global.json"} <= set(modes)
    assert any(k.endswith("model.tif") for k in modes)
    assert {k: m for k, m in modes.items() if m != FILE_MODE} == {}

    # plan again, same job: the run's tile index (with its status column) is kept
    code, out, err = run_cli("plan", *job)
    assert code == 0, err
    assert "already holds this run" in out
    assert (run_dir / "tiles.parquet").read_bytes() == index

    # plan again with another setting into the same directory: refused, nothing replaced
    code, out, err = run_cli("plan", *job, "--scale", "20", "--run-dir", str(run_dir))
    assert code != 0 and err.startswith("error:") and "ANALYSIS_SCALE" in err and len(err.splitlines()) == 1
    assert (run_dir / "tiles.parquet").read_bytes() == index

    code, out, err = run_cli("status", str(run_dir))
    assert code == 0 and "COMPLETE" in out, out
    code, out, err = run_cli("report", str(run_dir))
    assert code == 0, err
    assert any(run_dir.glob("report*"))


def test_the_same_job_on_the_other_backend_gets_its_own_default_directory(run_cli, square_aoi, in_tmp):
    job = ["--aoi", str(square_aoi), *SHORT, "--tile-size", "256"]
    assert run_cli("plan", *job)[0] == 0
    code, out, err = run_cli("plan", *job, "--backend", "gee")
    assert code == 0, err
    [local, gee] = sorted((in_tmp / "runs").iterdir())
    assert gee.name == f"{local.name}_gee"
    # named explicitly, a run's directory refuses the other backend
    code, out, err = run_cli("run", *job, "--yes", "-q")
    assert code == 0, err
    code, out, err = run_cli("plan", *job, "--backend", "gee", "--run-dir", str(local))
    assert code == 2 and "holds a local run and this command asks for the gee backend" in err, err


def test_a_bbox_west_of_greenwich_is_one_argument_and_keeps_its_signs(run_cli, in_tmp):
    code, out, err = run_cli("plan", "--aoi", "-122.5,37.6,-122.4,37.7")
    assert code == 0, err
    code, out, err = run_cli("plan", "--aoi", "-2,10,1,11", "--tile-size", "2048", "--tile-budget-mb", "32000")
    assert code == 0, err
    code, out, err = run_cli("plan", "--aoi", "-2,10,-1,11", "--tile-size", "2048", "--tile-budget-mb", "32000")
    assert code == 0, err
    names = sorted(p.name for p in (in_tmp / "runs").iterdir())
    assert len(names) == 3, names
    assert "bbox_m122_5_37_6_m122_4_37_7_S2_20210101_20220101" in names


def test_a_period_too_short_to_train_is_refused_before_anything_is_written(run_cli, square_aoi, in_tmp):
    job = ["--aoi", str(square_aoi), "--mission", "S2", "--start", "2021-01-01", "--end", "2021-04-01"]
    code, out, err = run_cli("plan", *job, "--run-dir", str(in_tmp / "planned"))
    assert code == 0 and "warning:" in out and "train the models" in out, out
    code, out, err = run_cli("run", *job, "--run-dir", str(in_tmp / "run"), "--yes", "-q")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "train the models" in err and "extend the period" in err, err
    assert not (in_tmp / "run").exists()


def test_set_reaches_any_parameter_and_rejects_typos(run_cli, square_aoi, in_tmp):
    job = ["--aoi", str(square_aoi), "--mission", "S2", "--run-dir", str(in_tmp / "p")]
    code, out, err = run_cli("plan", *job, "--set", "TRAIN_TEST_SPLT=0.9")
    assert code == 2 and "did you mean TRAIN_TEST_SPLIT" in err and not (in_tmp / "p").exists()
    code, out, err = run_cli("plan", *job, "--set", "STATS_SCALE=200", "--set", "CRS=EPSG:32755")
    assert code == 0, err
