"""Earth Engine compute of a gee run in EECU-hours: the cost model, the tiers' quotas, the usage recorded.

The unit of work is the **pixel-date**: an export's window pixels times the dates it covers (a
model: its window x the paired dates; an outputs image: its tile window x its dates; the images
table: the tile window x every date; a mosaic: the AOI's window x its image's dates). Batch
operations report their EECU-seconds (``batchEecuUsageSeconds``); the ledger records them with
each operation's pixel-dates, and the journal (:mod:`engine.run.eecu_journal`) keeps them across
runs, so a later plan of the same configuration shape on the same service prices its pixel-dates
at the recorded rate of each stage group instead of the prior.

[assumption] :data:`PRIOR_RATES` are the engine's guesses, not Earth Engine's figures: Earth Engine
publishes none per pixel (EECU-seconds "don't correspond directly to CPU-seconds", and identical
requests can cost very differently: Computation Overview). They are set so that a whole WRS-2
scene of L8 over 2 years (35 Mpx, ~46 dates a year) comes to a few hundred EECU-hours: more than a
Community project's month, as the CSIRO scripts' 10 hours of training on one scene suggest.
Interactive requests (the global pass, the reduce) report no usage per request and are not counted.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from config.parameters import Parameters
from engine.errors import ConfigError
from engine.run.context import RunContext
from tiling.grid import Window

GROUPS = ("train", "finish", "mosaic")
PRIOR_RATES = {"train": 2.0e-4, "finish": 5.0e-5, "mosaic": 2.0e-6}  # EECU-seconds per pixel-date
MIN_RECORDED = 3  # operations of a group before their rate replaces the prior
# Monthly EECU-hours of the noncommercial quota tiers (in force since 2026-04-27); commercial: billed, no cap
TIER_QUOTA_HOURS: dict[str, float | None] = {"community": 150.0, "contributor": 1000.0, "partner": 100_000.0,
                                             "commercial": None}
DEFAULT_TIER = "community"  # Earth Engine's own default for a project that chose none


def group(stage: str) -> str:
    """The stage group of an export stage: train, finish (outputs images, table) or mosaic."""
    if stage == "train":
        return "train"
    return "mosaic" if stage.startswith("mosaic:") else "finish"


def shape_key(params: Parameters) -> str:
    """What decides the cost of a pixel-date beyond the pixels and dates: mission, scale, the SAR
    window and the optional products (the AOI, period and tiling do not)."""
    return (f"{params.OPTICAL_MISSION}/{params.scale:g}m/sar{params.SAR_WINDOW_DAYS}d/pca{int(params.PCA_SMOOTH)}"
            f"/in{int(params.EXPORT_INPUT)}/pcaout{int(params.EXPORT_PCA)}")


def pixel_dates(ctx: RunContext) -> dict[str, float]:
    """The planned run's pixel-dates per stage group (the tiles' windows cut to the AOI, planned dates)."""
    p, plan = ctx.params, ctx.plan
    dates = plan.budget.dates
    per = float(plan.compute_pixels) * dates
    aoi = Window.covering(plan.aoi.bounds, plan.grid.resolution)
    mosaic = float(aoi.width * aoi.height) * dates if ctx.ee_run_exports else 0.0
    return {"train": per, "finish": 2 * per, "mosaic": mosaic}  # finish: the outputs image(s) + the table


@dataclass(frozen=True)
class Recorded:
    """Usage recorded for one stage group: reported EECU-seconds over the pixel-dates of the same operations."""

    eecu_seconds: float = 0.0
    pixel_dates: float = 0.0
    operations: int = 0

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(self.eecu_seconds + other.eecu_seconds, self.pixel_dates + other.pixel_dates,
                        self.operations + other.operations)

    @property
    def rate(self) -> float | None:
        ok = self.operations >= MIN_RECORDED and self.pixel_dates > 0
        return self.eecu_seconds / self.pixel_dates if ok else None


def recorded(rows: Iterable[tuple[str, float | None, float]]) -> dict[str, Recorded]:
    """Per group, from (stage, EECU-seconds or None, pixel-dates) of operations; those that
    reported no usage (failed, cancelled) are left out."""
    out: dict[str, Recorded] = {}
    for stage, eecu, px in rows:
        if eecu is None:
            continue
        g = group(stage)
        out[g] = out.get(g, Recorded()) + Recorded(float(eecu), float(px), 1)
    return out


def usage(rows: Iterable[tuple[str, float | None, float]]) -> dict[str, Any]:
    """What a run's operations reported (the manifest's and ``status``'s figures): per stage group
    and in total; operations that reported nothing (failed, cancelled) are counted apart."""
    rows = list(rows)
    rec = recorded(rows)
    total = sum(r.eecu_seconds for r in rec.values())
    return {"by_stage": {g: {"eecu_seconds": round(r.eecu_seconds, 3), "eecu_hours": round(r.eecu_seconds / 3600, 6),
                             "operations": r.operations} for g, r in sorted(rec.items(), key=lambda kv: GROUPS.index(kv[0]))},
            "total_eecu_seconds": round(total, 3), "total_eecu_hours": round(total / 3600, 6),
            "operations": sum(r.operations for r in rec.values()),
            "unreported_operations": sum(1 for _, e, _ in rows if e is None)}


def run_usage(ledger: Any) -> dict[str, Any]:
    """:func:`usage` of the operations a run's ledger recorded."""
    return usage((op.stage, op.eecu_seconds, op.pixel_dates) for op in ledger.operations())


@dataclass(frozen=True)
class EecuEstimate:
    hours: dict[str, float]  # per stage group
    basis: dict[str, str]  # per stage group: "prior" or "N recorded operations"

    @property
    def total_hours(self) -> float:
        return sum(self.hours.values())


def estimate(ctx: RunContext, history: dict[str, Recorded] | None = None) -> EecuEstimate:
    """EECU-hours of the planned run: each group's pixel-dates at its recorded rate, else the prior."""
    history = history or {}
    hours, basis = {}, {}
    for g, units in pixel_dates(ctx).items():
        if units <= 0:
            continue
        rec = history.get(g)
        rate = rec.rate if rec is not None else None
        hours[g] = units * (PRIOR_RATES[g] if rate is None else rate) / 3600
        basis[g] = "prior" if rate is None else f"{rec.operations} recorded operations"
    return EecuEstimate(hours, basis)


def tier(params: Parameters, environ: dict[str, str]) -> str:
    """The project's quota tier: EE_TIER of the configuration, else of the environment, else community."""
    value = (params.EE_TIER or environ.get("EE_TIER") or DEFAULT_TIER).strip().lower()
    if value not in TIER_QUOTA_HOURS:
        raise ConfigError(f"EE_TIER {value!r} is not an Earth Engine quota tier; use one of "
                          f"{', '.join(TIER_QUOTA_HOURS)}")
    return value


def human_hours(h: float) -> str:
    if h == 0:
        return "0"
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.2f}" if h >= 0.01 else f"{h:.4f}"


__all__ = ["GROUPS", "PRIOR_RATES", "TIER_QUOTA_HOURS", "EecuEstimate", "Recorded", "estimate", "group",
           "pixel_dates", "recorded", "run_usage", "shape_key", "tier", "usage", "human_hours"]
