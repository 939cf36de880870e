"""The CLI's subcommands. Each takes parsed arguments and returns the exit status."""
from __future__ import annotations

import argparse
import shlex
from collections import Counter
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.cli.args import Options, confirm, positive_int
from engine.run.context import RunContext, build_context
from engine.errors import ConfigError, EngineError
from engine.run.estimate import GEE_MINUTES_PER_TASK, ee_counts, estimate, human_bytes, human_seconds
from engine.run.tile_index import tile_frame, write_tile_index

console = Console(highlight=False)


def _context(opts: Options) -> RunContext:
    return build_context(opts.config, dict(opts.overrides), opts.aoi, opts.aoi_name)


def eecu_outlook(ctx: RunContext) -> Any:
    """The run's EECU outlook (:class:`engine.run.eecu_journal.Outlook`) for its project and service."""
    from engine.backends.gee.session import is_loopback, resolve_project
    from engine.run import eecu_journal

    url = ctx.params.EE_API_URL
    return eecu_journal.outlook(ctx, resolve_project(ctx.params.EE_PROJECT),
                                eecu_journal.service_of(url, is_loopback(url)))


def eecu_row(ctx: RunContext, o: Any) -> str:
    """The plan's "Earth Engine compute" row: the estimate per stage group, its basis, the tier's month."""
    from engine.run.eecu import human_hours

    est = o.estimate
    parts = ", ".join(f"{g} {human_hours(h)}" for g, h in est.hours.items())
    bases = sorted(set(est.basis.values()))
    basis = "prior model (engine/run/eecu.py)" if bases == ["prior"] else "; ".join(
        f"{g}: {b}" for g, b in est.basis.items())
    quota = ("no monthly cap (commercial: billed)" if o.quota_hours is None else
             f"{'[red]OVER[/] ' if o.over_quota else ''}the {o.tier} tier's {o.quota_hours:,.0f} EECU-h a month")
    head = f"~{human_hours(est.total_hours)} EECU-h ({parts}; {basis})"
    if ctx.params.BACKEND != "gee":
        return f"none (local backend); as gee: {head}, against {quota}"
    month = (f"{human_hours(o.month_hours)} EECU-h recorded this month for {o.project or 'the default project'}"
             if o.service != "loopback" else "a stand-in on loopback: nothing counts against the service")
    return f"{head}, against {quota}; {month}"


def print_plan(ctx: RunContext) -> None:
    """What the run is about to do: AOI, tiles, pixels, dates, and estimates."""
    p, s = ctx.params, ctx.plan.summary(ctx.ee_exports_per_tile, ctx.params.EXPORT_DESTINATION == "asset")
    est = estimate(ctx)
    ee_tasks, ee_assets = ee_counts(ctx)  # as est.ee_tasks / ee_assets, also for the local backend (mosaics included)
    for note in ctx.notes:
        console.print(f"[yellow]note:[/] {note}")
    t = Table(title=f"Plan: {ctx.aoi.name} ({ctx.aoi.kind}), {p.OPTICAL_MISSION} {p.START_DATE} to {p.END_DATE}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("AOI area", f"{s['aoi_km2']:,.1f} km2, {s['aoi_pixels']:,} px at {s['resolution_m']:g} m")
    t.add_row("grid", f"{s['crs']}, {s['resolution_m']:g} m pixels, fixed origin")
    t.add_row("tiles", f"{s['tiles']:,} of {s['tile_size_px']} px ({s['tile_size_km']:g} km, {s['tile_size_source']}), "
              f"halo {s['halo_px']} px, {s['tile_pixels']:,} px in all, {s['compute_pixels']:,} px computed "
              "(each tile's core cut to the AOI's part of it)")
    t.add_row("dates", f"~{s['dates_estimate']} optical dates (the revisit of every track that sees the AOI; the catalog decides)")
    whose = "a dask worker's, its own included" if p.BACKEND == "local" else "Earth Engine's computation"
    t.add_row("tile memory", f"{human_bytes(s['tile_bytes'])} per tile of {human_bytes(s['budget_bytes'])} budget "
              f"({whose})")
    where = f" at {p.EE_API_URL}" if p.DATA_SOURCE == "ee" else ""
    t.add_row("backend", f"{p.BACKEND}" + (f" (source: {p.DATA_SOURCE}{where})" if p.BACKEND == "local"
                                           else f" ({p.EE_API_URL})"))
    k = len(ctx.output_parts)
    per_tile = (f"{ctx.ee_exports_per_tile} per tile: model, "
                f"{'outputs image' if k == 1 else f'{k} outputs images (band limit)'}, per-image table")
    if p.BACKEND == "gee":
        quota_ok = ee_assets <= s["ee_asset_quota"]
        t.add_row("Earth Engine", f"{ee_tasks:,} batch tasks ({per_tile}), {ee_assets:,} assets "
                  f"({'within' if quota_ok else '[red]OVER[/]'} the {s['ee_asset_quota']:,}-asset quota)")
    else:
        t.add_row("Earth Engine", f"none (local backend); as gee: {ee_tasks:,} tasks ({per_tile}), {ee_assets:,} "
                  f"assets of the {s['ee_asset_quota']:,} quota")
    basis = (f"rough: {GEE_MINUTES_PER_TASK:g} min per batch task; Earth Engine's load decides" if p.BACKEND == "gee" else
             "rough: a fixed cost and a cost per pixel-date measured by benchmarks/scene.py (benchmarks/RESULTS.md); "
             "machines differ up to 2x; the first run also compiles the kernels, about 30 s")
    t.add_row("Earth Engine compute", eecu_row(ctx, eecu_outlook(ctx)))
    if p.BACKEND == "local" and p.DATA_SOURCE == "ee":
        from engine.backends.gee.source import planned_reads
        from engine.run.eecu import human_hours

        r = planned_reads(ctx)
        t.add_row("Earth Engine reads", f"~{r['requests']:,.0f} computePixels requests, ~{r['pixel_bands'] / 1e6:,.0f} M "
                  f"pixel-bands (~{human_bytes(r['pixel_bands'] * 4)} transferred), "
                  f"~{human_hours(r['eecu_seconds_estimated'] / 3600)} EECU-h (estimated; interactive "
                  "requests report no usage), no batch task")
    work = (f", at most ~{human_bytes(est.peak_bytes)} on disk at once (with ~{human_bytes(est.work_bytes)} of work "
            "files while it runs; a tile's go when it is finished)" if est.work_bytes else "")
    t.add_row("estimate", f"~{human_seconds(est.seconds)} wall, ~{human_bytes(est.bytes)} of outputs{work} ({basis})")
    t.add_row("run directory", str(ctx.run_dir))
    console.print(t)
    from engine.science.regression import MIN_OBS

    training = s["dates_estimate"] * p.TRAIN_TEST_SPLIT
    if training < MIN_OBS * 1.5:  # the catalog decides: the global pass refuses below MIN_OBS
        console.print(f"[yellow]warning:[/] ~{s['dates_estimate']} dates of which ~{training:.0f} train the models, "
                      f"and a pixel's model needs {MIN_OBS} clear training dates: the run may be refused or leave "
                      "many pixels unfilled; a longer period (--start/--end) gives more", soft_wrap=True)


def cmd_plan(opts: Options) -> int:
    from engine.run.rundir import RunDir
    from engine.run.record import check_run_dir

    ctx = _context(opts)
    rd = RunDir(ctx.run_dir)
    existing = check_run_dir(rd, ctx)  # refuses a run of other settings and foreign directories
    print_plan(ctx)
    if existing:
        console.print(f"{rd.root} already holds this run; its tile index is kept. "
                      f"See: python -m engine status {rd.root}")
        return 0
    frame = tile_frame(ctx.plan)
    parquet, geojson = write_tile_index(frame, ctx.run_dir)
    console.print(f"tile index: {parquet} and {geojson}")
    return 0


def _guard_long_run(ctx: RunContext, assume_yes: bool) -> None:
    """The defaults never start an accidental days-long job: ask (or require --yes) above the limit."""

    est = estimate(ctx)
    limit = ctx.params.CONFIRM_ABOVE_HOURS * 3600
    if est.seconds <= limit:
        return
    question = (f"this run is estimated at {human_seconds(est.seconds)} (over CONFIRM_ABOVE_HOURS="
                f"{ctx.params.CONFIRM_ABOVE_HOURS:g}); start it?")
    if not confirm(question, assume_yes):
        raise ConfigError(f"{question.split(';')[0]}; pass --yes to start it anyway, or shrink the AOI or period")


def _guard_disk(ctx: RunContext, assume_yes: bool) -> None:
    """A local run whose estimated outputs and work files exceed the free space of its run directory's
    file system needs a yes: it would otherwise stop with "No space left on device" hours in."""
    import shutil
    from pathlib import Path

    from engine.io import existing_ancestor

    if ctx.params.BACKEND != "local":
        return
    est = estimate(ctx)
    root = Path(ctx.run_dir).absolute()
    held = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0
    need = est.peak_bytes - held  # a resumed run has written part of it
    free = shutil.disk_usage(existing_ancestor(root)).free
    if need <= free:
        return
    what = (f"this run may need ~{human_bytes(need)} more on the file system of {str(root)!r}, which has "
            f"{human_bytes(free)} free (outputs and work files, a rough estimate)")
    if not confirm(f"{what}; start it?", assume_yes):
        raise ConfigError(f"{what}; free space, choose another --run-dir, shrink the AOI or period, or pass --yes "
                          "to start it anyway")
    console.print(f"[yellow]warning:[/] {what}", soft_wrap=True)


def _guard_eecu(ctx: RunContext, assume_yes: bool) -> None:
    """A gee run estimated above EECU_BUDGET_HOURS, or past its tier's month, needs a yes."""
    from engine.errors import ConfigError
    from engine.run.eecu import human_hours

    if ctx.params.BACKEND != "gee":
        return
    o = eecu_outlook(ctx)
    hours, budget = o.estimate.total_hours, ctx.params.EECU_BUDGET_HOURS
    if o.over_quota:
        why = (f"with the {human_hours(o.month_hours)} EECU-h recorded this month it exceeds the {o.tier} tier's "
               f"{o.quota_hours:,.0f} EECU-h (a project over its quota is restricted)")
    elif hours > budget:
        why = f"over EECU_BUDGET_HOURS={budget:g}"
    else:
        return
    question = f"this gee run is estimated at ~{human_hours(hours)} EECU-h, {why}; start it?"
    if not confirm(question, assume_yes):
        raise ConfigError(f"{question.rsplit(';', 1)[0]}; pass --yes to start it anyway, shrink the AOI or period, "
                          "or run it on the local backend (--backend local)")


def _execute(ctx: RunContext, opts: Options, backend: Any = None) -> int:
    from engine.errors import DiskFull, Interrupted, is_disk_full

    resume = f"python -m engine resume {shlex.quote(str(ctx.run_dir))}"
    try:
        return _execute_run(ctx, opts, backend)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: finished tiles are kept; resume with: {resume}") from None
    except OSError as e:
        if not is_disk_full(e):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        raise DiskFull(f"no space left on device{where}: finished tiles are kept; free space on that file system, "
                       f"then resume with: {resume}") from None


def _execute_run(ctx: RunContext, opts: Options, backend: Any = None) -> int:
    from engine.cli.progress import TerminalProgress
    from engine.cli.summary import print_summary
    from engine.run.driver import execute

    if backend is None:
        backend = _backend(ctx)
    # what can run at once: dask worker threads (one per local worker), or Earth Engine's running cap
    slots = ctx.params.MAX_RUNNING_EXPORTS if backend.name == "gee" else (
        None if ctx.params.SCHEDULER else ctx.params.WORKERS)
    yes = opts.yes
    with TerminalProgress(console, quiet=opts.quiet, slots=slots) as progress:
        result = execute(ctx, progress, backend=backend, confirm=lambda question: confirm(question, yes),
                         resuming=opts.command == "resume")
    print_summary(console, ctx, result)
    return 0 if result.complete else 1


def _backend(ctx: RunContext) -> Any:
    """The backend the parameters ask for (BACKEND)."""
    if ctx.params.BACKEND == "gee":
        from engine.backends.gee.executor import GeeBackend

        return GeeBackend()
    from engine.backends.local import LocalBackend

    if ctx.params.DATA_SOURCE == "ee":  # Earth Engine read on the workers, the science local
        from engine.backends.gee.source import source_for_params

        return LocalBackend(source_for_params(ctx.params))
    return LocalBackend()


def _stac_is_synthetic(ctx: RunContext, backend: Any) -> bool:
    """Whether the run's STAC catalog holds synthetic data (an unreadable catalog is reported by the run)."""
    try:
        return backend.source(ctx).synthetic
    except EngineError:
        return False


def cmd_run(opts: Options) -> int:
    ctx = _context(opts)
    backend = _backend(ctx)  # one source (one catalog read) for the banner and the run
    local = backend.name == "local"
    if local and ctx.params.DATA_SOURCE == "synthetic":
        console.print("[bold red on yellow] SYNTHETIC DATA [/] inputs come from the built-in synthetic source "
                      "(no satellite data); use --stac CATALOG for real data")
    elif local and ctx.params.DATA_SOURCE == "ee":
        if backend.source(ctx).synthetic:
            console.print(f"[bold red on yellow] SYNTHETIC DATA [/] {ctx.params.EE_API_URL} is a loopback server: "
                          "the Earth Engine stand-in serves the engine's synthetic data")
    elif local and _stac_is_synthetic(ctx, backend):
        console.print(f"[bold red on yellow] SYNTHETIC DATA [/] the STAC catalog {ctx.params.STAC_CATALOG} holds "
                      "the engine's synthetic data (engine export-stac), not satellite data")
    if not opts.quiet:
        print_plan(ctx)
    _guard_long_run(ctx, opts.yes)
    _guard_disk(ctx, opts.yes)
    _guard_eecu(ctx, opts.yes)
    return _execute(ctx, opts, backend)


def cmd_resume(opts: Options) -> int:
    from pathlib import Path

    from engine.run.rundir import RunDir
    from engine.run.record import context_from_run

    rd = RunDir(Path(opts.run_dir))
    recorded = rd.read_run()
    overrides = {k: v for k, v in (("WORKERS", opts.workers), ("SCHEDULER", opts.scheduler)) if v is not None}
    ctx = context_from_run(rd.root, recorded, overrides)
    console.print(f"resuming {rd.root}: {ctx.aoi.name}, {len(ctx.plan.tiles)} tiles, backend {ctx.params.BACKEND}")
    _guard_disk(ctx, opts.yes)
    return _execute(ctx, opts)


def cmd_status(opts: Options) -> int:
    from pathlib import Path

    from engine.run.status import read_status

    st = read_status(Path(opts.run_dir), verify=not opts.quick)
    run = st.run
    prm = run["params"]
    console.print(f"{opts.run_dir}: {run['aoi'].get('name')}, {prm.get('OPTICAL_MISSION')} "
                  f"{prm.get('START_DATE')} to {prm.get('END_DATE')}, backend {prm.get('BACKEND')}")
    t = Table(title="Stages", title_justify="left")
    cols = ("done", "empty", "split", "running", "interrupted", "failed", "pending")
    t.add_column("stage")
    for col in cols:
        t.add_column(col, justify="right")
    for stage, c in sorted(st.stage_counts.items()):
        t.add_row(stage, *(str(c.get(k, 0)) for k in cols))
    console.print(t)
    if opts.tiles or len(st.tiles) <= 30:
        tt = Table(title="Tiles", title_justify="left")
        width = max((len(t["tile_id"]) for t in st.tiles), default=4)
        tt.add_column("tile", no_wrap=True, min_width=width)  # ids are never cut
        for col in ("status", "train", "finish", "tries"):
            tt.add_column(col)
        for tile in st.tiles:
            tries = "/".join(str(tile.get(k) or "-") for k in ("train_attempts", "finish_attempts"))
            tt.add_row(tile["tile_id"], tile["status"], tile.get("train", "-"), tile.get("finish", "-"), tries)
        console.print(tt)
    for tile in st.tiles:  # messages in full, one line each
        if tile.get("message") and tile["status"] == "failed":
            console.print(f"{tile['tile_id']}: {tile['message']}", soft_wrap=True)
    if st.eecu:
        from engine.cli.summary import eecu_line

        console.print(eecu_line(st.eecu), soft_wrap=True)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(t["status"] for t in st.tiles).items()))
    console.print(f"run is {st.state.upper()}: {counts}; {st.verify_note}")
    if st.damaged:
        console.print(f"damaged (missing or corrupt): {', '.join(st.damaged)}; resume repairs them: "
                      f"python -m engine resume {opts.run_dir}", soft_wrap=True)
    elif st.state == "incomplete" and not st.live:
        console.print(f"resume with: python -m engine resume {opts.run_dir}", soft_wrap=True)
    return st.exit_code


def cmd_report(opts: Options) -> int:
    from pathlib import Path

    from engine.report import build_report

    result = build_report(Path(opts.run_dir), Path(opts.out) if opts.out else None)
    missing = f"; not available: {', '.join(sorted(result.missing))}" if result.missing else ""
    console.print(f"report: {result.html} ({len(result.figures)} figures{missing})", soft_wrap=True)
    return 0


def cmd_download(opts: Options) -> int:
    from pathlib import Path

    from engine.backends.gee.download import MAX_RESPONSE_BYTES, Downloader

    limit = MAX_RESPONSE_BYTES / 2**20
    if not 0 < opts.request_mib <= limit:
        raise ConfigError(f"--request-mib {opts.request_mib:g} is outside (0, {limit:g}]: computePixels answers "
                          f"at most {limit:g} MiB a request")
    s = Downloader(Path(opts.run_dir), int(opts.request_mib * 2**20)).run()
    console.print(f"downloaded {s['read']} of {s['chunks']} chunks ({s['chunks'] - s['read']} read before) of "
                  f"{s['tiles']} tiles into {s['cube']}, held-out skill in {Path(opts.run_dir) / 'skill.csv'}; "
                  f"report: python -m engine report {opts.run_dir}", soft_wrap=True)
    return 0


def _download_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a finished gee run's directory (products exported to assets or Cloud Storage)")
    p.add_argument("--request-mib", type=float, default=48.0, metavar="MIB",
                   help="largest read: computePixels response or GeoTIFF window (default and maximum 48 MiB)")


def _report_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (failed tiles are shown as such)")
    p.add_argument("--out", metavar="DIR", help="where to write index.html and the PNGs (default RUN_DIR/report)")


def cmd_export_stac(opts: Options) -> int:
    """Write the synthetic source over the plan's tiles (with halos) as COGs + a static STAC catalog."""
    import pandas as pd

    from engine.run.cube import cube_extent
    from engine.sources import get_source
    from engine.sources.stac_export import write_stac_catalog

    ctx = _context(opts)
    p, grid = ctx.params, ctx.plan.grid
    c0, r0, w, h = cube_extent(ctx.plan.tiles)
    gbox = grid.geobox(c0 - grid.halo, r0 - grid.halo, w + 2 * grid.halo, h + 2 * grid.halo)
    source = get_source("synthetic", seed=p.SYNTHETIC_SEED)
    start, end = pd.Timestamp(p.START_DATE, tz="UTC"), pd.Timestamp(p.END_DATE, tz="UTC")
    window = pd.Timedelta(days=p.SAR_WINDOW_DAYS)
    console.print(f"writing synthetic {p.OPTICAL_MISSION} and S1 data over {w + 2 * grid.halo} x "
                  f"{h + 2 * grid.halo} px to {opts.out} (SYNTHETIC DATA)")
    write_stac_catalog(source, gbox, p.OPTICAL_MISSION, start, end, opts.out, scaled=not opts.float_values)
    path = write_stac_catalog(source, gbox, "S1", start - window, end + window, opts.out)
    console.print(f"catalog: {path}  (run it with: --source stac --stac {path})")
    return 0


def _export_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder of the static catalog (catalog.json and COGs)")
    p.add_argument("--float", action="store_true", help="write reflectance as float32 (bit-exact round trip) "
                   "instead of the public catalogs' scaled uint16")


def _status_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    p.add_argument("--tiles", action="store_true", help="list every tile even for large runs")
    p.add_argument("--quick", action="store_true", help="read the ledger only; do not verify the outputs' checksums")


def _run_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before a long run")


def _resume_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory to resume")
    p.add_argument("--workers", type=positive_int, help="local dask worker processes")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask scheduler")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before a long run")


def _plan_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true",
                   help="plan never asks; accepted so that a run's command line plans unchanged")


# name -> (function, help, takes the job options, adds extra arguments)
# (takes the job options: True, "data" for the data-choosing ones only, False for none)
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, bool | str,
                          Callable[[argparse.ArgumentParser], None]]] = {
    "plan": (cmd_plan, "show how the AOI is cut into tiles and write the tile index (GeoParquet, GeoJSON)", True,
             _plan_extra),
    "run": (cmd_run, "run the whole job (gap statistics and SAR infilling), resuming a run directory if it exists",
            True, _run_extra),
    "resume": (cmd_resume, "do exactly the missing work of an interrupted run", False, _resume_extra),
    "export-stac": (cmd_export_stac, "write the synthetic source for an AOI as COGs and a static STAC catalog",
                    "data", _export_extra),
    "status": (cmd_status, "per-stage and per-tile state of a run (exit 0 complete, 1 failed, 3 incomplete)",
               False, _status_extra),
    "download": (cmd_download, "read a gee run's exported products (computePixels, resumable) into RUN_DIR/cube.zarr",
                 False, _download_extra),
    "report": (cmd_report, "write an HTML report of a run (maps, skill, tiles, time series) to RUN_DIR/report",
               False, _report_extra),
}
