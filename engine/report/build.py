"""``report RUN_DIR``: read a run directory, draw the figures, write ``report/index.html`` and the PNGs."""
from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine import __version__
from engine.io import atomic_path
from engine.report import data, figures
from engine.report.html import FigureRef, Section, esc, frame_table, render_page, skill_table

log = logging.getLogger(__name__)

FIGURES = ("gap_maps.png", "before_after.png", "per_image_skill.png", "skill_by_gap.png", "tile_status.png",
           "pixel_series.png")
SECTION_IDS = ("gaps", "before-after", "per-image", "skill", "tiles", "pixels")
MAX_MAP_PX = 1000
PIXEL_LABELS = "ABCDEFGH"


@dataclass
class ReportResult:
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)   # section id -> why it has no figure


@dataclass
class _State:
    """What one section computes that another uses (pixels marked on the gap map, dates on the MAE plot)."""

    grid: data.MapGrid | None = None
    gaps: dict[str, np.ndarray] = field(default_factory=dict)
    pixels: list[tuple[int, int]] = field(default_factory=list)
    pixel_data: dict[str, np.ndarray] = field(default_factory=dict)
    dates: pd.DataFrame | None = None


def build_report(run_dir: Path | str, out: Path | str | None = None, max_map_px: int = MAX_MAP_PX) -> ReportResult:
    """Write ``index.html`` (self-contained) and one PNG per figure into ``out`` (default RUN_DIR/report).

    A missing or unfinished run directory raises :class:`engine.errors.RunDirError`; a run with failed
    tiles (or missing products) still renders, each section saying what it lacks.
    """
    inputs = data.load_run(Path(run_dir))
    out = Path(out) if out is not None else inputs.root / "report"
    aoi = inputs.aoi_geometry()
    st = _State()
    if inputs.cube is not None:
        try:
            st.grid = data.map_grid(inputs, max_map_px)
            st.gaps = data.read_gap_layers(inputs, st.grid)
        except Exception as e:
            log.warning("cannot read the gap layers: %s", e, exc_info=True)
            inputs.problems["cube"] = f"cube.zarr could not be read ({type(e).__name__}: {e})"

    sections = [
        _section("gaps", "Gap statistics", "How long each pixel goes without a clear optical observation "
                 "(job 1): the number of clear dates and the gap lengths between them, in days. The markers A-D on "
                 "the clear-count map are the pixels whose time series are shown at the end.",
                 lambda: _gaps(inputs, st, aoi)),
        _section("before-after", "Before and after: the cloudiest dates",
                 "Observed NDVI with its clouds (left) and the filled NDVI (right) on three of the cloudiest paired "
                 "dates whose AOI cloud cover is between 25% and 85% (images.csv Cloud_cover).",
                 lambda: _before_after(inputs, st, aoi)),
        _section("per-image", "Per-image skill",
                 "MAE between the observation and the calibrated prediction on each image's clear pixels, by split "
                 "label, above the image's cloud cover. Training images were fitted; Validation and Testing were not.",
                 lambda: _per_image(inputs, st)),
        _section("skill", "Skill against optical-only baselines by gap length",
                 "Held-out MAE of the SAR fill (sar) against linear interpolation in time (linear) and a Whittaker "
                 "smoother (whittaker), on the same pixels, by the length of the gap each pixel sits in "
                 "(skill.csv). 'open': before the first or after the last clear date.",
                 lambda: _skill(inputs)),
        _section("tiles", "Tile status", "The tile index (tiles.parquet) coloured by each tile's final status.",
                 lambda: _tiles(inputs, aoi)),
        _section("pixels", "Time series at four pixels",
                 "Pixels chosen from the clear-count map at the 2nd, 34th, 66th and 98th percentile of clear dates "
                 "(cloudiest first): clear observations, cloudy (masked) observations, the calibrated SAR "
                 "prediction and the filled series.",
                 lambda: _pixels(inputs, st)),
    ]
    # the gap map marks the pixels: choose them first, then draw the sections in page order
    if st.gaps:
        try:
            _choose_pixels(inputs, st)
        except Exception as e:
            log.warning("cannot choose the time-series pixels: %s", e, exc_info=True)
    built = [make() for make in sections]

    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(html=out / "index.html")
    for sec in built:
        for f in sec.figures:
            _write(out / f.name, f.png)
            result.figures[f.name] = out / f.name
        if sec.missing:
            result.missing[sec.id] = sec.missing
    for name in FIGURES:  # a figure this run cannot draw any more must not linger from an older report
        if name not in result.figures and (out / name).exists():
            (out / name).unlink()

    page = render_page(_title(inputs), _meta(inputs), _banners(inputs), built, _footer(inputs, st))
    _write(result.html, page.encode("utf-8"))
    return result


def _write(target: Path, payload: bytes) -> None:
    """Atomic write, readable as the umask allows (the page is meant to be shared, unlike run state)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
        os.chmod(tmp, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _section(sid: str, title: str, intro: str, make: Callable[[], tuple[list[FigureRef], str, str | None]]):
    def build() -> Section:
        try:
            figs, extra, missing = make()
        except Exception as e:  # one broken figure must not lose the others
            log.warning("report section %s failed: %s", sid, e, exc_info=True)
            figs, extra, missing = [], "", f"could not be drawn ({type(e).__name__}: {e})"
        return Section(sid, title, intro, figs, extra, missing)
    return build


def _fig(name: str, fig, alt: str, caption: str) -> FigureRef:
    return FigureRef(name, figures.png_bytes(fig), alt, caption)


# --- sections ----------------------------------------------------------------------------------

def _no_cube(inputs: data.RunInputs) -> str:
    return inputs.problems.get("cube", "the run wrote no cube.zarr")


def _gaps(inputs: data.RunInputs, st: _State, aoi):
    if inputs.cube is None or st.grid is None:
        return [], "", _no_cube(inputs)
    if not st.gaps:
        return [], "", "the cube has no gap layers"
    marks = []
    for label, (r, c) in zip(PIXEL_LABELS, st.pixels):
        marks.append((label, float(inputs.cube["x"].values[c]), float(inputs.cube["y"].values[r])))
    res = _resolution(inputs)
    fig = figures.gap_maps(st.gaps, st.grid.extent, st.grid.inside, aoi, marks, st.grid.stride, res)
    return [_fig("gap_maps.png", fig, "maps of the gap statistics",
                 f"{len(st.gaps)} gap layers of cube.zarr over the AOI, {figures.sampling(st.grid.stride)}")], "", None


def _before_after(inputs: data.RunInputs, st: _State, aoi):
    if inputs.cube is None or st.grid is None:
        return [], "", _no_cube(inputs)
    if inputs.images is None:
        return [], "", inputs.problems.get("images", "no images.csv")
    dates = data.choose_cloudy_dates(inputs.images, data.cube_dates(inputs))
    if dates.empty:
        return [], "", "no paired image of images.csv is in the cube"
    st.dates = dates
    arrays = data.read_dates(inputs, st.grid, dates["Date"])
    panels = []
    for i, (_, row) in enumerate(dates.iterrows()):
        split = row.get("SplitLabel")
        split = split if isinstance(split, str) else "unpaired"
        panels.append({"title": f"{row['Date']:%Y-%m-%d} {row['ID']}: cloud {row['Cloud_cover']:.1f}% ({split})",
                       **{k: v[i] for k, v in arrays.items()}})
    fig = figures.before_after(panels, st.grid.extent, aoi, st.grid.inside)
    listing = ", ".join(f"{d:%Y-%m-%d} ({c:.0f}%)" for d, c in zip(dates["Date"], dates["Cloud_cover"]))
    return [_fig("before_after.png", fig, "observed and filled NDVI on the cloudiest dates",
                 f"dates {listing}; {figures.sampling(st.grid.stride)}")], "", None


def _per_image(inputs: data.RunInputs, st: _State):
    if inputs.images is None:
        return [], "", inputs.problems.get("images", "no images.csv")
    threshold = inputs.params.get("STD_CLOUD_THRESHOLD")
    highlight = list(st.dates["Date"]) if st.dates is not None else []
    fig = figures.per_image_skill(inputs.images, threshold, highlight)
    images = inputs.images
    with_mae = int(images["MAE"].notna().sum()) if "MAE" in images else 0
    return [_fig("per_image_skill.png", fig, "per-image MAE and cloud cover over time",
                 f"{len(images)} optical images, {with_mae} with an MAE")], "", None


def _skill(inputs: data.RunInputs):
    if inputs.skill is None:
        return [], "", inputs.problems.get("skill", "no skill.csv")
    if inputs.skill.empty:
        return [], "", "skill.csv is empty (no finished tile reported skill)"
    descriptions = inputs.manifest.get("products", {}).get("skill", {}).get("targets", {})
    fig = figures.skill_by_gap(inputs.skill, descriptions)
    table = skill_table(inputs.skill, descriptions)
    return [_fig("skill_by_gap.png", fig, "MAE of sar, linear and whittaker by gap length",
                 "MAE per gap-length stratum; n = pixels scored")], table, None


def _tiles(inputs: data.RunInputs, aoi):
    extra = _tile_problems(inputs)
    if inputs.tiles is None or len(inputs.tiles) == 0:
        return [], extra, inputs.problems.get("tiles", "the tile index is empty")
    fig = figures.tile_status(inputs.tiles, aoi)
    counts = inputs.tiles["status"].value_counts().to_dict() if "status" in inputs.tiles else {}
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return [_fig("tile_status.png", fig, "tile index coloured by status", text or "tile index")], extra, None


def _tile_problems(inputs: data.RunInputs) -> str:
    rows = []
    for t in inputs.manifest.get("tiles", []):
        if t.get("status") not in ("failed", "pending", "running"):
            continue
        msg = t.get("error") or t.get("message") or ""
        for stage in ("train", "finish"):
            rec = t.get(stage) or {}
            if not msg and rec.get("message"):
                msg = rec["message"]
        rows.append({"tile": t.get("id"), "status": t.get("status"), "message": msg or "-"})
    if not rows:
        return ""
    return "<p>Tiles without outputs (their area is blank in the maps):</p>" + frame_table(pd.DataFrame(rows))


def _choose_pixels(inputs: data.RunInputs, st: _State) -> None:
    if "clear_count" not in st.gaps or st.grid is None:
        return
    pixels, values = data.pick_series_pixels(inputs, st.grid, st.gaps["clear_count"], n=4)
    st.pixels, st.pixel_data = pixels, values


def _pixels(inputs: data.RunInputs, st: _State):
    if inputs.cube is None or st.grid is None:
        return [], "", _no_cube(inputs)
    if not st.pixels:
        return [], "", "no pixel of the AOI has a clear count (no finished tile)"
    cube = inputs.cube
    times = cube["time"].values
    full = data.read_gap_point(inputs, st.pixels)
    series = []
    for i, (label, (r, c)) in enumerate(zip(PIXEL_LABELS, st.pixels)):
        d = {k: v[i] for k, v in st.pixel_data.items()}
        mask = d.get("mask")
        n_clear = int(np.isin(mask, data.CLEAR_CODES).sum()) if mask is not None else -1
        x, y = float(cube["x"].values[c]), float(cube["y"].values[r])
        gap = full.get("gap_max", [np.nan] * len(st.pixels))[i]
        gap_txt = f", longest gap {gap:.0f} d" if np.isfinite(gap) else ""
        title = (f"{label}: pixel row {r}, col {c} (E {x:,.0f} m, N {y:,.0f} m): clear on {n_clear} of {len(times)} "
                 f"paired dates ({100 - 100 * n_clear / max(1, len(times)):.0f}% cloudy){gap_txt}")
        series.append({"title": title, "time": times, **d})
    fig = figures.pixel_series(series)
    where = ", ".join(f"{label} (row {r}, col {c})" for label, (r, c) in zip(PIXEL_LABELS, st.pixels))
    return [_fig("pixel_series.png", fig, f"NDVI time series at {len(series)} pixels",
                 f"pixels {where} of the cube; black dots: clear observations; grey crosses: cloudy observations "
                 "(not used); dashed: calibrated prediction; green: filled")], "", None


# --- header and footer -------------------------------------------------------------------------

def _resolution(inputs: data.RunInputs) -> float | None:
    res = inputs.manifest.get("grid", {}).get("resolution") or inputs.run.get("plan", {}).get("resolution")
    return float(res) if res else None


def _title(inputs: data.RunInputs) -> str:
    p = inputs.params
    aoi = inputs.manifest.get("aoi", {}).get("name") or inputs.run.get("aoi", {}).get("name", "?")
    start, end = _period(inputs)
    return f"{p.get('PROJECT_TITLE') or 'SAR infill'} report: {aoi}, {p.get('OPTICAL_MISSION', '?')} {start} to {end}"


def _period(inputs: data.RunInputs) -> tuple[str, str]:
    period = inputs.manifest.get("period", {})
    return (str(period.get("start") or inputs.params.get("START_DATE", "?")),
            str(period.get("end") or inputs.params.get("END_DATE", "?")))


def _meta(inputs: data.RunInputs) -> list[tuple[str, str]]:
    m, p = inputs.manifest, inputs.params
    aoi = {**inputs.run.get("aoi", {}), **m.get("aoi", {})}
    start, end = _period(inputs)
    rows = [("AOI", f"{aoi.get('name', '?')} ({aoi.get('kind', '?')}"
                    + (f", {aoi['area_km2']:,.2f} km2" if isinstance(aoi.get("area_km2"), (int, float)) else "") + ")"),
            ("mission", str(p.get("OPTICAL_MISSION", "?"))),
            ("period", f"{start} to {end} (end exclusive)"),
            ("backend", str(m.get("backend") or p.get("BACKEND", "?"))),
            ("source", str(m.get("source") or p.get("DATA_SOURCE", "?"))
             + (" (SYNTHETIC)" if inputs.synthetic else ""))]
    grid = m.get("grid", {})
    if grid:
        rows.append(("grid", f"{grid.get('crs')}, {grid.get('resolution')} m pixels, "
                             f"tiles of {grid.get('tile_size')} px, "
                             f"halo {grid.get('halo')} px"))
    images = m.get("images", {})
    if images:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(images.get("splits", {}).items()))
        rows.append(("images", f"{images.get('optical', '?')} optical, {images.get('paired', '?')} paired with SAR, "
                               f"{images.get('sar', '?')} SAR" + (f" ({splits})" if splits else "")))
    counts = m.get("tile_counts", {})
    if counts:
        rows.append(("tiles", ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    rows.append(("complete", "yes" if m.get("complete") else "NO"))
    rows.append(("written", f"{m.get('written', '?')} by engine {m.get('engine_version', '?')}"))
    rows.append(("run directory", str(inputs.root.resolve())))
    return rows


def _banners(inputs: data.RunInputs) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if inputs.synthetic:
        text = inputs.warning
        if text.upper().startswith("SYNTHETIC DATA"):
            text = text[len("SYNTHETIC DATA"):].lstrip(" :-")
            text = text[:1].upper() + text[1:]
        out.append(("synthetic", "SYNTHETIC DATA", f"{text.rstrip('.')}. Do not use these maps or scores as results."))
    m = inputs.manifest
    counts = m.get("tile_counts", {})
    failed = int(counts.get("failed", 0))
    unfinished = int(counts.get("pending", 0)) + int(counts.get("running", 0))
    if failed or unfinished or m.get("complete") is False:
        what = ", ".join(f"{n} {s}" for s, n in (("failed", failed), ("unfinished", unfinished)) if n) or "incomplete"
        out.append(("failed", "INCOMPLETE RUN:", f"{what} tile(s); the report shows what exists. Retry with: "
                                                 f"python -m engine resume {inputs.root}"))
    for note in m.get("notes", []) or []:
        out.append(("note", "note:", str(note)))
    for what, why in inputs.problems.items():
        out.append(("note", f"{what}:", why))
    return out


def _footer(inputs: data.RunInputs, st: _State) -> str:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    stride = f"; maps at {figures.sampling(st.grid.stride)} of the cube" if st.grid is not None else ""
    return esc(f"Generated {now} by engine {__version__} (python -m engine report {inputs.root}){stride}. "
               "The figures are also saved as PNG files next to this page.")


__all__ = ["build_report", "ReportResult", "FIGURES", "SECTION_IDS"]
