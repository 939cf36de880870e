"""A tile computes the bounding window of the AOI's part of its core; a stage recorded on another
window (an earlier engine cut tiles to the AOI's bounding box) is redone, not read back."""
from __future__ import annotations

from shapely.geometry import Polygon

from engine.backends.local.executor import LocalExecutor
from engine.run.context import build_context
from engine.run.ledger import Stage, StageRecord
from engine.run.stages import Unit
from tests.local.conftest import write_aoi
from tiling.grid import Window

X0, Y0 = 737_600, 8_112_200


def _record(outputs: dict) -> StageRecord:
    return StageRecord("t", Stage.TRAIN.value, "done", 1, "h", outputs=outputs)


def test_a_stage_recorded_on_another_window_is_not_intact(tmp_path):
    tri = Polygon([(X0, Y0), (X0 + 12_000, Y0), (X0, Y0 + 12_000)])  # 10 m grid: about 5 x 5 tiles of 256 px
    ctx = build_context(None, {"RUN_DIR": str(tmp_path / "run"), "TILE_SIZE": 256},
                        str(write_aoi(tmp_path / "tri.geojson", tri)))
    ex = LocalExecutor(None, ctx, None)  # type: ignore[arg-type]
    bbox = Window.covering(ctx.plan.aoi.bounds, ctx.plan.grid.resolution)
    cut = [t for t in ctx.plan.tiles if ctx.plan.compute_window(t) != bbox.intersection(t.window)]
    same = [t for t in ctx.plan.tiles if ctx.plan.compute_window(t) == bbox.intersection(t.window)]
    assert cut and same  # the diagonal's tiles are cut tighter than the bounding box; the others are not
    for tile in ctx.plan.tiles:
        window = list(ctx.plan.compute_window(tile))
        assert ex._same_window(tile, _record({"model": {"path": "m.tif", "sha256": "x", "window": window}}))
        other = [window[0], window[1], window[2] + 1, window[3]]
        assert not ex._same_window(tile, _record({"model": {"path": "m.tif", "sha256": "x", "window": other},
                                                  "filled": {"cube": "filled", "sha256": "x", "window": window}}))
    # recorded without a window (the engine before this one): intact only where its window was the same
    legacy = _record({"model": {"path": "m.tif", "sha256": "x"},
                      "pred": {"path": "p.npy", "sha256": "x", "work": True}})
    assert not any(ex._same_window(t, legacy) for t in cut)
    assert all(ex._same_window(t, legacy) for t in same)
    assert not ex.intact(Unit(cut[0], Stage.TRAIN, cut[0]), legacy)  # never reaches the checksums
