"""The global reduce on the statistics sample, shared by both backends (steps 8 and 9's statistics).

The sample is the lattice of every ``sample_step``-th grid pixel inside the AOI (origin-anchored,
so it is the same set of pixels whatever the tiling); each backend gathers its rows per tile (the
local backend from its tiles' work files, the gee backend with one ``computePixels`` per tile) and
hands them here, sorted by grid position, so both compute the very same basis and statistics.
"""
from __future__ import annotations

import numpy as np

from engine.run.stages import GlobalStats, Reduction
from engine.run.context import RunContext
from engine.errors import DataError
from engine.science.calibration import interval_stats
from engine.science.pca import pca_basis, pca_smooth


def lattice_offsets(start: int, length: int, step: int) -> tuple[int, int]:
    """(first k, count) of the lattice points ``k * step + step // 2`` in pixels [start, start + length)."""
    k0 = -(-(start - step // 2) // step)
    k1 = (start + length - 1 - step // 2) // step
    return k0, max(k1 - k0 + 1, 0)


def reduce_from_samples(ctx: RunContext, stats: GlobalStats, pred: np.ndarray, obs: np.ndarray,
                        mask: np.ndarray) -> Reduction:
    """PCA basis and calibration statistics from the sample rows (``(pixels, paired dates)`` each).
    A float32 ``pred`` is smoothed in place."""
    p = ctx.params
    if pred.shape[0] < 2:
        raise DataError(f"only {pred.shape[0]} statistics sample pixel(s) have predictions; "
                        "use a larger AOI or a smaller STATS_SCALE")
    basis = None
    smoothed = pred
    if p.PCA_SMOOTH:
        try:
            basis = pca_basis(pred, p.PCA_COMPONENT_RATIO)
        except ValueError as e:
            raise DataError(f"temporal PCA impossible: {e}") from e
        # in place (float32 samples): the raw predictions are not needed after the basis
        smoothed = pca_smooth(pred.T, basis, out=pred.T if pred.dtype == np.float32 else None).T
    calibration = {}
    for i, row in stats.paired.reset_index(drop=True).iterrows():
        if not row["cloud_pct"] < p.STD_CLOUD_THRESHOLD:
            continue
        clear = (mask[:, i] == 0) & np.isfinite(obs[:, i]) & np.isfinite(smoothed[:, i])
        if clear.sum() < 2:
            continue
        calibration[row["id"]] = (interval_stats(smoothed[clear, i]), interval_stats(obs[clear, i]))
    return Reduction(basis=basis, calibration=calibration, sample_pixels=int(pred.shape[0]))
