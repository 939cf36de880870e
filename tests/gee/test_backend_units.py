"""Unit tests of the gee backend's pure parts (no server)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import EarthEngineError, MemoryLimitError, TransientError
from engine.backends.gee.api import classify
from engine.backends.gee.naming import Names, request_id
from engine.backends.gee.reduce import lattice_grid
from tiling.grid import GridSpec, Tile


def test_request_ids_are_deterministic_short_and_distinct():
    tile = Tile(GridSpec(32755, 30.0, 4096), 4, -51, "abcd")
    rid = request_id(tile.id, "prediction", "0123456789ab", 1)
    assert rid == request_id(tile.id, "prediction", "0123456789ab", 1)
    assert len(rid) <= 60
    others = {request_id(tile.id, "prediction", "0123456789ab", 2), request_id(tile.id, "filled", "0123456789ab", 1),
              request_id(tile.id, "prediction", "ffffffffffff", 1), request_id(tile.id[:-1], "prediction",
                                                                                "0123456789ab", 1)}
    assert rid not in others and len(others) == 4
    # the same export to another folder or bucket: Earth Engine must not answer it with the first one
    to_a, to_b = (request_id(tile.id, "prediction", "0123456789ab", 1, "", d) for d in ('{"asset": "a"}',
                                                                                         '{"asset": "b"}'))
    assert to_a != to_b and to_a == request_id(tile.id, "prediction", "0123456789ab", 1, "", '{"asset": "a"}')


def test_asset_layout_matches_the_planned_folder_count(tmp_path):
    from tiling.plan import RUN_FOLDERS

    names = Names.for_run("proj", "sar-infill", "My Title", tmp_path / "run 1")
    assert len(names.folders) == RUN_FOLDERS
    assert names.model("t-1") == "projects/proj/assets/sar-infill/My_Title/run_1/models/t-1"
    assert names.output("filled", "t-1").startswith(names.run_folder + "/")


class _Resp(dict):
    def __init__(self, status):
        super().__init__(status=str(status))
        self.status = status
        self.reason = "reason"


def _http_error(status, message):
    import json

    from googleapiclient.errors import HttpError

    return HttpError(_Resp(status), json.dumps({"error": {"code": status, "message": message}}).encode())


@pytest.mark.parametrize("status,message,kind", [
    (429, "Too Many Requests: Request was rejected", TransientError),
    (500, "An internal error has occurred", TransientError),
    (503, "The service is currently unavailable", TransientError),
    (400, "User memory limit exceeded.", MemoryLimitError),
    (400, "Computation timed out.", MemoryLimitError),
    (400, "Image.select: Pattern 'x' did not match any bands.", EarthEngineError),
])
def test_errors_are_classified_by_status_and_message(status, message, kind):
    err = classify(_http_error(status, message))
    assert type(err) is kind
    assert message.split(":")[0] in str(err)


def test_transport_errors_are_transient():
    assert isinstance(classify(ConnectionResetError("reset")), TransientError)
    assert isinstance(classify(TimeoutError("slow")), TransientError)


def test_statistics_lattice_grid_holds_the_local_lattice_points():
    from types import SimpleNamespace

    from engine.backends.scoring import lattice

    spec = SimpleNamespace(crs="EPSG:32755", resolution=30.0)
    for window, step in [((12288, -270464, 32, 32), 3), ((7, 4, 20, 9), 5), ((0, 0, 64, 64), 1)]:
        grid, key = lattice_grid(spec, window, step)
        rows, cols = np.nonzero(lattice(window, step))
        np.testing.assert_array_equal(key, np.stack([rows + window[1], cols + window[0]], axis=1))
        # each lattice cell is centred on the centre of the grid pixel its key names
        a, dims = grid["affineTransform"], grid["dimensions"]
        cx = a["translateX"] + a["scaleX"] * (np.arange(dims["width"]) + 0.5)
        cy = a["translateY"] + a["scaleY"] * (np.arange(dims["height"]) + 0.5)
        np.testing.assert_allclose(cx, (np.unique(key[:, 1]) + 0.5) * 30.0)
        np.testing.assert_allclose(cy, -(np.unique(key[:, 0]) + 0.5) * 30.0)


# --- a tile's stage-B layout (tiling.ee_layout) and the planning figures that count it ---------------
def test_outputs_image_parts_are_the_fewest_within_the_band_limit():
    from tiling.ee_layout import GAP_BAND_NAMES, Part, output_parts

    assert output_parts(21, 4) == (Part("outputs", 0, 21, True),)
    assert [p.stage for p in output_parts(254, 4)] == ["outputs"]  # 4 x 254 + 7 = 1,023 bands
    assert [p.stage for p in output_parts(255, 4)] == ["outputs_1", "outputs_2"]
    for n_vars in (4, 5, 6, 7):
        first_cap, rest_cap = (1024 - 7) // n_vars, 1024 // n_vars
        for n in range(0, 2200, 7):
            parts = output_parts(n, n_vars)
            assert parts[0].start == 0 and parts[-1].stop == n and parts[0].gaps
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:])) and not any(p.gaps for p in parts[1:])
            assert all(p.band_count(n_vars) <= 1024 for p in parts)
            fewest = 1 if n <= first_cap else 1 + -(-(n - first_cap) // rest_cap)
            assert len(parts) == fewest
            lengths = [p.stop - p.start for p in parts[1:]]
            assert not lengths or max(lengths) - min(lengths) <= 1
    ids = [f"S2_2021{m:02d}01" for m in range(1, 13)]
    parts = output_parts(len(ids), 4, max_bands=30)
    bands = [b for p in parts for b in p.bands(("filled", "mask", "prediction", "observation"), ids)]
    assert sorted(bands) == sorted([f"{v}_2021{m:02d}01" for v in ("filled", "mask", "prediction", "observation")
                                    for m in range(1, 13)] + list(GAP_BAND_NAMES))


def test_layout_names_types_and_keys():
    from tiling import ee_layout as layout
    from engine.science.gaps import GAP_BANDS

    assert layout.GAP_BAND_NAMES == GAP_BANDS
    assert layout.variables(False, False) == ("filled", "mask", "prediction", "observation")
    assert layout.variables(True, True)[4:] == ("smoothed", "vv", "vh")
    (part,) = layout.output_parts(2, 4)
    ids = ["L8_20210103", "L8_20210119"]
    assert part.bands(layout.PER_DATE, ids) == [
        "filled_20210103", "filled_20210119", "mask_20210103", "mask_20210119", "prediction_20210103",
        "prediction_20210119", "observation_20210103", "observation_20210119", *GAP_BANDS]
    assert layout.pyramiding(part.bands(layout.PER_DATE, ids)) == {"mask_20210103": "MODE", "mask_20210119": "MODE"}
    assert part.key(layout.PER_DATE, ids) != part.key(layout.variables(True, False), ids)
    assert part.key(layout.PER_DATE, ids) != part.key(layout.PER_DATE, ids[:1] + ["L8_20210120"])
    assert layout.stages(layout.output_parts(300, 4)) == ("outputs_1", "outputs_2", "images")


def test_request_ids_of_split_outputs_images_are_distinct():
    from engine.backends.gee.naming import stage_code

    assert [stage_code(s) for s in ("train", "outputs", "outputs_1", "outputs_12", "images")] == [
        "tr", "ou", "o1", "o12", "im"]
    rids = {request_id("t", s, "0123456789ab", 1) for s in ("outputs", "outputs_1", "outputs_2", "images")}
    assert len(rids) == 4 and all(len(r) <= 60 for r in rids)
    # another content (reduction / layout) is another request; the same content, the same request
    assert request_id("t", "outputs", "0123456789ab", 1, "r1/l1") != request_id("t", "outputs", "0123456789ab", 1,
                                                                                 "r1/l2")
    assert request_id("t", "outputs", "0123456789ab", 1, "r1/l1") == request_id("t", "outputs", "0123456789ab", 1,
                                                                                 "r1/l1")
    assert request_id("t", "train", "0123456789ab", 1) == request_id("t", "train", "0123456789ab", 1, "")


def _context(**values):
    from engine.run.context import build_context

    base = {"BACKEND": "gee", "OPTICAL_MISSION": "L8", "START_DATE": "2021-01-01", "END_DATE": "2022-01-01",
            "TILE_SIZE": 4096, "TILE_BUDGET_MB": 2**22}  # forced beyond the default budget: planning figures only
    return build_context(None, {**base, **values}, "091084")


def test_planning_figures_count_the_exports_a_run_makes():
    from engine.run.estimate import ee_counts, estimate
    from engine.errors import QuotaError
    from engine.backends.gee.executor import check_quota

    ctx = _context()
    n = len(ctx.plan.tiles)
    assert ctx.outputs == ("outputs", "images") and ctx.ee_exports_per_tile == 3
    est = estimate(ctx)
    assert (est.ee_tasks, est.ee_assets) == ee_counts(ctx) == (3 * n, 4 + 3 * n)
    assert ctx.plan.summary(ctx.ee_exports_per_tile, True)["ee_assets"] == 4 + 3 * n
    gcs = _context(EXPORT_DESTINATION="gcs", EXPORT_BUCKET="b")
    assert ee_counts(gcs) == (3 * n, 4 + n)  # only the models are assets
    mosaic = _context(EXPORT_MOSAIC=True, EXPORT_PCA=True, EXPORT_INPUT=True)
    assert mosaic.ee_exports_per_tile == 3 and ee_counts(mosaic) == (3 * n + 1, 4 + 3 * n + 1)
    check_quota(ctx, quota=4 + 3 * n)
    with pytest.raises(QuotaError, match=f"{4 + 3 * n:,} Earth Engine assets"):
        check_quota(ctx, quota=3 + 3 * n)
    # a long S2 period passes the band limit: the outputs image is split, and the figures say so
    long = _context(OPTICAL_MISSION="S2", START_DATE="2016-01-01", END_DATE="2024-01-01", TILE_SIZE=8192,
                    TILE_BUDGET_MB=2**23)  # the scene meets three S2 orbits: ~1,750 dates
    k = len(long.output_parts)
    assert long.plan.budget.dates * 4 + 7 > 1024 and k >= 2
    assert long.outputs == tuple(f"outputs_{i + 1}" for i in range(k)) + ("images",)
    assert long.ee_exports_per_tile == 2 + k
    assert ee_counts(long)[0] == (2 + k) * len(long.plan.tiles)
