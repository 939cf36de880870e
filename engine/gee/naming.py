"""Deterministic names: asset folders and ids, export descriptions, ``requestId``s.

Layout (``projects/<project>/assets/`` + ...)::

    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/                 run folder
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/models/<tile id>  the 9-band model of a tile
    <EE_ASSET_ROOT>/<PROJECT_TITLE>/<run name>/<output>_<tile id>  outputs (EXPORT_DESTINATION=asset)

That is ``tiling.plan.RUN_FOLDERS`` (4) folders plus one asset per tile and output, the count
``TilePlan.assets`` checks against the quota.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from tiling.limits import REQUEST_ID_MAX_CHARS

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
STAGE_CODES = {"train": "tr", "filled": "fi", "mask": "ma", "prediction": "pr", "observation": "ob",
               "gaps": "ga", "images": "im", "sar": "sa", "smoothed": "sm", "mosaic": "mo"}


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


def request_id(tile_id: str, stage: str, science_hash: str, attempt: int) -> str:
    """``requestId`` of an export: a pure function of tile, stage, config hash and attempt.

    Resubmitting after a lost answer reuses it (the server returns the same operation); a new
    attempt after a failed task gets a new one. At most 60 characters.
    """
    digest = hashlib.sha256(f"{tile_id}|{stage}|{science_hash}".encode()).hexdigest()[:20]
    rid = f"sarinfill-{science_hash[:10]}-{STAGE_CODES.get(stage, safe(stage)[:4])}-{digest}-a{attempt}"
    assert len(rid) <= REQUEST_ID_MAX_CHARS, rid
    return rid


def description(stage: str, tile_id: str) -> str:
    """Task description shown in the Earth Engine task list (<= 100 chars)."""
    return safe(f"sarinfill_{stage}_{tile_id}")[:100]
