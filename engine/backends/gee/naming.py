"""Deterministic names: asset folders and ids, export descriptions, ``requestId``s.

Layout (``projects/<project>/assets/`` + ...)::

    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/                  run folder
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/models/<tile id>   the 9-band model of a tile
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/outputs_<tile id>  the tile's outputs image
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/images_<tile id>   the tile's per-image table
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/mosaic_outputs     EXPORT_MOSAIC

(the last three with EXPORT_DESTINATION=asset; ``outputs_<i>_<tile id>`` / ``mosaic_outputs_<i>``
when the band limit splits the outputs image, ``tiling.ee_layout``). That is
``tiling.plan.RUN_FOLDERS`` (4) folders plus ``RunContext.ee_exports_per_tile`` assets per tile
(the model only with Cloud Storage or Drive), the count ``TilePlan.assets`` checks against the
quota.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from tiling.limits import REQUEST_ID_MAX_CHARS

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
STAGE_CODES = {"train": "tr", "outputs": "ou", "images": "im", "mosaic": "mo"}
_PART = re.compile(r"outputs_(\d+)")


def stage_code(stage: str) -> str:
    """Short code of a stage in ``requestId``s: ``tr``, ``ou``, ``o2`` (part 2 of a split outputs image), ..."""
    part = _PART.fullmatch(stage)
    if part:
        return f"o{part.group(1)}"
    return STAGE_CODES.get(stage, safe(stage)[:4])


def safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "run"


@dataclass(frozen=True)
class Names:
    project: str
    asset_root: str
    title: str
    run_name: str

    @classmethod
    def for_run(cls, project: str, asset_root: str, title: str, run_dir: Path) -> Names:
        return cls(project, asset_root.strip("/"), safe(title), safe(Path(run_dir).resolve().name))

    @property
    def assets(self) -> str:
        return f"projects/{self.project}/assets"

    @property
    def folders(self) -> list[str]:
        """The run's folders, parents first."""
        parts = [*self.asset_root.split("/"), self.title, self.run_name]
        out = []
        for i in range(1, len(parts) + 1):
            out.append(f"{self.assets}/{'/'.join(parts[:i])}")
        return out + [f"{out[-1]}/models"]

    @property
    def run_folder(self) -> str:
        return self.folders[-2]

    @property
    def models_folder(self) -> str:
        return self.folders[-1]

    def model(self, tile_id: str) -> str:
        return f"{self.models_folder}/{safe(tile_id)}"

    def output(self, output: str, tile_id: str) -> str:
        return f"{self.run_folder}/{output}_{safe(tile_id)}"

    def mosaic(self, output: str) -> str:
        return f"{self.run_folder}/mosaic_{output}"

    def file_prefix(self, output: str, tile_id: str) -> str:
        """Cloud Storage object prefix / Drive file name stem."""
        return f"{self.title}/{self.run_name}/{output}/{tile_id}"

    def drive_name(self, output: str, tile_id: str) -> str:
        return f"{self.run_name}_{output}_{tile_id}"


def request_id(tile_id: str, stage: str, science_hash: str, attempt: int, variant: str = "",
               destination: str = "") -> str:
    """``requestId`` of an export: a pure function of tile, stage, config hash, attempt, ``variant``
    (what else decides the export's content: for stage B the reduction and the outputs layout, since
    ``EXPORT_PCA`` / ``EXPORT_INPUT`` change the outputs image without changing the science hash) and
    ``destination`` (where it goes: Earth Engine deduplicates requestIds per project, so a second run
    of the same science into another folder or bucket must not be answered with the first's export).

    Resubmitting after a lost answer reuses it (the server returns the same operation); a new
    attempt after a failed task, or an export of other content or to another place, gets a new one.
    At most 60 characters.
    """
    key = f"{tile_id}|{stage}|{science_hash}" + (f"|{variant}" if variant else "") + (
        f"|{destination}" if destination else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    rid = f"sarinfill-{science_hash[:10]}-{stage_code(stage)}-{digest}-a{attempt}"
    assert len(rid) <= REQUEST_ID_MAX_CHARS, rid
    return rid


def description(stage: str, tile_id: str) -> str:
    """Task description shown in the Earth Engine task list (<= 100 chars)."""
    return safe(f"sarinfill_{stage}_{tile_id}")[:100]
