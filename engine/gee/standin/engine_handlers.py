"""``value:compute`` handlers for the engine's own queries (registered by default).

The engine (``engine.gee.expressions``) asks four kinds of question, each a dictionary whose
``query`` entry names it; these handlers recognise them by that marker and answer with
deterministic synthetic values of the right shape (nothing is computed from imagery):

* ``sar-infill/catalog/v1``: optical acquisition times in [start, end) on a synthetic revisit
  (S2 every 5 days, Landsat 8 every 16, Landsat 9 offset by 8; every 5th acquisition has a
  second scene the same day) and S1 scenes every 6 days plus a second orbit every 12 days;
* ``sar-infill/image-stats/v1``: per requested day, valid and cloudy pixel counts (cloud
  percentages spread over 0-100, with some in 50-55 and a few images under 100 valid pixels),
  AOI SAR means in dB and the number of S1 scenes of the synthetic schedule in the window;
* ``sar-infill/pca/v1``: per-date means, a symmetric positive definite covariance, a count;
* ``sar-infill/calibration/v1``: mean, 5-15 / 85-95 interval means and count per band.

Answers depend only on the query's constants (and the stand-in seed), so reruns agree.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from typing import Any

from .compute import NOT_HANDLED, ComputeRegistry, ComputeRequest

DAY_MS = 86_400_000
Q_CATALOG = "sar-infill/catalog/v1"
Q_IMAGE_STATS = "sar-infill/image-stats/v1"
GOLDEN = 0.6180339887498949


def _entries(req: ComputeRequest) -> dict[str, Any] | None:
    root = req.root
    if not isinstance(root, dict) or "dictionaryValue" not in root:
        return None
    return dict(root["dictionaryValue"].get("values", {}))


def _const(req: ComputeRequest, entries: dict[str, Any], key: str, default: Any = None) -> Any:
    return req.graph.constant(entries.get(key), default)


def _frac(x: float) -> float:
    return x - math.floor(x)


def _h(seed: int, *key: Any) -> float:
    d = hashlib.sha256(f"{seed}|{key!r}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2.0**64


# --- synthetic schedules ---------------------------------------------------------------------
def optical_days(constants: list[Any], start_day: int, end_day: int) -> list[tuple[int, int]]:
    """(day, n scenes that day) of the synthetic optical revisit for the collections named."""
    s2 = "COPERNICUS/S2_SR_HARMONIZED" in constants
    l8 = "LANDSAT/LC08/C02/T1_L2" in constants
    l9 = "LANDSAT/LC09/C02/T1_L2" in constants
    out = []
    k = 0
    for day in range(start_day, end_day):
        hit = (s2 and day % 5 == 2) or (l8 and day % 16 == 3) or (l9 and day % 16 == 11)
        if hit:
            out.append((day, 2 if k % 5 == 4 else 1))
            k += 1
    return out


def sar_days(start_day: int, end_day: int) -> list[int]:
    return [d for d in range(start_day, end_day) if d % 6 == 1 or d % 12 == 4]


def _s1_id(day: int) -> str:
    date = _dt.date(1970, 1, 1) + _dt.timedelta(days=day)
    sat = "S1A" if day % 6 == 1 else "S1B"
    return f"{sat}_IW_GRDH_1SDV_{date:%Y%m%d}T193015_{date:%Y%m%d}T193040_0{day % 100000:05d}_STANDIN"


# --- handlers ---------------------------------------------------------------------------------------
def catalog(req: ComputeRequest) -> Any:
    e = _entries(req)
    if e is None:
        return NOT_HANDLED
    start, end, w = (int(_const(req, e, k, 0)) for k in ("start_day", "end_day", "window_days"))
    consts = [c for c in req.constants() if isinstance(c, str)]
    times = []
    for day, n in optical_days(consts, start, end):
        for j in range(n):
            times.append(day * DAY_MS + 36_000_000 + 25_000 * j)
    sdays = sar_days(start - w, end + w)
    return {"query": Q_CATALOG, "start_day": start, "end_day": end, "window_days": w,
            "optical_times": times, "sar_ids": [_s1_id(d) for d in sdays],
            "sar_times": [d * DAY_MS + 70_215_000 for d in sdays]}


def cloud_percentage(day: int) -> float:
    if day % 9 == 4:
        return 50.0 + 5.0 * _frac(day * 0.377)
    return 100.0 * _frac(day * GOLDEN)


def image_stats(req: ComputeRequest) -> Any:
    e = _entries(req)
    if e is None:
        return NOT_HANDLED
    days = [int(d) for d in (_const(req, e, "days", []) or [])]
    w = int(_const(req, e, "window_days", 12) or 12)
    rows = []
    for day in days:
        valid = 60 if day % 23 == 5 else int(3_000_000 * (0.6 + 0.4 * _frac(day * 0.7548776662)))
        pct = cloud_percentage(day)
        s1 = sum(1 for d in sar_days(day - w, day + w))
        phase = 2 * math.pi * day / 365.25
        rows.append({"day": day, "PIXEL_COUNT_AOI": valid, "CLOUDY_COUNT_AOI": round(valid * pct / 100.0),
                     "VV_mean": -11.0 + 1.5 * math.sin(phase) if s1 else None,
                     "VH_mean": -18.0 + 1.5 * math.cos(phase) if s1 else None, "S1_count": s1})
    return {"query": Q_IMAGE_STATS, "days": days, "window_days": w, "rows": rows}


HANDLERS = {Q_CATALOG: catalog, Q_IMAGE_STATS: image_stats}


def install(reg: ComputeRegistry) -> None:
    """Register the engine's handlers as defaults (user handlers still win)."""
    for marker, handler in HANDLERS.items():
        def match(req: ComputeRequest, _m: str = marker) -> bool:
            e = _entries(req)
            return e is not None and req.graph.constant(e.get("query")) == _m

        reg._defaults.insert(0, (match, handler, f"engine:{marker}"))
