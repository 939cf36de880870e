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
    """All tiles' sample rows, ordered by grid position (row, col) so the order is tiling-free: the
    keys first, then each tile's rows straight into their sorted places (no concatenated copy)."""
    paths = [rd.work_dir(tile.id) / "sample.npz" for tile in tiles]
    keys = []
    for path in paths:
        with np.load(path) as z:
            keys.append(z["key"])
    key = np.concatenate(keys) if keys else np.zeros((0, 2), np.int64)
    order = np.lexsort((key[:, 1], key[:, 0]))
    where = np.empty_like(order)
    where[order] = np.arange(order.size)  # row i of the concatenation goes to where[i]
    data: dict[str, np.ndarray] = {"key": key[order]}
    start = 0
    for path, k in zip(paths, keys, strict=True):
        rows = where[start:start + len(k)]
        start += len(k)
        with np.load(path) as z:
            for name in ("pred", "obs", "mask"):
                part = z[name]
                if name not in data:
                    data[name] = np.empty((order.size, *part.shape[1:]), part.dtype)
                data[name][rows] = part
    for name, dtype in (("pred", np.float32), ("obs", np.float32), ("mask", np.uint8)):
        data.setdefault(name, np.zeros((0, 0), dtype))  # no tile trained: the reduce says so
    return data


def reduce_samples(ctx: RunContext, stats: GlobalStats, tiles: Sequence[Tile]) -> Reduction:
    data = _load_samples(RunDir(ctx.run_dir), tiles)
    return reduce_from_samples(ctx, stats, data["pred"], data["obs"], data["mask"])
