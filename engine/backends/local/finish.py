"""Per-tile stage B: PCA smoothing, calibration, fill, held-out skill, outputs into the cube."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from config.parameters import Parameters
from engine.backends.local.inputs import Stopwatch
from engine.backends.local.sink import TileSink
from engine.backends.sample_reduce import lattice_offsets
from engine.backends.scoring import inside_mask, score, skill_pixels
from engine.run.context import RunContext
from engine.run.rundir import RunDir
from engine.run.stages import GlobalStats, Reduction, TileOutcome
from engine.science.calibration import calibrate
from engine.science.fill import fill
from engine.science.pca import pca_smooth
from engine.sources.base import Source
from tiling.grid import GridSpec, Tile, Window


@numba.njit(cache=True, error_model="numpy")
def _keep_inside(a, inside, fill_value, out):
    for t in range(a.shape[0]):
        for y in range(a.shape[1]):
            for x in range(a.shape[2]):
                out[t, y, x] = a[t, y, x] if inside[y, x] else fill_value


def keep_inside(a: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """A (T, y, x) array's values on the AOI's pixels, the cube's fill value elsewhere (NaN, or 255
    for uint8), as a new C-contiguous array."""
    out = np.empty(a.shape, a.dtype)
    _keep_inside(a, inside, a.dtype.type(255) if a.dtype == np.uint8 else a.dtype.type(np.nan), out)
    return out


@numba.njit(cache=True, error_model="numpy")
def _clear_errors(obs, mask, pred, inside):
    """The count and sum of |obs - pred| on one date's clear AOI pixels with both values finite: a
    float64 running sum in row-major order, so the figures do not depend on the window around them."""
    n = 0
    total = 0.0
    for y in range(obs.shape[0]):
        for x in range(obs.shape[1]):
            o = obs[y, x]
            q = pred[y, x]
            if mask[y, x] == 0 and inside[y, x] and abs(o) < np.inf and abs(q) < np.inf:
                total += abs(np.float64(o) - np.float64(q))
                n += 1
    return n, total


@dataclass
class FinishProducts:
    """What stage B makes of a tile's stage-A arrays (``TileSink`` writes the cube arrays)."""

    cube: dict[str, np.ndarray]
    stats: dict[str, Any]


def finish_products(params: Parameters, stats: GlobalStats, reduction: Reduction, window: Window, inside: np.ndarray,
                    pred: np.ndarray, obs: np.ndarray, mask: np.ndarray,
                    truth: np.ndarray | None = None, overwrite: bool = False) -> FinishProducts:
    """Steps 8-10 and the tile's skill sums on the core + 1 px margin arrays of stage A: pure.
    ``truth`` (synthetic source): the true NDVI at the skill lattice's pixels of the core.
    ``overwrite``: the input arrays are the caller's to spend (calibrated and masked in place, a
    stack fewer each); the cube's arrays may then be views of them."""
    p = params
    paired = stats.paired
    labels = paired["split"].to_numpy()
    days = paired["day"].to_numpy()
    # Step 8: temporal PCA smoothing with the AOI-wide basis.
    smoothed = pca_smooth(pred, reduction.basis) if reduction.basis is not None else pred
    keep_smoothed = p.EXPORT_PCA or (smoothed is pred and not overwrite)
    # Step 9: spatial calibration with the AOI-wide statistics (cloudier images stay uncalibrated).
    calibrated = smoothed.copy() if keep_smoothed else smoothed
    for i, image_id in enumerate(paired["id"]):
        if image_id in reduction.calibration:
            ps, os_ = reduction.calibration[image_id]
            calibrated[i] = calibrate(smoothed[i], ps, os_)
    if p.CLIP_NDVI:  # an option: the method keeps whatever the calibration gives
        np.clip(calibrated, -1.0, 1.0, out=calibrated)
    # Step 10: fill and focal median of the core (from the core + 1 px margin).
    filled = fill(obs, mask, calibrated, keep_clear=p.KEEP_CLEAR_OBSERVED, crop=1)
    core = (slice(None), slice(1, -1), slice(1, -1))
    own_smoothed = smoothed is not pred or overwrite
    obs, mask, calibrated, smoothed = (a[core] for a in (obs, mask, calibrated, smoothed))

    # Per-image MAE sums on clear pixels (AOI-wide MAE = sum / n over all tiles), a date at a time.
    mae: dict[str, list] = {"sum": [], "n": []}
    for t in range(obs.shape[0]):
        n, total = _clear_errors(obs[t], mask[t], calibrated[t], inside)
        mae["n"].append(int(n))
        mae["sum"].append(float(total))
    sel = skill_pixels(window, stats, inside)
    skill = score(obs[:, sel], mask[:, sel], calibrated[:, sel], filled[:, sel], labels, days, truth)

    def aoi_only(a: np.ndarray, own: bool) -> np.ndarray:
        """``a`` with the cube's fill value outside the AOI: in place when ours to change."""
        if inside.all():
            return a
        if not own:
            return keep_inside(a, inside)
        a[:, ~inside] = np.uint8(255) if a.dtype == np.uint8 else np.nan
        return a

    cube = {"filled": aoi_only(filled, True), "mask": aoi_only(mask, overwrite),
            "prediction": aoi_only(calibrated, True), "observation": aoi_only(obs, overwrite)}
    if p.EXPORT_PCA:
        cube["smoothed"] = aoi_only(smoothed, own_smoothed)
    return FinishProducts(cube, {"mae": mae, "skill": skill})


def skill_truth(source: Source, grid: GridSpec, window: Window, stats: GlobalStats,
                inside: np.ndarray) -> np.ndarray | None:
    """The true NDVI (paired dates, skill pixels) of a synthetic source, read on the skill lattice only."""
    step = stats.skill_step
    (r0, nr), (c0, nc) = (lattice_offsets(start, n, step) for start, n in ((window.row, window.height),
                                                                           (window.col, window.width)))
    if nr == 0 or nc == 0:
        return np.zeros((len(stats.paired), 0), np.float32)
    t = source.read_truth_ndvi(grid.geobox(c0 * step, r0 * step, nc, nr, step=step), list(stats.paired["id"]))
    if t is None:
        return None
    rows = r0 * step + step // 2 - window.row + step * np.arange(nr)
    cols = c0 * step + step // 2 - window.col + step * np.arange(nc)
    on_lattice = skill_pixels(window, stats, inside)[np.ix_(rows, cols)]
    return np.asarray(t.values, np.float32)[:, on_lattice]


def finish_tile(ctx: RunContext, tile: Tile, stats: GlobalStats, reduction: Reduction, source: Source) -> TileOutcome:
    """Stage B of one tile: read stage A's arrays (and the synthetic truth), compute
    (``finish_products``), write (``TileSink``)."""
    window = ctx.plan.compute_window(tile)  # a trained tile holds AOI pixels
    sink = TileSink(RunDir(ctx.run_dir), tile, window)
    pred, obs, mask = sink.load("pred", "obs", "mask")
    gbox = tile.grid.geobox(*window)
    inside = inside_mask(gbox, ctx.plan.aoi)
    reading = Stopwatch()
    truth = None
    if source.synthetic:
        with reading:
            truth = skill_truth(source, tile.grid, window, stats, inside)
    products = finish_products(ctx.params, stats, reduction, window, inside, pred, obs, mask, truth,
                               overwrite=True)
    return TileOutcome(tile.id, "finish", "done", outputs=sink.cube(products.cube),
                       stats={**products.stats, "read_s": round(reading.seconds, 3)})
