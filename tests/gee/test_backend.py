"""The gee backend end to end: the real CLI and earthengine-api client against the stand-in."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from engine.ee_standin import StandIn
from engine.ee_standin.execution import Limits
from engine.run.ledger import Ledger

from .backend_support import (EXPORTS_PER_TILE, N_TILES, OUTPUT_STAGES, QUICK, REPO, SECRETS, descriptions,
                              engine_argv, expected_bands, manifest, paired_dates, plant_credentials, run_engine,
                              subprocess_env, write_config)

pytestmark = pytest.mark.standin


@pytest.fixture
def creds(tmp_path, monkeypatch):
    return plant_credentials(tmp_path, monkeypatch)


@pytest.fixture
def standin():
    s = StandIn(task_seconds=0.05, running_cap=2).start()
    yield s
    s.stop()
    import ee

    ee.Reset()


def _no_duplicates(s: StandIn) -> None:
    counts = Counter(descriptions(s))
    assert [d for d, n in counts.items() if n > 1] == []
    assert s.counters["duplicate_description"] == 0


def test_run_completes_with_every_model_and_output(tmp_path, creds, standin, capsys, eecu_journal):
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    code = run_engine(standin.url, run_dir, write_config(tmp_path))
    elapsed = time.monotonic() - t0
    out = capsys.readouterr()
    assert code == 0, out.err
    printed = out.out
    c = standin.counters
    # every tile: the model, one outputs image and the images table, each exported exactly once
    assert c["exports_submitted"] == N_TILES * EXPORTS_PER_TILE
    assert c["image_exports_submitted"] == 2 * N_TILES and c["table_exports_submitted"] == N_TILES
    assert c["tasks_succeeded"] == N_TILES * EXPORTS_PER_TILE
    _no_duplicates(standin)
    assert c["running_max"] <= 2
    assert c["invalid_expressions"] == 0 and c["compute_unsupported"] == 0 and c["handler_errors"] == 0
    # one paged listOperations per poll (POLL_INTERVAL_S 0.1), never per task
    assert 0 < c["list_operations_calls"] <= elapsed / 0.1 + 5
    assert c["get_operation_calls"] == 0
    m = manifest(run_dir)
    assert m["backend"] == "gee" and m["complete"] and m["synthetic"]
    assert m["tile_counts"] == {"done": N_TILES}
    models = [a for a in standin.state.assets if "/models/" in a]
    assert len(models) == N_TILES
    for name in models:
        props = standin.state.assets[name]["properties"]
        assert props["science_hash"] == m["science_hash"] and props["tile_id"] in name
        assert props["bands"].split(",") == ["constant", "VV_mean", "VH_mean", "VV_diff", "VH_diff", "VV_Nmean",
                                             "VH_Nmean", "VV_Ndiff", "VH_Ndiff"]
    bands = expected_bands(run_dir)
    assert len(bands) == 4 * len(paired_dates(run_dir)) + 7 and bands[0].startswith("filled_2021")
    for tile in m["tiles"]:
        assert tile["status"] == "done"
        assert set(tile["outputs"]) == set(OUTPUT_STAGES)
        for out in tile["outputs"].values():
            assert out["status"] == "done" and out["parts"][0]["asset"] in standin.state.assets
        # one multi-band float32 image: filled, mask, prediction, observation per date, then the gap bands
        image = standin.state.assets[tile["outputs"]["outputs"]["parts"][0]["asset"]]
        assert image["type"] == "IMAGE" and [b["id"] for b in image["bands"]] == bands
        assert image["properties"]["layout"] == m["products"]["layout"]["images"]["outputs"]["key"]
        table = standin.state.assets[tile["outputs"]["images"]["parts"][0]["asset"]]
        assert table["type"] == "TABLE"
    assert m["products"]["exports_per_tile"] == EXPORTS_PER_TILE and m["products"]["outputs"] == list(OUTPUT_STAGES)
    assert m["products"]["layout"]["type"] == "float32"
    assert m["products"]["layout"]["images"]["outputs"]["band_names"] == bands
    # every band cast to float32 (the mask too: 0-3 are exact), the mask bands pyramided by MODE
    for t in standin.state.task_order:
        if t.description.startswith("sarinfill_outputs_"):
            opts = t.request["assetExportOptions"]
            assert opts["pyramidingPolicy"] == "MEAN"
            assert opts["pyramidingPolicyOverrides"] == {b: "MODE" for b in bands if b.startswith("mask_")}
            assert '"Image.toFloat"' in json.dumps(t.request["expression"])
    assert (run_dir / "tiles.parquet").exists() and (run_dir / "tiles.geojson").exists()
    assert (run_dir / "images.csv").exists()
    # the folders the engine created
    run_folder = m["earth_engine"]["asset_folder"]
    assert standin.state.assets[run_folder]["type"] == "FOLDER"
    _eecu_accounted(standin, run_dir, m, eecu_journal)
    assert "Earth Engine compute used" in printed and "EECU-h (train" in printed
    from engine.cli import main

    assert main(["status", str(run_dir)]) == 0
    assert "Earth Engine compute used" in capsys.readouterr().out


def _eecu_accounted(standin: StandIn, run_dir, m: dict, journal) -> None:
    """Each operation's reported EECU-seconds are in the ledger and the journal; the manifest's total is their sum."""
    import ee

    from engine.run.eecu_journal import read

    reported = {op["name"]: op["metadata"]["batchEecuUsageSeconds"] for op in ee.data.listOperations()
                if op["metadata"]["state"] == "SUCCEEDED"}
    assert len(reported) == N_TILES * EXPORTS_PER_TILE and all(v > 0 for v in reported.values())
    with Ledger(run_dir / "ledger.sqlite", read_only=True) as ledger:
        ops = {op.name: op for op in ledger.operations()}
    assert {n: op.eecu_seconds for n, op in ops.items()} == pytest.approx(reported)
    assert all(op.pixel_dates > 0 for op in ops.values())
    usage = m["eecu"]
    assert usage["total_eecu_seconds"] == pytest.approx(sum(reported.values()), abs=1e-3)
    assert usage["operations"] == len(reported) and usage["tier"] == "community"
    assert {g: u["operations"] for g, u in usage["by_stage"].items()} == {"train": N_TILES, "finish": 2 * N_TILES}
    journaled = read(journal)
    assert {e.operation for e in journaled} == set(reported) and {e.service for e in journaled} == {"loopback"}


def test_faults_splits_and_one_permanent_failure(tmp_path, creds):
    """30 % 429, 5 % 500, a tile too big for the cost model's memory, one permanent failure.

    The QUICK AOI as one 64 px tile: its outputs image holds ~1,865 MiB in the stand-in's cost model
    (its statistics-sample computePixels ~1,670 MiB, its images table ~890 MiB, a 32 px tile's
    outputs < 500 MiB), so with 1,750 MiB it fails "User memory limit exceeded." by computation,
    not by an injected fault, and is split."""
    parent = "32755-30m-64px-x192-y-4226"
    broken = parent + "b"
    with StandIn(task_seconds=0.03, running_cap=2, fault_429=0.3, fault_500=0.05, seed=0,
                 limits=Limits(memory_bytes=1750 * 2**20),
                 permanent_fail=[(broken, "Image.select: Pattern 'SR_B9' did not match any bands.")]) as s:
        run_dir = tmp_path / "run"
        code = run_engine(s.url, run_dir, write_config(tmp_path), "--tile-size", "64")
        c = s.counters
        assert c["faults_429"] > 3 and c["faults_500"] > 0
        assert c["running_max"] <= 2
        assert c["tasks_failed"] == 2  # the computation over the memory limit + the permanent failure
        memory = [t.description for t in s.state.task_order if t.failure and "User memory limit" in t.failure]
        assert memory == [f"sarinfill_outputs_{parent}"]
        _no_duplicates(s)
    assert code == 1  # the run goes on, the exit status reports the failed tile
    m = manifest(run_dir)
    [tile] = m["tiles"]  # a split of the outputs stage keeps the tile's model: its parts are the leaves
    assert tile["id"] == parent and tile["status"] == "failed" and tile["train"]["status"] == "done"
    assert tile["outputs"]["images"]["status"] == "done"
    out = tile["outputs"]["outputs"]
    assert out["status"] == "failed" and "Pattern 'SR_B9' did not match any bands" in out["error"]
    leaves = {leaf["tile"]: leaf for leaf in out["parts"]}
    assert sorted(leaves) == [parent + c for c in "abcd"]
    assert {t: leaf["status"] for t, leaf in leaves.items()} == {t: "failed" if t == broken else "done" for t in leaves}
    assert all(leaf["asset"] in s.state.assets for t, leaf in leaves.items() if t != broken)
    assert "Pattern 'SR_B9'" in m["failures"][broken]
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        rec = ledger.get(parent, "outputs")
        assert rec.status == "split" and "User memory limit exceeded" in rec.message


def test_expression_check_catches_a_wrong_function_or_argument(tmp_path, creds, standin, monkeypatch, capsys):
    import ee

    from engine.backends.gee import expressions as X

    original = X.covariates

    def broken(spec, s1, day, vv, vh):
        cov = original(spec, s1, day, vv, vh)
        select = ee.ApiFunction.lookup("Image.select")
        wrong = ee.ApiFunction("Image.selectt", select.getSignature())  # a function Earth Engine does not have
        return ee.Image(ee.ComputedObject(wrong, {"input": cov, "bandSelectors": list(X.COV_BANDS)}))

    monkeypatch.setattr(X, "covariates", broken)
    code = run_engine(standin.url, tmp_path / "run", write_config(tmp_path))
    err = capsys.readouterr().err
    assert code != 0
    assert "Unknown function: Image.selectt" in err
    assert standin.counters["invalid_expressions"] > 0
    assert standin.counters["tasks_started"] == 0

    def bad_argument(spec, s1, day, vv, vh):
        cov = original(spec, s1, day, vv, vh)
        return ee.Image(ee.ComputedObject(ee.ApiFunction.lookup("Image.select"), {"input": cov, "bandz": ["VV_mean"]}))

    monkeypatch.setattr(X, "covariates", bad_argument)
    code = run_engine(standin.url, tmp_path / "run2", write_config(tmp_path))
    assert code != 0
    assert "Image.select, argument 'bandz': unknown argument." in capsys.readouterr().err


def _train_exports(s: StandIn) -> int:
    return sum(d.startswith("sarinfill_train_") for d in descriptions(s))


def test_models_reused_with_same_config_and_retrained_on_change(tmp_path, creds, standin):
    cfg = write_config(tmp_path)
    assert run_engine(standin.url, tmp_path / "a" / "job", cfg) == 0
    assert _train_exports(standin) == N_TILES
    # a second run (new run directory, same run name, same configuration): models reused
    before = standin.counters["exports_submitted"]
    assert run_engine(standin.url, tmp_path / "b" / "job", cfg) == 0
    assert _train_exports(standin) == N_TILES
    m = manifest(tmp_path / "b" / "job")
    assert all(t["train"]["reused"] for t in m["tiles"])
    # ... and nothing exported again: the outputs images adopted (same science, reduction and layout); the
    # stand-in keeps no properties on table assets, so the tables are resubmitted, with the requestId of the
    # first run's export, which Earth Engine answers with that same operation
    assert standin.counters["exports_submitted"] == before
    assert standin.counters["duplicate_request_id"] == N_TILES
    assert m["complete"] and all(o["status"] == "done" for t in m["tiles"] for o in t["outputs"].values())
    # a science change creates new models
    cfg2 = write_config(tmp_path, "config2.json", PCA_COMPONENT_RATIO=0.2)
    assert run_engine(standin.url, tmp_path / "c" / "job", cfg2) == 0
    assert _train_exports(standin) == 2 * N_TILES
    m2 = manifest(tmp_path / "c" / "job")
    assert m2["science_hash"] != m["science_hash"]
    for t in m2["tiles"]:
        props = standin.state.assets[t["train"]["asset"]]["properties"]
        assert props["science_hash"] == m2["science_hash"] and not t["train"]["reused"]
    _no_duplicates_per_run = Counter(descriptions(standin))
    assert max(_no_duplicates_per_run.values()) <= 3  # at most once per run
    # the same run directory again: nothing to do at all
    before = standin.counters["exports_submitted"]
    assert run_engine(standin.url, tmp_path / "c" / "job", cfg2) == 0
    assert standin.counters["exports_submitted"] == before


def test_kill_while_tasks_run_then_resume(tmp_path, creds):
    with StandIn(task_seconds=0.5, running_cap=2) as s:
        run_dir = tmp_path / "run"
        cfg = write_config(tmp_path, POLL_INTERVAL_S=0.1)
        proc = subprocess.Popen([sys.executable, *engine_argv(s.url, run_dir, cfg)], cwd=REPO,
                                env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if s.counters["tasks_started"] >= 8 and s.state.operations("RUNNING"):
                    break
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.02)
            else:
                pytest.fail("the run never got going")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        running_at_kill = len(s.state.operations("RUNNING")) + len(s.state.operations("PENDING"))
        assert running_at_kill > 0
        s.state.configure(task_seconds=0.05)
        from engine.cli import main

        assert main(["resume", str(run_dir), "-q"]) == 0
        c = s.counters
        assert c["exports_submitted"] == N_TILES * EXPORTS_PER_TILE  # nothing exported twice
        _no_duplicates(s)
        assert c["tasks_succeeded"] == N_TILES * EXPORTS_PER_TILE
        assert c["running_max"] <= 2
    m = manifest(run_dir)
    assert m["complete"] and m["tile_counts"] == {"done": N_TILES}
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert all(r.attempts == 1 for r in ledger.records() if r.tile_id != "_aoi")


def test_missing_project_is_one_line_error(tmp_path, creds, standin, capsys):
    code = run_engine(standin.url, tmp_path / "run", write_config(tmp_path), project=None)
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "no Earth Engine project" in err and "--project" in err and "EE_PROJECT" in err
    assert standin.counters["requests.total"] == 0
    assert not (tmp_path / "run").exists()


def test_missing_credentials_is_one_line_error(tmp_path, monkeypatch, capsys):
    """Against the real service without credentials: one line, nothing contacted or written.
    (Against a loopback stand-in no credentials are needed: every other test here runs so.)"""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "home" / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    real = "https://earthengine.googleapis.com"
    code = run_engine(real, tmp_path / "run", write_config(tmp_path))
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "earthengine authenticate" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert not (tmp_path / "run").exists()
    # both missing: one message naming both remedies
    monkeypatch.delenv("EE_PROJECT", raising=False)
    code = run_engine(real, tmp_path / "run", write_config(tmp_path), project=None)
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "earthengine authenticate" in err and "--project" in err


def test_loopback_standin_needs_no_credentials(tmp_path, monkeypatch, standin):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    assert run_engine(standin.url, tmp_path / "run", write_config(tmp_path)) == 0
    assert manifest(tmp_path / "run")["complete"]


def test_quota_refused_before_any_request(tmp_path, creds, standin, capsys):
    from engine.cli import main

    # 8,819 tiles of 64 px x 3 assets (2,260 tiles of 128 px fit now that a tile is 3 exports)
    code = main(["run", "--backend", "gee", "--aoi", "091084", "--mission", "L8", "--tile-size", "64",
                 "--ee-url", standin.url, "--project", "p", "--run-dir", str(tmp_path / "run"), "--yes", "-q"])
    err = capsys.readouterr().err
    assert code != 0
    assert "10,000-asset" in err and "EXPORT_DESTINATION" in err and "--tile-size" in err
    assert standin.counters["requests.total"] == 0
    assert not (tmp_path / "run").exists()


def test_tokens_never_logged_or_written(tmp_path, creds, standin, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    run_dir = tmp_path / "run"
    code = run_engine(standin.url, run_dir, write_config(tmp_path), "-vv")
    out = capsys.readouterr()
    assert code == 0
    texts = [out.out, out.err, caplog.text]
    for path in run_dir.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    for secret in SECRETS:
        assert all(secret not in t for t in texts), secret
    # the ledger records where credentials came from, not what they are
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.get_meta("gee")["credentials"] == "GOOGLE_APPLICATION_CREDENTIALS"
    assert json.loads((run_dir / "manifest.json").read_text())["earth_engine"]["project"] == "p"


def test_clear_existing_deletes_only_this_runs_assets(tmp_path, creds, standin, capsys):
    run_dir = tmp_path / "run"
    assert run_engine(standin.url, run_dir, write_config(tmp_path)) == 0
    run_folder = manifest(run_dir)["earth_engine"]["asset_folder"]
    # an asset the engine did not create, inside the run's folder
    foreign = f"{run_folder}/my_own_notes"
    standin.state.create_asset("projects/p", foreign.split("/assets/", 1)[1], {"type": "FOLDER"})
    ours = {a for a in standin.state.assets if a.startswith(run_folder + "/") and a != foreign
            and standin.state.assets[a]["type"] != "FOLDER"}
    assert len(ours) == N_TILES * EXPORTS_PER_TILE
    cfg = write_config(tmp_path, "clear.json", CLEAR_EXISTING=True)
    # without --yes and without a terminal: refused, nothing deleted
    from engine.cli import main

    code = main(["run", "--backend", "gee", *QUICK, "--ee-url", standin.url, "--project", "p", "--run-dir",
                 str(run_dir), "--config", str(cfg), "-q"])
    assert code != 0 and "--yes" in capsys.readouterr().err
    assert standin.counters["assets_deleted"] == 0
    before = standin.counters["exports_submitted"]
    assert run_engine(standin.url, run_dir, cfg) == 0
    assert standin.counters["assets_deleted"] == len(ours)
    assert foreign in standin.state.assets  # never deleted
    assert standin.counters["exports_submitted"] - before == N_TILES * EXPORTS_PER_TILE  # everything redone
    assert manifest(run_dir)["complete"]


def test_cloud_storage_destination_and_no_mosaic_note(tmp_path, creds, standin):
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path, EXPORT_DESTINATION="gcs", EXPORT_BUCKET="my-bucket", EXPORT_MOSAIC=True)
    assert run_engine(standin.url, run_dir, cfg) == 0
    outputs = [t for t in standin.state.task_order if not t.description.startswith("sarinfill_train_")]
    assert len(outputs) == N_TILES * (EXPORTS_PER_TILE - 1)
    for t in outputs:
        opts = t.request["fileExportOptions"]
        assert opts["cloudStorageDestination"]["bucket"] == "my-bucket"
        if t.kind == "EXPORT_IMAGE":
            assert opts["fileFormat"] == "GEO_TIFF" and opts["geoTiffOptions"]["cloudOptimized"] is True
        else:
            assert opts["fileFormat"] == "CSV"
    m = manifest(run_dir)
    uris = [p["uri"] for t in m["tiles"] for o in t["outputs"].values() for p in o["parts"]]
    assert len(uris) == N_TILES * (EXPORTS_PER_TILE - 1) and all(u.startswith("gs://my-bucket/") for u in uris)
    assert sum(u.endswith(".tif") for u in uris) == N_TILES and sum(u.endswith(".csv") for u in uris) == N_TILES
    assert any("EXPORT_MOSAIC needs EXPORT_DESTINATION asset" in n for n in m["notes"])
    # only the models are assets
    assert sum(a.split("/")[-2] == "models" for a in standin.state.assets) == N_TILES


def test_mosaic_of_the_outputs_image(tmp_path, creds, standin):
    run_dir = tmp_path / "run"
    assert run_engine(standin.url, run_dir, write_config(tmp_path, EXPORT_MOSAIC=True)) == 0
    m = manifest(run_dir)
    mosaics = m["products"]["mosaics"]
    assert set(mosaics) == {"outputs"}  # one mosaic holding every band of the outputs image
    assert mosaics["outputs"] in standin.state.assets
    assert standin.counters["exports_submitted"] == N_TILES * EXPORTS_PER_TILE + 1
    mosaic_task = next(t for t in standin.state.task_order if t.description.startswith("sarinfill_mosaic_"))
    expr = json.dumps(mosaic_task.request["expression"])
    assert all(json.dumps(t["outputs"]["outputs"]["parts"][0]["asset"]) in expr for t in m["tiles"])
    assert set(mosaic_task.request["assetExportOptions"]["pyramidingPolicyOverrides"]) == {
        b for b in expected_bands(run_dir) if b.startswith("mask_")}
    # nothing left to do: a second run exports nothing, the mosaic included
    before = standin.counters["exports_submitted"]
    assert run_engine(standin.url, run_dir, write_config(tmp_path, EXPORT_MOSAIC=True)) == 0
    assert standin.counters["exports_submitted"] == before


def test_extras_go_into_the_same_image_and_a_changed_layout_is_exported_again(tmp_path, creds, standin):
    """EXPORT_PCA / EXPORT_INPUT add bands, not exports; turning them on in the same run directory (they are
    execution settings, outside the science hash) redoes the outputs images only, never adopting the old ones."""
    run_dir = tmp_path / "run"
    assert run_engine(standin.url, run_dir, write_config(tmp_path)) == 0
    before = standin.counters["exports_submitted"]
    assert before == N_TILES * EXPORTS_PER_TILE
    cfg = write_config(tmp_path, "extras.json", EXPORT_PCA=True, EXPORT_INPUT=True)
    assert run_engine(standin.url, run_dir, cfg) == 0
    new = [t for t in standin.state.task_order[before:]]
    assert sorted({t.description.split("_")[1] for t in new}) == ["outputs"] and len(new) == N_TILES
    assert all(t.request["assetExportOptions"]["earthEngineDestination"]["overwrite"] for t in new)
    m = manifest(run_dir)
    bands = expected_bands(run_dir, ("filled", "mask", "prediction", "observation", "smoothed", "vv", "vh"))
    assert m["products"]["layout"]["variables"] == ["filled", "mask", "prediction", "observation", "smoothed",
                                                    "vv", "vh"]
    for tile in m["tiles"]:
        image = standin.state.assets[tile["outputs"]["outputs"]["parts"][0]["asset"]]
        assert [b["id"] for b in image["bands"]] == bands
    assert m["products"]["exports_per_tile"] == EXPORTS_PER_TILE
    # back to the first layout in a new run directory of the same name (same assets, fresh ledger): the outputs
    # images are exported again, not answered with the first run's operations by requestId deduplication
    before = standin.counters["exports_submitted"]
    other = tmp_path / "elsewhere" / "run"
    assert run_engine(standin.url, other, write_config(tmp_path)) == 0
    again = standin.state.task_order[before:]
    assert len(again) == N_TILES and all(t.description.startswith("sarinfill_outputs_") for t in again)
    for tile in manifest(other)["tiles"]:
        image = standin.state.assets[tile["outputs"]["outputs"]["parts"][0]["asset"]]
        assert [b["id"] for b in image["bands"]] == expected_bands(other)
    assert max(Counter(descriptions(standin)).values()) <= 3


def test_band_limit_splits_the_outputs_image_by_date_range(tmp_path, creds, standin, monkeypatch):
    """Past the band limit (lowered here to 60) the outputs image goes out as the fewest images that fit."""
    from tiling import ee_layout as layout

    monkeypatch.setattr(layout, "MAX_BANDS", 60)
    run_dir = tmp_path / "run"
    assert run_engine(standin.url, run_dir, write_config(tmp_path, EXPORT_MOSAIC=True)) == 0
    dates = paired_dates(run_dir)
    first_cap, rest_cap = (60 - 7) // 4, 60 // 4
    k = 1 + -(-(len(dates) - first_cap) // rest_cap)
    assert k >= 2
    stages = [f"outputs_{i + 1}" for i in range(k)]
    m = manifest(run_dir)
    assert m["products"]["outputs"] == [*stages, "images"] and m["products"]["exports_per_tile"] == 2 + k
    assert standin.counters["exports_submitted"] == N_TILES * (2 + k) + k  # + one mosaic per part
    layout_images = m["products"]["layout"]["images"]
    every = []
    for i, stage in enumerate(stages):
        names = layout_images[stage]["band_names"]
        assert len(names) <= 60 and layout_images[stage]["gap_bands"] == (i == 0)
        every += names
    # together exactly the bands of the one-image layout, each once
    assert sorted(every) == sorted(expected_bands(run_dir))
    assert set(m["products"]["mosaics"]) == set(stages)
    for stage in stages:
        task = next(t for t in standin.state.task_order if t.description == f"sarinfill_mosaic_{stage}")
        assert set(task.request["assetExportOptions"]["pyramidingPolicyOverrides"]) == {
            b for b in layout_images[stage]["band_names"] if b.startswith("mask_")}
    for tile in m["tiles"]:
        assert set(tile["outputs"]) == {*stages, "images"}
        for stage in stages:
            asset = standin.state.assets[tile["outputs"][stage]["parts"][0]["asset"]]
            assert [b["id"] for b in asset["bands"]] == layout_images[stage]["band_names"]
            assert asset["properties"]["layout"] == layout_images[stage]["key"]
    _no_duplicates(standin)
    before = standin.counters["exports_submitted"]
    assert run_engine(standin.url, run_dir, write_config(tmp_path, EXPORT_MOSAIC=True)) == 0
    assert standin.counters["exports_submitted"] == before


def test_plan_figures_count_three_exports_per_tile(tmp_path, creds, capsys):
    from engine.cli import main

    assert main(["plan", "--backend", "gee", *QUICK, "--run-dir", str(tmp_path / "plan")]) == 0
    out = capsys.readouterr().out
    assert f"{N_TILES * EXPORTS_PER_TILE} batch tasks" in out and "3 per tile" in out
    assert f"{4 + N_TILES * EXPORTS_PER_TILE} assets" in out
    from tests.conftest import flat

    out = flat(out)
    assert "Earth Engine compute" in out and "EECU-h (train" in out and "community tier's 150 EECU-h a month" in out


def test_a_run_above_the_eecu_budget_needs_yes(tmp_path, creds, standin, capsys):
    from engine.cli import main

    run_dir = tmp_path / "run"
    code = main(["run", "--backend", "gee", *QUICK, "--ee-url", standin.url, "--run-dir", str(run_dir), "--config",
                 str(write_config(tmp_path, EECU_BUDGET_HOURS=1e-6)), "--project", "p", "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "EECU-h, over EECU_BUDGET_HOURS=1e-06" in err and "--yes" in err
    assert len(err.strip().splitlines()) == 1
    assert standin.counters["exports_submitted"] == 0 and not run_dir.exists()
