"""``execute_gee``: the whole job on Earth Engine, resumable from the run directory's ledger.

Order (``../shared/docs/architecture.md``): quota check (no request yet) -> connect -> global
pass (``value:compute``) -> folders -> stage A (one model export per tile, reused when an asset
with the same science hash exists) -> global reduce (``value:compute`` on the saved models) ->
stage B (per tile: one multi-band outputs image - split only past the band limit - and the
per-image table, ``engine.gee.layout``) -> optional mosaics (one per outputs image) -> manifest.

State lives in the ledger (``engine.ledger``): per (tile, stage) the attempt, the operation name,
the asset / file, the status. Running ``run`` again on the run directory, or ``resume``,
rebuilds the jobs from it: an operation still running is awaited (never resubmitted), one that
succeeded meanwhile is adopted, and a submission whose answer was lost is repeated with the same
``requestId``, so Earth Engine returns the same operation instead of a second export.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ee

from engine.backends.base import GlobalStats, Reduction
from engine.context import RunContext
from engine.errors import ConfigError, DataError, QuotaError, RunDirError
from engine.estimate import ee_counts
from engine.gee import expressions as X
from engine.gee import layout
from engine.gee.api import EEApi, RetryPolicy
from engine.gee.dispatch import Dispatcher, Job, Outcome
from engine.gee.exports import ENGINE_TAG, image_body, model_window, table_body, tile_window, uri
from engine.gee.global_pass import donor_day, global_pass
from engine.gee.manifest import write_gee_outputs
from engine.gee.naming import Names, description
from engine.gee.reduce import finish_constants, reduce_models
from engine.gee.session import Session, initialize
from engine.io import sha256_file
from engine.ledger import GLOBAL, Ledger
from engine.rundir import RunDir, RunLock
from engine.run import Progress, RunResult, SilentProgress
from engine.run_record import check_compatible, run_description
from tiling.grid import Tile
from tiling.limits import ASSET_QUOTA_COUNT

log = logging.getLogger(__name__)
RUNWIDE = "_run"  # ledger tile id of run-wide exports (mosaics)


def check_quota(ctx: RunContext, quota: int = ASSET_QUOTA_COUNT) -> None:
    """Refuse a plan whose assets exceed the project's asset quota, before any request
    (``ctx.ee_exports_per_tile`` assets per tile, folders and mosaics: ``engine.estimate.ee_counts``)."""
    to_asset = ctx.params.EXPORT_DESTINATION == "asset"
    n = ee_counts(ctx)[1]
    if n > quota:
        remedy = ("export the outputs to Cloud Storage or Drive (EXPORT_DESTINATION gcs with EXPORT_BUCKET, or drive), "
                  "which leaves one model asset per tile, or use larger tiles (--tile-size)") if to_asset else \
            "use larger tiles (--tile-size) or a smaller AOI"
        raise QuotaError(f"the plan needs {n:,} Earth Engine assets ({len(ctx.plan.tiles):,} tiles), over the "
                         f"{quota:,}-asset project quota; {remedy}")


def _props(asset: dict[str, Any] | None) -> dict[str, Any]:
    return dict((asset or {}).get("properties") or {})


@dataclass
class TileNode:
    tile: Tile
    parent: str | None = None
    model_asset: str | None = None


@dataclass
class GeeRun:
    ctx: RunContext
    rd: RunDir
    ledger: Ledger
    api: EEApi
    session: Session
    spec: X.Spec
    names: Names
    h: str
    progress: Progress
    timings: dict[str, float]
    stats: GlobalStats | None = None
    nodes: dict[str, TileNode] = field(default_factory=dict)  # every tile met (plan + split children)
    failures: dict[str, str] = field(default_factory=dict)
    dispatch: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _reduction_digest: str = ""  # names the reduction every stage-B output was made with
    _finish: X.Finish | None = None
    _products: dict[tuple[str, str], Any] = field(default_factory=dict)  # one tile's products, built once
    parts: tuple[layout.Part, ...] = ()  # the outputs image(s) of a tile, for the catalog's dates
    ids: tuple[str, ...] = ()  # paired image ids, in band order

    @property
    def p(self):
        return self.ctx.params

    @property
    def variables(self) -> tuple[str, ...]:
        return self.ctx.variables

    @property
    def stages(self) -> tuple[str, ...]:
        """Stage-B exports of a tile: the outputs image(s), then the per-image table."""
        return layout.stages(self.parts)

    def _layout_key(self, stage: str) -> str:
        """What an output of ``stage`` (or its mosaic) holds: bands and type; ``table`` for the table."""
        stage = stage.split(":", 1)[-1]  # mosaic:<stage>
        for part in self.parts:
            if part.stage == stage:
                return part.key(self.variables, self.ids)
        return "table"

    def _set_layout(self, stats: GlobalStats) -> None:
        self.ids = tuple(str(i) for i in stats.paired["id"])
        self.parts = layout.output_parts(len(self.ids), len(self.variables))
        if len(self.parts) > 1:
            self.progress.note(f"{len(self.ids)} dates x {len(self.variables)} variables + 7 gap bands exceed "
                               f"Earth Engine's {layout.MAX_BANDS} bands per image: the outputs go out as "
                               f"{len(self.parts)} images per tile ({', '.join(p.stage for p in self.parts)})")

    # --- helpers ---
    def _aoi_bounds(self) -> tuple[float, float, float, float]:
        return self.ctx.plan.aoi.bounds

    def _window(self, tile: Tile):
        return tile_window(tile, self.spec, self._aoi_bounds())

    def _children(self, tile: Tile) -> list[Tile]:
        return [c for c in tile.children() if c.core.intersection(self.ctx.plan.aoi).area > 0]

    def _dispatcher(self, build, child_job, wave: str) -> Dispatcher:
        def on_outcome(o: Outcome) -> None:
            self._outcome(wave, o)

        return Dispatcher(self.api, self.ledger, self.h, build, cap=self.p.MAX_RUNNING_EXPORTS,
                          poll_interval=self.p.POLL_INTERVAL_S, max_split_depth=self.p.MAX_SPLIT_DEPTH,
                          aoi=self.ctx.plan.aoi, on_outcome=on_outcome, child_job=child_job)

    def _merge_dispatch(self, d: Dispatcher) -> None:
        for k, v in d.stats.to_dict().items():
            self.dispatch[k] = self.dispatch.get(k, 0) + v

    # --- global pass ---
    def global_stats(self, fresh: GlobalStats | None) -> GlobalStats:
        path = self.rd.global_dir / "global.json"
        rec = self.ledger.get(GLOBAL, "global")
        stats = fresh
        if stats is None and rec is not None and rec.status == "done" and rec.config_hash == self.h \
                and path.exists() and sha256_file(path) == rec.outputs["global"]["sha256"]:
            stats = GlobalStats.load(path)
        if stats is None:
            t0 = time.perf_counter()
            stats = global_pass(self.ctx, self.api, self.spec)
            self.timings["global"] = time.perf_counter() - t0
        if rec is None or rec.status != "done" or fresh is not None or not path.exists():
            self.ledger.start(GLOBAL, "global", self.h)
            stats.save(path)
            self.ledger.finish(GLOBAL, "global", self.h, outputs={"global": {"path": "global/global.json",
                                                                             "sha256": sha256_file(path)}})
        for note in stats.notes:
            self.progress.note(note)
        self.stats = stats
        self._set_layout(stats)
        return stats

    # --- CLEAR_EXISTING ---
    def clear_existing(self, assume_yes: bool) -> None:
        from engine.cli import confirm

        recorded = []
        for rec in self.ledger.records():
            for out in rec.outputs.values():
                if isinstance(out, dict) and out.get("asset") and out.get("created", True):
                    recorded.append((rec, out["asset"]))
        if not recorded:
            return
        question = (f"CLEAR_EXISTING: delete the {len(recorded)} Earth Engine asset(s) this run created under "
                    f"{self.names.run_folder}?")
        if not confirm(question, assume_yes):
            raise ConfigError(f"{question[:-1]} needs confirmation; pass --yes, or set CLEAR_EXISTING to false")
        deleted = 0
        for rec, asset in recorded:
            deleted += self.api.delete_asset(asset)
        for rec in self.ledger.records():
            if rec.tile_id != GLOBAL or rec.stage == "reduce":
                self.ledger.finish(rec.tile_id, rec.stage, rec.config_hash, status="pending", outputs={})
        self.progress.note(f"CLEAR_EXISTING: deleted {deleted} asset(s) of this run; redoing every tile")

    def folders(self) -> None:
        for folder in self.names.folders:
            self.api.create_folder(folder)

    # --- stage A ---
    def _train_job(self, tile: Tile, models: dict[str, dict[str, Any]]) -> Job | None:
        """A training job, or None when a model with this science hash already exists (reused)."""
        asset = self.names.model(tile.id)
        existing = models.get(asset)
        props = _props(existing)
        rec = self.ledger.get(tile.id, "train")
        in_flight = rec is not None and rec.status == "running" and rec.config_hash == self.h
        if existing is not None and props.get("science_hash") == self.h and props.get("tile_id") == tile.id \
                and not (in_flight and rec.operation):
            self.ledger.finish(tile.id, "train", self.h, outputs={"model": {"asset": asset, "created": in_flight}},
                               message="model reused (same science hash)")
            self.nodes[tile.id].model_asset = asset
            self.progress.tile("train", tile.id, "reused")
            return None
        overwrite = False
        if existing is not None:
            if props.get("engine") != ENGINE_TAG:
                msg = (f"asset {asset} exists and was not made by this engine; delete or move it, or use another "
                       "--run-dir / PROJECT_TITLE")
                self.ledger.fail(tile.id, "train", self.h, msg)
                self.failures[tile.id] = msg
                return None
            overwrite = True  # the engine's model of another configuration: replaced
            log.info("tile %s: replacing model %s (science hash %s, now %s)", tile.id, asset,
                     props.get("science_hash"), self.h)
        return Job(tile.id, "train", "image", tile=tile, model_tile=tile, destination={"asset": asset},
                   overwrite=overwrite)

    def _collect_train(self, tile: Tile, models: dict[str, Any], jobs: list[Job], parent: str | None) -> None:
        self.nodes.setdefault(tile.id, TileNode(tile, parent))
        rec = self.ledger.get(tile.id, "train")
        if rec is not None and rec.config_hash == self.h:
            if rec.status == "split":
                for child in self._children(tile):
                    self._collect_train(child, models, jobs, tile.id)
                return
            if rec.status == "empty":
                return
            if rec.status == "done":
                asset = rec.outputs.get("model", {}).get("asset")
                if asset in models and _props(models[asset]).get("science_hash") == self.h:
                    self.nodes[tile.id].model_asset = asset
                    return
                self.progress.note(f"train {tile.id}: model asset {asset} is missing; training again")
        if self._window(tile) is None:
            self.ledger.finish(tile.id, "train", self.h, status="empty", message="outside the AOI's bounds")
            return
        job = self._train_job(tile, models)
        if job is not None:
            jobs.append(job)

    def train_wave(self) -> list[TileNode]:
        models = {a.get("name") or a.get("id"): a for a in self.api.list_assets(self.names.models_folder)}
        jobs: list[Job] = []
        for tile in self.ctx.plan.tiles:
            self._collect_train(tile, models, jobs, None)
        done = sum(1 for n in self.nodes.values() if n.model_asset)
        self.progress.stage("train", done + len(jobs), done)

        def child(job: Job, tile: Tile) -> Job:
            self.nodes.setdefault(tile.id, TileNode(tile, job.tile_id))
            return self._train_job(tile, models)  # None: reused (or refused) without an export

        d = self._dispatcher(self._build_train, child, "train")
        for job in jobs:
            d.add(job)
        d.run()
        self._merge_dispatch(d)
        return [n for n in self.nodes.values() if n.model_asset]

    def _build_train(self, job: Job) -> dict[str, Any]:
        tile = job.tile
        rows = X.image_rows(self.stats.paired, donor_day(self.stats))
        halo = X.window_geometry(self.spec, tile.halo_window)
        image = X.model_image(self.spec, rows, donor_day(self.stats), halo)
        props = {"engine": ENGINE_TAG, "science_hash": self.h, "tile_id": tile.id, "stage": "train",
                 "bands": ",".join(X.COEF_BANDS)}
        # [fix] SAMPLE pyramiding: a coarser read of a model must not average coefficients
        return image_body(image, model_window(tile, self.spec, self._aoi_bounds()), self.spec,
                          description("train", tile.id), job.destination, job.overwrite, props,
                          pyramiding={b: "SAMPLE" for b in X.COEF_BANDS})

    # --- outcomes ---
    def _outcome(self, wave: str, o: Outcome) -> None:
        job = o.job
        if o.status == "done":
            out = {"operation": (o.operation or {}).get("name"), "created": True, **uri(job.destination, job.kind)}
            if wave == "train":
                self.ledger.finish(job.tile_id, job.stage, self.h, outputs={"model": out})
                self.nodes[job.tile_id].model_asset = job.destination["asset"]
            else:
                self.ledger.finish(job.tile_id, job.stage, self.h, outputs={job.stage: out},
                                   stats=self._finish_stats(job.stage))
            if wave == "train":
                self.failures.pop(job.tile_id, None)
        elif o.status == "failed":
            self.failures[job.tile_id] = o.message if wave == "train" else f"{job.stage}: {o.message}"
        self.progress.tile(wave if wave != "finish" else "finish", job.tile_id if wave == "train" else
                           f"{job.tile_id} {job.stage}", o.status)

    # --- global reduce ---
    def reduction(self, trained: list[TileNode]) -> Reduction:
        path = self.rd.global_dir / "reduction.json"
        ids = sorted(n.tile.id for n in trained)
        rec = self.ledger.get(GLOBAL, "reduce")
        if rec is not None and rec.status == "done" and rec.config_hash == self.h and path.exists() \
                and sha256_file(path) == rec.outputs["reduction"]["sha256"] and rec.stats.get("tiles") == ids:
            red = Reduction.load(path)
        else:
            t0 = time.perf_counter()
            self.ledger.start(GLOBAL, "reduce", self.h)
            red = reduce_models(self.ctx, self.api, self.spec, self.stats,
                                [(n.tile, n.model_asset) for n in sorted(trained, key=lambda n: n.tile.id)])
            red.save(path)
            self.ledger.finish(GLOBAL, "reduce", self.h, outputs={"reduction": {"path": "global/reduction.json",
                                                                                "sha256": sha256_file(path)}},
                               stats={"tiles": ids, "sample_pixels": red.sample_pixels})
            self.timings["reduce"] = time.perf_counter() - t0
        blob = json.dumps(red.to_json(), sort_keys=True).encode()
        self._reduction_digest = hashlib.sha256(blob).hexdigest()[:12]
        return red

    # --- stage B ---
    def _finish_stats(self, stage: str) -> dict[str, str]:
        """Recorded with a stage-B (or mosaic) output: the reduction and the layout it was made with."""
        return {"reduction": self._reduction_digest, "layout": self._layout_key(stage)}

    def _variant(self, stage: str) -> str:
        """Part of a stage-B (or mosaic) export's requestId: an export of other content never gets the
        operation of an earlier one back from Earth Engine's requestId deduplication."""
        st = self._finish_stats(stage)
        return f"{st['reduction']}/{st['layout']}"

    def _current(self, stats: dict[str, Any], stage: str) -> bool:
        return stats.get("reduction") == self._reduction_digest and stats.get("layout") == self._layout_key(stage)

    def _destination(self, output: str, tile_id: str) -> dict[str, Any]:
        p = self.p
        if p.EXPORT_DESTINATION == "asset":
            return {"asset": self.names.output(output, tile_id)}
        if p.EXPORT_DESTINATION == "gcs":
            return {"gcs": (p.EXPORT_BUCKET, self.names.file_prefix(output, tile_id))}
        return {"drive": (p.EXPORT_FOLDER or p.PROJECT_TITLE, self.names.drive_name(output, tile_id))}

    def _finish_job(self, tile: Tile, output: str, model_tile: Tile, listing: dict[str, Any]) -> Job | None:
        kind = "table" if output == layout.TABLE else "image"
        dest = self._destination(output, tile.id)
        overwrite = False
        variant = self._variant(output)
        if "asset" in dest and dest["asset"] in listing:
            props = _props(listing[dest["asset"]])
            if props.get("engine") == ENGINE_TAG and props.get("science_hash") == self.h \
                    and props.get("tile_id") == tile.id and self._current(props, output):
                rec = self.ledger.get(tile.id, output)
                if not (rec is not None and rec.status == "running" and rec.operation):
                    self.ledger.finish(tile.id, output, self.h, outputs={output: {**uri(dest, kind), "created":
                                                                                  rec is not None}},
                                       stats=self._finish_stats(output), message="existing output adopted")
                    self.progress.tile("finish", f"{tile.id} {output}", "adopted")
                    return None
            if props and props.get("engine") != ENGINE_TAG:
                msg = f"{output}: asset {dest['asset']} exists and was not made by this engine; delete it or use another --run-dir"
                self.ledger.fail(tile.id, output, self.h, msg)
                self.failures[tile.id] = msg
                return None
            overwrite = True  # the engine's own output of an earlier attempt (stale reduction or layout, or a table)
            if props:  # stale content: name the version replaced, as a fresh ledger restarts at attempt 1 and
                # going back to an earlier layout must not get that earlier export's operation back
                variant += f"/replaces {listing[dest['asset']].get('updateTime', '')}"
        return Job(tile.id, output, kind, tile=tile, model_tile=model_tile, destination=dest, overwrite=overwrite,
                   variant=variant)

    def _collect_finish(self, tile: Tile, output: str, model_tile: Tile, listing: dict[str, Any],
                        jobs: list[Job]) -> int:
        rec = self.ledger.get(tile.id, output)
        if rec is not None and rec.config_hash == self.h:
            if rec.status == "split":
                return sum(self._collect_finish(c, output, model_tile, listing, jobs) for c in self._children(tile))
            if rec.status == "empty":
                return 1
            if rec.status == "done" and self._current(rec.stats, output):
                dest = rec.outputs.get(output, {})
                if "asset" not in dest or dest["asset"] in listing:
                    return 1
        if self._window(tile) is None:
            self.ledger.finish(tile.id, output, self.h, status="empty", message="outside the AOI's bounds")
            return 1
        job = self._finish_job(tile, output, model_tile, listing)
        if job is not None:
            jobs.append(job)
            return 0
        return 1

    def finish_wave(self, trained: list[TileNode], reduction: Reduction) -> None:
        listing = {}
        if self.p.EXPORT_DESTINATION == "asset":
            listing = {a.get("name") or a.get("id"): a for a in self.api.list_assets(self.names.run_folder)}
        self._finish = finish_constants(self.ctx, self.stats, reduction)
        self._products = {}
        jobs: list[Job] = []
        done = 0
        for node in sorted(trained, key=lambda n: n.tile.id):
            for output in self.stages:
                done += self._collect_finish(node.tile, output, node.tile, listing, jobs)
        self.progress.stage("finish", done + len(jobs), done)

        def child(job: Job, tile: Tile) -> Job:
            return self._finish_job(tile, job.stage, job.model_tile, listing)

        d = self._dispatcher(self._build_finish, child, "finish")
        for job in jobs:
            d.add(job)
        d.run()
        self._merge_dispatch(d)

    def _model_asset(self, model_tile: Tile) -> str:
        node = self.nodes.get(model_tile.id)
        if node is not None and node.model_asset:
            return node.model_asset
        rec = self.ledger.get(model_tile.id, "train")
        return rec.outputs["model"]["asset"]

    def _bands(self, stage: str) -> list[str]:
        stage = stage.split(":", 1)[-1]
        part = next(p for p in self.parts if p.stage == stage)
        return part.bands(self.variables, self.ids)

    def _build_finish(self, job: Job) -> dict[str, Any]:
        tile = job.tile
        key = (tile.id, job.model_tile.id)
        if key not in self._products:
            self._products = {}  # jobs of one tile come together: keep one tile's products only
            model = ee.Image(self._model_asset(job.model_tile))
            halo = X.window_geometry(self.spec, tile.halo_window)
            core = X.window_geometry(self.spec, self._window(tile))
            self._products[key] = X.tile_products(self.spec, self._finish, model, halo, core,
                                                  variables=self.variables, parts=self.parts)
        obj = self._products[key][job.stage]
        props = {"engine": ENGINE_TAG, "science_hash": self.h, "tile_id": tile.id, "output": job.stage,
                 **self._finish_stats(job.stage)}
        desc = description(job.stage, tile.id)
        if job.kind == "table":
            return table_body(obj, desc, job.destination, job.overwrite, props)
        image = ee.Image(obj).clip(X.aoi_geometry(self.spec))
        return image_body(image, self._window(tile), self.spec, desc, job.destination, job.overwrite, props,
                          pyramiding=layout.pyramiding(self._bands(job.stage)))

    # --- mosaics ---
    def mosaics(self) -> None:
        """One AOI-wide mosaic per outputs image (every band of it), from the tiles' current outputs."""
        p = self.p
        if not p.EXPORT_MOSAIC:
            return
        if p.EXPORT_DESTINATION != "asset":
            self.notes.append("EXPORT_MOSAIC needs EXPORT_DESTINATION asset (Earth Engine cannot read Cloud Storage "
                              "or Drive outputs back); no mosaic exported")
            return
        outputs = [part.stage for part in self.parts]
        parts: dict[str, list[str]] = {o: [] for o in outputs}
        for rec in self.ledger.records():
            if rec.stage in parts and rec.status == "done" and rec.config_hash == self.h \
                    and self._current(rec.stats, rec.stage):
                a = rec.outputs.get(rec.stage, {}).get("asset")
                if a:
                    parts[rec.stage].append(a)
        b = self._aoi_bounds()
        res = self.spec.resolution
        import math

        c0, r0 = math.floor(b[0] / res), math.floor(-b[3] / res)
        window = (c0, r0, math.ceil(b[2] / res) - c0, math.ceil(-b[1] / res) - r0)
        jobs = []
        for o in outputs:
            stage = f"mosaic:{o}"
            rec = self.ledger.get(RUNWIDE, stage)
            if not parts[o] or (rec is not None and rec.status == "done" and rec.config_hash == self.h
                                and self._current(rec.stats, stage)):
                continue
            jobs.append(Job(RUNWIDE, stage, "image", destination={"asset": self.names.mosaic(o)},
                            overwrite=rec is not None, variant=self._variant(stage)))

        def build(job: Job) -> dict[str, Any]:
            o = job.stage.split(":", 1)[1]
            image = ee.ImageCollection.fromImages([ee.Image(a) for a in sorted(parts[o])]).mosaic()
            props = {"engine": ENGINE_TAG, "science_hash": self.h, "output": o, **self._finish_stats(job.stage)}
            return image_body(image, window, self.spec, description("mosaic", o), job.destination, job.overwrite,
                              props, pyramiding=layout.pyramiding(self._bands(o)))

        self.progress.stage("mosaic", len(jobs))
        d = self._dispatcher(build, None, "mosaic")
        for job in jobs:
            d.add(job)
        d.run()
        self._merge_dispatch(d)


def execute_gee(ctx: RunContext, progress: Progress | None = None, *, assume_yes: bool = False,
                resuming: bool = False) -> RunResult:
    """Run (or resume) the whole job on Earth Engine in ``ctx.run_dir``."""
    progress = progress or SilentProgress()
    p = ctx.params
    check_quota(ctx)
    rd = RunDir(ctx.run_dir)
    existing = rd.exists()
    if existing:
        check_compatible(rd.read_run(), ctx)
    elif rd.root.exists() and any(rd.root.iterdir()):
        raise RunDirError(f"{str(rd.root)!r} exists and is not a run directory of this engine; choose another --run-dir")
    session = initialize(p.EE_PROJECT, p.EE_API_URL)
    api = EEApi(session.project, RetryPolicy.for_poll_interval(p.POLL_INTERVAL_S), p.MAX_INTERACTIVE_REQUESTS)
    spec = X.spec_from_context(ctx)
    names = Names.for_run(session.project, p.EE_ASSET_ROOT, p.PROJECT_TITLE, rd.root)
    h = p.science_hash()
    timings: dict[str, float] = {}
    fresh = None
    if not existing:  # the global pass may refuse the data: do it before writing anything
        t0 = time.perf_counter()
        fresh = global_pass(ctx, api, spec)
        timings["global"] = time.perf_counter() - t0
    t_start = time.perf_counter()
    with RunLock(rd.root):
        if not existing:
            rd.write_run(run_description(ctx))
        with Ledger(rd.ledger) as ledger:
            ledger.set_meta("gee", {"project": session.project, "url": session.url,
                                    "asset_folder": names.run_folder, "credentials": session.credentials_source})
            run = GeeRun(ctx, rd, ledger, api, session, spec, names, h, progress, timings)
            if p.CLEAR_EXISTING and existing and not resuming:
                run.clear_existing(assume_yes)
            stats = run.global_stats(fresh)
            run.folders()
            t0 = time.perf_counter()
            trained = run.train_wave()
            timings["train"] = time.perf_counter() - t0
            if not trained:
                if run.failures:
                    tid, msg = next(iter(run.failures.items()))
                    raise DataError(f"every tile failed in training ({len(run.failures)}), e.g. {tid}: {msg}")
                raise DataError("no tile of the plan intersects the AOI; check the AOI")
            reduction = run.reduction(trained)
            t0 = time.perf_counter()
            run.finish_wave(trained, reduction)
            timings["finish"] = time.perf_counter() - t0
            run.mosaics()
            t0 = time.perf_counter()
            statuses, failures, summary = write_gee_outputs(run)
            timings["merge"] = time.perf_counter() - t0
    summary["dispatch"] = {**run.dispatch, "requests": api.requests, "retries": api.retries,
                           "wall_s": round(time.perf_counter() - t_start, 3)}
    return RunResult(rd.root, statuses, failures, stats, summary, timings)


__all__ = ["execute_gee", "check_quota", "GeeRun"]
