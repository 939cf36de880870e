"""The ``Source`` protocol every data source implements, the source factory and id/date helpers.

A source answers two kinds of questions for a window (an ``odc.geo`` :class:`GeoBox`):

* catalogs: which acquisitions exist in ``[start, end)``, one row per UTC day, as a
  ``pandas.DataFrame`` with columns ``id`` (``<MISSION>_<YYYYMMDD>``) and ``time``
  (UTC ``datetime64[ns]``);
* reads: the pixels of those acquisitions on the window, as ``xarray`` objects with dims
  ``(time, y, x)`` and coordinates at the GeoBox's pixel centres.

Reads are pure functions of (pixel centres, ids): the same pixel on the same date has the same
value whatever window it is read through (see ``engine/ARCHITECTURE.md``).
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from engine.errors import SourceError

if TYPE_CHECKING:  # pragma: no cover
    import xarray
    from odc.geo.geobox import GeoBox

__all__ = [
    "Source",
    "SOURCE_NAMES",
    "OPTICAL_MISSIONS",
    "SAR_MISSION",
    "make_id",
    "parse_id",
    "parse_ids",
    "to_day",
    "day_to_datetime64",
    "empty_catalog",
]

#: Names accepted by :func:`engine.sources.factory.get_source`.
SOURCE_NAMES = ("synthetic", "stac")
#: Optical missions the engine knows (``L9`` is Landsat 9, used alongside ``L8``).
OPTICAL_MISSIONS = ("S2", "L8", "L9")
#: The SAR mission code used in image ids.
SAR_MISSION = "S1"

_ID_RE = re.compile(r"^(?P<mission>[A-Z][A-Z0-9]*)_(?P<date>\d{8})$")
_NS_PER_DAY = 86_400 * 10**9


@runtime_checkable
class Source(Protocol):
    """A data source: catalogs and per-window reads of optical and SAR acquisitions."""

    name: str  # "synthetic", "stac"
    synthetic: bool  # True -> outputs and manifest are labelled SYNTHETIC

    def optical_catalog(self, geobox: GeoBox, mission: str, start: Any, end: Any) -> pd.DataFrame:
        """Acquisitions of ``mission`` over ``geobox`` in ``[start, end)``: columns ``id``, ``time``."""
        ...

    def sar_catalog(self, geobox: GeoBox, start: Any, end: Any) -> pd.DataFrame:
        """Sentinel-1 acquisitions over ``geobox`` in ``[start, end)``: columns ``id``, ``time``."""
        ...

    def read_optical(self, geobox: GeoBox, ids: Sequence[str]) -> xarray.Dataset:
        """``red``, ``nir`` (float32 reflectance 0..1, NaN no-data) and ``qa`` (uint16), ``(time, y, x)``."""
        ...

    def read_sar(self, geobox: GeoBox, ids: Sequence[str]) -> xarray.Dataset:
        """``vv``, ``vh`` (float32 backscatter in dB, NaN no-data), ``(time, y, x)``."""
        ...

    def read_truth_ndvi(self, geobox: GeoBox, ids: Sequence[str]) -> xarray.DataArray | None:
        """The true (cloud-free, noise-free) NDVI on the dates of ``ids``, or ``None`` if unknown."""
        ...


# ---------------------------------------------------------------------------------------------
# ids and dates


def make_id(mission: str, day: int) -> str:
    """``<MISSION>_<YYYYMMDD>`` for integer ``day`` (days since 1970-01-01, UTC)."""
    d = _dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))
    return f"{mission}_{d:%Y%m%d}"


def parse_id(image_id: str) -> tuple[str, int]:
    """``(mission, day)`` of an image id ``<MISSION>_<YYYYMMDD>``; :class:`SourceError` if malformed."""
    m = _ID_RE.match(str(image_id))
    if not m:
        raise SourceError(f"not an image id: {image_id!r} (expected <MISSION>_<YYYYMMDD>, e.g. S2_20210105)")
    try:
        d = _dt.datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError as e:
        raise SourceError(f"image id {image_id!r} has an invalid date") from e
    return m["mission"], (d - _dt.date(1970, 1, 1)).days


def parse_ids(ids: Sequence[str] | str, allowed: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """``(missions, days)`` of image ids, each of a mission in ``allowed``; :class:`SourceError` otherwise."""
    if isinstance(ids, str):
        ids = [ids]
    missions, days = [], []
    for i in ids:
        m, d = parse_id(i)
        if m not in allowed:
            raise SourceError(f"image id {i!r} is not one of the missions {', '.join(allowed)} this read accepts")
        missions.append(m)
        days.append(d)
    return missions, np.asarray(days, dtype=np.int64)


def _timestamp(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise SourceError(f"not a date: {value!r} (use e.g. 2021-01-01)") from e
    if ts is pd.NaT:
        raise SourceError(f"not a date: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def to_day(value: Any) -> int:
    """Integer UTC day (days since 1970-01-01) of a date-like value (floor)."""
    return int(_timestamp(value).value // _NS_PER_DAY)


def to_ns(value: Any) -> int:
    """Nanoseconds since the epoch (UTC) of a date-like value."""
    return int(_timestamp(value).value)


def day_to_datetime64(days: Any, seconds_of_day: Any = 0) -> np.ndarray:
    """``datetime64[ns]`` array from integer days plus seconds of day."""
    d = np.asarray(days, dtype=np.int64)
    s = np.asarray(seconds_of_day, dtype=np.int64)
    return (d * _NS_PER_DAY + s * 10**9).astype("datetime64[ns]")


def empty_catalog() -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series([], dtype=object), "time": pd.Series([], dtype="datetime64[ns]")})
