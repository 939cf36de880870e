"""Per-tile stage A: gap statistics, SAR covariates, the robust regression model, raw predictions.

The tile is read with its halo of at least 12 px: 10 for the 21 x 21 neighbourhood mean, 1 for
the covariates' focal median, and 1 because the model and predictions are kept on the core plus a
1-pixel margin, which the final focal median of stage B (the fill) reads. The model file holds the
core only.
"""
from __future__ import annotations

import logging

import numpy as np
import rasterio

from engine.backends.base import GlobalStats, TileOutcome
from engine.backends.local.inputs import Stopwatch, inside_mask, read_optical, read_sar
from engine.context import RunContext
from engine.cube import write_tile
from engine.io import atomic_path, sha256_file
from engine.rundir import RunDir
from engine.science import sar as sar_science
from engine.science.gaps import GAP_BANDS, gap_statistics
from engine.science.regression import COEF_BANDS, predict, robust_fit
from engine.science.split import apply_artificial_mask
from engine.sources.base import Source
from tiling.grid import Tile

log = logging.getLogger(__name__)
TRAIN_LABELS = ("Training", "Validation")


def lattice(tile_window: tuple[int, int, int, int], step: int) -> np.ndarray:
    """Boolean (h, w): pixels of the window on the origin-anchored lattice of ``step``."""
    col, row, w, h = tile_window
    cols = (np.arange(col, col + w) % step) == step // 2
    rows = (np.arange(row, row + h) % step) == step // 2
    return rows[:, None] & cols[None, :]


def save_model(path, coef: np.ndarray, tile: Tile) -> str:
    """Write the 9-band coefficient image of the tile core as a COG; return its sha256."""
    gbox = tile.geobox()
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="COG", width=gbox.shape[1], height=gbox.shape[0], count=len(COEF_BANDS),
                           dtype="float32", crs=gbox.crs.to_wkt(), transform=gbox.affine, nodata=np.nan,
                           compress="ZSTD", predictor=3, overviews="NONE", blocksize=256, num_threads=1) as dst:
            dst.write(coef.astype(np.float32))
            dst.descriptions = COEF_BANDS
            dst.update_tags(tile_id=tile.id)
    return sha256_file(path)


def train_tile(ctx: RunContext, tile: Tile, stats: GlobalStats, source: Source) -> TileOutcome:
    p = ctx.params
    rd = RunDir(ctx.run_dir)
    aoi = ctx.plan.aoi
    halo = ctx.plan.grid.halo
    hgbox = tile.geobox(with_halo=True)
    inside_h = inside_mask(hgbox, aoi)
    core = (slice(halo, -halo), slice(halo, -halo))
    margin = (slice(halo - 1, -(halo - 1)), slice(halo - 1, -(halo - 1)))
    inside_core = inside_h[core]
    if not inside_core.any():
        return TileOutcome(tile.id, "train", "empty", message="no pixel centre of the tile lies inside the AOI")

    images = stats.images
    reading = Stopwatch()
    with reading:
        opt = read_optical(source, hgbox, list(images["id"]), p.OPTICAL_MISSION)
    if not (opt.valid[:, core[0], core[1]] & inside_core).any():
        return TileOutcome(tile.id, "train", "empty", message="no valid optical pixel in the tile")

    # Job 1: gap statistics on the core, all daily images.
    start_day = int((np.datetime64(p.START_DATE, "D") - np.datetime64("1970-01-01", "D")).astype(int))
    end_day = int((np.datetime64(p.END_DATE, "D") - np.datetime64("1970-01-01", "D")).astype(int))
    gaps = gap_statistics(opt.clear[:, core[0], core[1]], images["day"].to_numpy(), start_day, end_day)
    gap_layers = {b: np.where(inside_core, gaps[b], np.nan).astype(np.float32) for b in GAP_BANDS}

    # Job 2, steps 1-5 on the paired images.
    paired = images["paired"].to_numpy()
    labels = images["split"].to_numpy()[paired]
    ndvi = opt.ndvi[paired]
    mask = (~opt.clear[paired]).astype(np.uint8)
    if stats.donor_id is not None:
        d = int(np.flatnonzero(images["id"].to_numpy() == stats.donor_id)[0])
        mask = apply_artificial_mask(mask, labels, (opt.valid[d] & opt.cloudy[d]).astype(np.uint8))
    days = images["day"].to_numpy()[paired]
    window = p.SAR_WINDOW_DAYS
    sar = stats.sar
    near = sar[(sar["day"] >= days.min() - window) & (sar["day"] < days.max() + window)]
    with reading:
        vv, vh = read_sar(source, hgbox, list(near["id"]))
    sar_days = near["day"].to_numpy()
    vv_c, _ = sar_science.composite(vv, sar_days, days, window)
    vh_c, _ = sar_science.composite(vh, sar_days, days, window)
    del vv, vh
    pimg = stats.images[paired]
    cov = sar_science.covariates(vv_c, vh_c, pimg["vv_mean"].to_numpy(np.float32),
                                 pimg["vh_mean"].to_numpy(np.float32), crop=margin)

    # Step 6: per-pixel robust regression on the core + 1 px margin, pixels inside the AOI only.
    inside_m = inside_h[margin]
    hm, wm = inside_m.shape
    n_dates = len(days)
    idx = np.flatnonzero(inside_m.ravel())
    all_inside = idx.size == hm * wm
    # a gather only where the AOI cuts the tile
    cov_px = cov.reshape(8, n_dates, hm * wm)  # covariates come cropped to the margin window
    y_px = np.ascontiguousarray(ndvi[:, margin[0], margin[1]]).reshape(n_dates, hm * wm)
    m_px = mask[:, margin[0], margin[1]].reshape(n_dates, hm * wm)
    if not all_inside:
        cov_px, y_px, m_px = cov_px[:, :, idx], y_px[:, idx], m_px[:, idx]
    is_train = np.isin(labels, TRAIN_LABELS)[:, None]
    train = is_train & (m_px == 0) & np.isfinite(y_px)
    coef_px = robust_fit(cov_px, y_px, train)
    coef = np.full((len(COEF_BANDS), hm * wm), np.nan, np.float32)
    coef[:, idx] = coef_px
    coef = coef.reshape(len(COEF_BANDS), hm, wm)
    model_path = rd.tile_dir(tile.id) / "model.tif"
    model_sha = save_model(model_path, coef[:, 1:-1, 1:-1], tile)  # saved before it is used

    # Step 7: predictions for every paired image (core + margin), kept for stage B.
    pred = np.full((n_dates, hm * wm), np.nan, np.float32)
    pred[:, idx] = predict(cov_px, coef_px)
    pred = pred.reshape(n_dates, hm, wm)
    work = rd.work_dir(tile.id)
    work_files = {"pred": pred, "obs": ndvi[:, margin[0], margin[1]], "mask": mask[:, margin[0], margin[1]]}
    for name, array in work_files.items():
        with atomic_path(work / f"{name}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array))

    # Rows of the statistics sample for the global reduce (PCA basis, calibration).
    sel = lattice(tile.window, stats.sample_step) & inside_core
    sample_path = work / "sample.npz"
    with atomic_path(sample_path) as tmp:
        with open(tmp, "wb") as fh:
            rows, cols = np.nonzero(sel)
            key = np.stack([rows + tile.window[1], cols + tile.window[0]], axis=1)
            np.savez(fh, pred=pred[:, 1:-1, 1:-1][:, sel].T, obs=ndvi[:, core[0], core[1]][:, sel].T,
                     mask=mask[:, core[0], core[1]][:, sel].T, key=key)

    cube_arrays = dict(gap_layers)
    if p.EXPORT_INPUT:
        cube_arrays["vv"] = np.where(inside_core, vv_c[:, core[0], core[1]], np.nan)
        cube_arrays["vh"] = np.where(inside_core, vh_c[:, core[0], core[1]], np.nan)
    sums = write_tile(rd.cube, tile, cube_arrays)
    trained = int(np.isfinite(coef_px[0]).sum())
    return TileOutcome(
        tile.id, "train", "done",
        outputs={"model": {"path": str(model_path.relative_to(rd.root)), "sha256": model_sha},
                 **{name: {"path": str((work / f"{name}.npy").relative_to(rd.root)),
                           "sha256": sha256_file(work / f"{name}.npy"), "work": True} for name in work_files},
                 "sample": {"path": str(sample_path.relative_to(rd.root)), "sha256": sha256_file(sample_path),
                            "work": True},
                 **{name: {"cube": name, "sha256": s} for name, s in sums.items()}},
        stats={"pixels": int(inside_core.sum()), "model_pixels": trained, "masked_pixels": int(len(idx) - trained),
               "sample_rows": int(sel.sum()), "read_s": round(reading.seconds, 3)},
    )
