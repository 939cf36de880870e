"""``download RUN_DIR``: a gee run's exported assets, read back through computePixels into the cube
of the local layout, equal to what the executing stand-in exported; resumable after SIGKILL; the same
cube from the Cloud Storage GeoTIFFs of a run that exported there."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.ee_standin import StandIn

from .backend_support import N_TILES, manifest, plant_credentials, run_engine, subprocess_env, write_config

pytestmark = pytest.mark.standin

CALLS = "requests.POST.image.computePixels"
SMALL = "0.002"  # MiB a request: one band of 16 rows of a 32 px tile, so hundreds of chunks


@pytest.fixture(scope="module")
def gee_run(tmp_path_factory):
    """One finished gee run on the executing stand-in (assets kept in the stand-in's memory)."""
    tmp = tmp_path_factory.mktemp("gee")
    with (pytest.MonkeyPatch.context() as mp,
          StandIn(task_seconds=0.05, running_cap=2, data_dir=str(tmp / "standin")) as s):
        plant_credentials(tmp, mp)
        mp.setenv("SAR_INFILL_EECU_JOURNAL", str(tmp / "eecu.jsonl"))
        assert run_engine(s.url, tmp / "run", write_config(tmp)) == 0
        yield s, tmp / "run"
    import ee

    ee.Reset()


def _exported(standin: StandIn, run_dir):
    """(band -> (value, mask), grid) of every outputs asset the run exported."""
    for tile in manifest(run_dir)["tiles"]:
        for stage, product in tile["outputs"].items():
            if stage != "images":
                for part in product["parts"]:
                    got = standin.state.assets[part["asset"]]["standin"]
                    yield got["pixels"], got["grid"]


def test_download_gives_the_exported_pixels_then_reads_nothing_again(gee_run, capsys):
    import xarray as xr

    standin, run_dir = gee_run
    before = standin.counters[CALLS]
    assert main(["download", str(run_dir)]) == 0
    assert "of 4 tiles into" in capsys.readouterr().out
    first = standin.counters[CALLS] - before
    assert first >= N_TILES  # at least one request per tile's outputs image
    ds = xr.open_zarr(run_dir / "cube.zarr", consolidated=False)
    dates = {t.strftime("%Y%m%d"): i for i, t in enumerate(ds["time"].to_index())}
    checked = 0
    for pixels, grid in _exported(standin, run_dir):
        a, _, c, _, e, f = grid.affine()
        xs = c + (np.arange(grid.w) + 0.5) * a
        ys = f + (np.arange(grid.h) + 0.5) * e
        for band, (value, mask) in pixels.items():
            var, _, date = band.rpartition("_") if band[-8:].isdigit() else (band, "", "")
            got = ds[var].isel(time=dates[date]) if date else ds[var]
            got = got.sel(x=xs, y=ys, method="nearest", tolerance=1.0).values
            valid = mask > 0
            empty = 255 if var == "mask" else np.nan
            np.testing.assert_array_equal(got[valid], np.asarray(value, got.dtype)[valid], err_msg=band)
            np.testing.assert_array_equal(got[~valid], np.full((~valid).sum(), empty, got.dtype), err_msg=band)
            checked += int(valid.sum())
    assert checked > 0
    # skill scored on the downloaded products, by the local code, into skill.csv and the manifest
    m = manifest(run_dir)
    assert m["products"]["skill"]["path"] == "skill.csv" and (run_dir / "skill.csv").exists()
    assert not any("were not scored" in n for n in m["notes"])
    assert main(["status", str(run_dir)]) == 0  # the rewritten manifest is the merge's recorded one
    assert main(["report", str(run_dir)]) == 0
    assert "not available" not in capsys.readouterr().out
    _renders_in_chromium(run_dir / "report" / "index.html", run_dir.parent)
    # a second download reads nothing; one lost chunk is read again, alone
    assert main(["download", str(run_dir)]) == 0
    assert standin.counters[CALLS] - before == first
    chunks = sorted((run_dir / "download").glob("*.npy"))
    assert len(chunks) == first
    chunks[0].unlink()
    assert main(["download", str(run_dir)]) == 0
    assert standin.counters[CALLS] - before == first + 1
    assert json.loads((run_dir / "download.json").read_text())["read"] == 1


def _renders_in_chromium(page, tmp):
    """Headless Chromium loads every section of the report and decodes every figure."""
    import re
    import shutil

    from engine.report import FIGURES, SECTION_IDS

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (CI's .ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chromium-profile'}",
             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and "<body" in proc.stdout, proc.stderr[-2000:]
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in proc.stdout, sid
    body = re.search(r"<body[^>]*>", proc.stdout).group(0)
    assert f'data-images-ok="{len(FIGURES)}"' in body and f'data-images-total="{len(FIGURES)}"' in body, body


def test_download_killed_resumes_without_reading_finished_chunks(gee_run, tmp_path):
    standin, run_dir = gee_run
    import shutil

    run = tmp_path / "run"  # a copy: the other test's chunks stay its own
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("download", "cube.zarr"))
    folder = run / "download"
    before = standin.counters[CALLS]
    proc = subprocess.Popen([sys.executable, "-m", "engine", "download", str(run), "--request-mib", SMALL],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (folder.is_dir() and len(list(folder.glob("*.npy"))) >= 20):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name for p in folder.glob("*.npy")}
    killed_at = standin.counters[CALLS]
    assert killed_at - before >= len(done)
    assert main(["download", str(run), "--request-mib", SMALL]) == 0
    summary = json.loads((run / "download.json").read_text())
    assert summary["chunks"] > len(done), "the download finished before it was killed: nothing was tested"
    assert summary["read"] == summary["chunks"] - len(done)
    # the resumed download requested exactly the chunks the killed one had not saved
    assert standin.counters[CALLS] - killed_at == summary["read"]
    assert {p.name for p in folder.glob("*.npy")} >= done and len(list(folder.glob("*.npy"))) == summary["chunks"]


def test_download_from_cloud_storage_gives_the_cube_of_the_assets(gee_run, tmp_path, monkeypatch, capsys):
    """The same run exported to Cloud Storage: its COGs, read through GDAL's /vsigs/ from the stand-in's
    storage endpoint (found from the run's loopback EE_API_URL), give the cube the asset download
    gives, with no computePixels request."""
    import xarray as xr

    standin, asset_run = gee_run
    monkeypatch.delenv("CPL_GS_ENDPOINT", raising=False)
    run_dir = tmp_path / "gcs"
    assert run_engine(standin.url, run_dir, write_config(tmp_path, EXPORT_DESTINATION="gcs",
                                                         EXPORT_BUCKET="bkt")) == 0
    assert main(["download", str(asset_run)]) == 0
    before, reads = standin.counters[CALLS], standin.counters["requests.storage.get"]
    assert main(["download", str(run_dir), "--request-mib", "0.05"]) == 0
    assert "of 4 tiles into" in capsys.readouterr().out
    assert standin.counters[CALLS] == before and standin.counters["requests.storage.get"] > reads
    summary = json.loads((run_dir / "download.json").read_text())
    assert summary["chunks"] > N_TILES  # several windows a file: the chunk plan applies to files too
    got = xr.open_zarr(run_dir / "cube.zarr", consolidated=False)
    want = xr.open_zarr(asset_run / "cube.zarr", consolidated=False)
    assert set(got.data_vars) == set(want.data_vars)
    for v in want.data_vars:
        np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)
    assert (run_dir / "skill.csv").read_text() == (asset_run / "skill.csv").read_text()
    # a file gone from the bucket: one line naming it, nothing traced back (a new process: GDAL caches)
    (run_dir / "download").rename(tmp_path / "chunks")
    uri = next(p["uri"] for t in manifest(run_dir)["tiles"] for o in t["outputs"].values() for p in o["parts"]
               if p["uri"].endswith(".tif"))
    (Path(standin.state.data_dir) / "gcs" / uri[len("gs://"):]).unlink()
    proc = subprocess.run([sys.executable, "-m", "engine", "download", str(run_dir)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and uri in proc.stderr and "resume" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_download_refuses_what_is_not_a_gee_run_and_a_bad_request_size(tmp_path, capsys):
    from engine.cli import main as cli

    local = tmp_path / "local"
    local.mkdir()
    assert cli(["download", str(local)]) != 0
    err = capsys.readouterr().err
    assert str(local) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli(["download", str(tmp_path / "run"), "--request-mib", "60"]) == 2
    assert "--request-mib 60" in capsys.readouterr().err


def test_chunks_stay_within_computepixels_limits_and_cover_every_band_and_pixel():
    from engine.backends.gee.download import MAX_BANDS, MAX_RESPONSE_BYTES, MAX_SIDE, plan_chunks

    bands = [f"b{i}" for i in range(1500)]
    window = (100, -9000, 40_000, 3_000)
    chunks = plan_chunks("a", bands, window)
    assert all(c.width <= MAX_SIDE and c.height <= MAX_SIDE and len(c.bands) <= MAX_BANDS for c in chunks)
    assert all(c.width * c.height * len(c.bands) * 4 <= MAX_RESPONSE_BYTES for c in chunks)
    cover = {}
    for c in chunks:
        for b in c.bands:
            cover[b] = cover.get(b, 0) + c.width * c.height
    assert cover == {b: 40_000 * 3_000 for b in bands}
    assert len({c.key for c in chunks}) == len(chunks)
