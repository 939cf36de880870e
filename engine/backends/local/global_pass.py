"""Global pass (before the tiles): per-date AOI statistics, pairing, split labels, donor mask.

Everything here is estimated on the statistics sample, a lattice of every ``step``-th grid pixel
anchored at the grid origin, restricted to pixel centres inside the AOI. The lattice depends on
the AOI and the grid only, never on the tiling.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from engine.backends.base import GlobalStats
from engine.backends.local.inputs import inside_mask, read_optical, read_sar, to_days
from engine.context import RunContext
from engine.errors import DataError
from engine.science import sar as sar_science
from engine.science.split import artificial_mask_donor, split_labels
from engine.sources.base import Source
from tiling.grid import GridSpec

log = logging.getLogger(__name__)

MIN_PAIRS = 10
MIN_PIXEL_COUNT = 100  # images with PIXEL_COUNT_AOI <= 100 (at the 100 m statistics scale) are dropped
MAX_SAMPLE_POINTS = 400_000  # the sample lattice coarsens (odd steps) to stay under this
MAX_SKILL_PIXELS = 250_000  # held-out skill is scored on a lattice coarsened (odd steps) to about this many pixels


def nearest_odd(x: float) -> int:
    k = max(1, int(round(x)))
    return k if k % 2 else k + 1


def sample_step(aoi_area: float, resolution: float, stats_scale: float) -> int:
    """Odd lattice step ~ stats_scale / resolution, coarsened until the AOI holds few enough points."""
    step = nearest_odd(stats_scale / resolution)
    while aoi_area / (step * resolution) ** 2 > MAX_SAMPLE_POINTS:
        step += 2
    return step


def skill_step(aoi_pixels: float) -> int:
    """Odd lattice step for held-out skill: every pixel for small AOIs, about MAX_SKILL_PIXELS otherwise."""
    step = 1
    while aoi_pixels / step**2 > MAX_SKILL_PIXELS:
        step += 2
    return step


def sample_geobox(grid: GridSpec, aoi: BaseGeometry, step: int) -> GeoBox:
    """The coarse GeoBox of the sample lattice over the AOI's bounds (origin-anchored)."""
    minx, miny, maxx, maxy = aoi.bounds
    res = grid.resolution
    c0 = math.floor(minx / res / step) * step
    r0 = math.floor(-maxy / res / step) * step
    c1 = math.ceil(maxx / res / step) * step
    r1 = math.ceil(-miny / res / step) * step
    return grid.geobox(c0, r0, (c1 - c0) // step, (r1 - r0) // step, step=step)


def _metadata_labels(path: str, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Split labels and random values from an earlier run's per-image table (PATH_MATADATA)."""
    try:
        meta = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read PATH_MATADATA {path!r}: {e}") from e
    cols = {c.lower(): c for c in meta.columns}
    id_col, split_col, rnd_col = cols.get("id"), cols.get("splitlabel") or cols.get("split"), cols.get("random")
    if not (id_col and split_col and rnd_col):
        raise DataError(f"PATH_MATADATA {path!r} needs columns ID, SplitLabel (or split) and Random")
    table = meta.set_index(id_col)
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise DataError(f"PATH_MATADATA {path!r} has no row for {len(missing)} image(s), e.g. {missing[0]}; "
                        "it must come from a run with the same mission and period")
    return table.loc[ids, rnd_col].to_numpy(float), table.loc[ids, split_col].astype(str).to_numpy()


def pair_and_split(images: pd.DataFrame, n_sar: int, ctx: RunContext) -> tuple[str | None, list[str]]:
    """Steps 2 and 5 on the per-image table (both backends): pairing, split labels, the donor.

    Adds the columns ``paired``, ``random`` and ``split`` to ``images`` (chronological, with
    ``s1_count``, ``pixel_count``, ``cloud_pct``, ``vv_mean``, ``vh_mean``); returns the id of the
    artificial-mask donor and notes for the user. Raises DataError below 10 pairs.
    """
    p = ctx.params
    images["paired"] = ((images["s1_count"] > 0) & (images["pixel_count"] > MIN_PIXEL_COUNT)
                        & images["vv_mean"].notna() & images["vh_mean"].notna())
    n_pairs = int(images["paired"].sum())
    if n_pairs < MIN_PAIRS and len(images) and float(images["pixel_count"].max()) <= MIN_PIXEL_COUNT:
        raise DataError(
            f"the AOI {ctx.aoi.name} is too small: an image needs more than {MIN_PIXEL_COUNT} valid 100 m pixels "
            f"(PIXEL_COUNT_AOI) and the AOI holds at most {float(images['pixel_count'].max()):g}; "
            f"use an AOI of at least ~{MIN_PIXEL_COUNT / 100:g} km2"
        )
    if n_pairs < MIN_PAIRS:
        raise DataError(
            f"only {n_pairs} optical-SAR pairs for {ctx.aoi.name} ({len(images)} {p.OPTICAL_MISSION} images, "
            f"{n_sar} S1 images, {p.START_DATE} to {p.END_DATE}); at least {MIN_PAIRS} are needed: "
            "extend the period (--start/--end) or widen SAR_WINDOW_DAYS"
        )

    paired_idx = np.flatnonzero(images["paired"].to_numpy())
    paired_days = images["day"].to_numpy()[paired_idx]
    if p.PATH_MATADATA:
        rnd, labels = _metadata_labels(p.PATH_MATADATA, images["id"].iloc[paired_idx])
    else:
        rnd, labels = split_labels(paired_days, p.RANDOM_SEED, p.TRAIN_TEST_SPLIT, p.VAL_SPLIT, p.RANDOM_SPLIT)
    images["random"] = np.nan
    images["split"] = ""
    images.loc[paired_idx, "random"] = rnd
    images.loc[paired_idx, "split"] = labels

    notes = []
    donor = artificial_mask_donor(images["cloud_pct"].to_numpy()[paired_idx])
    donor_id = None if donor is None else str(images["id"].iloc[paired_idx[donor]])
    if donor is not None:
        pct = images["cloud_pct"].iloc[paired_idx[donor]]
        if not 50 <= pct <= 55:
            notes.append(f"no paired image has 50-55 % cloud; validation mask borrowed from {donor_id} ({pct:.1f} %)")
    elif (labels == "Validation").any():
        notes.append("no partly cloudy image to lend its mask: validation images get no artificial cloud")
    return donor_id, notes


def global_pass(ctx: RunContext, source: Source) -> GlobalStats:
    """Compute the AOI-wide per-image table and the decisions every tile shares."""
    p = ctx.params
    grid = ctx.plan.grid
    aoi = ctx.plan.aoi
    step = sample_step(aoi.area, grid.resolution, p.STATS_SCALE)
    gbox = sample_geobox(grid, aoi, step)
    inside = inside_mask(gbox, aoi)
    start = pd.Timestamp(p.START_DATE, tz="UTC")
    end = pd.Timestamp(p.END_DATE, tz="UTC")
    window = pd.Timedelta(days=p.SAR_WINDOW_DAYS)
    optical = source.optical_catalog(gbox, p.OPTICAL_MISSION, start, end).sort_values("time").reset_index(drop=True)
    sar = source.sar_catalog(gbox, start - window, end + window).sort_values("time").reset_index(drop=True)
    if optical.empty:
        raise DataError(f"no {p.OPTICAL_MISSION} images over {ctx.aoi.name} between {p.START_DATE} and "
                        f"{p.END_DATE}; extend the period or check the data source")
    n_inside = int(inside.sum())
    if n_inside == 0:
        raise DataError(f"the AOI {ctx.aoi.name} holds no {step * grid.resolution:g} m statistics sample point; "
                        "use a larger AOI or a smaller STATS_SCALE")
    log.info("global pass: %d optical, %d SAR images, %d sample points (step %d px)",
             len(optical), len(sar), n_inside, step)

    opt = read_optical(source, gbox, list(optical["id"]), p.OPTICAL_MISSION)
    valid = (opt.valid & inside).sum(axis=(1, 2))
    cloudy = (opt.cloudy & inside).sum(axis=(1, 2))
    cell_area_ratio = (step * grid.resolution / 100.0) ** 2  # sample points -> 100 m pixels
    images = optical[["id", "time"]].copy()
    images["day"] = to_days(images["time"])
    images["cloud_pct"] = np.where(valid > 0, 100.0 * cloudy / np.maximum(valid, 1), np.nan)
    images["pixel_count"] = valid * cell_area_ratio

    sar_days = to_days(sar["time"]) if len(sar) else np.zeros(0, np.int64)
    if len(sar):
        vv, vh = read_sar(source, gbox, list(sar["id"]))
        vv_c, counts = sar_science.composite(vv, sar_days, images["day"].to_numpy(), p.SAR_WINDOW_DAYS)
        vh_c, _ = sar_science.composite(vh, sar_days, images["day"].to_numpy(), p.SAR_WINDOW_DAYS)
        with np.errstate(invalid="ignore"):
            images["vv_mean"] = [float(np.nanmean(c[inside])) if np.isfinite(c[inside]).any() else np.nan for c in vv_c]
            images["vh_mean"] = [float(np.nanmean(c[inside])) if np.isfinite(c[inside]).any() else np.nan for c in vh_c]
        images["s1_count"] = counts
    else:
        images["vv_mean"] = np.nan
        images["vh_mean"] = np.nan
        images["s1_count"] = 0
    donor_id, notes = pair_and_split(images, len(sar), ctx)
    return GlobalStats(images=images, sar=sar.assign(day=sar_days)[["id", "time", "day"]], donor_id=donor_id,
                       sample_step=step, skill_step=skill_step(aoi.area / grid.resolution**2), notes=notes)
