"""Merge step: the per-image table, held-out skill, the tile index with status, and the manifest."""
from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from engine import __version__
from engine.backends.base import GlobalStats
from engine.context import RunContext
from engine.io import atomic_path, atomic_write_json, sha256_file
from engine.ledger import Ledger
from engine.rundir import RunDir
from engine.science.gaps import GAP_BANDS
from engine.science.skill import SkillAccumulator
from engine.sources.base import Source
from engine.tile_index import tile_frame, write_tile_index

SYNTHETIC_WARNING = "SYNTHETIC DATA: inputs come from the engine's synthetic source, not from satellites"
SKILL_TARGETS = {
    "validation": "validation images, artificially hidden pixels (Mask 2)",
    "testing": "testing images, clear pixels",
    "truth": "truly cloudy pixels against the synthetic source's true NDVI",
}


def image_table(stats: GlobalStats, finish_stats: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per optical image (the original's metadata table, plus the engine's columns)."""
    paired = stats.paired
    total = np.zeros(len(paired))
    count = np.zeros(len(paired))
    for s in finish_stats:
        if "mae" in s:
            total += np.asarray(s["mae"]["sum"], float)
            count += np.asarray(s["mae"]["n"], float)
    mae = pd.Series(np.where(count > 0, total / np.maximum(count, 1), -1.0), index=paired["id"])
    img = stats.images
    return pd.DataFrame({
        "ID": img["id"],
        "Date": img["time"].dt.strftime("%Y-%m-%d"),
        "Cloud_cover": img["cloud_pct"].round(3),
        "Random": img["random"],
        "SplitLabel": img["split"].replace("", pd.NA),
        "S1_count": img["s1_count"],
        "MAE": img["id"].map(mae),
        "Pixel_count": img["pixel_count"].round(1),
        "VV_mean": img["vv_mean"],
        "VH_mean": img["vh_mean"],
        "Paired": img["paired"],
        "Artificial_mask_donor": img["id"] == stats.donor_id,
    })


def skill_table(finish_stats: list[dict[str, Any]]) -> pd.DataFrame:
    """AOI-wide held-out skill per target, method and gap-length stratum (exact sums over tiles)."""
    frames = []
    for target in SKILL_TARGETS:
        parts = [SkillAccumulator.from_dict(s["skill"][target]) for s in finish_stats if target in s.get("skill", {})]
        if not parts:
            continue
        acc = parts[0]
        for other in parts[1:]:
            acc = acc + other
        frames.append(acc.table().assign(target=target))
    if not frames:
        return pd.DataFrame(columns=["target", "method", "stratum", "n", "MAE", "RMSE", "bias", "R2"])
    table = pd.concat(frames, ignore_index=True)
    return table[["target"] + [c for c in table.columns if c != "target"]]


def write_outputs(ctx: RunContext, rd: RunDir, ledger: Ledger, stats: GlobalStats, source: Source,
                  statuses: dict[str, str], failures: dict[str, str]) -> dict[str, Any]:
    """Write images.csv, skill.csv, the tile index with status and manifest.json; return the summary."""
    finish = {r.tile_id: r for r in ledger.records("finish")}
    train = {r.tile_id: r for r in ledger.records("train")}
    finish_stats = [finish[t.id].stats for t in ctx.plan.tiles if t.id in finish and finish[t.id].status == "done"]
    images = image_table(stats, finish_stats)
    skill = skill_table(finish_stats)
    for name, frame in (("images.csv", images), ("skill.csv", skill)):
        with atomic_path(rd.root / name) as tmp:
            frame.to_csv(tmp, index=False)
    final = {t.id: ("failed" if t.id in failures else
                    finish[t.id].status if t.id in finish and finish[t.id].status == "done" else statuses.get(t.id, "pending"))
             for t in ctx.plan.tiles}
    write_tile_index(tile_frame(ctx.plan, final), rd.root)

    tiles = []
    for t in ctx.plan.tiles:
        entry: dict[str, Any] = {"id": t.id, "status": final[t.id], "window": list(t.window)}
        for stage, recs in (("train", train), ("finish", finish)):
            r = recs.get(t.id)
            if r is not None:
                entry[stage] = {"status": r.status, "attempts": r.attempts, "outputs": r.outputs, "message": r.message}
        if t.id in failures:
            entry["error"] = failures[t.id]
        sk = finish[t.id].stats.get("skill", {}).get("testing") if t.id in finish else None
        if sk:
            row = SkillAccumulator.from_dict(sk).table()
            row = row[(row["method"] == "sar") & (row["stratum"] == "all")]
            if len(row):
                entry["skill_testing_sar"] = {k: _num(row.iloc[0][k]) for k in ("n", "MAE", "RMSE", "bias", "R2")}
        tiles.append(entry)

    paired = stats.paired
    counts = pd.Series(list(final.values())).value_counts().to_dict()
    manifest = {
        "engine_version": __version__,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "synthetic": bool(source.synthetic),
        **({"WARNING": SYNTHETIC_WARNING} if source.synthetic else {}),
        "backend": "local",
        "source": source.name,
        "science_hash": ctx.params.science_hash(),
        "aoi": {"name": ctx.aoi.name, "kind": ctx.aoi.kind, "area_km2": round(ctx.aoi.area_km2, 3)},
        "grid": {"crs": ctx.plan.grid.crs, "resolution": ctx.plan.grid.resolution,
                 "tile_size": ctx.plan.grid.tile_size, "halo": ctx.plan.grid.halo},
        "period": {"start": str(ctx.params.START_DATE), "end": str(ctx.params.END_DATE)},
        "images": {"optical": int(len(stats.images)), "paired": int(len(paired)), "sar": int(len(stats.sar)),
                   "splits": paired["split"].value_counts().to_dict(), "artificial_mask_donor": stats.donor_id},
        "products": {
            "cube": {"path": "cube.zarr", "format": "zarr v3", "time_variables": ["filled", "mask", "prediction",
                     "observation"], "dims": ["time", "y", "x"], "gap_variables": list(GAP_BANDS)},
            "images": {"path": "images.csv", "sha256": sha256_file(rd.root / "images.csv")},
            "skill": {"path": "skill.csv", "sha256": sha256_file(rd.root / "skill.csv"), "targets": SKILL_TARGETS},
            "tile_index": {"path": "tiles.parquet", "also": "tiles.geojson"},
            "models": "tiles/<tile id>/model.tif (9 bands: constant + 8 covariates)",
        },
        "tile_counts": counts,
        "complete": not failures and all(s in ("done", "empty") for s in final.values()),
        "tiles": tiles,
        "skill": _skill_records(skill),
        "notes": stats.notes,
    }
    atomic_write_json(rd.manifest, manifest)
    return manifest


def _num(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 6)
    return v


def _skill_records(skill: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _num(v) for k, v in row.items()} for row in skill.to_dict(orient="records")]
