"""Per-tile stage B: PCA smoothing, calibration, fill, held-out skill, outputs into the cube."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from config.parameters import Parameters
from engine.backends.local.inputs import Stopwatch
from engine.backends.local.sink import TileSink
from engine.backends.scoring import inside_mask, score, skill_pixels
from engine.run.context import RunContext
from engine.run.rundir import RunDir
from engine.run.stages import GlobalStats, Reduction, TileOutcome
from engine.science.calibration import calibrate
from engine.science.fill import fill
from engine.science.pca import pca_smooth
from engine.sources.base import Source
from tiling.grid import Tile, Window


@dataclass
class FinishProducts:
    """What stage B makes of a tile's stage-A arrays (``TileSink`` writes the cube arrays)."""

    cube: dict[str, np.ndarray]
    stats: dict[str, Any]


def finish_products(params: Parameters, stats: GlobalStats, reduction: Reduction, window: Window, inside: np.ndarray,
                    pred: np.ndarray, obs: np.ndarray, mask: np.ndarray,
                    truth: np.ndarray | None = None) -> FinishProducts:
    """Steps 8-10 and the tile's skill sums on the core + 1 px margin arrays of stage A: pure.
    ``truth`` (synthetic source): the true NDVI at the skill lattice's pixels of the core."""
    p = params
    paired = stats.paired
    labels = paired["split"].to_numpy()
    days = paired["day"].to_numpy()
    # Step 8: temporal PCA smoothing with the AOI-wide basis.
    smoothed = pca_smooth(pred, reduction.basis) if reduction.basis is not None else pred
    # Step 9: spatial calibration with the AOI-wide statistics (cloudier images stay uncalibrated).
    calibrated = smoothed.copy()
    for i, image_id in enumerate(paired["id"]):
        if image_id in reduction.calibration:
            ps, os_ = reduction.calibration[image_id]
            calibrated[i] = calibrate(smoothed[i], ps, os_)
    if p.CLIP_NDVI:  # an option: the method keeps whatever the calibration gives
        calibrated = np.clip(calibrated, -1.0, 1.0)
    # Step 10: fill and focal median, on core + 1 px margin, then crop.
    filled = fill(obs, mask, calibrated, keep_clear=p.KEEP_CLEAR_OBSERVED)
    core = (slice(None), slice(1, -1), slice(1, -1))
    obs, mask, calibrated, smoothed, filled = (a[core] for a in (obs, mask, calibrated, smoothed, filled))

    def aoi_only(a: np.ndarray) -> np.ndarray:
        return np.where(inside, a, np.uint8(255) if a.dtype == np.uint8 else np.nan)

    cube = {"filled": aoi_only(filled), "mask": aoi_only(mask), "prediction": aoi_only(calibrated),
            "observation": aoi_only(obs)}
    if p.EXPORT_PCA:
        cube["smoothed"] = aoi_only(smoothed)

    # Per-image MAE sums on clear pixels (AOI-wide MAE = sum / n over all tiles).
    clear = (mask == 0) & inside & np.isfinite(obs) & np.isfinite(calibrated)
    err = np.where(clear, np.abs(obs - calibrated), 0.0)
    mae = {"sum": err.sum(axis=(1, 2)).tolist(), "n": clear.sum(axis=(1, 2)).tolist()}
    sel = skill_pixels(window, stats, inside)
    skill = score(obs[:, sel], mask[:, sel], calibrated[:, sel], filled[:, sel], labels, days, truth)
    return FinishProducts(cube, {"mae": mae, "skill": skill})


def finish_tile(ctx: RunContext, tile: Tile, stats: GlobalStats, reduction: Reduction, source: Source) -> TileOutcome:
    """Stage B of one tile: read stage A's arrays (and the synthetic truth), compute
    (``finish_products``), write (``TileSink``)."""
    window = ctx.plan.compute_window(tile)  # a trained tile meets the AOI's bounding box
    sink = TileSink(RunDir(ctx.run_dir), tile, window)
    pred, obs, mask = sink.load("pred", "obs", "mask")
    gbox = tile.grid.geobox(*window)
    inside = inside_mask(gbox, ctx.plan.aoi)
    reading = Stopwatch()
    truth = None
    if source.synthetic:
        with reading:
            t = source.read_truth_ndvi(gbox, list(stats.paired["id"]))
        truth = None if t is None else np.asarray(t.values, np.float32)[:, skill_pixels(window, stats, inside)]
    products = finish_products(ctx.params, stats, reduction, window, inside, pred, obs, mask, truth)
    return TileOutcome(tile.id, "finish", "done", outputs=sink.cube(products.cube),
                       stats={**products.stats, "read_s": round(reading.seconds, 3)})
