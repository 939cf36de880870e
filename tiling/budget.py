"""The tile budget model: bytes of a tile's largest computation, and the side that fits.

The largest per-tile computation is the training reduction (step 6): for every optical date the
stack carries NDVI, the constant and the 8 SAR covariates, i.e. ``BANDS_PER_DATE`` float32 bands
over the tile *with its halo*. A tile fits when ``dates x bands x (side + 2 halo)^2 x 4`` is within
the budget and the haloed side is within Earth Engine's request side limit.

The local backend's budget is a dask worker's whole memory while it computes a tile: the worker's
own (Python, numpy, numba's compiled kernels, distributed) plus what the tile's arrays hold at the
peak, which is fewer bands than Earth Engine's (the covariates are computed in strips, never held
whole). ``backend_budget`` models it from measured workers, so that the tiles shrink as the dates grow
and a worker's memory stays flat.

The dates are the AOI's, not one track's: every track (Landsat path, Sentinel orbit) that sees
the AOI acquires it on its own days, and every tile computes every date of the AOI (a date
without an image over a tile still gets the SAR prediction). A WRS-2 scene meets three Landsat
paths: three times the dates of one path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import PlanError
from tiling.limits import REQUEST_MAX_SIDE

BANDS_PER_DATE = 10  # NDVI + constant + 8 covariates
DTYPE_BYTES = 4  # float32
MIN_TILE_SIDE = 64
REVISIT_DAYS = {"S2": 5.0, "L8": 16.0, "L8+L9": 8.0, "S1": 6.0}


@dataclass(frozen=True)
class Budget:
    """How many bytes a tile computation may use, for a given number of dates."""

    dates: int
    max_bytes: int
    halo: int = 12
    bands: int = BANDS_PER_DATE
    dtype_bytes: int = DTYPE_BYTES
    base_bytes: int = 0  # held whatever the tile: a local worker's libraries

    def __post_init__(self) -> None:
        if self.dates < 1:
            raise PlanError(f"the period holds no optical dates ({self.dates}); extend START_DATE..END_DATE")
        if self.max_bytes <= 0:
            raise PlanError(f"tile budget must be positive, got {self.max_bytes} bytes")

    def tile_bytes(self, side: int) -> int:
        """Bytes a tile of ``side`` core pixels needs: its largest computation (and a local worker's own)."""
        return self.base_bytes + self.dates * self.bands * (side + 2 * self.halo) ** 2 * self.dtype_bytes

    def _base(self) -> str:
        return f" (a worker's own {self.base_bytes / 2**20:.0f} MiB included)" if self.base_bytes else ""

    def fits(self, side: int) -> bool:
        return self.tile_bytes(side) <= self.max_bytes and side + 2 * self.halo <= REQUEST_MAX_SIDE

    def best_side(self) -> int:
        """Largest power-of-two side (>= MIN_TILE_SIDE) that fits the budget."""
        side = 1 << int(math.log2(REQUEST_MAX_SIDE))
        while side >= MIN_TILE_SIDE:
            if self.fits(side):
                return side
            side //= 2
        least = math.ceil(self.tile_bytes(MIN_TILE_SIDE) / 2**20)
        raise PlanError(
            f"even a {MIN_TILE_SIDE} px tile needs {least} MiB for {self.dates} dates{self._base()}, over the "
            f"{self.max_bytes / 2**20:.0f} MiB budget; raise TILE_BUDGET_MB (--tile-budget-mb) to at least {least}, "
            "or shorten the period"
        )


#: A local dask worker (one thread) as ``python -m benchmarks.time_scaling --years 1,2,4,6 --area 1000``
#: measured it on 2026-12-07: peaks of 826 MiB at 46 dates and 1,134 MiB at 91 dates for 512 px tiles
#: (536 px haloed), 791 MiB at 136 dates for 256 px, i.e. about 0.5 GiB before any tile and 25 bytes
#: per haloed pixel-date; the model rounds both up (7 float32 bands per date).
LOCAL_WORKER_BASE_BYTES = 512 * 2**20
LOCAL_BANDS_PER_DATE = 7


def backend_budget(backend: str, dates: int, max_bytes: int, halo: int) -> Budget:
    """The tile budget of ``backend``: Earth Engine's computation (``BANDS_PER_DATE`` float32 bands
    per pixel-date), or a local worker's whole memory (its base and ``LOCAL_BANDS_PER_DATE``)."""
    if backend == "local":
        return Budget(
            dates=dates, max_bytes=max_bytes, halo=halo, bands=LOCAL_BANDS_PER_DATE, base_bytes=LOCAL_WORKER_BASE_BYTES
        )
    return Budget(dates=dates, max_bytes=max_bytes, halo=halo)


#: (relative orbits, swath width in km) of the missions whose dates ``swath_tracks`` estimates
#: (Sentinel-2: 143 orbits of a 10-day cycle, 290 km; Sentinel-1 IW: 175 orbits of 12 days, 250 km).
ORBITS = {"S2": (143, 290.0), "S1": (175, 250.0)}
KM_PER_DEGREE = 111.32


def swath_tracks(mission: str, lon_min: float, lon_max: float, max_abs_lat_deg: float) -> int:
    """How many ground tracks of ``mission`` see the longitudes ``lon_min .. lon_max``: tracks at
    the nominal longitudes ``-180 + (k + 1/2) 360 / orbits`` (the synthetic source's layout; real
    orbits are the same distance apart) whose half swath reaches the range, a swath's width in
    degrees taken at the area's highest latitude. Neighbouring tracks are acquired on different
    days, so an area's dates grow with the tracks that see it. At least 1."""
    orbits, swath_km = ORBITS[mission]
    cos_lat = max(math.cos(math.radians(min(abs(max_abs_lat_deg), 89.0))), 1e-3)
    half = swath_km / 2 / (KM_PER_DEGREE * cos_lat)
    spacing = 360.0 / orbits
    count = 0
    for k in range(orbits):
        lon = -180.0 + (k + 0.5) * spacing
        for shift in (-360.0, 0.0, 360.0):  # the antimeridian
            t = lon + shift
            if min(abs(t - lon_min), abs(t - lon_max)) <= half or lon_min <= t <= lon_max:
                count += 1
                break
    return max(1, count)


def estimate_dates(mission: str, days: int, include_landsat9: bool = False, tracks: int = 1) -> int:
    """Expected optical (or S1) acquisition days in a period (planning only): the mission's revisit
    on one track, times the ``tracks`` (Landsat paths, orbits) that see the area."""
    key = "L8+L9" if mission == "L8" and include_landsat9 else mission
    return max(1, math.ceil(days / REVISIT_DAYS[key])) * max(1, int(tracks))
