"""``python -m engine report RUN_DIR``: files, non-blank figures, self-contained page, errors, failed tiles."""
from __future__ import annotations

import base64
import json
import re
import shutil
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from engine.errors import RunDirError
from engine.report import FIGURES, SECTION_IDS, build_report
from engine.report import data as rdata
from tests.report.conftest import assert_not_blank

pytestmark = pytest.mark.slow

IMG_SRC = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*data-file="([^"]+)"')


def test_report_writes_the_page_and_every_figure_non_blank(report_dir):
    assert (report_dir / "index.html").is_file()
    for name in FIGURES:
        path = report_dir / name
        assert path.is_file(), name
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG"), name
        assert_not_blank(data, name)
    assert not list(report_dir.glob(".*")), "temporary files left behind"


def test_page_is_self_contained_and_has_every_section(report_dir, small_run):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    embedded = dict((name, b64) for b64, name in IMG_SRC.findall(page))
    assert sorted(embedded) == sorted(FIGURES)
    for name, b64 in embedded.items():  # the embedded image is the saved PNG
        assert base64.b64decode(b64) == (report_dir / name).read_bytes(), name
    assert page.count("<img ") == len(FIGURES)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page), "the page must not load anything from outside"
    assert "<link" not in page
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in page, sid
    # header: AOI, mission, period, backend, source, and the loud synthetic banner
    assert 'id="synthetic-banner"' in page and "SYNTHETIC DATA" in page
    for text in ("North Qld", "<th>mission</th><td>S2</td>", "2021-01-01 to 2021-09-01",
                 "<th>backend</th><td>local</td>", "<th>source</th><td>synthetic"):
        assert text in page, text
    assert "Not available" not in page
    # the skill table lists every target and method of skill.csv
    skill = pd.read_csv(small_run / "skill.csv")
    for target in skill["target"].unique():
        assert f">{target}: " in page, target
    # one best method per target and gap stratum that has any score (strata without pixels have none)
    scored = skill.groupby(["target", "stratum"])["MAE"].apply(lambda v: v.notna().any())
    assert page.count('class="num best"') == int(scored.sum()) > 0


def test_missing_run_directory_is_a_one_line_error(run_cli, tmp_path):
    code, out, err = run_cli("report", str(tmp_path / "nope"))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "does not exist" in err and "python -m engine run" in err
    with pytest.raises(RunDirError):
        build_report(tmp_path / "nope")


def test_unfinished_run_directory_is_a_one_line_error(run_cli, small_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(small_run / "run.json", unfinished / "run.json")
    code, out, err = run_cli("report", str(unfinished))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "has not finished" in err and f"python -m engine resume {unfinished}" in err
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    code, out, err = run_cli("report", str(not_a_run))
    assert code == 2 and "not a run directory" in err and err.count("\n") == 1
    assert not (unfinished / "report").exists() and not (not_a_run / "report").exists()


def test_run_with_a_failed_tile_still_renders(run_cli, small_run, tmp_path):
    """A tile whose finish stage failed (no time-series chunks; its gap layers exist) and a lost skill.csv:
    the rest still renders (written with --out), and no time-series pixel is taken from the failed tile."""
    run = tmp_path / "failed"
    shutil.copytree(small_run, run, ignore=shutil.ignore_patterns("report"))
    manifest = json.loads((run / "manifest.json").read_text())
    victim = manifest["tiles"][4]
    victim["status"], victim["error"] = "failed", "finish: MemoryError: simulated"
    manifest["tile_counts"] = {"done": len(manifest["tiles"]) - 1, "failed": 1}
    manifest["complete"] = False
    (run / "manifest.json").write_text(json.dumps(manifest))
    for name in ("tiles.parquet", "tiles.geojson"):
        frame = gpd.read_parquet(run / name) if name.endswith("parquet") else gpd.read_file(run / name)
        frame.loc[frame["tile_id"] == victim["id"], "status"] = "failed"
        frame.to_parquet(run / name) if name.endswith("parquet") else frame.to_file(run / name, driver="GeoJSON")
    # remove the tile's chunks from every time variable of the cube (its finish stage never wrote them)
    c0, r0 = _cube_origin(run)
    col, row, w, h = victim["window"]
    cy, cx = (row - r0) // h, (col - c0) // w
    removed = 0
    for meta in (run / "cube.zarr").glob("*/zarr.json"):
        shape = json.loads(meta.read_text()).get("shape", [])
        chunk = meta.parent / "c" / ("0/" if len(shape) == 3 else "") / str(cy) / str(cx)
        if len(shape) == 3 and chunk.is_file():
            chunk.unlink()
            removed += 1
    assert removed == 4
    (run / "skill.csv").unlink()

    out = tmp_path / "elsewhere"
    code, stdout, err = run_cli("report", str(run), "--out", str(out))
    assert code == 0, err
    assert f"report: {out / 'index.html'} ({len(FIGURES) - 1} figures; not available: skill)" in stdout
    assert not (run / "report").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "INCOMPLETE RUN" in page and "1 failed" in page and f"python -m engine resume {run}" in page
    assert victim["id"] in page and "simulated" in page
    assert "Not available: the run wrote no skill.csv" in page and page.count("Not available") == 1
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([*(f for f in FIGURES if f != "skill_by_gap.png"), "index.html"])
    assert page.count("<img ") == len(FIGURES) - 1
    for name in written:
        if name.endswith(".png"):
            assert_not_blank((out / name).read_bytes(), name)
    pixels = [(int(r), int(c)) for r, c in re.findall(r"[A-D] \(row (\d+), col (\d+)\)", page)]
    assert len(pixels) == 4
    assert not any(cy * h <= r < (cy + 1) * h and cx * w <= c < (cx + 1) * w for r, c in pixels), pixels


def test_run_without_cube_or_skill_renders_what_exists(small_run, tmp_path):
    """A gee-style run directory (no cube.zarr, no skill.csv, a split tile): header, per-image and tiles only."""
    run = tmp_path / "gee"
    run.mkdir()
    for name in ("run.json", "images.csv", "tiles.parquet", "tiles.geojson"):
        shutil.copy(small_run / name, run / name)
    manifest = json.loads((small_run / "manifest.json").read_text())
    manifest["backend"] = "gee"
    manifest["tiles"][0]["status"] = "split"
    (run / "manifest.json").write_text(json.dumps(manifest))
    frame = gpd.read_parquet(run / "tiles.parquet")
    frame.loc[0, "status"] = "split"
    frame.to_parquet(run / "tiles.parquet")
    result = build_report(run)
    assert sorted(result.figures) == ["per_image_skill.png", "tile_status.png"]
    assert set(result.missing) == {"gaps", "before-after", "skill", "pixels"}
    page = result.html.read_text(encoding="utf-8")
    assert "this run has no cube.zarr (the gee backend writes Earth Engine assets; `python -m engine download" in page
    assert "<th>backend</th><td>gee</td>" in page and 'id="synthetic-banner"' in page
    for path in result.figures.values():
        assert_not_blank(path.read_bytes(), path.name)


def _cube_origin(run) -> tuple[int, int]:
    from engine.run.cube import open_cube

    ds = open_cube(run / "cube.zarr")
    res = float(ds.x[1] - ds.x[0])
    return int(round(float(ds.x[0]) / res - 0.5)), int(round(-float(ds.y[0]) / res - 0.5))


def test_scene_sized_cube_is_read_decimated(tmp_path):
    """A 6144 x 6144 px x 46-date cube (metadata only): maps come back at most 1000 px a side, fast."""
    from engine.run.cube import create_cube, open_cube
    from tiling.grid import GridSpec, Tile

    grid = GridSpec(epsg=32755, resolution=30.0, tile_size=2048)
    tiles = [Tile(grid, ix, iy) for ix in range(10, 13) for iy in range(-1500, -1497)]
    times = pd.date_range("2021-01-01", periods=46, freq="8D")
    create_cube(tmp_path / "cube.zarr", grid, tiles, times, ["filled", "mask", "observation", "prediction"], {})
    inputs = rdata.RunInputs(root=tmp_path, run={}, manifest={"grid": {"crs": "EPSG:32755"}},
                             cube=open_cube(tmp_path / "cube.zarr"))
    assert inputs.cube.sizes["x"] == inputs.cube.sizes["y"] == 6144
    t0 = time.perf_counter()
    g = rdata.map_grid(inputs, 1000)
    assert g.stride == 7 and len(g.x) <= 1000 and len(g.y) <= 1000
    layers = rdata.read_gap_layers(inputs, g)
    assert {a.shape for a in layers.values()} == {(len(g.y), len(g.x))}
    dates = rdata.read_dates(inputs, g, pd.Series(times[[3, 20, 40]]))
    assert dates["filled"].shape == (3, len(g.y), len(g.x)) and (dates["mask"] == 255).all()
    pixels = rdata.read_pixels(inputs, [(0, 0), (6143, 6143)])
    assert pixels["filled"].shape == (2, 46)
    assert time.perf_counter() - t0 < 30


def test_stride_and_date_and_pixel_choice_are_deterministic():
    assert rdata.stride_for(6000, 6000, 1000) == 6
    assert rdata.stride_for(768, 512, 1000) == 1
    assert rdata.stride_for(1001, 10, 1000) == 2
    images = pd.DataFrame({
        "ID": [f"S2_{i}" for i in range(8)],
        "Date": pd.date_range("2021-01-01", periods=8, freq="5D"),
        "Cloud_cover": [99.0, 80.0, 10.0, 85.0, 60.0, 80.0, 30.0, 70.0],
        "Paired": [True] * 7 + [False],
    })
    available = pd.DatetimeIndex(images["Date"])
    pick = rdata.choose_cloudy_dates(images, available)
    assert list(pick["Cloud_cover"]) == [80.0, 85.0, 80.0]        # in range, cloudiest first, shown by date
    assert pick["Date"].is_monotonic_increasing
    few = rdata.choose_cloudy_dates(images.iloc[[0, 2, 6]], available)  # topped up from outside the range
    assert sorted(few["Cloud_cover"]) == [10.0, 30.0, 99.0]

    rng = np.random.default_rng(1)
    cc = rng.integers(5, 40, size=(60, 80)).astype(float)
    cc[:, :5] = np.nan
    one = rdata.choose_pixels(cc, None)
    assert one == rdata.choose_pixels(cc.copy(), None)
    values = [cc[i, j] for i, j in one]
    assert len(one) == 4 and values == sorted(values) and values[0] < values[-1]
    assert all(np.isfinite(v) for v in values)
