"""Reading a window's inputs from a source and turning them into the algorithm's arrays."""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from odc.geo.geobox import GeoBox

from engine.science.optical import observe
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


def iter_optical(source: Source, geobox: GeoBox, ids: Sequence[str], mission: str, with_ndvi: bool = True,
                 out: Optical | None = None) -> Iterator[tuple[slice, Optical]]:
    """NDVI and flags for ``ids`` over ``geobox``, read ``CHUNK_IMAGES`` at a time: ``(which ids,
    their Optical)``, written into ``out``'s rows when given (``with_ndvi=False``: the flags only,
    ``ndvi`` empty)."""
    h, w = geobox.shape
    for i in range(0, len(ids), CHUNK_IMAGES):
        part = slice(i, i + len(ids[i:i + CHUNK_IMAGES]))
        n = part.stop - part.start
        ds = source.read_optical(geobox, list(ids[part]))
        opt = (Optical(out.ndvi[part] if with_ndvi else out.ndvi[:0], out.cloudy[part], out.valid[part]) if out is not None
               else Optical(np.empty((n if with_ndvi else 0, h, w), np.float32), np.empty((n, h, w), bool),
                            np.empty((n, h, w), bool)))
        observe(mission, ds["red"].values, ds["nir"].values, ds["qa"].values, opt.ndvi if with_ndvi else None,
                opt.cloudy, opt.valid)
        yield part, opt


def read_optical(source: Source, geobox: GeoBox, ids: Sequence[str], mission: str) -> Optical:
    """NDVI and flags for ``ids`` over ``geobox`` (``iter_optical``)."""
    n = len(ids)
    out = Optical(*(np.empty((n, *geobox.shape), t) for t in (np.float32, bool, bool)))
    for _ in iter_optical(source, geobox, ids, mission, out=out):
        pass
    return out


def iter_composites(source: Source, geobox: GeoBox, sar_ids: Sequence[str], sar_days: np.ndarray,
                    target_days: np.ndarray, half_window: int,
                    out: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The VV and VH composites (y, x) float32 of ``target_days`` (step 3), as ``(index, vv, vh)`` in
    time order, streamed: each S1 image a window needs is read once, a chunk ahead, and dropped
    once no later date needs it, so memory holds one window's images and one chunk, not the
    period's stack. The planes are ``out[:, index]`` of a ``(2, T, y, x)`` float32 ``out`` when
    given, else reused (use them before the next). Equal bit for bit to
    ``engine.science.sar.composite`` of the whole stack."""
    h, w = geobox.shape
    sar_days = np.asarray(sar_days, np.int64)
    targets = np.asarray(target_days, np.int64)
    order = np.argsort(targets, kind="stable")
    wanted = [window_members(sar_days, int(t), half_window) for t in targets]
    needed = np.unique(np.concatenate([np.zeros(0, np.int64), *wanted]))
    needed = needed[np.argsort(sar_days[needed], kind="stable")]  # read in time order
    last_use = {int(s): int(i) for i in order for s in wanted[i]}
    held: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # image -> its VV and VH planes (views of a read)
    planes = np.empty((2, h, w), np.float32) if out is None else None
    cursor = 0
    for i in order:
        while any(int(s) not in held for s in wanted[i]):
            chunk = [int(s) for s in needed[cursor:cursor + CHUNK_IMAGES]]
            cursor += len(chunk)
            ds = source.read_sar(geobox, [sar_ids[s] for s in chunk])
            vv, vh = (np.ascontiguousarray(ds[b].values, np.float32) for b in ("vv", "vh"))
            held.update({s: (vv[k], vh[k]) for k, s in enumerate(chunk)})
        dest = out[:, i] if out is not None else planes
        for band in range(2):
            window_mean([held[int(s)][band] for s in wanted[i]], dest[band])
        yield int(i), dest[0], dest[1]
        for s in wanted[i]:
            if last_use[int(s)] == i:
                del held[int(s)]


def read_composites(source: Source, geobox: GeoBox, sar_ids: Sequence[str], sar_days: np.ndarray,
                    target_days: np.ndarray, half_window: int) -> tuple[np.ndarray, np.ndarray]:
    """The VV and VH composites (T, y, x) float32 of ``target_days`` (``iter_composites``)."""
    out = np.empty((2, len(target_days), *geobox.shape), np.float32)
    for _ in iter_composites(source, geobox, sar_ids, sar_days, target_days, half_window, out=out):
        pass
    return out[0], out[1]
