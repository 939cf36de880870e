"""What one tile's stage B exports on Earth Engine: the outputs image(s) and the per-image table.

Pure (no ``ee``, no requests), so planning (``engine.run.context.RunContext.outputs`` /
``ee_exports_per_tile``) and the run share one definition.

A tile's products go out as **one multi-band image**, stage (and asset / file stem) ``outputs``:

* per paired image (date), in this order of variables: ``filled`` (filled NDVI), ``mask``
  (0 clear, 1 cloudy, 2 artificially hidden, 3 both; masked where invalid), ``prediction``
  (calibrated), ``observation`` (NDVI), then the optional extras ``smoothed`` (``EXPORT_PCA``:
  PCA-smoothed, uncalibrated prediction) and ``vv`` / ``vh`` (``EXPORT_INPUT``: SAR composites in
  dB). Bands are named ``<variable>_<YYYYMMDD>`` (``filled_20210103``, ``mask_20210103``, ...),
  variable by variable, dates in order within each; the date is the one of the image id
  (``L8_20210103`` -> ``20210103``) that the per-image table lists in its ``ID`` column;
* the 7 gap-statistics bands ``clear_count, gap_mean, gap_median, gap_p90, gap_max, lead_gap,
  trail_gap`` (days) at the end.

Every band is **float32**: NDVI, predictions, SAR dB and gap statistics are float32 already, and
the mask's small integers (0-3) are exact in float32, so one type keeps every value exact (the
mask's pyramiding policy stays MODE, per band). The per-image table (``images``) stays its own
table export, so a tile is 3 exports: the model, the outputs image, the table.

**Band limit.** Earth Engine reads at most ``tiling.limits.REQUEST_MAX_BANDS`` (1,024) bands per
request, so an image is kept within it: when ``variables x dates + 7`` would exceed it (e.g. S2
over more than ~3.5 years: 4 x 255 + 7 > 1,024), the outputs image is split into the fewest
images that keep every variable of a date together (``output_parts``): consecutive date ranges
of (nearly) equal length, stages ``outputs_1`` ... ``outputs_k``, each holding every variable for
its dates, the gap-statistics bands in ``outputs_1``. The manifest lists each part's bands and
dates. A tile is then ``2 + k`` exports, and ``EXPORT_MOSAIC`` makes one mosaic per part.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tiling.limits import REQUEST_MAX_BANDS

PER_DATE = ("filled", "mask", "prediction", "observation")  # always exported
GAP_BAND_NAMES = ("clear_count", "gap_mean", "gap_median", "gap_p90", "gap_max", "lead_gap", "trail_gap")
TABLE = "images"  # the per-image table's stage
OUTPUTS = "outputs"  # the outputs image's stage (``outputs_<i>`` when split)
CATEGORICAL = ("mask",)  # variables pyramided by MODE, not MEAN
BAND_TYPE = "float32"
MAX_BANDS = REQUEST_MAX_BANDS  # bands per outputs image (module attribute, so tests can lower it)


def variables(export_pca: bool, export_input: bool) -> tuple[str, ...]:
    """The per-date variables of the outputs image, in band order."""
    return PER_DATE + ("smoothed",) * bool(export_pca) + ("vv", "vh") * bool(export_input)


def date_key(image_id: str) -> str:
    """``L8_20210103`` -> ``20210103`` (image ids are ``<mission>_<YYYYMMDD>``, one per day)."""
    return str(image_id).rsplit("_", 1)[-1]


def band_name(variable: str, image_id: str) -> str:
    return f"{variable}_{date_key(image_id)}"


@dataclass(frozen=True)
class Part:
    """One outputs image of a tile: every variable for the dates ``[start, stop)`` (+ gap bands)."""

    stage: str
    start: int
    stop: int
    gaps: bool

    def band_count(self, n_variables: int) -> int:
        return n_variables * (self.stop - self.start) + len(GAP_BAND_NAMES) * self.gaps

    def bands(self, variables: Sequence[str], ids: Sequence[str]) -> list[str]:
        """Band names in export order."""
        dates = list(ids)[self.start : self.stop]
        return [band_name(v, i) for v in variables for i in dates] + list(GAP_BAND_NAMES) * self.gaps

    def key(self, variables: Sequence[str], ids: Sequence[str]) -> str:
        """Digest of the band list and type: recorded on the asset and in the ledger, so an output made
        with other extras (``EXPORT_PCA`` / ``EXPORT_INPUT`` are not part of the science hash) or
        other dates is never taken for this one."""
        text = ",".join(self.bands(variables, ids)) + "|" + BAND_TYPE
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def output_parts(n_dates: int, n_variables: int, max_bands: int | None = None) -> tuple[Part, ...]:
    """The outputs image(s) of a tile for ``n_dates`` paired images (see the module docstring).

    One image while ``n_variables x n_dates + 7 <= max_bands``; otherwise the fewest images that
    keep every variable of a date together (the first one also holds the 7 gap bands), over
    consecutive date ranges of equal length give or take one (the first may be shorter, to leave
    room for the gap bands).
    """
    max_bands = MAX_BANDS if max_bands is None else max_bands
    n_gap = len(GAP_BAND_NAMES)
    n_dates = max(int(n_dates), 0)
    first_cap = (max_bands - n_gap) // n_variables  # dates in the image with the gap bands
    rest_cap = max_bands // n_variables  # dates in any other image
    if first_cap < 1:
        raise ValueError(f"{n_variables} variables per date and {n_gap} gap bands do not fit in {max_bands} bands")
    if n_dates <= first_cap:
        return (Part(OUTPUTS, 0, n_dates, True),)
    k = 1 + math.ceil((n_dates - first_cap) / rest_cap)
    first = min(n_dates // k, first_cap)
    rest = n_dates - first  # <= (k - 1) x rest_cap, spread evenly
    cuts = [0] + [first + i * rest // (k - 1) for i in range(k)]
    return tuple(Part(f"{OUTPUTS}_{i + 1}", cuts[i], cuts[i + 1], i == 0) for i in range(k))


def stages(parts: Sequence[Part]) -> tuple[str, ...]:
    """Stage-B export stages of a tile: the outputs image(s), then the per-image table."""
    return tuple(p.stage for p in parts) + (TABLE,)


def pyramiding(bands: Sequence[str]) -> dict[str, str]:
    """Per-band pyramiding overrides (MODE for the categorical mask bands; MEAN otherwise)."""
    return {b: "MODE" for b in bands if b.rsplit("_", 1)[0] in CATEGORICAL}


__all__ = [
    "PER_DATE",
    "GAP_BAND_NAMES",
    "TABLE",
    "OUTPUTS",
    "BAND_TYPE",
    "MAX_BANDS",
    "Part",
    "variables",
    "date_key",
    "band_name",
    "output_parts",
    "stages",
    "pyramiding",
]
