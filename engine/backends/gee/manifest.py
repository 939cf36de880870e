"""The gee part of a run's manifest: where every tile's model and outputs went (assets, Cloud
Storage or Drive), the outputs' band layout, mosaics, and the dispatcher's figures. Split tiles list
their children; the parts of a split output are its leaves."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.run.eecu import run_usage
from engine.run.ledger import Stage, Status
from engine.run.manifest import SKILL_NOT_SCORED
from engine.run.stages import Node
from tiling import ee_layout as layout

if TYPE_CHECKING:
    from engine.backends.gee.executor import GeeExecutor

STANDIN_WARNING = ("SYNTHETIC DATA: Earth Engine API at a loopback address (the engine's stand-in); "
                   "computed by the stand-in from its synthetic catalog, not from imagery")


def _leaves(ex: GeeExecutor, tile_id: str, output: str) -> list[dict[str, Any]]:
    """The records of one output of a tile, following stage-B splits to the leaves."""
    out: list[dict[str, Any]] = []
    for tid, rec in ex.log.leaves(tile_id, output):
        if rec is None:
            out.append({"tile": tid, "status": Status.PENDING.value})
            continue
        out.append({"tile": tid, "status": {"running": "pending"}.get(rec.status, rec.status),
                    "attempts": rec.attempts, "operation": rec.operation,
                    **{k: v for k, v in rec.outputs.get(output, {}).items() if k in ("asset", "uri")},
                    **({"message": rec.message} if rec.message else {})})
    return out


def _output(ex: GeeExecutor, tile_id: str, output: str) -> dict[str, Any]:
    leaves = _leaves(ex, tile_id, output)
    failed = [leaf.get("message") or "failed" for leaf in leaves if leaf["status"] == Status.FAILED]
    status = "failed" if failed else "pending" if any(leaf["status"] == Status.PENDING for leaf in leaves) else "done"
    return {"status": status, "parts": [leaf for leaf in leaves if "attempts" in leaf],
            **({"error": failed[0]} if failed else {})}


def _details(ex: GeeExecutor, tile_id: str) -> dict[str, Any]:
    rec = ex.log.get(tile_id, Stage.TRAIN)
    if rec is None:
        return {}
    model = rec.outputs.get("model", {})
    details: dict[str, Any] = {"train": {
        "status": rec.status, "attempts": rec.attempts, "operation": rec.operation, "asset": model.get("asset"),
        "reused": not model.get("created", True) if model else None, "message": rec.message}}
    if rec.status == Status.SPLIT:
        details.update(children=rec.outputs.get("children", []), message=rec.message)
    elif rec.status == Status.DONE:
        details["outputs"] = {output: _output(ex, tile_id, output) for output in ex.finish_stages}
    return details


def _part_entry(ex: GeeExecutor, part: layout.Part) -> dict[str, Any]:
    ids = ex.ids[part.start:part.stop]
    bands = part.bands(ex.variables, ex.ids)
    return {"bands": len(bands), "dates": len(ids), "first": ids[0] if ids else None,
            "last": ids[-1] if ids else None, "gap_bands": part.gaps, "key": part.key(ex.variables, ex.ids),
            "band_names": bands}


def gee_part(ex: GeeExecutor, nodes: dict[str, Node]) -> dict[str, Any]:
    """The gee part of the manifest (``engine.run.manifest.write_outputs``)."""
    p, names = ex.p, ex.names
    mosaics = {rec.stage.split(":", 1)[1]: rec.outputs.get(rec.stage, {}).get("asset")
               for rec in ex.log.records() if rec.stage.startswith("mosaic:") and rec.status == Status.DONE}
    return {
        "backend": "gee", "synthetic": ex.session.loopback, "warning": STANDIN_WARNING, "skill": False,
        "about": {"earth_engine": {
            "project": ex.session.project, "url": ex.session.url, "asset_folder": names.run_folder,
            "models_folder": names.models_folder, "destination": p.EXPORT_DESTINATION,
            **({"bucket": p.EXPORT_BUCKET} if p.EXPORT_DESTINATION == "gcs" else {}),
            **({"drive_folder": p.EXPORT_FOLDER or p.PROJECT_TITLE} if p.EXPORT_DESTINATION == "drive" else {})}},
        "tiles": {tid: _details(ex, tid) for tid in nodes},
        "products": {
            "exports_per_tile": 1 + len(ex.finish_stages),
            "outputs": list(ex.finish_stages),
            "bands": "per tile one float32 image (outputs_<tile>): <variable>_<YYYYMMDD> for each variable and "
                     "paired image (the date of the image ID in the images table), variable by variable, then the "
                     "gap statistics clear_count, gap_mean, gap_median, gap_p90, gap_max, lead_gap, trail_gap "
                     "(days); mask values 0 clear, 1 cloudy, 2 artificially hidden, 3 both, pyramided by MODE. "
                     "Past Earth Engine's 1,024 bands per image it is split by date range (outputs_1, outputs_2, "
                     "...; gap bands in outputs_1). images: table per tile (ID, Date, Cloud_cover, Random, "
                     "SplitLabel, S1_count, MAE, MAE_n)",
            "layout": {"type": layout.BAND_TYPE, "variables": list(ex.variables),
                       "images": {part.stage: _part_entry(ex, part) for part in ex.parts}},
            "models": f"{names.models_folder}/<tile id> (9 bands: constant + 8 covariates)",
            **({"mosaics": mosaics} if p.EXPORT_MOSAIC else {}),
        },
        "notes": ex.notes + [f"{SKILL_NOT_SCORED} in Earth Engine (each tile's images table has per-image MAE); "
                             "`python -m engine download RUN_DIR` scores them on the downloaded products"],
        "dispatch": {**ex.dispatch, "requests": ex.api.requests, "retries": ex.api.retries},
        "eecu": {**run_usage(ex.log.ledger), "tier": ex.tier,
                 "note": "batch operations' batchEecuUsageSeconds; interactive requests report none"},
    }


__all__ = ["gee_part", "STANDIN_WARNING"]
