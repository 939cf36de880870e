"""The plan command: output, tile index files, and one-line errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import pytest


def test_plan_wrs2_scene_writes_index(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run_cli("plan", "--aoi", "091084", "--mission", "L8", "--start", "2021-01-01",
                             "--end", "2023-01-01", "--run-dir", str(run_dir))
    assert code == 0, err
    # three WRS-2 paths see the scene (its neighbours' sidelap): ~3 x 46 dates, so 256 px tiles fit the budget
    assert "593 of 256 px" in out and "~138 optical dates" in out and "EPSG:32755" in out and "31,680" in out
    tiles = gpd.read_parquet(run_dir / "tiles.parquet")
    assert len(tiles) == 593 and tiles.crs.to_epsg() == 32755
    assert {"tile_id", "geometry", "halo", "col_off", "row_off", "width", "height", "crs"} <= set(tiles.columns)
    assert tiles.tile_id.is_unique
    assert (tiles.halo.area > tiles.geometry.area).all()
    gj = json.loads((run_dir / "tiles.geojson").read_text())
    assert len(gj["features"]) == 593


def test_local_tiles_shrink_as_the_period_grows_so_a_worker_stays_in_its_budget(run_cli, tmp_path):
    """The local budget is a worker's whole memory: 2 years of one Landsat path fit 512 px tiles,
    4 years do not (a worker would reach about 1.1 GiB) and get 256 px; Earth Engine's model, of its
    own computation only, keeps 512 px for both."""
    sides = {}
    for backend in ("local", "gee"):
        for end in ("2023-01-01", "2025-01-01"):
            code, out, err = run_cli("plan", "--aoi", "145.8,-17.5,146.0,-17.3", "--mission", "L8", "--start",
                                     "2021-01-01", "--end", end, "--backend", backend, "--run-dir",
                                     str(tmp_path / f"{backend}{end}"))
            assert code == 0, err
            sides[backend, end[:4]] = next(int(w) for w in ("512", "256", "128") if f" of {w} px" in out)
    assert sides == {("local", "2023"): 512, ("local", "2025"): 256, ("gee", "2023"): 512, ("gee", "2025"): 512}


def test_plan_forced_tile_size_and_site(run_cli, tmp_path):
    code, out, _ = run_cli("plan", "--aoi", "north qld", "--tile-size", "128", "--run-dir", str(tmp_path / "r"))
    assert code == 0 and "128 px" in out and "forced" in out


def test_plan_gee_reports_quota(run_cli, tmp_path):
    code, out, _ = run_cli("plan", "--aoi", "091084", "--backend", "gee", "--start", "2021-01-01",
                           "--end", "2023-01-01", "--run-dir", str(tmp_path / "r"))
    assert code == 0 and "OVER" in out and "10,000-asset quota" in out


@pytest.fixture
def bad_inputs(aoi_files, tmp_path):
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"PCA_COMPONENTS": 3}))
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"TRAIN_TEST_SPLIT": 1.5}))
    return [
        ["--aoi", "0/0"],
        ["--aoi", "234/1"],
        ["--aoi", "91/300"],
        ["--aoi", "Atlantis"],
        ["--aoi", str(tmp_path / "missing.shp")],
        ["--aoi", str(aoi_files["empty"])],
        ["--aoi", str(aoi_files["garbage"])],
        ["--aoi", str(aoi_files["points"])],
        ["--aoi", str(aoi_files["fields"]), "--aoi-name", "Paddock 99"],
        ["--aoi", "150,-20,140,-19"],
        ["--aoi", "145,-95,146,-17"],
        ["--aoi", "091084", "--start", "2022-01-01", "--end", "2021-01-01"],
        ["--aoi", "091084", "--start", "2021-13-01"],
        ["--aoi", "091084", "--start", "2010-01-01"],
        ["--aoi", "091084", "--config", str(unknown)],
        ["--aoi", "091084", "--config", str(notjson)],
        ["--aoi", "091084", "--config", str(tmp_path / "nope.json")],
        ["--aoi", "091084", "--config", str(split)],
        ["--aoi", "091084", "--mission", "L7"],
        ["--aoi", "091084", "--tile-size", "0"],
        ["--aoi", "091084", "--tile-size", "33"],
        ["--aoi", "091084", "--tile-size", "abc"],
        ["--aoi", "091084", "--crs", "EPSG:4326"],
        ["--aoi", "091084", "--tile-budget-mb", "1", "--start", "2016-01-01", "--end", "2024-01-01"],
        ["--aoi", "091084", "--source", "stac"],
    ]


def test_bad_inputs_one_line_error_nothing_written(run_cli, bad_inputs, tmp_path):
    assert len(bad_inputs) >= 15
    for args in bad_inputs:
        run_dir = tmp_path / "never"
        code, out, err = run_cli("plan", *args, "--run-dir", str(run_dir))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code != 0, args
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert "Traceback" not in err + out
        assert not run_dir.exists(), args


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "plan", "--aoi", "0/0", "--run-dir", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: WRS-2 path/row 0/0 does not exist")
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_help_for_every_command():
    for args in (["--help"], ["plan", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "--aoi" in proc.stdout or "COMMAND" in proc.stdout


def test_what_users_type_is_understood(run_cli, aoi_files, tmp_path):
    """Issue 12, 10: compact dates, lower-case missions, plan --yes, a wrong feature name."""
    out_dir = tmp_path / "p"
    code, out, err = run_cli("plan", "--aoi", "North Qld", "--start", "20210101", "--end", "20210701",
                             "--mission", "l8", "--yes", "--run-dir", str(out_dir))
    assert code == 0, err
    assert "L8 2021-01-01 to 2021-07-01" in out
    code, out, err = run_cli("plan", "--aoi", "North Qld", "--start", "2021/01/01", "--run-dir", str(tmp_path / "q"))
    assert code == 2 and "'2021/01/01' is not a day YYYY-MM-DD" in err and not (tmp_path / "q").exists()
    code, out, err = run_cli("plan", "--aoi", str(aoi_files["fields"]), "--aoi-name", "Paddok 7",
                             "--run-dir", str(tmp_path / "r"))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "did you mean 'Paddock 7'" in err and "Creek, Paddock 7" in err


def test_export_stac_offers_only_the_flags_it_uses(run_cli):
    code, out, err = run_cli("export-stac", "--help")
    assert code == 0
    out = out.split("examples:")[0]
    for used in ("--aoi", "--mission", "--start", "--seed", "--out"):
        assert used in out
    for ignored in ("--backend", "--workers", "--scheduler", "--project", "--run-dir", "--stac", "--keep-clear"):
        assert ignored not in out, ignored
    code, out, err = run_cli("export-stac", "--aoi", "North Qld", "--backend", "gee", "--out", "x")
    assert code == 2 and "unrecognized arguments: --backend" in err


def test_a_recorded_plan_is_resumed_as_planned_whatever_this_versions_budget_says(tmp_path):
    """A run planned 512 px tiles (an older budget model, or a bigger budget): resuming rebuilds that
    plan; starting the same job again in its directory names the two sizes and the resume command."""
    from engine.errors import RunDirError
    from engine.run.context import build_context
    from engine.run.record import check_compatible, context_from_run, run_description

    job = {"OPTICAL_MISSION": "L8", "START_DATE": "2021-01-01", "END_DATE": "2025-01-01",
           "RUN_DIR": str(tmp_path / "run")}
    aoi = "145.8,-17.5,146.0,-17.3"
    old = build_context(None, {**job, "TILE_SIZE": 512, "TILE_BUDGET_MB": 4096}, aoi)
    recorded = run_description(old)
    recorded["params"].update(TILE_SIZE=None, TILE_BUDGET_MB=1024)  # as if the budget had picked 512 px
    recorded["plan"]["budget_bytes"] = 2**30
    resumed = context_from_run(tmp_path / "run", recorded)
    assert resumed.plan.grid.tile_size == 512 and len(resumed.plan.tiles) == len(old.plan.tiles)

    again = build_context(None, job, aoi)
    assert again.plan.grid.tile_size == 256
    with pytest.raises(RunDirError) as e:
        check_compatible(recorded, again)
    assert "(512 px, this plan 256 px)" in str(e.value) and "python -m engine resume" in str(e.value)


def test_a_run_that_would_fill_the_disk_asks_first_and_writes_nothing(run_cli, tmp_path, monkeypatch):
    """The whole-scene job needs far more than a nearly full disk has: without --yes (no terminal to
    ask on) it is refused in one line naming the need, the free space and the remedies."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 2**30, 2**30))
    run_dir = tmp_path / "scene"
    code, out, err = run_cli("run", "--aoi", "091084", "--mission", "L8", "--start", "2019-01-01",
                             "--end", "2019-07-01", "--run-dir", str(run_dir), "-q")
    assert code != 0 and not run_dir.exists()
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    assert "1.0 GiB free" in line and "choose another --run-dir" in line and "--yes" in line
    assert "GiB more on the file system of" in line
    # --yes starts it anyway, saying so
    import engine.cli.commands as commands

    monkeypatch.setattr(commands, "_execute", lambda ctx, opts, backend=None: 0)
    code, out, err = run_cli("run", "--aoi", "091084", "--mission", "L8", "--start", "2019-01-01",
                             "--end", "2019-07-01", "--run-dir", str(run_dir), "-q", "--yes")
    assert code == 0 and "warning: this run may need" in out and "1.0 GiB free" in out, out + err


def test_the_scene_storage_estimate_brackets_what_a_scene_run_measured():
    """The whole-scene job of benchmarks/RESULTS.md ("Compute windows cut to the AOI's part of each
    tile"): its run directory peaked at 43,075 MiB (work files at the end of training) and its cube
    measured 29 GiB. The plan's figures stay above them (the disk guard must not under-ask) but not
    far above (it must not refuse a disk that holds the run)."""
    import datetime as dt

    from engine.run.context import build_context
    from engine.run.estimate import estimate

    job = {"OPTICAL_MISSION": "L8", "START_DATE": dt.date(2019, 1, 1), "END_DATE": dt.date(2021, 1, 1)}
    est = estimate(build_context(None, job, "091084"))
    measured_peak, measured_cube = 43_075 * 2**20, 29 * 2**30
    assert measured_peak <= est.peak_bytes <= 1.2 * measured_peak
    assert measured_cube <= est.bytes <= 1.6 * measured_cube
