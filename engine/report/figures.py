"""The report's figures: plain numpy/pandas in, a matplotlib ``Figure`` (Agg canvas) out.

Figures are built with ``matplotlib.figure.Figure`` on an explicit Agg canvas, never pyplot, so
building a report changes no global matplotlib state and needs no display.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

DPI = 100
NDVI_RANGE = (-0.2, 1.0)
NDVI_CMAP = "RdYlGn"
CLOUD_RGBA = (0.80, 0.85, 0.91, 1.0)      # cloudy pixels in the observation panels
HIDDEN_RGBA = (0.58, 0.25, 0.80, 0.85)    # artificially hidden (validation) pixels
NODATA_RGBA = (0.72, 0.72, 0.72, 1.0)     # inside the AOI but no value
SPLIT_COLOURS = {"Training": "#1f77b4", "Validation": "#ff7f0e", "Testing": "#2ca02c", "unpaired": "#9e9e9e"}
METHOD_COLOURS = {"sar": "#2166ac", "linear": "#f4a582", "whittaker": "#b2182b"}
STATUS_COLOURS = {"done": "#4daf4a", "empty": "#d9d9d9", "failed": "#e41a1c", "split": "#984ea3",
                  "pending": "#ff7f00", "running": "#377eb8", "planned": "#ffffff"}
AOI_COLOUR = "#0d47a1"
MIN_N = 100               # skill from fewer pixels is drawn faded (too few to compare)
STRATA = ["<16 d", "16-32 d", "32-64 d", ">=64 d", "open", "all"]
GAP_UNITS = {"clear_count": "clear dates", "gap_mean": "days", "gap_median": "days", "gap_p90": "days",
             "gap_max": "days", "lead_gap": "days", "trail_gap": "days"}
GAP_TITLES = {"clear_count": "clear observations", "gap_mean": "mean gap", "gap_median": "median gap",
              "gap_p90": "90th percentile gap", "gap_max": "longest gap",
              "lead_gap": "leading gap (start to first clear)",
              "trail_gap": "trailing gap (last clear to end)"}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _panel_size(grid_shape: tuple[int, int], width: float) -> float:
    """Height of a map panel of ``width`` inches for a (rows, cols) map, within sensible bounds."""
    rows, cols = grid_shape
    return float(np.clip(width * rows / max(cols, 1), 1.5, 2.0 * width))


def _robust_limits(a: np.ndarray, lo: float = 2, hi: float = 98) -> tuple[float, float]:
    v = a[np.isfinite(a)]
    if v.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(v, [lo, hi])
    if vmax <= vmin:
        vmin, vmax = float(v.min()), float(v.max())
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return float(vmin), float(vmax)


def _overlay(ax, mask: np.ndarray, rgba: tuple[float, float, float, float], extent) -> None:
    if mask is None or not mask.any():
        return
    img = np.zeros(mask.shape + (4,), dtype=float)
    img[mask] = rgba
    ax.imshow(img, extent=extent, interpolation="nearest", origin="upper")


def _outline(ax, aoi, colour: str = "black", lw: float = 0.8) -> None:
    """Draw the AOI outline (shapely geometry in metres) in km."""
    if aoi is None:
        return
    for poly in getattr(aoi, "geoms", [aoi]):
        for ring in [poly.exterior, *poly.interiors] if hasattr(poly, "exterior") else []:
            xy = np.asarray(ring.coords)
            ax.plot(xy[:, 0] / 1e3, xy[:, 1] / 1e3, color=colour, lw=lw)


def _map_axes(ax, extent, fontsize: int = 7) -> None:
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("easting (km)", fontsize=fontsize)
    ax.set_ylabel("northing (km)", fontsize=fontsize)


def sampling(stride: int) -> str:
    """'full resolution' or 'every 3rd pixel'."""
    if stride <= 1:
        return "full resolution"
    suffix = "th" if 10 <= stride % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(stride % 10, "th")
    return f"every {stride}{suffix} pixel"


def ndvi_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """A common NDVI colour range: the 1st-99th percentile of the values, widened to steps of 0.1."""
    vals = [a[np.isfinite(a)] for a in arrays if a is not None]
    vals = [v for v in vals if v.size]
    if not vals:
        return NDVI_RANGE
    lo, hi = np.percentile(np.concatenate(vals), [1, 99])
    lo, hi = np.floor(lo * 10) / 10, np.ceil(hi * 10) / 10
    if hi <= lo:
        hi = lo + 0.1
    return float(max(lo, -1.0)), float(min(hi, 1.0))


def gap_maps(layers: dict[str, np.ndarray], extent, inside: np.ndarray | None, aoi=None,
             pixels: Sequence[tuple[str, float, float]] = (), stride: int = 1,
             resolution: float | None = None) -> Figure:
    """One map per gap statistic with its colour bar and unit; grey = in the AOI but no value."""
    names = list(layers)
    ncols = min(4, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    shape = next(iter(layers.values())).shape
    pw = 3.6
    fig = new_figure(pw * ncols + 0.6, _panel_size(shape, pw) * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        a = layers[name]
        if name == "clear_count":
            cmap, (vmin, vmax) = matplotlib.colormaps["viridis"], _robust_limits(a, 0, 100)
        else:  # days: from 0 so the colours read as lengths; the top 1% saturate
            cmap, (vmin, vmax) = matplotlib.colormaps["magma_r"], (0.0, _robust_limits(a, 0, 99)[1])
        cmap = cmap.with_extremes(bad=(0, 0, 0, 0))
        im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=vmin, vmax=vmax, extent=extent,
                       interpolation="nearest", origin="upper")
        if inside is not None:
            _overlay(ax, inside & ~np.isfinite(a), NODATA_RGBA, extent)
        _outline(ax, aoi)
        _map_axes(ax, extent)
        ax.set_title(f"{name}: {GAP_TITLES.get(name, name)}", fontsize=8)
        cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        cb.set_label(GAP_UNITS.get(name, ""), fontsize=7)
        cb.ax.tick_params(labelsize=7)
        if name == "clear_count":
            for label, x, y in pixels:
                ax.plot(x / 1e3, y / 1e3, marker="o", ms=7, mfc="white", mec="black", mew=1.2)
                ax.annotate(label, (x / 1e3, y / 1e3), xytext=(5, 5), textcoords="offset points", fontsize=9,
                            fontweight="bold", color="black",
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    for ax in list(axes.flat)[len(names):]:
        ax.set_axis_off()
    res = f" ({resolution * stride:g} m per map pixel, {sampling(stride)})" if resolution else ""
    fig.suptitle(f"Gap statistics over the analysis period{res}; grey: no value (fewer than two clear dates "
                 "or no output)", fontsize=9)
    return fig


def before_after(panels: list[dict[str, Any]], extent, aoi=None, inside: np.ndarray | None = None) -> Figure:
    """Rows = dates; observation (clouds shown) next to the filled NDVI on one NDVI colour scale.

    Each panel dict: ``title``, ``observation``, ``mask`` (uint8 codes), ``filled`` (2-D arrays).
    """
    shape = panels[0]["filled"].shape if "filled" in panels[0] else panels[0]["observation"].shape
    pw = 4.2
    ph = _panel_size(shape, pw)
    fig = new_figure(2 * pw + 1.0, ph * len(panels) + 0.9)
    axes = fig.subplots(len(panels), 2, squeeze=False)
    cmap = matplotlib.colormaps[NDVI_CMAP].with_extremes(bad=(0, 0, 0, 0))
    vmin, vmax = ndvi_limits(*[p.get(k) for p in panels for k in ("observation", "filled")])
    im = None
    for row, p in zip(axes, panels):
        mask = p.get("mask")
        obs = p.get("observation")
        filled = p.get("filled")
        in_aoi = inside if inside is not None else (mask != 255 if mask is not None else None)
        mapped = mask != 255 if mask is not None else None
        if obs is not None:
            shown = np.where(np.isin(mask, (1, 3)), np.nan, obs) if mask is not None else obs
            im = row[0].imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=vmin, vmax=vmax,
                               extent=extent, interpolation="nearest", origin="upper")
            if mask is not None:
                _overlay(row[0], np.isin(mask, (1, 3)), CLOUD_RGBA, extent)
                _overlay(row[0], mask == 2, HIDDEN_RGBA, extent)
                _overlay(row[0], in_aoi & ~np.isin(mask, (1, 3)) & ~np.isfinite(obs), NODATA_RGBA, extent)
            cover = np.isin(mask, (1, 3)).sum() / max(1, mapped.sum()) * 100 if mask is not None else np.nan
            row[0].set_title(f"{p['title']}\nobservation, cloud shown ({cover:.0f}% of mapped pixels)", fontsize=8)
        else:
            row[0].text(0.5, 0.5, "no observation in the cube", ha="center", transform=row[0].transAxes)
        if filled is not None:
            im = row[1].imshow(np.ma.masked_invalid(filled), cmap=cmap, vmin=vmin, vmax=vmax,
                               extent=extent, interpolation="nearest", origin="upper")
            if in_aoi is not None:
                _overlay(row[1], in_aoi & ~np.isfinite(filled), NODATA_RGBA, extent)
            row[1].set_title(f"{p['title']}\nfilled (SAR prediction under cloud)", fontsize=8)
        else:
            row[1].text(0.5, 0.5, "no filled NDVI in the cube", ha="center", transform=row[1].transAxes)
        for ax in row:
            _outline(ax, aoi)
            _map_axes(ax, extent)
    if im is not None:
        cb = fig.colorbar(im, ax=axes, shrink=0.6, pad=0.02)
        cb.set_label("NDVI", fontsize=8)
    fig.legend(handles=[Patch(color=CLOUD_RGBA, label="cloud / shadow (Mask 1, 3)"),
                        Patch(color=HIDDEN_RGBA, label="hidden for validation (Mask 2)"),
                        Patch(color=NODATA_RGBA, label="no value")],
               loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def per_image_skill(images: pd.DataFrame, threshold: float | None = None,
                    highlight: Sequence[pd.Timestamp] = ()) -> Figure:
    """MAE per image over time, coloured by split label, above the image's cloud cover."""
    fig = new_figure(12, 5.6)
    ax_mae, ax_cc = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    labels = images["SplitLabel"].fillna("unpaired") if "SplitLabel" in images else pd.Series("unpaired", images.index)
    width = pd.Timedelta(days=max(1.0, _median_spacing(images["Date"]) * 0.7))
    for label, colour in SPLIT_COLOURS.items():
        sel = labels == label
        if not sel.any():
            continue
        part = images[sel]
        if "MAE" in part:
            ok = part["MAE"].notna()
            ax_mae.plot(part.loc[ok, "Date"], part.loc[ok, "MAE"], "o", color=colour, ms=5,
                        label=f"{label} ({int(sel.sum())})")
        ax_cc.bar(part["Date"], part["Cloud_cover"], width=width, color=colour, label=label)
    if "Artificial_mask_donor" in images and images["Artificial_mask_donor"].astype(str).str.lower().eq("true").any():
        d = images[images["Artificial_mask_donor"].astype(str).str.lower().eq("true")]
        ax_cc.plot(d["Date"], d["Cloud_cover"] + 4, "v", color="black", ms=6, label="artificial-mask donor")
    for i, day in enumerate(highlight):
        for ax in (ax_mae, ax_cc):
            label = "shown in before/after" if i == 0 and ax is ax_cc else None
            ax.axvline(day, color="#555555", ls=":", lw=1, label=label)
    if threshold is not None:
        ax_cc.axhline(threshold, color="#444444", ls="--", lw=1, label=f"calibration threshold {threshold:g}%")
    ax_mae.set_ylabel("MAE |obs - pred| (NDVI)", fontsize=8)
    fig.legend(handles=ax_mae.get_legend_handles_labels()[0], fontsize=8, loc="outside upper center", ncols=4,
               frameon=False, title="split label (images)", title_fontsize=8)
    ax_mae.grid(alpha=0.3)
    ax_cc.set_ylabel("cloud cover (%)", fontsize=8)
    ax_cc.set_ylim(0, 105)
    extra = [(h, lab) for h, lab in zip(*ax_cc.get_legend_handles_labels()) if lab not in SPLIT_COLOURS]
    if extra:
        fig.legend([h for h, _ in extra], [lab for _, lab in extra], fontsize=8, loc="outside lower center",
                   ncols=len(extra), frameon=False)
    ax_cc.grid(alpha=0.3)
    for ax in (ax_mae, ax_cc):
        ax.tick_params(labelsize=7)
    return fig


def _median_spacing(dates: pd.Series) -> float:
    d = np.diff(np.sort(pd.to_datetime(dates).values)).astype("timedelta64[s]").astype(float) / 86400
    d = d[d > 0]
    return float(np.median(d)) if d.size else 5.0


def skill_by_gap(skill: pd.DataFrame, descriptions: dict[str, str] | None = None) -> Figure:
    """Per target, MAE of the SAR fill and the two optical-only baselines per gap-length stratum."""
    targets = [t for t in ("validation", "testing", "truth") if t in set(skill["target"])]
    targets += [t for t in skill["target"].unique() if t not in targets]
    fig = new_figure(5.2 * len(targets), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(targets), sharey=True, squeeze=False)[0])
    methods = [m for m in METHOD_COLOURS if m in set(skill["method"])]
    methods += [m for m in skill["method"].unique() if m not in methods]
    w = 0.8 / max(1, len(methods))
    reliable: list[float] = []
    any_few = False
    bars: list[tuple[np.ndarray, np.ndarray]] = []
    for ax, target in zip(axes, targets):
        part = skill[skill["target"] == target]
        strata = ordered_strata(part["stratum"])
        x = np.arange(len(strata))
        n = part.groupby("stratum")["n"].max().reindex(strata).to_numpy(float)
        few = ~(n >= MIN_N)
        any_few |= bool(few.any())
        for i, m in enumerate(methods):
            vals = part[part["method"] == m].set_index("stratum").reindex(strata)["MAE"].to_numpy(float)
            xs = x + (i - (len(methods) - 1) / 2) * w
            colour = METHOD_COLOURS.get(m, f"C{i}")
            ax.bar(xs[~few], vals[~few], w, color=colour, label=m)
            if few.any():
                ax.bar(xs[few], vals[few], w, color=colour, alpha=0.3, hatch="..", edgecolor="#777777")
            reliable.extend(vals[~few][np.isfinite(vals[~few])])
            bars.append((xs, vals))
        ax.set_xticks(x, [f"{s}\nn={_short(v)}" + ("\n(too few)" if f else "") for s, v, f in zip(strata, n, few)],
                      fontsize=7)
        ax.set_xlabel("gap length", fontsize=8)
        title = target if not descriptions or target not in descriptions else f"{target}: {descriptions[target]}"
        ax.set_title(title, fontsize=8, wrap=True)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("MAE (NDVI)", fontsize=8)
    if reliable:  # scale to the strata with enough pixels; label the bars that go off the top
        top = 1.15 * max(reliable)
        axes[0].set_ylim(0, top)
        for ax, (xs, vals) in zip(np.repeat(axes, len(methods)), bars):
            for xv, v in zip(xs, vals):
                if np.isfinite(v) and v > top:
                    ax.text(xv, top * 0.97, f"{v:.2f}", ha="center", va="top", fontsize=6, rotation=90)
    handles = [Patch(color=METHOD_COLOURS.get(m, f"C{i}"), label=m) for i, m in enumerate(methods)]
    if any_few:
        handles.append(Patch(facecolor="#dddddd", hatch="..", edgecolor="#777777", label=f"n < {MIN_N} pixels"))
    fig.legend(handles=handles, fontsize=8, title="method", title_fontsize=8,
               loc="outside right upper", frameon=False)
    return fig


def ordered_strata(values: pd.Series) -> list[str]:
    """Gap-length strata in the engine's order, then any others in order of appearance."""
    present = list(dict.fromkeys(values))
    return [s for s in STRATA if s in present] + [s for s in present if s not in STRATA]


def _short(v: Any) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    v = float(v)
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.1f}{suf}"
    return f"{v:.0f}"


def tile_status(tiles, aoi=None, label_limit: int = 40) -> Figure:
    """The tile index coloured by status (split parents drawn hatched under their children)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Polygon

    status = tiles["status"].fillna("planned").astype(str) if "status" in tiles else pd.Series("planned", tiles.index)
    minx, miny, maxx, maxy = tiles.total_bounds
    aspect = (maxy - miny) / max(maxx - minx, 1.0)
    fig = new_figure(7.5, float(np.clip(6.0 * aspect, 3.0, 9.0)) + 0.8)
    ax = fig.subplots()
    order = np.argsort([0 if s == "split" else 1 for s in status], kind="stable")
    for i in order:
        geom, st = tiles.geometry.iloc[i], status.iloc[i]
        polys = getattr(geom, "geoms", [geom])
        patches = [Polygon(np.asarray(p.exterior.coords) / 1e3, closed=True) for p in polys if hasattr(p, "exterior")]
        if st == "split":
            pc = PatchCollection(patches, facecolor="none", edgecolor=STATUS_COLOURS["split"], hatch="//", lw=1.5)
        else:
            pc = PatchCollection(patches, facecolor=STATUS_COLOURS.get(st, "#ffff99"), edgecolor="#333333", lw=0.8,
                                 alpha=0.9)
        ax.add_collection(pc)
    if len(tiles) <= label_limit and "tile_id" in tiles:
        for geom, tid in zip(tiles.geometry, tiles["tile_id"]):
            c = geom.representative_point()
            short = str(tid).split("-", 3)[-1] if str(tid).count("-") >= 3 else str(tid)
            ax.text(c.x / 1e3, c.y / 1e3, short, ha="center", va="center", fontsize=6)
    _outline(ax, aoi, colour=AOI_COLOUR, lw=1.6)
    pad = 0.03 * max(maxx - minx, maxy - miny)
    _map_axes(ax, ((minx - pad) / 1e3, (maxx + pad) / 1e3, (miny - pad) / 1e3, (maxy + pad) / 1e3), fontsize=8)
    counts = status.value_counts()
    handles = [Patch(facecolor=STATUS_COLOURS.get(s, "#ffff99"), edgecolor="#333333",
                     hatch="//" if s == "split" else None, label=f"{s} ({int(counts[s])})") for s in counts.index]
    handles.append(Line2D([], [], color=AOI_COLOUR, lw=1.6, label="AOI"))
    fig.legend(handles=handles, fontsize=8, loc="outside right upper", frameon=False)
    ax.set_title(f"Tile status ({len(tiles)} tiles)", fontsize=9)
    return fig


def pixel_series(series: list[dict[str, Any]]) -> Figure:
    """Per pixel: observed (clear), cloudy (masked observation), calibrated prediction and filled NDVI.

    Each dict: ``title``, ``time`` (datetime64), ``observation``, ``mask``, ``prediction``, ``filled``.
    """
    fig = new_figure(12, 2.5 * len(series) + 0.9)
    axes = np.atleast_1d(fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0])
    for ax, s in zip(axes, series):
        t = pd.to_datetime(s["time"])
        mask = s.get("mask")
        obs = s.get("observation")
        if s.get("filled") is not None:
            ax.plot(t, s["filled"], "-", color="#1a9850", lw=1.6, label="filled")
        if s.get("prediction") is not None:
            ax.plot(t, s["prediction"], "--", color="#2166ac", lw=1.1, marker=".", ms=4, label="predicted (calibrated)")
        if obs is not None and mask is not None:
            clear = np.isin(mask, (0, 2))
            cloudy = np.isin(mask, (1, 3))
            ax.plot(t[clear], obs[clear], "o", color="black", ms=4.5, label="observed (clear)")
            ax.plot(t[cloudy], obs[cloudy], "x", color="#999999", ms=5, label="cloudy (masked observation)")
        ax.set_title(s["title"], fontsize=8, loc="left")
        ax.set_ylabel("NDVI", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.legend(handles=axes[0].get_legend_handles_labels()[0], fontsize=8, ncols=4, loc="outside upper center",
               frameon=False)
    return fig


__all__ = ["before_after", "gap_maps", "ndvi_limits", "new_figure", "ordered_strata", "per_image_skill",
           "pixel_series", "png_bytes", "sampling", "skill_by_gap", "tile_status"]
