"""The AOI-wide per-image statistics are the AOI's own (full resolution, pixel centres inside the
AOI) and do not depend on the tiling."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import shapely

from engine.backends.local.global_pass import global_pass
from engine.backends.local.inputs import read_optical, to_days
from engine.backends.scoring import inside_mask
from engine.run.context import build_context
from engine.science import sar as sar_science
from engine.sources.synthetic import SyntheticSource

# a 2.4 km x 1.9 km non-rectangular AOI near the North Qld site (Landsat 8, half a year)
AOI = "POLYGON ((145.770 -17.070, 145.792 -17.072, 145.790 -17.055, 145.776 -17.053, 145.770 -17.070))"


def _context(tmp_path, tile_size: int):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "poly"}, "geometry": shapely.geometry.mapping(shapely.from_wkt(AOI))}]}))
    return build_context(None, {"OPTICAL_MISSION": "L8", "START_DATE": "2021-01-01", "END_DATE": "2021-07-01",
                                "TILE_SIZE": tile_size, "TRAIN_TEST_SPLIT": 0.9}, str(aoi))


def test_statistics_are_the_full_resolution_aoi_figures_and_tiling_independent(tmp_path):
    src = SyntheticSource(seed=0)
    small, big = _context(tmp_path, 32), _context(tmp_path, 256)
    assert len(small.plan.tiles) >= 6 and len(big.plan.tiles) <= 2
    a, b = global_pass(small, src).images, global_pass(big, src).images
    pd.testing.assert_frame_equal(a, b)  # bit for bit

    # independent figures: the AOI's bounding window read at full resolution, centres inside the AOI
    grid, aoi = big.plan.grid, big.plan.aoi
    minx, miny, maxx, maxy = aoi.bounds
    c0, r0 = int(np.floor(minx / grid.resolution)), int(np.floor(-maxy / grid.resolution))
    gbox = grid.geobox(c0, r0, int(np.ceil(maxx / grid.resolution)) - c0, int(np.ceil(-miny / grid.resolution)) - r0)
    inside = inside_mask(gbox, aoi)
    opt = read_optical(src, gbox, list(a["id"]), "L8")
    valid = (opt.valid & inside).sum(axis=(1, 2))
    cloud = 100.0 * (opt.cloudy & inside).sum(axis=(1, 2)) / np.maximum(valid, 1)
    sar = src.sar_catalog(gbox, "2020-12-20", "2021-07-13")
    ds = src.read_sar(gbox, list(sar["id"]))  # the period's whole stack, not the engine's streamed read
    vv, vh = ds["vv"].values, ds["vh"].values
    for name, arr in (("vv_mean", vv), ("vh_mean", vh)):
        comp, _ = sar_science.composite(arr, to_days(sar["time"]), a["day"].to_numpy(), 12)
        want = np.array([np.nanmean(c[inside]) if np.isfinite(c[inside]).any() else np.nan for c in comp])
        ok = np.isfinite(want)
        assert ok.sum() > 5
        np.testing.assert_allclose(a[name].to_numpy()[ok], want[ok], atol=0.05)  # issue: within 0.05 dB
        np.testing.assert_allclose(a[name].to_numpy()[ok], want[ok], atol=1e-5)  # in fact to the 1e-6 dB quantum
    has = valid > 0
    np.testing.assert_allclose(a["cloud_pct"].to_numpy()[has], cloud[has], atol=1e-9)
    np.testing.assert_allclose(a["pixel_count"], valid * (grid.resolution / 100) ** 2)
    assert ((cloud[has] > 0) & (cloud[has] < 100)).sum() >= 3  # partly cloudy images: the figures matter


def test_statistics_on_dask_workers_equal_in_process(tmp_path):
    from engine.backends.local.dask import open_client

    ctx = _context(tmp_path, 32)
    src = SyntheticSource(seed=3)
    with open_client(None, 2) as client:
        on_dask = global_pass(ctx, src, client).images
    pd.testing.assert_frame_equal(on_dask, global_pass(ctx, src).images)
