"""Reading a window's inputs from a source and turning them into the algorithm's arrays."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from odc.geo.geobox import GeoBox

from engine.science.optical import cloud_mask, ndvi
from engine.science.sar import window_mean, window_members
from engine.sources.base import Source

EPOCH = np.datetime64("1970-01-01", "D")
CHUNK_IMAGES = 24  # images read at once: bounds memory for long periods


def to_days(times: Sequence) -> np.ndarray:
    """UTC times -> integer days since 1970-01-01."""
    t = np.asarray(times, dtype="datetime64[ns]")
    return (t.astype("datetime64[D]") - EPOCH).astype(np.int64)


class Stopwatch:
    """Accumulates the seconds spent inside ``with`` blocks (source reads, reported separately)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


def reads_of(source: Source) -> dict[str, float]:
    """What the calling thread has read from ``source`` so far, for sources that count their reads
    (the Earth Engine source: requests, pixel-bands, estimated EECU-seconds); {} for the others."""
    usage = getattr(source, "usage", None)
    return dict(usage()) if callable(usage) else {}


def reads_since(source: Source, before: dict[str, float]) -> dict[str, float]:
    """The reads of ``source`` since ``before = reads_of(source)`` in this thread."""
    return {k: round(v - before.get(k, 0), 6) for k, v in reads_of(source).items()}


def add_reads(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """The sum of several ``reads_since`` records."""
    total: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            total[k] = round(total.get(k, 0) + v, 6)
    return total


@dataclass
class Optical:
    """NDVI and the cloud flags of a set of images over a window."""

    ndvi: np.ndarray  # (T, y, x) float32, NaN where invalid
    cloudy: np.ndarray  # (T, y, x) bool
    valid: np.ndarray  # (T, y, x) bool

    @property
    def clear(self) -> np.ndarray:
        return self.valid & ~self.cloudy


def read_optical(source: Source, geobox: GeoBox, ids: Sequence[str], mission: str) -> Optical:
    """NDVI and flags for ``ids`` over ``geobox``, read a few images at a time."""
    h, w = geobox.shape
    n = len(ids)
    out = Optical(np.full((n, h, w), np.nan, np.float32), np.zeros((n, h, w), bool), np.zeros((n, h, w), bool))
    for i in range(0, n, CHUNK_IMAGES):
        chunk = list(ids[i:i + CHUNK_IMAGES])
        ds = source.read_optical(geobox, chunk)
        cloudy, valid = cloud_mask(mission, ds["qa"].values)
        v = ndvi(ds["red"].values, ds["nir"].values)
        valid &= np.isfinite(v)
        out.ndvi[i:i + len(chunk)] = np.where(valid, v, np.nan)
        out.cloudy[i:i + len(chunk)] = cloudy & valid
        out.valid[i:i + len(chunk)] = valid
    return out


def read_composites(source: Source, geobox: GeoBox, sar_ids: Sequence[str], sar_days: np.ndarray,
                    target_days: np.ndarray, half_window: int) -> tuple[np.ndarray, np.ndarray]:
    """The VV and VH composites (T, y, x) float32 of ``target_days`` (step 3), streamed: each S1
    image a window needs is read once, a chunk ahead, and its slot freed once no later date needs
    it, so memory holds one window's images and one chunk, not the period's stack. Equal bit for
    bit to ``engine.science.sar.composite`` of the whole stack."""
    h, w = geobox.shape
    sar_days = np.asarray(sar_days, np.int64)
    targets = np.asarray(target_days, np.int64)
    order = np.argsort(targets, kind="stable")
    wanted = [window_members(sar_days, int(t), half_window) for t in targets]
    needed = np.unique(np.concatenate([np.zeros(0, np.int64), *wanted]))
    needed = needed[np.argsort(sar_days[needed], kind="stable")]  # read in time order
    last_use = {int(s): int(i) for i in order for s in wanted[i]}
    out = np.empty((2, len(targets), h, w), np.float32)
    held = np.empty((2, 0, h, w), np.float32)  # VV, VH of the images in use, one slot each
    slot: dict[int, int] = {}
    free: list[int] = []
    cursor = 0
    for i in order:
        while any(int(s) not in slot for s in wanted[i]):
            chunk = [int(s) for s in needed[cursor:cursor + CHUNK_IMAGES]]
            cursor += len(chunk)
            if len(free) < len(chunk):  # grow (rarely: the slots of one window and one chunk)
                free += range(held.shape[1], held.shape[1] + CHUNK_IMAGES)
                held = np.concatenate([held, np.empty((2, CHUNK_IMAGES, h, w), np.float32)], axis=1)
            ds = source.read_sar(geobox, [sar_ids[s] for s in chunk])
            for k, s in enumerate(chunk):
                slot[s] = free.pop()
                held[0, slot[s]], held[1, slot[s]] = ds["vv"].values[k], ds["vh"].values[k]
        members = np.array([slot[int(s)] for s in wanted[i]], np.int64)
        for band in range(2):
            window_mean(held[band], members, out[band, i])
        for s in wanted[i]:
            if last_use[int(s)] == i:
                free.append(slot.pop(int(s)))
    return out[0], out[1]
