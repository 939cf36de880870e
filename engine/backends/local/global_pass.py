"""Global pass (before the tiles): per-date AOI statistics, pairing, split labels, donor mask.

The per-image statistics (cloud cover, valid pixels, the AOI's SAR means) are the AOI's own, at
full resolution: every tile adds the sums of its core's pixels inside the AOI
(``engine.backends.aoi_stats``), so they do not depend on the tiling. The PCA / calibration
sample (``sample_step``) is a lattice of every ``step``-th grid pixel anchored at the grid origin.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from distributed import Client
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from engine.backends import aoi_stats
from engine.backends.pairing import pair_and_split, sample_step, skill_step
from engine.run.stages import GlobalStats
from engine.backends.local.inputs import add_reads, iter_composites, iter_optical, reads_of, reads_since, to_days
from engine.backends.scoring import inside_mask
from engine.run.context import RunContext
from engine.errors import DataError
from engine.sources.base import Source
from tiling.grid import GridSpec, Window

log = logging.getLogger(__name__)

def sample_geobox(grid: GridSpec, aoi: BaseGeometry, step: int) -> GeoBox:
    """The coarse GeoBox of the sample lattice over the AOI's bounds (origin-anchored)."""
    w = Window.covering(aoi.bounds, grid.resolution, step)
    return grid.geobox(w.col, w.row, w.width // step, w.height // step, step=step)


def tile_image_sums(source: Source, aoi: BaseGeometry, gbox: GeoBox, mission: str, optical_ids: list[str],
                    optical_days: np.ndarray, sar_ids: list[str], sar_days: np.ndarray,
                    window_days: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One tile's share of the AOI-wide per-image statistics (``engine.backends.aoi_stats``): the
    pixels of its compute window ``gbox`` inside the AOI, at full resolution, summed a chunk of
    images (optical) or one composite (SAR) at a time; and what it read from the source
    (``reads_since``). Runs in a dask worker."""
    inside = inside_mask(gbox, aoi)
    sums = aoi_stats.add([], len(optical_ids))
    if not inside.any():
        return sums, {}
    before = reads_of(source)
    for part, opt in iter_optical(source, gbox, optical_ids, mission, with_ndvi=False):
        aoi_stats.add_flags(sums, part, opt.valid, opt.cloudy, inside)
    if sar_ids:
        for i, vv, vh in iter_composites(source, gbox, sar_ids, sar_days, optical_days, window_days):
            aoi_stats.add_sar(sums, i, vv, vh, inside)
    return sums, reads_since(source, before)


def global_pass(ctx: RunContext, source: Source, client: Client | None = None) -> GlobalStats:
    """Compute the AOI-wide per-image table and the decisions every tile shares: the catalogs
    over the AOI, then every tile's sums (on ``client``'s workers when given)."""
    p = ctx.params
    grid = ctx.plan.grid
    aoi = ctx.plan.aoi
    catalog_step = sample_step(aoi.area, grid.resolution, p.STATS_SCALE)  # the points catalogs are asked for
    gbox = sample_geobox(grid, aoi, catalog_step)
    start = pd.Timestamp(p.START_DATE, tz="UTC")
    end = pd.Timestamp(p.END_DATE, tz="UTC")
    window = pd.Timedelta(days=p.SAR_WINDOW_DAYS)
    optical = source.optical_catalog(gbox, p.OPTICAL_MISSION, start, end).sort_values("time").reset_index(drop=True)
    sar = source.sar_catalog(gbox, start - window, end + window).sort_values("time").reset_index(drop=True)
    if optical.empty:
        raise DataError(f"no {p.OPTICAL_MISSION} images over {ctx.aoi.name} between {p.START_DATE} and "
                        f"{p.END_DATE}; extend the period or check the data source")
    if int(inside_mask(gbox, aoi).sum()) == 0:
        raise DataError(f"the AOI {ctx.aoi.name} holds no {catalog_step * grid.resolution:g} m statistics sample "
                        "point; use a larger AOI or a smaller STATS_SCALE")
    tiles = list(ctx.plan.tiles)
    log.info("global pass: %d optical, %d SAR images, statistics over %d tiles at full resolution",
             len(optical), len(sar), len(tiles))

    images = optical[["id", "time"]].copy()
    images["day"] = to_days(images["time"])
    sar_days = to_days(sar["time"]) if len(sar) else np.zeros(0, np.int64)
    args = (p.OPTICAL_MISSION, list(optical["id"]), images["day"].to_numpy(), list(sar["id"]), sar_days,
            p.SAR_WINDOW_DAYS)
    boxes = {t.id: grid.geobox(*w) for t in tiles if (w := ctx.plan.compute_window(t)) is not None}
    if client is None:
        parts = [tile_image_sums(source, aoi, g, *args) for g in boxes.values()]
    else:
        shared = [client.scatter(obj, broadcast=True, hash=False) for obj in (source, aoi)]
        futures = [client.submit(tile_image_sums, *shared, g, *args, key=f"image-stats-{tid}", pure=False)
                   for tid, g in boxes.items()]
        try:
            parts = client.gather(futures)
        finally:
            for f in futures:
                f.release()
    table = aoi_stats.image_table(aoi_stats.add([sums for sums, _ in parts], len(images)), grid.resolution,
                                  p.STATS_SCALE)
    images = pd.concat([images, table], axis=1)
    images["s1_count"] = aoi_stats.scene_counts(sar["time"], images["day"].to_numpy(), p.SAR_WINDOW_DAYS)
    donor_id, notes = pair_and_split(images, len(sar), ctx)
    # the reduce's sample: also capped by pixel-dates, known once the images are paired
    step = sample_step(aoi.area, grid.resolution, p.STATS_SCALE, int(images["paired"].sum()))
    return GlobalStats(images=images, sar=sar.assign(day=sar_days)[["id", "time", "day"]], donor_id=donor_id,
                       sample_step=step, skill_step=skill_step(aoi.area / grid.resolution**2), notes=notes,
                       reads=add_reads([reads for _, reads in parts]))

