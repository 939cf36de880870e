"""Global reduce (between the tile stages): PCA basis and calibration statistics on the sample.

Each trained tile saved the rows of the statistics sample that fall in its core; their union is
the same set of pixels whatever the tiling, so the basis and the statistics are too (rows are
sorted by their grid position before use, so the order does not depend on the tiling either).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.backends.base import GlobalStats, Reduction
from engine.context import RunContext
from engine.errors import DataError
from engine.rundir import RunDir
from engine.science.calibration import interval_stats
from engine.science.pca import pca_basis, pca_smooth
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
    p = ctx.params
    rd = RunDir(ctx.run_dir)
    data = _load_samples(rd, tiles)
    pred, obs, mask = data["pred"], data["obs"], data["mask"]
    if pred.shape[0] < 2:
        raise DataError(f"only {pred.shape[0]} statistics sample pixel(s) have predictions; "
                        "use a larger AOI or a smaller STATS_SCALE")
    basis = None
    smoothed = pred
    if p.PCA_SMOOTH:
        try:
            basis = pca_basis(pred, p.PCA_COMPONENT_RATIO)
        except ValueError as e:
            raise DataError(f"temporal PCA impossible: {e}; set PCA_SMOOTH to false or use a larger AOI") from e
        smoothed = pca_smooth(pred.T, basis).T
    paired = stats.paired
    calibration = {}
    for i, row in paired.iterrows():
        if not row["cloud_pct"] < p.STD_CLOUD_THRESHOLD:
            continue
        clear = (mask[:, i] == 0) & np.isfinite(obs[:, i]) & np.isfinite(smoothed[:, i])
        if clear.sum() < 2:
            continue
        calibration[row["id"]] = (interval_stats(smoothed[clear, i]), interval_stats(obs[clear, i]))
    return Reduction(basis=basis, calibration=calibration, sample_pixels=int(pred.shape[0]))
