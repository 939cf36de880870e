"""The report page: one self-contained HTML file (CSS inline, images as base64 data URIs)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Set on load: how many <img> decoded (complete and naturalWidth > 0), for headless checks.
IMAGES_OK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.imagesOk = String(ok.length);
  document.body.dataset.imagesTotal = String(imgs.length);
});
"""

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 16px 40px; color: #222; line-height: 1.4; }
h1 { font-size: 22px; margin: 18px 0 6px; }
h2 { font-size: 18px; border-bottom: 2px solid #ddd; padding-bottom: 3px; margin-top: 32px; }
.banner { padding: 12px 16px; margin: 10px 0; font-weight: bold; border-radius: 4px; }
.banner.synthetic { background: #ffeb3b; color: #b71c1c; border: 4px solid #b71c1c; font-size: 20px;
                    text-align: center; letter-spacing: 0.5px; }
.banner.synthetic .big { font-size: 30px; display: block; }
.banner.failed { background: #ffebee; color: #b71c1c; border: 2px solid #e57373; }
.banner.note { background: #fff8e1; color: #5d4037; border: 1px solid #ffcc80; font-weight: normal; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta th { text-align: left; }
tr.group td { background: #eef3f8; font-weight: bold; }
.best { font-weight: bold; color: #1b5e20; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.missing { color: #8d6e63; font-style: italic; }
footer { margin-top: 40px; font-size: 12px; color: #777; }
"""


@dataclass
class FigureRef:
    name: str            # file name, e.g. "gap_maps.png"
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""                     # plain text
    figures: list[FigureRef] = field(default_factory=list)
    html: str = ""                      # extra markup, already escaped
    missing: str | None = None          # shown instead of figures when the data is not there


def esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def meta_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _fmt(v: object, digits: int = 3) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return esc(v)
    if not np.isfinite(f):
        return "-"
    return f"{f:.{digits}f}"


def skill_table(skill: pd.DataFrame, descriptions: dict[str, str] | None = None) -> str:
    """skill.csv pivoted: per target and gap stratum, n and each score for every method; best MAE bold."""
    from engine.report.figures import ordered_strata

    methods = [m for m in ("sar", "linear", "whittaker") if m in set(skill["method"])]
    methods += [m for m in skill["method"].unique() if m not in methods]
    scores = [s for s in ("MAE", "RMSE", "bias", "R2") if s in skill]
    head1 = "<tr><th rowspan=2>gap length</th><th rowspan=2>pixels (n)</th>" + "".join(
        f"<th colspan={len(methods)}>{esc(s)}</th>" for s in scores) + "<th rowspan=2>best (MAE)</th></tr>"
    head2 = "<tr>" + "".join(f"<th>{esc(m)}</th>" for _ in scores for m in methods) + "</tr>"
    rows = []
    ncol = 2 + len(scores) * len(methods) + 1
    for target in skill["target"].unique():
        part = skill[skill["target"] == target]
        desc = (descriptions or {}).get(target)
        rows.append(f'<tr class="group"><td colspan={ncol}>{esc(target)}{": " + esc(desc) if desc else ""}</td></tr>')
        strata = ordered_strata(part["stratum"])
        for stratum in strata:
            cell = part[part["stratum"] == stratum].set_index("method")
            n = cell["n"].max() if "n" in cell else np.nan
            mae = cell["MAE"].reindex(methods).astype(float) if "MAE" in cell else pd.Series(dtype=float)
            best = mae.idxmin() if mae.notna().any() else None
            tds = [f"<td>{esc(stratum)}</td>", f'<td class="num">{int(n):,}</td>' if np.isfinite(n) else "<td>-</td>"]
            for s in scores:
                for m in methods:
                    v = cell[s].get(m, np.nan) if s in cell else np.nan
                    cls = "num best" if s == "MAE" and m == best else "num"
                    tds.append(f'<td class="{cls}">{_fmt(v)}</td>')
            tds.append(f"<td>{esc(best or '-')}</td>")
            rows.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="skill"><thead>{head1}{head2}</thead><tbody>{"".join(rows)}</tbody></table>'


def frame_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(title: str, meta: list[tuple[str, str]], banners: list[tuple[str, str, str]],
                sections: list[Section], footer: str) -> str:
    """The whole page. ``banners``: (kind, headline, text) with kind in synthetic/failed/note."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style>",
             f"<script>{IMAGES_OK_SCRIPT}</script>", "</head>", "<body>",
             '<header id="summary">']
    for kind, headline, text in banners:
        if kind == "synthetic":
            parts.append(f'<div class="banner synthetic" id="synthetic-banner"><span class="big">{esc(headline)}</span>'
                         f"{esc(text)}</div>")
        else:
            parts.append(f'<div class="banner {esc(kind)}"><strong>{esc(headline)}</strong> {esc(text)}</div>')
    parts.append(f"<h1>{esc(title)}</h1>")
    parts.append(meta_table(meta))
    parts.append("<nav><p>" + " &middot; ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
                 + "</p></nav>")
    parts.append("</header>")
    for s in sections:
        parts.append(f'<section id="{esc(s.id)}">')
        parts.append(f"<h2>{esc(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p>{esc(s.intro)}</p>")
        if s.missing:
            parts.append(f'<p class="missing">Not available: {esc(s.missing)}</p>')
        for f in s.figures:
            parts.append(f'<figure id="fig-{esc(f.name.rsplit(".", 1)[0])}">'
                         f'<img src="{data_uri(f.png)}" alt="{esc(f.alt)}" data-file="{esc(f.name)}">'
                         f"<figcaption>{esc(f.caption)} (also saved as {esc(f.name)})</figcaption></figure>")
        if s.html:
            parts.append(s.html)
        parts.append("</section>")
    parts.append(f"<footer>{footer}</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
