"""The end-of-run summary printed by the CLI."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from engine.run.context import RunContext
from engine.run.eecu import human_hours

METHODS = ("sar", "linear", "whittaker")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def skill_table(records: list[dict[str, Any]], target: str, title: str) -> Table | None:
    """MAE (and R2 overall) of the SAR fill next to the optical-only baselines, by gap length."""
    rows = [r for r in records if r["target"] == target]
    if not rows:
        return None
    by = {(r["stratum"], r["method"]): r for r in rows}
    strata = list(dict.fromkeys(r["stratum"] for r in rows))
    t = Table(title=title, title_justify="left")
    t.add_column("gap length")
    t.add_column("pixels", justify="right")
    for m in METHODS:
        t.add_column(f"MAE {m}", justify="right")
    t.add_column("best")
    for stratum in strata:
        cells = [by.get((stratum, m), {}).get("MAE") for m in METHODS]
        known = [(v, m) for v, m in zip(cells, METHODS) if v is not None]
        best = min(known)[1] if known else "-"
        n = by.get((stratum, "sar"), {}).get("n")
        t.add_row(stratum, _fmt(n), *(_fmt(v) for v in cells), best, style="bold" if stratum == "all" else None)
    r2 = [by.get(("all", m), {}).get("R2") for m in METHODS]
    t.caption = "R2 over all pixels: " + ", ".join(f"{m} {_fmt(v)}" for m, v in zip(METHODS, r2))
    return t


def eecu_line(usage: dict[str, Any]) -> str:
    """One line of the EECU a run's batch operations reported, per stage group and in total."""
    per = ", ".join(f"{g} {human_hours(u['eecu_hours'])} ({u['operations']} ops)" for g, u in usage["by_stage"].items())
    unreported = usage.get("unreported_operations", 0)
    tail = f"; {unreported} failed or cancelled operations reported none" if unreported else ""
    return f"Earth Engine compute used: {human_hours(usage['total_eecu_hours'])} EECU-h ({per or 'none reported'}){tail}"


def reads_line(reads: dict[str, Any]) -> str:
    """One line of what a ``--source ee`` run read from Earth Engine and its estimated EECU."""
    return (f"Earth Engine reads: {reads['requests']:,} computePixels requests, {reads['pixel_bands'] / 1e6:,.1f} M "
            f"pixel-bands, about {human_hours(reads['eecu_hours_estimated'])} EECU-h (estimated: interactive requests "
            "report no usage; Cloud Monitoring has the measured figure, workload tag sar-infill-source)")


def print_summary(console: Console, ctx: RunContext, result: Any) -> None:
    m = result.summary
    if m.get("synthetic"):
        console.print(f"[bold red on yellow] {m['WARNING']} [/]")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(m.get("tile_counts", {}).items()))
    img = m.get("images", {})
    console.print(f"tiles: {len(ctx.plan.tiles)} ({counts}); images: {img.get('optical')} optical, "
                  f"{img.get('paired')} paired with S1 ({img.get('sar')} S1 scenes); "
                  f"splits {img.get('splits')}")
    for target, title in (("validation", "Held-out skill, validation images (artificially hidden pixels)"),
                          ("testing", "Held-out skill, testing images (clear pixels)"),
                          ("truth", "Fill under cloud against the synthetic truth")):
        t = skill_table(m.get("skill", []), target, title)
        if t is not None:
            console.print(t)
    for tid, msg in result.failures.items():
        console.print(f"[red]failed[/] {tid}: {msg}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    if timing:
        console.print(f"time: {timing}")
    if m.get("eecu"):
        console.print(eecu_line(m["eecu"]), soft_wrap=True)
    if m.get("source_reads"):
        console.print(reads_line(m["source_reads"]), soft_wrap=True)
    if m.get("backend") == "gee":
        ee = m.get("earth_engine", {})
        console.print(f"outputs: Earth Engine exports per tile to {ee.get('destination')}, models in "
                      f"{ee.get('models_folder')}; listed in {result.run_dir}/manifest.json (with images.csv "
                      f"and tiles.parquet)")
    else:
        console.print(f"outputs: {result.run_dir}/cube.zarr (filled, mask, prediction, observation, gaps), "
                      f"images.csv, skill.csv, tiles.parquet, manifest.json; report: "
                      f"python -m engine report {result.run_dir}")
    if not result.complete:
        console.print(f"[red]incomplete:[/] {len(result.failures)} tile(s) failed; fix the cause and run "
                      f"python -m engine resume {result.run_dir}")
