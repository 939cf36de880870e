"""Whether a stage's recorded outputs are intact: what ``resume`` redoes and ``status`` reports."""
from __future__ import annotations

import logging
from typing import Any

from engine.run.cube import digest, read_tile
from engine.io import sha256_file
from engine.run.rundir import RunDir
from tiling.grid import Tile

log = logging.getLogger(__name__)


def verified(rd: RunDir, tile: Tile | None, outputs: dict[str, Any], work: bool = False) -> bool:
    """True when every recorded file product of a stage (or, with ``work``, its work files) and its
    cube arrays match their checksums. Earth Engine assets are not checked here."""
    outputs = {k: v for k, v in outputs.items() if isinstance(v, dict) and bool(v.get("work")) == work}
    cube_names = [name for name, o in outputs.items() if "cube" in o]
    try:
        for out in outputs.values():
            if "path" in out and sha256_file(rd.root / out["path"]) != out["sha256"]:
                return False
        if cube_names and tile is not None:
            window = outputs[cube_names[0]].get("window")  # what the stage computed of the tile
            arrays = read_tile(rd.cube, window if window is not None else tile, cube_names)
            if any(digest(arrays[n]) != outputs[n]["sha256"] for n in cube_names):
                return False
    except Exception as e:  # noqa: BLE001 - missing files, and e.g. a corrupt zarr chunk raises from blosc
        log.info("%s: recorded output unreadable (%s: %s)", tile.id if tile else "run", type(e).__name__, e)
        return False
    return True
