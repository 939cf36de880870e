"""A gee run's session: what the driver (``engine.run.driver``) asks of Earth Engine.

Order: quota check (no request yet) -> connect -> global pass (``value:compute``) -> folders ->
stage A (one model export per tile, reused when an asset with the same science hash exists) ->
global reduce (per-tile statistics samples of the saved models) -> stage B (per tile: one
multi-band outputs image, split only past the band limit, and the per-image table:
``tiling.ee_layout``) -> optional mosaics (one per outputs image) -> the manifest's gee part.

The ledger holds, per (tile, stage), the attempt, the operation name and the asset / file. On a
rerun or ``resume`` an operation still running is awaited (never resubmitted), one that
succeeded meanwhile is adopted, and a submission whose answer was lost is repeated with the same
``requestId``, so Earth Engine returns the same operation instead of a second export.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import ee

from engine.backends.gee import expressions as X
from engine.backends.gee.api import EEApi, RetryPolicy
from engine.backends.gee.dispatch import Dispatcher, Job, Outcome
from engine.backends.gee.exports import ENGINE_TAG, image_body, model_window, table_body, uri
from engine.backends.gee.global_pass import donor_day, global_pass
from engine.backends.gee.manifest import gee_part
from engine.backends.gee.naming import Names, description
from engine.backends.gee.reduce import finish_constants, reduce_models
from engine.backends.gee.session import Session, initialize
from engine.errors import ConfigError, QuotaError
from engine.run import eecu, eecu_journal
from engine.run.context import RunContext
from engine.run.estimate import ee_counts
from engine.run.ledger import GLOBAL, Stage, StageLog, StageRecord, Status
from engine.run.progress import Progress
from engine.run.rundir import RunDir
from engine.run.stages import GlobalStats, Node, Reduction, Report, TileOutcome, Unit
from tiling import ee_layout as layout
from tiling.grid import Tile, Window
from tiling.limits import ASSET_QUOTA_COUNT

log = logging.getLogger(__name__)
RUNWIDE = "_run"  # ledger tile id of run-wide exports (mosaics)


def check_quota(ctx: RunContext, quota: int = ASSET_QUOTA_COUNT) -> None:
    """Refuse a plan whose assets exceed the project's asset quota, before any request
    (``ctx.ee_exports_per_tile`` assets per tile, folders and mosaics: ``engine.run.estimate.ee_counts``)."""
    to_asset = ctx.params.EXPORT_DESTINATION == "asset"
    n = ee_counts(ctx)[1]
    if n > quota:
        remedy = ("export the outputs to Cloud Storage or Drive (EXPORT_DESTINATION gcs with EXPORT_BUCKET, or drive), "
                  "which leaves one model asset per tile, or use larger tiles (--tile-size)") if to_asset else \
            "use larger tiles (--tile-size) or a smaller AOI"
        raise QuotaError(f"the plan needs {n:,} Earth Engine assets ({len(ctx.plan.tiles):,} tiles), over the "
                         f"{quota:,}-asset project quota; {remedy}")


def _area(window: Window | None) -> int:
    return 0 if window is None else window.width * window.height


def _props(asset: dict[str, Any] | None) -> dict[str, Any]:
    return dict((asset or {}).get("properties") or {})


class GeeBackend:
    """The Earth Engine backend: its session is an Earth Engine session; Earth Engine computes."""

    name = "gee"

    @contextlib.contextmanager
    def open(self, ctx: RunContext, progress: Progress, confirm: Callable[[str], bool],
             resuming: bool) -> Iterator[GeeExecutor]:
        p = ctx.params
        check_quota(ctx)
        session = initialize(p.EE_PROJECT, p.EE_API_URL)
        api = EEApi(session.project, RetryPolicy.for_poll_interval(p.POLL_INTERVAL_S), p.MAX_INTERACTIVE_REQUESTS)
        yield GeeExecutor(ctx, session, api, progress, confirm, resuming)


class GeeExecutor:
    def __init__(self, ctx: RunContext, session: Session, api: EEApi, progress: Progress,
                 confirm: Callable[[str], bool], resuming: bool) -> None:
        self.ctx, self.session, self.api, self.progress = ctx, session, api, progress
        self.confirm, self.resuming = confirm, resuming
        self.p = ctx.params
        self.h = self.p.science_hash()
        self.spec = X.spec_from_context(ctx)
        self.names = Names.for_run(session.project, self.p.EE_ASSET_ROOT, self.p.PROJECT_TITLE, ctx.run_dir)
        self.variables = ctx.variables
        self.log: StageLog | None = None
        self.stats: GlobalStats | None = None
        self.parts: tuple[layout.Part, ...] = ()  # the outputs image(s) of a tile, for the catalog's dates
        self.ids: tuple[str, ...] = ()  # paired image ids, in band order
        self.finish_stages: tuple[str, ...] = ()
        self.dispatch: dict[str, Any] = {}
        self.notes: list[str] = []
        self._listings: dict[str, dict[str, Any]] = {}
        self._reduction = ""  # digest of the reduction the finish constants were made of
        self._finish: X.Finish | None = None
        self._products: dict[tuple[str, str], Any] = {}  # one tile's products, built once
        self.service = eecu_journal.service_of(session.url, session.loopback)
        self.shape = eecu.shape_key(self.p)
        self.tier = eecu.tier(self.p, dict(os.environ))

    # --- session ---
    def global_pass(self) -> GlobalStats:
        return global_pass(self.ctx, self.api, self.spec)

    def begin(self, rd: RunDir, log: StageLog, stats: GlobalStats, existing: bool) -> None:
        self.log, self.stats = log, stats
        log.ledger.set_meta("gee", {"project": self.session.project, "url": self.session.url,
                                    "asset_folder": self.names.run_folder,
                                    "credentials": self.session.credentials_source})
        self.journal()  # what a run killed mid-wave recorded
        if self.p.CLEAR_EXISTING and existing and not self.resuming:
            self._clear_existing()
        for folder in self.names.folders:
            self.api.create_folder(folder)
        self.ids = tuple(str(i) for i in stats.paired["id"])
        self.parts = layout.output_parts(len(self.ids), len(self.variables))
        self.finish_stages = layout.stages(self.parts)
        if len(self.parts) > 1:
            self.progress.note(f"{len(self.ids)} dates x {len(self.variables)} variables + 7 gap bands exceed "
                               f"Earth Engine's {layout.MAX_BANDS} bands per image: the outputs go out as "
                               f"{len(self.parts)} images per tile ({', '.join(p.stage for p in self.parts)})")

    def _clear_existing(self) -> None:
        recorded = [out["asset"] for rec in self.log.records() for out in rec.outputs.values()
                    if isinstance(out, dict) and out.get("asset") and out.get("created", True)]
        if not recorded:
            return
        question = (f"CLEAR_EXISTING: delete the {len(recorded)} Earth Engine asset(s) this run created under "
                    f"{self.names.run_folder}?")
        if not self.confirm(question):
            raise ConfigError(f"{question[:-1]} needs confirmation; pass --yes, or set CLEAR_EXISTING to false")
        deleted = sum(self.api.delete_asset(asset) for asset in recorded)
        for rec in self.log.records():
            if rec.tile_id != GLOBAL or rec.stage == Stage.REDUCE:
                self.log.ledger.finish(rec.tile_id, rec.stage, rec.config_hash, status="pending", outputs={})
        self.progress.note(f"CLEAR_EXISTING: deleted {deleted} asset(s) of this run; redoing every tile")

    def _listing(self, folder: str) -> dict[str, Any]:
        if folder not in self._listings:
            self._listings[folder] = {a.get("name") or a.get("id"): a for a in self.api.list_assets(folder)}
        return self._listings[folder]

    # --- what is intact ---
    def intact(self, unit: Unit, rec: StageRecord, work: bool = False) -> bool:
        if unit.stage == Stage.TRAIN:
            asset = rec.outputs.get("model", {}).get("asset")
            models = self._listing(self.names.models_folder)
            return asset in models and _props(models[asset]).get("science_hash") == self.h
        if rec.stats.get("layout") != self._layout_key(unit.stage):
            return False
        dest = rec.outputs.get(unit.stage, {})
        return "asset" not in dest or dest["asset"] in self._listing(self.names.run_folder)

    def _layout_key(self, stage: str) -> str:
        """What an output of ``stage`` (or its mosaic) holds: bands and type; ``table`` for the table."""
        stage = stage.split(":", 1)[-1]  # mosaic:<stage>
        for part in self.parts:
            if part.stage == stage:
                return part.key(self.variables, self.ids)
        return "table"

    def _window(self, tile: Tile) -> Window | None:
        return self.ctx.plan.compute_window(tile)

    def _model_window(self, tile: Tile) -> Window:
        window = self._window(tile)
        assert window is not None, tile.id  # wave() reports a tile without one as empty
        return model_window(window)

    # --- waves ---
    def wave(self, units: list[Unit], reduction: Reduction | None, report: Report) -> None:
        self._listings.clear()  # what earlier waves exported
        train = bool(units) and units[0].stage == Stage.TRAIN
        if not train and reduction is not None and reduction.digest() != self._reduction:
            self._finish, self._reduction, self._products = finish_constants(self.ctx, self.stats, reduction), \
                reduction.digest(), {}
        jobs = []
        for u in units:
            if self._window(u.tile) is None:
                report(TileOutcome(u.tile.id, u.stage, Status.EMPTY, message="the AOI misses the tile's core"))
                continue
            job = self._train_job(u, report) if train else self._finish_job(u, report)
            if job is not None:
                jobs.append(job)

        def on_outcome(o: Outcome) -> None:
            job = o.job
            out = {"operation": (o.operation or {}).get("name"), "created": True, **uri(job.destination, job.kind)}
            if o.status == "done":
                report(TileOutcome(job.tile_id, job.stage, Status.DONE, {"model" if train else job.stage: out},
                                   stats={} if train else self._finish_stats(job.stage)))
            else:
                report(TileOutcome(job.tile_id, job.stage, o.status, message=o.message))

        self._dispatch(self._build_train if train else self._build_finish, jobs, on_outcome)
        self._listings.clear()

    def _dispatch(self, build, jobs: list[Job], on_outcome: Callable[[Outcome], None]) -> None:
        d = Dispatcher(self.api, self.log, build, cap=self.p.MAX_RUNNING_EXPORTS,
                       poll_interval=self.p.POLL_INTERVAL_S, on_outcome=on_outcome)
        for job in jobs:
            d.add(job)
        d.run()
        for k, v in d.stats.to_dict().items():
            self.dispatch[k] = self.dispatch.get(k, 0) + v
        self.journal()

    def journal(self) -> None:
        """Append the ledger's reported usage to the EECU journal (what earlier waves or a killed
        run recorded too: the journal keeps each operation once)."""
        eecu_journal.append(
            eecu_journal.Entry(op.name, self.session.project, self.service, self.shape, op.stage, op.eecu_seconds,
                               op.pixel_dates, op.finished)
            for op in self.log.ledger.operations() if op.eecu_seconds is not None)

    # --- stage A ---
    def _train_job(self, unit: Unit, report: Report) -> Job | None:
        """A training job, or None when a model with this science hash already exists (reused) or a
        foreign asset is in the way (failed)."""
        tile = unit.tile
        asset = self.names.model(tile.id)
        existing = self._listing(self.names.models_folder).get(asset)
        props = _props(existing)
        rec = self.log.get(tile.id, Stage.TRAIN)
        in_flight = rec is not None and rec.status == Status.RUNNING
        if existing is not None and props.get("science_hash") == self.h and props.get("tile_id") == tile.id \
                and not (in_flight and rec.operation):
            report(TileOutcome(tile.id, Stage.TRAIN, Status.DONE, {"model": {"asset": asset, "created": in_flight}},
                               message="model reused (same science hash)"))
            return None
        overwrite = False
        if existing is not None:
            if props.get("engine") != ENGINE_TAG:
                report(TileOutcome(tile.id, Stage.TRAIN, Status.FAILED, message=(
                    f"asset {asset} exists and was not made by this engine; delete or move it, or use another "
                    "--run-dir / PROJECT_TITLE")))
                return None
            overwrite = True  # the engine's model of another configuration: replaced
            log.info("tile %s: replacing model %s (science hash %s, now %s)", tile.id, asset,
                     props.get("science_hash"), self.h)
        window = self._model_window(tile)
        return Job(tile.id, Stage.TRAIN.value, "image", tile=tile, model_tile=tile, destination={"asset": asset},
                   overwrite=overwrite, pixel_dates=_area(window) * len(self.ids))

    def _build_train(self, job: Job) -> dict[str, Any]:
        tile = job.tile
        rows = X.image_rows(self.stats.paired, donor_day(self.stats))
        halo = X.window_geometry(self.spec, tile.halo_window)
        image = X.model_image(self.spec, rows, donor_day(self.stats), halo)
        props = {"engine": ENGINE_TAG, "science_hash": self.h, "tile_id": tile.id, "stage": "train",
                 "bands": ",".join(X.COEF_BANDS)}
        # [fix] SAMPLE pyramiding: a coarser read of a model must not average coefficients
        return image_body(image, self._model_window(tile), self.spec,
                          description("train", tile.id), job.destination, job.overwrite, props,
                          pyramiding={b: "SAMPLE" for b in X.COEF_BANDS})

    def _model_asset(self, model_tile: Tile) -> str:
        return self.log.get(model_tile.id, Stage.TRAIN).outputs["model"]["asset"]

    def reduce(self, trained: list[Tile]) -> Reduction:
        return reduce_models(self.ctx, self.api, self.spec, self.stats,
                             [(t, self._model_asset(t)) for t in sorted(trained, key=lambda t: t.id)])

    # --- stage B ---
    def _finish_stats(self, stage: str) -> dict[str, str]:
        """Recorded with a stage-B (or mosaic) output: the reduction and the layout it was made with."""
        return {"reduction": self._reduction, "layout": self._layout_key(stage)}

    def _variant(self, stage: str) -> str:
        """Part of a stage-B (or mosaic) export's requestId: an export of other content never gets the
        operation of an earlier one back from Earth Engine's requestId deduplication."""
        st = self._finish_stats(stage)
        return f"{st['reduction']}/{st['layout']}"

    def _destination(self, output: str, tile_id: str) -> dict[str, Any]:
        p = self.p
        if p.EXPORT_DESTINATION == "asset":
            return {"asset": self.names.output(output, tile_id)}
        if p.EXPORT_DESTINATION == "gcs":
            return {"gcs": (p.EXPORT_BUCKET, self.names.file_prefix(output, tile_id))}
        return {"drive": (p.EXPORT_FOLDER or p.PROJECT_TITLE, self.names.drive_name(output, tile_id))}

    def _finish_job(self, unit: Unit, report: Report) -> Job | None:
        tile, output = unit.tile, unit.stage
        kind = "table" if output == layout.TABLE else "image"
        dest = self._destination(output, tile.id)
        overwrite = False
        variant = self._variant(output)
        listing = self._listing(self.names.run_folder) if "asset" in dest else {}
        if "asset" in dest and dest["asset"] in listing:
            props = _props(listing[dest["asset"]])
            if props.get("engine") == ENGINE_TAG and props.get("science_hash") == self.h \
                    and props.get("tile_id") == tile.id and props.get("reduction") == self._reduction \
                    and props.get("layout") == self._layout_key(output):
                rec = self.log.get(tile.id, output)
                if not (rec is not None and rec.status == Status.RUNNING and rec.operation):
                    report(TileOutcome(tile.id, output, Status.DONE, {output: {**uri(dest, kind),
                                                                               "created": rec is not None}},
                                       stats=self._finish_stats(output), message="existing output adopted"))
                    return None
            if props and props.get("engine") != ENGINE_TAG:
                report(TileOutcome(tile.id, output, Status.FAILED, message=(
                    f"asset {dest['asset']} exists and was not made by this engine; delete it or use another "
                    "--run-dir")))
                return None
            overwrite = True  # the engine's own output of an earlier attempt (stale reduction or layout, or a table)
            if props:  # stale content: name the version replaced, as a fresh ledger restarts at attempt 1 and
                # going back to an earlier layout must not get that earlier export's operation back
                variant += f"/replaces {listing[dest['asset']].get('updateTime', '')}"
        return Job(tile.id, output, kind, tile=tile, model_tile=unit.model_tile, destination=dest,
                   overwrite=overwrite, variant=variant, pixel_dates=_area(self._window(tile)) * self._dates(output))

    def _dates(self, stage: str) -> int:
        """Dates an export of ``stage`` (or its mosaic) covers: its part's, or every date (the table)."""
        stage = stage.split(":", 1)[-1]
        part = next((p for p in self.parts if p.stage == stage), None)
        return len(self.ids) if part is None else part.stop - part.start

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

    # --- merge ---
    def merge(self, nodes: dict[str, Node], statuses: dict[str, str], failures: dict[str, str]) -> dict[str, Any]:
        self._mosaics(nodes)
        return gee_part(self, nodes)

    def _mosaics(self, nodes: dict[str, Node]) -> None:
        """One AOI-wide mosaic per outputs image (every band of it), from the tiles' current outputs."""
        p = self.p
        if not p.EXPORT_MOSAIC:
            return
        if p.EXPORT_DESTINATION != "asset":
            self.notes.append("EXPORT_MOSAIC needs EXPORT_DESTINATION asset (Earth Engine cannot read Cloud Storage "
                              "or Drive outputs back); no mosaic exported")
            return
        parts: dict[str, list[str]] = {part.stage: [] for part in self.parts}
        for rec in self.log.records():
            if rec.stage in parts and rec.status == Status.DONE and rec.config_hash == self.h \
                    and rec.stats.get("reduction") == self._reduction and rec.stats.get("layout") == self._layout_key(rec.stage):
                if asset := rec.outputs.get(rec.stage, {}).get("asset"):
                    parts[rec.stage].append(asset)
        window = Window.covering(self.ctx.plan.aoi.bounds, self.spec.resolution)
        jobs = []
        for o, assets in parts.items():
            stage = f"mosaic:{o}"
            rec = self.log.get(RUNWIDE, stage)
            if not assets or (rec is not None and rec.status == Status.DONE and rec.stats == self._finish_stats(stage)):
                continue
            jobs.append(Job(RUNWIDE, stage, "image", destination={"asset": self.names.mosaic(o)},
                            overwrite=rec is not None, variant=self._variant(stage),
                            pixel_dates=_area(window) * self._dates(o)))

        def build(job: Job) -> dict[str, Any]:
            o = job.stage.split(":", 1)[1]
            image = ee.ImageCollection.fromImages([ee.Image(a) for a in sorted(parts[o])]).mosaic()
            props = {"engine": ENGINE_TAG, "science_hash": self.h, "output": o, **self._finish_stats(job.stage)}
            return image_body(image, window, self.spec, description("mosaic", o), job.destination, job.overwrite,
                              props, pyramiding=layout.pyramiding(self._bands(o)))

        def on_outcome(o: Outcome) -> None:
            if o.status == "done":
                out = {"operation": (o.operation or {}).get("name"), "created": True, **uri(o.job.destination, "image")}
                self.log.finish(RUNWIDE, o.job.stage, outputs={o.job.stage: out}, stats=self._finish_stats(o.job.stage))
            else:
                self.log.fail(RUNWIDE, o.job.stage, o.message or "failed")
            self.progress.tile("mosaic", o.job.stage, o.status)

        self.progress.stage("mosaic", len(jobs))
        self._dispatch(build, jobs, on_outcome)


__all__ = ["GeeBackend", "GeeExecutor", "check_quota"]
