"""Global reduce on Earth Engine: PCA basis and calibration statistics on the statistics sample.

The sample is the local backend's: the origin-anchored lattice of every ``sample_step``-th grid
pixel inside the AOI. Each trained tile's rows (raw predictions from its own model asset, the
observed NDVI and Mask of every paired image) come from one ``image:computePixels`` on the
lattice points of its core (its dates halved per request on a memory error), so every request
is bounded by a tile's size whatever the AOI, and the rows are reduced by
:func:`engine.backends.sample_reduce.reduce_from_samples`, the local backend's own code: same
pixels, same basis, same calibration statistics.

The results are constants of every tile's stage B (:func:`finish_constants`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.run.stages import GlobalStats, Reduction
from engine.backends.sample_reduce import lattice_offsets, reduce_from_samples
from engine.run.context import RunContext
from engine.errors import MemoryLimitError
from engine.backends.gee import expressions as X
from engine.backends.gee.api import EEApi
from engine.backends.gee.global_pass import all_days, donor_day
from tiling.grid import Tile, Window

log = logging.getLogger(__name__)


def lattice_grid(spec: X.Spec, window: tuple[int, int, int, int], step: int) -> tuple[dict[str, Any], np.ndarray]:
    """The computePixels grid of the statistics lattice points in a tile core ``window`` (col, row,
    w, h), and each point's (row, col) on the analysis grid."""
    col, row, w, h = window
    k0, nx = lattice_offsets(col, w, step)
    r0, ny = lattice_offsets(row, h, step)
    s = spec.resolution * step
    grid = {"crsCode": spec.crs, "dimensions": {"width": nx, "height": ny},
            "affineTransform": {"scaleX": s, "shearX": 0, "translateX": k0 * s,
                                "shearY": 0, "scaleY": -s, "translateY": -r0 * s}}
    rr, cc = np.meshgrid((r0 + np.arange(ny)) * step + step // 2, (k0 + np.arange(nx)) * step + step // 2,
                         indexing="ij")
    return grid, np.stack([rr.ravel(), cc.ravel()], axis=1)


def tile_samples(api: EEApi, spec: X.Spec, stats: GlobalStats, tile: Tile, model_asset: str,
                 rows: list[dict[str, Any]], window: Window | None) -> dict[str, np.ndarray]:
    """One tile's rows of the statistics sample (as the local backend's ``sample.npz``), computed
    by ``computePixels`` on the lattice points of its core, from the tile's own model.

    One request holds every paired date; "User memory limit exceeded" halves the dates per
    request (each date's bands are independent) until one date alone is too big."""
    grid, key = lattice_grid(spec, window or (tile.window[0], tile.window[1], 0, 0), stats.sample_step)
    n = len(rows)
    if key.shape[0] == 0:
        return {"pred": np.zeros((0, n)), "obs": np.zeros((0, n)), "mask": np.zeros((0, n), np.uint8), "key": key}
    cols = _sample_columns(api, spec, stats, tile, model_asset, rows, grid)
    inside = cols["inside"] == 1
    m = cols["m"]
    return {"pred": cols["p"][inside], "obs": cols["o"][inside],
            "mask": np.where(np.isfinite(m), m, 1).astype(np.uint8)[inside], "key": key[inside]}


def _sample_columns(api: EEApi, spec: X.Spec, stats: GlobalStats, tile: Tile, model_asset: str,
                    rows: list[dict[str, Any]], grid: dict[str, Any]) -> dict[str, np.ndarray]:
    """``p`` / ``o`` / ``m`` (points x dates, NaN where masked) and ``inside`` for ``rows``."""
    import ee

    ids = [r["id"] for r in rows]
    region = X.window_geometry(spec, tile.halo_window)
    pred = X.prediction_stack(spec, ee.Image(model_asset), rows, region)
    obs, mask = X.observation_stacks(spec, rows, donor_day(stats), region)
    what = f"statistics sample {tile.id} ({ids[0]}..{ids[-1]})"
    try:
        arr = api.compute_pixels(X.sample_image(pred, obs, mask, ids, spec), grid, what)
    except MemoryLimitError:
        if len(rows) == 1:
            raise
        half = len(rows) // 2
        log.info("%s: memory limit, splitting its %d dates in two", what, len(rows))
        a = _sample_columns(api, spec, stats, tile, model_asset, rows[:half], grid)
        b = _sample_columns(api, spec, stats, tile, model_asset, rows[half:], grid)
        return {k: np.concatenate([a[k], b[k]], axis=1) if k != "inside" else a[k] for k in a}

    def field(prefix: str) -> np.ndarray:
        v = np.stack([np.asarray(arr[f"{prefix}_{i}"], dtype=np.float64).ravel() for i in ids], axis=1)
        return np.where(v == X.SAMPLE_NODATA, np.nan, v)

    return {"p": field("p"), "o": field("o"), "m": field("m"), "inside": np.asarray(arr["inside"]).ravel()}


def reduce_models(ctx: RunContext, api: EEApi, spec: X.Spec, stats: GlobalStats,
                  trained: Sequence[tuple[Tile, str]]) -> Reduction:
    """The global reduce from the statistics sample, gathered tile by tile (one interactive request
    per tile, each bounded by the tile's size) and reduced exactly as the local backend does."""
    rows = X.image_rows(stats.paired, donor_day(stats))
    workers = max(1, min(ctx.params.MAX_INTERACTIVE_REQUESTS, len(trained)))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the client's interactive cap still holds
        parts = list(pool.map(lambda ta: tile_samples(api, spec, stats, ta[0], ta[1], rows,
                                                      ctx.plan.compute_window(ta[0])), trained))
    data = {k: np.concatenate([p[k] for p in parts]) for k in ("pred", "obs", "mask", "key")}
    order = np.lexsort((data["key"][:, 1], data["key"][:, 0]))
    red = reduce_from_samples(ctx, stats, data["pred"][order], data["obs"][order], data["mask"][order])
    log.info("global reduce: %d tiles, %d sample pixels, PCA %s, %d of %d images calibrated", len(trained),
             red.sample_pixels, "on" if red.basis is not None else "off", len(red.calibration), len(rows))
    return red


def finish_constants(ctx: RunContext, stats: GlobalStats, reduction: Reduction) -> X.Finish:
    """Everything stage B needs as constants: rows, PCA reconstruction, calibration scales."""
    paired = stats.paired
    dday = donor_day(stats)
    rows = X.image_rows(paired, dday)
    p_mean, up, lo, o_mean = [], [], [], []
    for r in rows:
        cal = reduction.calibration.get(r["id"])
        if cal is None:
            p_mean.append(0.0), up.append(1.0), lo.append(1.0), o_mean.append(0.0)
            continue
        ps, os_ = cal
        up_range, lo_range = ps.upper - ps.mean, ps.lower - ps.mean
        p_mean.append(float(ps.mean))
        up.append(float((os_.upper - os_.mean) / up_range) if up_range != 0 else 1.0)
        lo.append(float((os_.lower - os_.mean) / lo_range) if lo_range != 0 else 1.0)
        o_mean.append(float(os_.mean))
    pca_mean = pca_v = None
    if reduction.basis is not None:
        b = reduction.basis
        pca_mean = tuple(float(v) for v in b.mean)
        pca_v = tuple(tuple(float(v) for v in row) for row in b.components)
    table_rows = []
    for _, r in paired.iterrows():
        table_rows.append({"ID": str(r["id"]), "Date": r["time"].strftime("%Y-%m-%d"),
                           "Cloud_cover": round(float(r["cloud_pct"]), 3), "Random": float(r["random"]),
                           "SplitLabel": str(r["split"]), "S1_count": int(r["s1_count"])})
    return X.Finish(rows=tuple(rows), donor_day=dday, pca_mean=pca_mean, pca_components=pca_v,
                    calibration={"p_mean": p_mean, "up": up, "lo": lo, "o_mean": o_mean},
                    all_days=tuple(all_days(stats)), table_rows=tuple(table_rows))
