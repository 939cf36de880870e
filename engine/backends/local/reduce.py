"""Global reduce (between the tile stages): PCA basis and calibration statistics on the sample.

Each trained tile saved the rows of the statistics sample that fall in its core; their union is
the same set of pixels whatever the tiling, so the basis and the statistics are too (rows are
sorted by their grid position before use, so the order does not depend on the tiling either).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.run.stages import GlobalStats, Reduction
from engine.backends.sample_reduce import reduce_from_samples
from engine.run.context import RunContext
from engine.run.rundir import RunDir
from tiling.grid import Tile


def _load_samples(rd: RunDir, tiles: Sequence[Tile]) -> dict[str, np.ndarray]:
    """All tiles' sample rows, ordered by grid position (row, col) so the order is tiling-free."""
    parts: dict[str, list[np.ndarray]] = {"pred": [], "obs": [], "mask": [], "key": []}
    for tile in tiles:
        with np.load(rd.work_dir(tile.id) / "sample.npz") as z:
            for name in parts:
                parts[name].append(z[name])
    data = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.lexsort((data["key"][:, 1], data["key"][:, 0]))
    return {k: v[order] for k, v in data.items()}


def reduce_samples(ctx: RunContext, stats: GlobalStats, tiles: Sequence[Tile]) -> Reduction:
    data = _load_samples(RunDir(ctx.run_dir), tiles)
    return reduce_from_samples(ctx, stats, data["pred"], data["obs"], data["mask"])
