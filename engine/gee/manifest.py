"""End of a ``gee`` run: per-tile status from the ledger, the tile index, images.csv, manifest.json.

Follows ``engine.manifest`` (same file names, tile index via ``engine.tile_index``, summary keys
the CLI prints). Split tiles are listed with status ``split`` next to their children; a failed
tile carries Earth Engine's message.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine import __version__
from engine.gee import layout
from engine.io import atomic_path, atomic_write_json, sha256_file
from engine.manifest import image_table
from engine.tile_index import tile_frame, write_tile_index

if TYPE_CHECKING:
    from engine.gee.run import GeeRun

STANDIN_WARNING = ("SYNTHETIC DATA: Earth Engine API at a loopback address (the engine's stand-in); "
                   "computed by the stand-in from its synthetic catalog, not from imagery")


def _output_status(run: GeeRun, tile_id: str, output: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    """(status, message, leaf records) of one output of a tile, following stage-B splits."""
    rec = run.ledger.get(tile_id, output)
    if rec is None or rec.config_hash != run.h:
        return "pending", None, []
    if rec.status == "split":
        parts = [_output_status(run, c, output) for c in rec.outputs.get("children", [])]
        leaves = [leaf for _, _, ls in parts for leaf in ls]
        failed = [m for s, m, _ in parts if s == "failed"]
        if failed:
            return "failed", failed[0], leaves
        if any(s == "pending" for s, _, _ in parts):
            return "pending", None, leaves
        return "done", None, leaves
    entry = {"tile": tile_id, "status": rec.status, "attempts": rec.attempts, "operation": rec.operation,
             **{k: v for k, v in rec.outputs.get(output, {}).items() if k in ("asset", "uri")}}
    if rec.message:
        entry["message"] = rec.message
    status = {"running": "pending"}.get(rec.status, rec.status)
    return status, rec.message if status == "failed" else None, [entry]


def _part_entry(run: GeeRun, part: layout.Part) -> dict[str, Any]:
    ids = run.ids[part.start:part.stop]
    bands = part.bands(run.variables, run.ids)
    return {"bands": len(bands), "dates": len(ids), "first": ids[0] if ids else None,
            "last": ids[-1] if ids else None, "gap_bands": part.gaps, "key": part.key(run.variables, run.ids),
            "band_names": bands}


def tile_entry(run: GeeRun, tile_id: str) -> dict[str, Any]:
    node = run.nodes[tile_id]
    rec = run.ledger.get(tile_id, "train")
    entry: dict[str, Any] = {"id": tile_id, "level": node.tile.level, "window": list(node.tile.window)}
    if node.parent:
        entry["parent"] = node.parent
    if rec is None or rec.config_hash != run.h:
        entry["status"] = "pending"
        return entry
    model = rec.outputs.get("model", {})
    entry["train"] = {"status": rec.status, "attempts": rec.attempts, "operation": rec.operation,
                      "asset": model.get("asset"), "reused": not model.get("created", True) if model else None,
                      "message": rec.message}
    if rec.status == "split":
        entry["status"] = "split"
        entry["children"] = rec.outputs.get("children", [])
        entry["message"] = rec.message
        return entry
    if rec.status != "done":
        entry["status"] = {"running": "pending"}.get(rec.status, rec.status)
        if rec.status == "failed":
            entry["error"] = rec.message
        return entry
    outputs = {}
    worst = "done"
    for output in run.stages:
        status, message, leaves = _output_status(run, tile_id, output)
        outputs[output] = {"status": status, "parts": leaves}
        if message:
            outputs[output]["error"] = message
        if status == "failed":
            worst = "failed"
            entry.setdefault("error", f"{output}: {message}")
        elif status == "pending" and worst != "failed":
            worst = "pending"
    entry["outputs"] = outputs
    entry["status"] = worst
    return entry


def write_gee_outputs(run: GeeRun) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Write images.csv, tiles.parquet/geojson and manifest.json; return (statuses, failures, summary)."""
    ctx, rd, stats = run.ctx, run.rd, run.stats
    entries = [tile_entry(run, tid) for tid in run.nodes]
    statuses = {e["id"]: e["status"] for e in entries}
    failures = {e["id"]: e.get("error") or "failed" for e in entries if e["status"] == "failed"}
    for tid, msg in run.failures.items():  # refused before any export (e.g. a foreign asset in the way)
        if statuses.get(tid) != "done":
            failures.setdefault(tid, msg)
            statuses[tid] = "failed"
    for e in entries:
        if e["id"] in failures:
            e["status"] = "failed"
            e.setdefault("error", failures[e["id"]])

    images = image_table(stats, [])
    images["MAE"] = pd.NA  # per tile and image in each tile's exported "images" table
    with atomic_path(rd.root / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    tiles = tuple(n.tile for n in run.nodes.values())
    write_tile_index(tile_frame(replace(ctx.plan, tiles=tiles), statuses), rd.root)

    paired = stats.paired
    leaf_counts = pd.Series([s for s in statuses.values()]).value_counts().to_dict()
    synthetic = run.session.loopback
    p = ctx.params
    manifest = {
        "engine_version": __version__,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "synthetic": synthetic,
        **({"WARNING": STANDIN_WARNING} if synthetic else {}),
        "backend": "gee",
        "earth_engine": {"project": run.session.project, "url": run.session.url,
                         "asset_folder": run.names.run_folder, "models_folder": run.names.models_folder,
                         "destination": p.EXPORT_DESTINATION,
                         **({"bucket": p.EXPORT_BUCKET} if p.EXPORT_DESTINATION == "gcs" else {}),
                         **({"drive_folder": p.EXPORT_FOLDER or p.PROJECT_TITLE}
                            if p.EXPORT_DESTINATION == "drive" else {})},
        "science_hash": run.h,
        "aoi": {"name": ctx.aoi.name, "kind": ctx.aoi.kind, "area_km2": round(ctx.aoi.area_km2, 3)},
        "grid": {"crs": ctx.plan.grid.crs, "resolution": ctx.plan.grid.resolution,
                 "tile_size": ctx.plan.grid.tile_size, "halo": ctx.plan.grid.halo},
        "period": {"start": str(p.START_DATE), "end": str(p.END_DATE)},
        "images": {"optical": int(len(stats.images)), "paired": int(len(paired)), "sar": int(len(stats.sar)),
                   "splits": paired["split"].value_counts().to_dict(), "artificial_mask_donor": stats.donor_id},
        "products": {
            "exports_per_tile": 1 + len(run.stages),
            "outputs": list(run.stages),
            "bands": "per tile one float32 image (outputs_<tile>): <variable>_<YYYYMMDD> for each variable and "
                     "paired image (the date of the image ID in the images table), variable by variable, then the "
                     "gap statistics clear_count, gap_mean, gap_median, gap_p90, gap_max, lead_gap, trail_gap "
                     "(days); mask values 0 clear, 1 cloudy, 2 artificially hidden, 3 both, pyramided by MODE. "
                     "Past Earth Engine's 1,024 bands per image it is split by date range (outputs_1, outputs_2, "
                     "...; gap bands in outputs_1). images: table per tile (ID, Date, Cloud_cover, Random, "
                     "SplitLabel, S1_count, MAE, MAE_n)",
            "layout": {"type": layout.BAND_TYPE, "variables": list(run.variables),
                       "images": {part.stage: _part_entry(run, part) for part in run.parts}},
            "models": f"{run.names.models_folder}/<tile id> (9 bands: constant + 8 covariates)",
            "images": {"path": "images.csv", "sha256": sha256_file(rd.root / "images.csv")},
            "tile_index": {"path": "tiles.parquet", "also": "tiles.geojson"},
            **({"mosaics": {rec.stage.split(":", 1)[1]: rec.outputs.get(rec.stage, {}).get("asset")
                            for rec in run.ledger.records() if rec.stage.startswith("mosaic:")
                            and rec.status == "done"}} if p.EXPORT_MOSAIC else {}),
        },
        "tile_counts": leaf_counts,
        "complete": not failures and all(s in ("done", "empty", "split") for s in statuses.values()),
        "tiles": entries,
        "failures": failures,
        "skill": [],
        "notes": list(stats.notes) + run.notes + [
            "held-out skill and baselines are computed by the local backend only; the gee backend reports "
            "per-image MAE in each tile's images table"],
    }
    atomic_write_json(rd.manifest, manifest)
    return statuses, failures, manifest
