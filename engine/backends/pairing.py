"""The global pass's decisions from the AOI-wide per-image table, the same for both backends:
pairing with Sentinel-1, split labels, the artificial-mask donor, the training check, and the
lattice steps of the statistics sample and of held-out skill."""
from __future__ import annotations

import numpy as np
import pandas as pd

from engine.run.context import RunContext
from engine.errors import DataError
from engine.science.regression import MIN_OBS
from engine.science.split import artificial_mask_donor, split_labels

MIN_PAIRS = 10
MIN_PIXEL_COUNT = 100  # images with PIXEL_COUNT_AOI <= 100 (at the 100 m statistics scale) are dropped
MAX_SAMPLE_POINTS = 400_000  # the sample lattice coarsens (odd steps) to stay under this
MAX_SAMPLE_VALUES = 10_000_000  # ... and under this many pixel-dates (the reduce holds ~9 bytes each)
MAX_SKILL_PIXELS = 250_000  # held-out skill is scored on a lattice coarsened (odd steps) to about this many pixels


def nearest_odd(x: float) -> int:
    k = max(1, int(round(x)))
    return k if k % 2 else k + 1


def sample_step(aoi_area: float, resolution: float, stats_scale: float, dates: int | None = None) -> int:
    """Odd lattice step ~ stats_scale / resolution, coarsened until the AOI holds few enough points:
    at most ``MAX_SAMPLE_POINTS``, and with ``dates`` (the paired dates, each a column of the
    sample) at most ``MAX_SAMPLE_VALUES`` pixel-dates, the sample the global reduce holds."""
    points = MAX_SAMPLE_POINTS if not dates else min(MAX_SAMPLE_POINTS, MAX_SAMPLE_VALUES // max(int(dates), 1))
    step = nearest_odd(stats_scale / resolution)
    while aoi_area / (step * resolution) ** 2 > points:
        step += 2
    return step


def skill_step(aoi_pixels: float) -> int:
    """Odd lattice step for held-out skill: every pixel for small AOIs, about MAX_SKILL_PIXELS otherwise."""
    step = 1
    while aoi_pixels / step**2 > MAX_SKILL_PIXELS:
        step += 2
    return step


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


def _check_training(paired: pd.DataFrame, labels: np.ndarray, ctx: RunContext) -> list[str]:
    """A pixel's model needs MIN_OBS clear training dates (Training and Validation images): refuse a
    split that cannot give any pixel a model (or, on the images' cloud cover, hardly any), and say
    when many pixels are likely to get none."""
    p = ctx.params
    train = np.isin(labels, ("Training", "Validation"))
    n_train = int(train.sum())
    remedy = "extend the period (--start/--end)" + (
        " or raise TRAIN_TEST_SPLIT (--set TRAIN_TEST_SPLIT=0.8)" if p.TRAIN_TEST_SPLIT < 0.8 else "")
    if n_train < MIN_OBS:
        raise DataError(
            f"only {n_train} of the {len(labels)} paired {p.OPTICAL_MISSION} images train the models "
            f"({p.START_DATE} to {p.END_DATE}), and a pixel's model needs at least {MIN_OBS} clear training "
            f"dates: no pixel could get a prediction; {remedy}")
    clear_dates = float(np.sum(1 - paired["cloud_pct"].to_numpy(float)[train] / 100))
    if clear_dates < MIN_OBS / 2:  # a pixel would need twice the average: hardly any gets a model
        raise DataError(
            f"the {n_train} training images hold {clear_dates:.1f} clear dates per pixel on average "
            f"({p.START_DATE} to {p.END_DATE}) and a pixel's model needs {MIN_OBS}: hardly any pixel could "
            f"get a prediction; {remedy}")
    if clear_dates < MIN_OBS:
        return [f"the {n_train} training images hold {clear_dates:.1f} clear dates per pixel on average and a "
                f"model needs {MIN_OBS}: expect many pixels without a prediction; {remedy}"]
    return []


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

    notes = _check_training(images.iloc[paired_idx], labels, ctx)
    donor = artificial_mask_donor(images["cloud_pct"].to_numpy()[paired_idx])
    donor_id = None if donor is None else str(images["id"].iloc[paired_idx[donor]])
    if donor is not None:
        pct = images["cloud_pct"].iloc[paired_idx[donor]]
        if not 50 <= pct <= 55:
            notes.append(f"no paired image has 50-55 % cloud; validation mask borrowed from {donor_id} ({pct:.1f} %)")
    elif (labels == "Validation").any():
        notes.append("no partly cloudy image to lend its mask: validation images get no artificial cloud")
    return donor_id, notes
