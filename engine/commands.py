"""The CLI's subcommands. Each takes parsed arguments and returns the exit status."""
from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from engine.context import RunContext, build_context
from engine.estimate import ee_counts, estimate, human_bytes, human_seconds
from engine.tile_index import tile_frame, write_tile_index

console = Console(highlight=False)


def _context(args: argparse.Namespace) -> RunContext:
    from engine.cli import overrides_from_args

    return build_context(args.config, overrides_from_args(args), args.aoi, args.aoi_name)


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
              f"halo {s['halo_px']} px, {s['tile_pixels']:,} px in all")
    t.add_row("dates", f"~{s['dates_estimate']} optical dates (from the revisit; the catalog decides)")
    t.add_row("tile memory", f"{human_bytes(s['tile_bytes'])} per tile of {human_bytes(s['budget_bytes'])} budget")
    t.add_row("backend", f"{p.BACKEND}" + (f" (source: {p.DATA_SOURCE})" if p.BACKEND == "local" else f" ({p.EE_API_URL})"))
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
    t.add_row("estimate", f"~{human_seconds(est.seconds)} wall, ~{human_bytes(est.bytes)} of outputs (rough)")
    t.add_row("run directory", str(ctx.run_dir))
    console.print(t)


def cmd_plan(args: argparse.Namespace) -> int:
    ctx = _context(args)
    print_plan(ctx)
    frame = tile_frame(ctx.plan)
    parquet, geojson = write_tile_index(frame, ctx.run_dir)
    console.print(f"tile index: {parquet} and {geojson}")
    return 0


def _guard_long_run(ctx: RunContext, assume_yes: bool) -> None:
    """The defaults never start an accidental days-long job: ask (or require --yes) above the limit."""
    from engine.cli import confirm
    from engine.errors import ConfigError

    est = estimate(ctx)
    limit = ctx.params.CONFIRM_ABOVE_HOURS * 3600
    if est.seconds <= limit:
        return
    question = (f"this run is estimated at {human_seconds(est.seconds)} (over CONFIRM_ABOVE_HOURS="
                f"{ctx.params.CONFIRM_ABOVE_HOURS:g}); start it?")
    if not confirm(question, assume_yes):
        raise ConfigError(f"{question.split(';')[0]}; pass --yes to start it anyway, or shrink the AOI or period")


def _execute(ctx: RunContext, args: argparse.Namespace) -> int:
    from engine.progress import TerminalProgress
    from engine.run import execute
    from engine.summary import print_summary

    if ctx.params.BACKEND == "gee":
        from engine.gee.run import execute_gee

        with TerminalProgress(console, quiet=args.quiet, slots=ctx.params.MAX_RUNNING_EXPORTS) as progress:
            result = execute_gee(ctx, progress, assume_yes=getattr(args, "yes", False),
                                 resuming=getattr(args, "command", None) == "resume")
    else:
        slots = None if ctx.params.SCHEDULER else ctx.params.WORKERS  # one thread per local worker
        with TerminalProgress(console, quiet=args.quiet, slots=slots) as progress:
            result = execute(ctx, progress)
    print_summary(console, ctx, result)
    return 0 if result.complete else 1


def cmd_run(args: argparse.Namespace) -> int:
    ctx = _context(args)
    if ctx.params.DATA_SOURCE == "synthetic" and ctx.params.BACKEND == "local":
        console.print("[bold red on yellow] SYNTHETIC DATA [/] inputs come from the built-in synthetic source "
                      "(no satellite data); use --source stac --stac CATALOG for real data")
    if not args.quiet:
        print_plan(ctx)
    _guard_long_run(ctx, args.yes)
    return _execute(ctx, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.rundir import RunDir
    from engine.run_record import context_from_run

    rd = RunDir(Path(args.run_dir))
    recorded = rd.read_run()
    overrides = {k: v for k, v in (("WORKERS", args.workers), ("SCHEDULER", args.scheduler)) if v is not None}
    ctx = context_from_run(rd.root, recorded, overrides)
    console.print(f"resuming {rd.root}: {ctx.aoi.name}, {len(ctx.plan.tiles)} tiles, backend {ctx.params.BACKEND}")
    return _execute(ctx, args)


def cmd_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.status import read_status

    st = read_status(Path(args.run_dir))
    run = st.run
    prm = run["params"]
    console.print(f"{args.run_dir}: {run['aoi'].get('name')}, {prm.get('OPTICAL_MISSION')} "
                  f"{prm.get('START_DATE')} to {prm.get('END_DATE')}, backend {prm.get('BACKEND')}")
    t = Table(title="Stages", title_justify="left")
    for col in ("stage", "done", "empty", "split", "running", "failed", "pending"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for stage, c in sorted(st.stage_counts.items()):
        t.add_row(stage, *(str(c.get(k, 0)) for k in ("done", "empty", "split", "running", "failed", "pending")))
    console.print(t)
    if args.tiles or len(st.tiles) <= 30:
        tt = Table(title="Tiles", title_justify="left")
        for col in ("tile", "status", "train", "finish", "attempts", "message"):
            tt.add_column(col)
        for tile in st.tiles:
            attempts = f"{tile.get('train_attempts', 0)}/{tile.get('finish_attempts', 0)}"
            tt.add_row(tile["tile_id"], tile["status"], tile.get("train", "-"), tile.get("finish", "-"), attempts,
                       tile.get("message", ""))
        console.print(tt)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(t["status"] for t in st.tiles).items()))
    console.print(f"run is {st.state.upper()}: {counts}")
    return st.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.report import build_report

    result = build_report(Path(args.run_dir), Path(args.out) if args.out else None)
    missing = f"; not available: {', '.join(sorted(result.missing))}" if result.missing else ""
    console.print(f"report: {result.html} ({len(result.figures)} figures{missing})", soft_wrap=True)
    return 0


def _report_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (failed tiles are shown as such)")
    p.add_argument("--out", metavar="DIR", help="where to write index.html and the PNGs (default RUN_DIR/report)")


def cmd_export_stac(args: argparse.Namespace) -> int:
    """Write the synthetic source over the plan's tiles (with halos) as COGs + a static STAC catalog."""
    import pandas as pd

    from engine.cube import cube_extent
    from engine.sources.base import get_source
    from engine.sources.stac_export import write_stac_catalog

    ctx = _context(args)
    p, grid = ctx.params, ctx.plan.grid
    c0, r0, w, h = cube_extent(ctx.plan.tiles)
    gbox = grid.geobox(c0 - grid.halo, r0 - grid.halo, w + 2 * grid.halo, h + 2 * grid.halo)
    source = get_source("synthetic", seed=p.SYNTHETIC_SEED)
    start, end = pd.Timestamp(p.START_DATE, tz="UTC"), pd.Timestamp(p.END_DATE, tz="UTC")
    window = pd.Timedelta(days=p.SAR_WINDOW_DAYS)
    console.print(f"writing synthetic {p.OPTICAL_MISSION} and S1 data over {w + 2 * grid.halo} x "
                  f"{h + 2 * grid.halo} px to {args.out} (SYNTHETIC DATA)")
    write_stac_catalog(source, gbox, p.OPTICAL_MISSION, start, end, args.out, scaled=not args.float)
    path = write_stac_catalog(source, gbox, "S1", start - window, end + window, args.out)
    console.print(f"catalog: {path}  (run it with: --source stac --stac {path})")
    return 0


def _export_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder of the static catalog (catalog.json and COGs)")
    p.add_argument("--float", action="store_true", help="write reflectance as float32 (bit-exact round trip) "
                   "instead of the public catalogs' scaled uint16")


def _status_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    p.add_argument("--tiles", action="store_true", help="list every tile even for large runs")


def _run_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before a long run")


def _resume_extra(p: argparse.ArgumentParser) -> None:
    from engine.cli import _positive_int

    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory to resume")
    p.add_argument("--workers", type=_positive_int, help="local dask worker processes")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask scheduler")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before a long run")


def _no_extra(p: argparse.ArgumentParser) -> None:
    return None


# name -> (function, help, takes the job options, adds extra arguments)
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, bool, Callable[[argparse.ArgumentParser], None]]] = {
    "plan": (cmd_plan, "show how the AOI is cut into tiles and write the tile index (GeoParquet, GeoJSON)", True, _no_extra),
    "run": (cmd_run, "run the whole job (gap statistics and SAR infilling), resuming a run directory if it exists",
            True, _run_extra),
    "resume": (cmd_resume, "do exactly the missing work of an interrupted run", False, _resume_extra),
    "export-stac": (cmd_export_stac, "write the synthetic source for an AOI as COGs and a static STAC catalog",
                    True, _export_extra),
    "status": (cmd_status, "per-stage and per-tile state of a run (exit 0 complete, 1 failed, 3 incomplete)",
               False, _status_extra),
    "report": (cmd_report, "write an HTML report of a run (maps, skill, tiles, time series) to RUN_DIR/report",
               False, _report_extra),
}
