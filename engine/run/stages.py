"""The stage interface both backends implement, and the AOI-wide state passed between stages.

Data flow (../shared/docs/architecture.md)::

    global pass -> per-tile train (A) -> global reduce -> per-tile finish (B) -> merge

``GlobalStats`` is the outcome of the global pass (per-date AOI statistics, pairing, split
labels, the artificial-mask donor); ``Reduction`` is the outcome of the global reduce (PCA basis,
calibration statistics). Both are estimated on one tiling-independent sample, so a tiled run and
an untiled run of the same AOI compute the same science.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from engine.run.context import RunContext
from engine.io import atomic_write_json
from engine.science.calibration import CalStats
from engine.science.pca import PCABasis
from engine.run.ledger import StageLog, StageRecord
from engine.run.rundir import RunDir
from tiling.grid import Tile

if TYPE_CHECKING:
    from engine.run.progress import Progress

IMAGE_COLUMNS = ("id", "time", "day", "cloud_pct", "pixel_count", "s1_count", "vv_mean", "vh_mean",
                 "paired", "random", "split")


@dataclass
class GlobalStats:
    """AOI-wide per-image statistics and decisions, fixed before any tile runs."""

    images: pd.DataFrame  # one row per optical (daily) image, IMAGE_COLUMNS
    sar: pd.DataFrame  # id, time, day of every S1 image used
    donor_id: str | None  # image whose cloud mask hides validation pixels (Mask 2)
    sample_step: int  # statistics sample: every sample_step-th grid pixel
    skill_step: int  # held-out skill: every skill_step-th grid pixel
    notes: list[str] = field(default_factory=list)
    reads: dict[str, float] = field(default_factory=dict)  # what the pass read from a counting source (ee)

    @property
    def paired(self) -> pd.DataFrame:
        """The infilled images: paired with S1 and with enough valid pixels, chronological."""
        return self.images[self.images["paired"]].reset_index(drop=True)

    def to_json(self) -> dict[str, Any]:
        def frame(df: pd.DataFrame) -> list[dict[str, Any]]:
            out = df.copy()
            out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            # Python floats, not DataFrame.to_json (10 significant digits): a resumed run must read back
            # exactly the statistics an uninterrupted run uses, or its outputs differ
            out = out.astype(object).where(out.notna(), None)
            return json.loads(json.dumps(out.to_dict(orient="records")))

        return {"images": frame(self.images), "sar": frame(self.sar), "donor_id": self.donor_id,
                "sample_step": self.sample_step, "skill_step": self.skill_step, "notes": self.notes,
                **({"reads": self.reads} if self.reads else {})}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GlobalStats:
        def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
            df = pd.DataFrame(rows, columns=None if rows else ["id", "time", "day"])
            df["time"] = pd.to_datetime(df["time"], utc=True)
            return df

        images = frame(d["images"])
        images["paired"] = images["paired"].astype(bool)
        return cls(images, frame(d["sar"]), d["donor_id"], d["sample_step"], d["skill_step"], d.get("notes", []),
                   d.get("reads", {}))

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> GlobalStats:
        return cls.from_json(json.loads(path.read_text()))


@dataclass
class Reduction:
    """AOI-wide PCA basis and per-image calibration statistics."""

    basis: PCABasis | None  # None when PCA_SMOOTH is false
    calibration: dict[str, tuple[CalStats, CalStats]]  # image id -> (prediction stats, observation stats)
    sample_pixels: int

    def to_json(self) -> dict[str, Any]:
        basis = None
        if self.basis is not None:
            basis = {"mean": self.basis.mean.tolist(), "components": self.basis.components.tolist(),
                     "explained": self.basis.explained.tolist()}
        cal = {k: [list(p), list(o)] for k, (p, o) in self.calibration.items()}
        return {"basis": basis, "calibration": cal, "sample_pixels": self.sample_pixels}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Reduction:
        basis = None
        if d["basis"] is not None:
            b = d["basis"]
            basis = PCABasis(np.asarray(b["mean"]), np.asarray(b["components"]).reshape(len(b["mean"]), -1),
                             np.asarray(b["explained"]))
        cal = {k: (CalStats(*p), CalStats(*o)) for k, (p, o) in d["calibration"].items()}
        return cls(basis, cal, d["sample_pixels"])

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    def digest(self) -> str:
        """Names this reduction: a stage-B output records the reduction it was made with."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def load(cls, path: Path) -> Reduction:
        return cls.from_json(json.loads(path.read_text()))


@dataclass
class TileOutcome:
    """What a tile stage reports back to the driver (which records it in the ledger)."""

    tile_id: str
    stage: str
    status: str  # done | empty | failed | split
    outputs: dict[str, Any] = field(default_factory=dict)  # name -> {"path"/"asset", "sha256"}
    stats: dict[str, Any] = field(default_factory=dict)  # per-stage figures (sums for AOI-wide metrics)
    message: str | None = None


@dataclass(frozen=True)
class Unit:
    """One tile stage to execute: the tile, the stage (``train``, ``finish`` or one of the executor's
    finish stages) and the tile whose model it uses (itself, or the trained tile it was split from)."""

    tile: Tile
    stage: str
    model_tile: Tile

    @property
    def label(self) -> str:
        """How progress names it: the tile id, plus the stage when a tile has several finish stages."""
        return self.tile.id if self.stage in ("train", "finish") else f"{self.tile.id} {self.stage}"


Report = Callable[[TileOutcome], None]


class Executor(Protocol):
    """A backend's session of one run: everything in which ``local`` and ``gee`` differ. The driver
    (``engine.run.driver``) does the rest, the same for both."""

    #: the stage-B ledger rows of a tile: ``("finish",)`` locally, one per export on Earth Engine
    finish_stages: tuple[str, ...]

    def global_pass(self) -> GlobalStats: ...

    def begin(self, rd: RunDir, log: StageLog, stats: GlobalStats, existing: bool) -> None:
        """Before the tiles: the cube, or the Earth Engine folders (and CLEAR_EXISTING)."""

    def intact(self, unit: Unit, rec: StageRecord, work: bool = False) -> bool:
        """Whether a ``done`` row's products still exist unchanged (checksums | asset properties);
        with ``work``, the work files a later stage reads (local predictions)."""

    def wave(self, units: list[Unit], reduction: Reduction | None, report: Report) -> None:
        """Execute tile stages of one kind (dask | the Earth Engine dispatcher); ``report`` each outcome
        as it ends (status done, empty, failed or split: too big, the driver splits it)."""

    def reduce(self, trained: list[Tile]) -> Reduction: ...

    def merge(self, nodes: dict[str, Node], statuses: dict[str, str], failures: dict[str, str]) -> dict[str, Any]:
        """The backend's products after the tiles (mosaics) and its part of the manifest (``tiles``
        entries, ``products``, ``synthetic``, ``source`` or ``earth_engine``, ``notes``, ``skill``)."""


@dataclass
class Node:
    """A tile of the run: one of the plan, or a child of a tile that was split."""

    tile: Tile
    parent: str | None = None


class Backend(Protocol):
    """One implementation per execution target (``engine.backends.local``, ``engine.backends.gee``)."""

    name: str

    def open(self, ctx: RunContext, progress: Progress, confirm: Callable[[str], bool],
             resuming: bool) -> AbstractContextManager[Executor]:
        """Check what must hold before anything is written (quota, scheduler, credentials) and open
        the session: a dask client, or an Earth Engine session."""
