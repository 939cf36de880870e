"""Per-tile stage A: gap statistics, SAR covariates, the robust regression model, raw predictions.

The tile is read with its halo of at least 12 px: 10 for the 21 x 21 neighbourhood mean, 1 for
the covariates' focal median, and 1 because the model and predictions are kept on the core plus a
1-pixel margin, which the final focal median of stage B (the fill) reads. The model file holds the
core only.
"""
from __future__ import annotations

import logging

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.parameters import Parameters
from engine.backends.local.inputs import Optical, Stopwatch, read_composites, read_optical, reads_of, reads_since
from engine.backends.scoring import inside_mask, lattice
from engine.backends.local.sink import TileSink
from engine.run.context import RunContext
from engine.run.rundir import RunDir
from engine.run.stages import GlobalStats, TileOutcome
from engine.science import sar as sar_science
from engine.science.gaps import GAP_BANDS, gap_statistics
from engine.science.regression import COEF_BANDS, predict, robust_fit
from engine.science.split import apply_artificial_mask
from engine.sources.base import Source
from tiling.grid import Tile, Window

log = logging.getLogger(__name__)
TRAIN_LABELS = ("Training", "Validation")
STRIP_ROWS = 32  # rows of the compute window whose covariates are held at once


@dataclass
class TrainProducts:
    """What stage A makes of a tile's inputs (arrays only; ``TileSink`` writes them)."""

    coef: np.ndarray  # (9, h, w) model of the compute window
    work: dict[str, np.ndarray]  # pred, obs, mask on the core + 1 px margin, for stage B
    sample: dict[str, np.ndarray]  # the tile's rows of the statistics sample
    cube: dict[str, np.ndarray]  # gap statistics (and the SAR composites if exported)
    stats: dict[str, int] = field(default_factory=dict)


def sar_window(stats: GlobalStats, params: Parameters) -> pd.DataFrame:
    """The S1 images (id, day) any paired date's composite window reaches."""
    days = stats.paired["day"].to_numpy()
    window, sar = params.SAR_WINDOW_DAYS, stats.sar
    return sar[(sar["day"] >= days.min() - window) & (sar["day"] < days.max() + window)]


def train_products(params: Parameters, stats: GlobalStats, window: Window, halo: int, inside_h: np.ndarray,
                   opt: Optical, vv_c: np.ndarray, vh_c: np.ndarray) -> TrainProducts:
    """Job 1 (gap statistics) and job 2 steps 1-7 on a tile's compute ``window`` read with its
    ``halo``: pure, from arrays (``vv_c`` / ``vh_c``: the paired dates' SAR composites, step 3)."""
    p = params
    images = stats.images
    core = (slice(halo, -halo), slice(halo, -halo))
    margin = (slice(halo - 1, -(halo - 1)), slice(halo - 1, -(halo - 1)))
    inside_core = inside_h[core]

    # Job 1: gap statistics on the core, all daily images.
    start_day = int((np.datetime64(p.START_DATE, "D") - np.datetime64("1970-01-01", "D")).astype(int))
    end_day = int((np.datetime64(p.END_DATE, "D") - np.datetime64("1970-01-01", "D")).astype(int))
    gaps = gap_statistics(opt.clear[:, core[0], core[1]], images["day"].to_numpy(), start_day, end_day)
    cube = {b: np.where(inside_core, gaps[b], np.nan).astype(np.float32) for b in GAP_BANDS}

    # Job 2, steps 1-5 on the paired images.
    paired = images["paired"].to_numpy()
    labels = images["split"].to_numpy()[paired]
    ndvi = opt.ndvi if paired.all() else opt.ndvi[paired]
    mask = (~opt.clear[paired]).astype(np.uint8)
    if stats.donor_id is not None:
        d = int(np.flatnonzero(images["id"].to_numpy() == stats.donor_id)[0])
        mask = apply_artificial_mask(mask, labels, (opt.valid[d] & opt.cloudy[d]).astype(np.uint8))
    days = images["day"].to_numpy()[paired]
    pimg = images[paired]
    means = (pimg["vv_mean"].to_numpy(np.float32), pimg["vh_mean"].to_numpy(np.float32))
    if p.EXPORT_INPUT:
        cube["vv"] = np.where(inside_core, vv_c[:, core[0], core[1]], np.nan)
        cube["vh"] = np.where(inside_core, vh_c[:, core[0], core[1]], np.nan)

    # Steps 4, 6 and 7 a strip of rows at a time (the 8-band covariate stack of a strip only): the
    # per-pixel robust regression on the core + 1 px margin, pixels inside the AOI only, and the
    # predictions for every paired image there, kept for stage B.
    inside_m = inside_h[margin]
    hm, wm = inside_m.shape
    n_dates = len(days)
    learn = np.isin(labels, TRAIN_LABELS)[:, None]
    coef = np.empty((len(COEF_BANDS), hm, wm), np.float32)
    pred = np.empty((n_dates, hm, wm), np.float32)
    for a in range(0, hm, STRIP_ROWS):
        b = min(a + STRIP_ROWS, hm)
        rows = slice(margin[0].start + a, margin[0].start + b)
        cov = sar_science.covariates(vv_c, vh_c, *means, crop=(rows, margin[1])).reshape(8, n_dates, -1)
        y = np.ascontiguousarray(ndvi[:, rows, margin[1]]).reshape(n_dates, -1)
        # no gather of the 8-band stack where the AOI cuts the tile: pixels outside train on
        # nothing, so the fit leaves them masked (NaN) at the cost of a count
        train = (learn & (mask[:, rows, margin[1]].reshape(n_dates, -1) == 0) & np.isfinite(y)
                 & inside_m[a:b].reshape(1, -1))
        coef_px = robust_fit(cov, y, train)
        coef[:, a:b] = coef_px.reshape(len(COEF_BANDS), b - a, wm)
        pred[:, a:b] = predict(cov, coef_px).reshape(n_dates, b - a, wm)

    # Rows of the statistics sample for the global reduce (PCA basis, calibration).
    sel = lattice(window, stats.sample_step) & inside_core
    rows, cols = np.nonzero(sel)
    sample = {"pred": pred[:, 1:-1, 1:-1][:, sel].T, "obs": ndvi[:, core[0], core[1]][:, sel].T,
              "mask": mask[:, core[0], core[1]][:, sel].T,
              "key": np.stack([rows + window.row, cols + window.col], axis=1)}
    trained = int(np.isfinite(coef[0]).sum())
    return TrainProducts(
        coef=coef[:, 1:-1, 1:-1], cube=cube, sample=sample,
        work={"pred": pred, "obs": ndvi[:, margin[0], margin[1]], "mask": mask[:, margin[0], margin[1]]},
        stats={"pixels": int(inside_core.sum()), "model_pixels": trained, "masked_pixels": int(inside_m.sum()) - trained,
               "sample_rows": int(sel.sum())})


def train_tile(ctx: RunContext, tile: Tile, stats: GlobalStats, source: Source) -> TileOutcome:
    """Stage A of one tile: read, compute (``train_products``), write (``TileSink``). Only the tile's
    compute window (its core cut to the bounding window of the AOI's part of it) is read and computed."""
    p, halo = ctx.params, tile.grid.halo
    window = ctx.plan.compute_window(tile)
    if window is None:
        return TileOutcome(tile.id, "train", "empty", message="the AOI misses the tile's core")
    hgbox = tile.grid.geobox(*window.grown(halo))
    inside_h = inside_mask(hgbox, ctx.plan.aoi)
    core = (slice(halo, -halo), slice(halo, -halo))
    if not inside_h[core].any():
        return TileOutcome(tile.id, "train", "empty", message="no pixel centre of the tile lies inside the AOI")
    reading = Stopwatch()
    before = reads_of(source)
    with reading:
        opt = read_optical(source, hgbox, list(stats.images["id"]), p.OPTICAL_MISSION)
    if not (opt.valid[:, core[0], core[1]] & inside_h[core]).any():
        return TileOutcome(tile.id, "train", "empty", message="no valid optical pixel in the tile")
    near = sar_window(stats, p)
    days = stats.paired["day"].to_numpy()
    with reading:  # the source's reads and the composites they stream into
        vv_c, vh_c = read_composites(source, hgbox, list(near["id"]), near["day"].to_numpy(), days, p.SAR_WINDOW_DAYS)
    products = train_products(p, stats, window, halo, inside_h, opt, vv_c, vh_c)
    del vv_c, vh_c
    sink = TileSink(RunDir(ctx.run_dir), tile, window)
    outputs = {**sink.model(products.coef), **sink.work_arrays(products.work), **sink.sample(**products.sample),
               **sink.cube(products.cube)}
    reads = reads_since(source, before)
    return TileOutcome(tile.id, "train", "done", outputs=outputs,
                       stats={**products.stats, "read_s": round(reading.seconds, 3),
                              **({"source_reads": reads} if reads else {})})
