"""Global pass on Earth Engine: catalog, per-date AOI statistics, pairing, split, donor.

Requests: one ``value:compute`` for the catalog (optical acquisition times, S1 ids and times),
then per tile core and batch of :data:`BATCH_IMAGES` daily images one ``value:compute`` (a
server-side map over the batch's days returning the tile's sums per day, at full resolution),
run concurrently up to ``MAX_INTERACTIVE_REQUESTS``; each request is bounded by a tile, whatever
the AOI. Pairing, split labels and the artificial-mask donor are the same
code as the local backend (``engine.science.split``).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from engine.backends import aoi_stats
from engine.run.stages import GlobalStats
from engine.backends.pairing import pair_and_split, sample_step, skill_step
from engine.run.context import RunContext
from engine.errors import DataError, EarthEngineError, MemoryLimitError
from engine.sources.base import make_id
from engine.backends.gee import expressions as X
from engine.backends.gee.api import EEApi

log = logging.getLogger(__name__)

BATCH_IMAGES = 32  # daily images per value:compute and tile core (halved on a memory error)


def _expect(answer: Any, query: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or answer.get("query") != query:
        raise EarthEngineError(f"unexpected answer to {query}: {str(answer)[:200]}")
    return answer


def day_time(days: Any) -> pd.Series:
    return pd.to_datetime(np.asarray(days, dtype="int64") * X.DAY_MS, unit="ms", utc=True)


def catalog(api: EEApi, spec: X.Spec) -> tuple[list[int], pd.DataFrame]:
    """Distinct UTC days of the optical images in the period, and the S1 scenes (id, time, day)."""
    cat = _expect(api.compute(X.catalog_query(spec), "catalog"), X.Q_CATALOG)
    times = np.asarray(cat.get("optical_times") or [], dtype="int64")
    days = sorted({int(t // X.DAY_MS) for t in times if spec.start_day <= t // X.DAY_MS < spec.end_day})
    sar_times = np.asarray(cat.get("sar_times") or [], dtype="int64")
    sar = pd.DataFrame({"id": list(cat.get("sar_ids") or []),
                        "time": pd.to_datetime(sar_times, unit="ms", utc=True),
                        "day": (sar_times // X.DAY_MS).astype("int64")}).sort_values("time").reset_index(drop=True)
    return days, sar


def image_stats(api: EEApi, spec: X.Spec, days: list[int], windows: list[tuple[int, int, int, int]],
                workers: int) -> pd.DataFrame:
    """The per-day AOI statistics: every tile core's share (``windows``), days in batches, the
    requests concurrent; the shares added as the local backend adds its tiles'."""
    batches = [days[i:i + BATCH_IMAGES] for i in range(0, len(days), BATCH_IMAGES)]
    jobs = [(w, b) for w in windows for b in batches]

    def one(job: tuple[tuple[int, int, int, int], list[int]]) -> tuple[list[int], dict[str, np.ndarray]]:
        window, batch = job
        try:
            answer = _expect(api.compute(X.image_stats_query(spec, batch, window),
                                         f"image stats {window} {batch[0]}.."), X.Q_IMAGE_STATS)
        except MemoryLimitError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2  # "User memory limit exceeded": half the dates per request
            (b1, s1_), (b2, s2_) = one((window, batch[:half])), one((window, batch[half:]))
            return b1 + b2, {k: np.concatenate([s1_[k], s2_[k]]) for k in s1_}
        rows = answer.get("rows") or []
        if len(rows) != len(batch):
            raise EarthEngineError(f"image statistics: asked for {len(batch)} days, got {len(rows)} rows")
        return batch, {f: np.array([int(round(float(r.get(f) or 0))) for r in rows], np.int64)
                       for f in aoi_stats.FIELDS}

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        answers = list(pool.map(one, jobs))
    index = {d: i for i, d in enumerate(days)}
    parts = []
    for batch, sums in answers:
        pos = [index[d] for d in batch]
        part = {f: np.zeros(len(days), np.int64) for f in aoi_stats.FIELDS}
        for f in aoi_stats.FIELDS:
            part[f][pos] = sums[f]
        parts.append(part)
    table = aoi_stats.image_table(aoi_stats.add(parts, len(days)), spec.resolution, spec.stats_scale)
    return pd.concat([pd.DataFrame({"day": np.asarray(days, dtype="int64")}), table], axis=1)


def global_pass(ctx: RunContext, api: EEApi, spec: X.Spec) -> GlobalStats:
    """The AOI-wide per-image table and the decisions every tile shares."""
    p = ctx.params
    days, sar = catalog(api, spec)
    if not days:
        raise DataError(f"no {p.OPTICAL_MISSION} images over {ctx.aoi.name} between {p.START_DATE} and "
                        f"{p.END_DATE} in Earth Engine; extend the period or check the AOI")
    log.info("global pass: %d daily %s images, %d S1 scenes", len(days), p.OPTICAL_MISSION, len(sar))
    windows = [w for w in map(ctx.plan.compute_window, ctx.plan.tiles) if w is not None]
    stats = image_stats(api, spec, days, windows, p.MAX_INTERACTIVE_REQUESTS)
    images = pd.DataFrame({"id": [make_id(p.OPTICAL_MISSION, int(d)) for d in days], "time": day_time(days),
                           "day": np.asarray(days, dtype="int64")})
    images = images.merge(stats, on="day", how="left")
    images["s1_count"] = aoi_stats.scene_counts(sar["time"], images["day"].to_numpy(), spec.window_days)
    donor_id, notes = pair_and_split(images, len(sar), ctx)
    step = sample_step(ctx.plan.aoi.area, ctx.plan.grid.resolution, p.STATS_SCALE, int(images["paired"].sum()))
    return GlobalStats(images=images, sar=sar[["id", "time", "day"]], donor_id=donor_id, sample_step=step,
                       skill_step=skill_step(ctx.plan.aoi.area / ctx.plan.grid.resolution**2), notes=notes)


def donor_day(stats: GlobalStats) -> int | None:
    if stats.donor_id is None:
        return None
    row = stats.images[stats.images["id"] == stats.donor_id]
    return int(row["day"].iloc[0]) if len(row) else None


def all_days(stats: GlobalStats) -> list[int]:
    return [int(d) for d in stats.images["day"]]


__all__ = ["global_pass", "donor_day", "all_days", "BATCH_IMAGES"]
