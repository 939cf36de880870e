"""Merge step: the per-image table, held-out skill, the tile index with status, and the manifest."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from engine import __version__
from engine.run.stages import GlobalStats, Node
from engine.run.context import RunContext
from engine.io import atomic_path, atomic_write_json, sha256_file
from engine.run.rundir import RunDir
from engine.science.skill import SkillAccumulator
from engine.run.tile_index import tile_frame, write_tile_index

SYNTHETIC_WARNING = "SYNTHETIC DATA: inputs come from the engine's synthetic source, not from satellites"
SKILL_TARGETS = {
    "validation": "validation images, artificially hidden pixels (Mask 2)",
    "testing": "testing images, clear pixels",
    "truth": "truly cloudy pixels against the synthetic source's true NDVI",
}
#: How the manifest of a run without skill says so (``add_skill`` drops the note).
SKILL_NOT_SCORED = "held-out skill and baselines were not scored"


def image_table(stats: GlobalStats, finish_stats: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per optical image (the original's metadata table, plus the engine's columns)."""
    paired = stats.paired
    total = np.zeros(len(paired))
    count = np.zeros(len(paired))
    for s in finish_stats:
        if "mae" in s:
            total += np.asarray(s["mae"]["sum"], float)
            count += np.asarray(s["mae"]["n"], float)
    # empty where no clear pixel was predicted (the original wrote -1, which reads as a value)
    mae = pd.Series(np.where(count > 0, total / np.maximum(count, 1), np.nan), index=paired["id"])
    img = stats.images
    return pd.DataFrame({
        "ID": img["id"],
        "Date": img["time"].dt.strftime("%Y-%m-%d"),
        "Cloud_cover": img["cloud_pct"].round(3),
        "Random": img["random"],
        "SplitLabel": img["split"].replace("", pd.NA),
        "S1_count": img["s1_count"],
        "MAE": img["id"].map(mae),
        "Pixel_count": img["pixel_count"].round().astype(int),  # valid pixels in STATS_SCALE (100 m) units
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


def write_outputs(ctx: RunContext, rd: RunDir, stats: GlobalStats, nodes: dict[str, Node], statuses: dict[str, str],
                  failures: dict[str, str], finish_stats: list[dict[str, Any]], part: dict[str, Any]) -> dict[str, Any]:
    """Write images.csv, skill.csv (where the backend scored skill), the tile index with status and
    manifest.json: the common part, and the backend's ``part`` (its products, tile details, notes)."""
    images = image_table(stats, finish_stats)
    skill = skill_table(finish_stats)
    tables = [("images.csv", images)] + [("skill.csv", skill)] * bool(part.get("skill"))
    for name, frame in tables:
        with atomic_path(rd.root / name) as tmp:
            frame.to_csv(tmp, index=False)
    write_tile_index(tile_frame(replace(ctx.plan, tiles=tuple(n.tile for n in nodes.values())), statuses), rd.root)

    details = part.get("tiles", {})
    tiles = []
    for tid, node in nodes.items():
        entry: dict[str, Any] = {"id": tid, "status": statuses[tid], "level": node.tile.level,
                                 "window": list(node.tile.window), **({"parent": node.parent} if node.parent else {})}
        if tid in failures:
            entry["error"] = failures[tid]
        for key, value in details.get(tid, {}).items():
            entry[key] = {**entry.get(key, {}), **value} if isinstance(value, dict) else value
        tiles.append(entry)

    paired = stats.paired
    synthetic = bool(part["synthetic"])
    products = {
        "images": {"path": "images.csv", "sha256": sha256_file(rd.root / "images.csv")},
        **({"skill": {"path": "skill.csv", "sha256": sha256_file(rd.root / "skill.csv"), "targets": SKILL_TARGETS}}
           if part.get("skill") else {}),
        "tile_index": {"path": "tiles.parquet", "also": "tiles.geojson"},
        **part.get("products", {}),
    }
    manifest = {
        "engine_version": __version__,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "synthetic": synthetic,
        **({"WARNING": part["warning"]} if synthetic else {}),
        "backend": part["backend"],
        **part.get("about", {}),
        "science_hash": ctx.params.science_hash(),
        "aoi": {"name": ctx.aoi.name, "kind": ctx.aoi.kind, "area_km2": round(ctx.aoi.area_km2, 3)},
        "grid": {"crs": ctx.plan.grid.crs, "resolution": ctx.plan.grid.resolution,
                 "tile_size": ctx.plan.grid.tile_size, "halo": ctx.plan.grid.halo},
        "mission": ctx.params.OPTICAL_MISSION,
        "period": {"start": str(ctx.params.START_DATE), "end": str(ctx.params.END_DATE)},
        "images": {"optical": int(len(stats.images)), "paired": int(len(paired)), "sar": int(len(stats.sar)),
                   "splits": paired["split"].value_counts().to_dict(), "artificial_mask_donor": stats.donor_id},
        "products": products,
        "tile_counts": pd.Series(list(statuses.values())).value_counts().to_dict(),
        "complete": not failures and all(s in ("done", "empty", "split") for s in statuses.values()),
        "tiles": tiles,
        "failures": failures,
        "skill": _skill_records(skill),
        "notes": list(stats.notes) + list(part.get("notes", [])),
        **({key: part[key] for key in ("dispatch", "eecu") if key in part}),
    }
    atomic_write_json(rd.manifest, manifest)
    return manifest


def add_skill(rd: RunDir, finish_stats: list[dict[str, Any]], how: str) -> pd.DataFrame:
    """Write skill.csv from tiles' skill sums scored after the run (a gee run's download) and record
    it in the manifest, as ``write_outputs`` does for a backend that scores skill itself."""
    import json

    skill = skill_table(finish_stats)
    with atomic_path(rd.root / "skill.csv") as tmp:
        skill.to_csv(tmp, index=False)
    manifest = json.loads(rd.manifest.read_text())
    manifest["products"]["skill"] = {"path": "skill.csv", "sha256": sha256_file(rd.root / "skill.csv"),
                                     "targets": {k: v for k, v in SKILL_TARGETS.items() if k in set(skill["target"])},
                                     "scored": how}
    manifest["skill"] = _skill_records(skill)
    manifest["notes"] = [n for n in manifest.get("notes", []) if not n.startswith(SKILL_NOT_SCORED)]
    atomic_write_json(rd.manifest, manifest)
    _record_manifest(rd)
    return skill


def _record_manifest(rd: RunDir) -> None:
    """The merge's record of ``manifest.json`` brought up to its new checksum: ``status`` and
    ``resume`` verify it, and would call the manifest damaged and write it again (without skill)."""
    from engine.run.ledger import GLOBAL, Ledger, Stage

    with Ledger(rd.ledger) as ledger:
        rec = ledger.get(GLOBAL, Stage.MERGE)
        if rec is not None:
            outputs = {**rec.outputs, "manifest": {"path": "manifest.json", "sha256": sha256_file(rd.manifest)}}
            ledger.finish(GLOBAL, Stage.MERGE, rec.config_hash, status=rec.status, outputs=outputs,
                          message=rec.message, stats=rec.stats)


def json_number(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 6)
    return v


def _skill_records(skill: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: json_number(v) for k, v in row.items()} for row in skill.to_dict(orient="records")]
