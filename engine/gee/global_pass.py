"""Global pass on Earth Engine: catalog, per-date AOI statistics, pairing, split, donor.

Requests: one ``value:compute`` for the catalog (optical acquisition times, S1 ids and times),
then the daily images in batches of :data:`BATCH_IMAGES`, one ``value:compute`` per batch (a
server-side map over the batch's days returning one dictionary per day), run concurrently up to
``MAX_INTERACTIVE_REQUESTS``. Pairing, split labels and the artificial-mask donor are the same
code as the local backend (``engine.science.split``).
"""
from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from engine.backends.base import GlobalStats
from engine.backends.local.global_pass import pair_and_split, sample_step
from engine.context import RunContext
from engine.errors import DataError, EarthEngineError
from engine.gee import expressions as X
from engine.gee.api import EEApi

log = logging.getLogger(__name__)

BATCH_IMAGES = 16  # daily images per value:compute (each is a few reduceRegion calls server-side)


def _expect(answer: Any, query: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or answer.get("query") != query:
        raise EarthEngineError(f"unexpected answer to {query}: {str(answer)[:200]}")
    return answer


def image_id(mission: str, day: int) -> str:
    return f"{mission}_{(dt.date(1970, 1, 1) + dt.timedelta(days=int(day))):%Y%m%d}"


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


def image_stats(api: EEApi, spec: X.Spec, days: list[int], workers: int, step: int) -> pd.DataFrame:
    """The per-day AOI statistics, batched and concurrent."""
    batches = [days[i:i + BATCH_IMAGES] for i in range(0, len(days), BATCH_IMAGES)]

    def one(batch: list[int]) -> list[dict[str, Any]]:
        answer = _expect(api.compute(X.image_stats_query(spec, batch, step), f"image stats {batch[0]}.."), X.Q_IMAGE_STATS)
        rows = answer.get("rows") or []
        if len(rows) != len(batch):
            raise EarthEngineError(f"image statistics: asked for {len(batch)} days, got {len(rows)} rows")
        return rows

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batches)))) as pool:
        parts = list(pool.map(one, batches))
    rows = [r for part in parts for r in part]
    df = pd.DataFrame(rows)

    def num(col: str) -> np.ndarray:
        return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float) if col in df else np.full(len(df), np.nan)

    valid = np.nan_to_num(num("PIXEL_COUNT_AOI"))
    cloudy = np.nan_to_num(num("CLOUDY_COUNT_AOI"))
    cell_area_ratio = (step * spec.resolution / 100.0) ** 2  # lattice points -> 100 m pixels (as local)
    return pd.DataFrame({
        "day": np.asarray(days, dtype="int64"),
        "cloud_pct": np.where(valid > 0, 100.0 * cloudy / np.maximum(valid, 1), np.nan),
        "pixel_count": valid * cell_area_ratio,
        "s1_count": np.nan_to_num(num("S1_count")).astype("int64"),
        "vv_mean": num("VV_mean"),
        "vh_mean": num("VH_mean"),
    })


def global_pass(ctx: RunContext, api: EEApi, spec: X.Spec) -> GlobalStats:
    """The AOI-wide per-image table and the decisions every tile shares."""
    p = ctx.params
    days, sar = catalog(api, spec)
    if not days:
        raise DataError(f"no {p.OPTICAL_MISSION} images over {ctx.aoi.name} between {p.START_DATE} and "
                        f"{p.END_DATE} in Earth Engine; extend the period or check the AOI")
    log.info("global pass: %d daily %s images, %d S1 scenes", len(days), p.OPTICAL_MISSION, len(sar))
    step = sample_step(ctx.plan.aoi.area, ctx.plan.grid.resolution, p.STATS_SCALE)
    stats = image_stats(api, spec, days, p.MAX_INTERACTIVE_REQUESTS, step)
    images = pd.DataFrame({"id": [image_id(p.OPTICAL_MISSION, d) for d in days], "time": day_time(days),
                           "day": np.asarray(days, dtype="int64")})
    images = images.merge(stats, on="day", how="left")
    donor_id, notes = pair_and_split(images, len(sar), ctx)
    return GlobalStats(images=images, sar=sar[["id", "time", "day"]], donor_id=donor_id, sample_step=step,
                       skill_step=1, notes=notes)


def donor_day(stats: GlobalStats) -> int | None:
    if stats.donor_id is None:
        return None
    row = stats.images[stats.images["id"] == stats.donor_id]
    return int(row["day"].iloc[0]) if len(row) else None


def all_days(stats: GlobalStats) -> list[int]:
    return [int(d) for d in stats.images["day"]]


__all__ = ["global_pass", "donor_day", "all_days", "image_id", "BATCH_IMAGES"]
