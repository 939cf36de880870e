"""Which pixels of a window are the AOI's, the origin-anchored lattices sampled from them, and the
held-out skill of a tile scored on its lattice: shared by both backends (the gee backend scores the
products it downloads with the same code, on the same pixels, as the local backend)."""
from __future__ import annotations

import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from engine.run.stages import GlobalStats
from engine.science.skill import SkillAccumulator, gap_length, linear_interp_baseline, whittaker_baseline
from tiling.grid import Window


def inside_mask(geobox: GeoBox, aoi: BaseGeometry) -> np.ndarray:
    """Pixels whose centre lies inside the AOI (the engine's one definition of 'in the AOI')."""
    x = geobox.coords["x"].values
    y = geobox.coords["y"].values
    xx, yy = np.meshgrid(x, y)
    shapely.prepare(aoi)
    return shapely.contains_xy(aoi, xx, yy)


def lattice(tile_window: tuple[int, int, int, int], step: int) -> np.ndarray:
    """Boolean (h, w): pixels of the window on the origin-anchored lattice of ``step``."""
    col, row, w, h = tile_window
    cols = (np.arange(col, col + w) % step) == step // 2
    rows = (np.arange(row, row + h) % step) == step // 2
    return rows[:, None] & cols[None, :]


def skill_pixels(window: Window, stats: GlobalStats, inside: np.ndarray) -> np.ndarray:
    """(h, w) the window's pixels held-out skill is scored on: the AOI's on the skill lattice."""
    return lattice(window, stats.skill_step) & inside


def _baselines(obs: np.ndarray, usable: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gap lengths and the two baselines of (T, P) series, computed and returned pixel-major (each
    pixel's series contiguous, read cache-friendly; the pixels of a tile's skill lattice arrive so)."""
    obs_f, usable_f = np.asfortranarray(obs), np.asfortranarray(usable)
    return gap_length(usable_f, days), linear_interp_baseline(obs_f, usable_f, days), whittaker_baseline(
        obs_f, usable_f, days)


def score(obs: np.ndarray, mask: np.ndarray, pred: np.ndarray, filled: np.ndarray, labels: np.ndarray,
          days: np.ndarray, truth: np.ndarray | None) -> dict[str, dict]:
    """Held-out skill of the SAR prediction next to optical-only baselines, on (T, P) pixel series.

    ``validation``: validation images on ``Mask == 2`` pixels; ``testing``: testing images on clear
    pixels. The baselines see only clear observations of non-testing images, the same pixels the
    model could learn from. ``truth`` (synthetic source): the filled product and the baselines
    (from every clear observation) against the true NDVI on truly cloudy pixels.
    """
    testing = (labels == "Testing")[:, None]
    usable = (mask == 0) & np.isfinite(obs) & ~testing
    gl, lin, whit = _baselines(obs, usable, days)
    out = {}
    targets = {
        "validation": (labels == "Validation")[:, None] & (mask == 2) & np.isfinite(obs),
        "testing": testing & (mask == 0) & np.isfinite(obs),
    }
    for name, where in targets.items():
        acc = SkillAccumulator()
        for method, values in (("sar", pred), ("linear", lin), ("whittaker", whit)):
            acc.add(method, values, obs, gl, where & np.isfinite(pred) & np.isfinite(lin) & np.isfinite(whit))
        out[name] = acc.to_dict()
    if truth is not None:
        clear_all = (mask == 0) & np.isfinite(obs)
        gl_t, lin_t, whit_t = _baselines(obs, clear_all, days)
        where = np.isin(mask, (1, 3)) & np.isfinite(truth) & np.isfinite(filled) & np.isfinite(lin_t) & np.isfinite(whit_t)
        acc = SkillAccumulator()
        for method, values in (("sar", filled), ("linear", lin_t), ("whittaker", whit_t)):
            acc.add(method, values, truth, gl_t, where)
        out["truth"] = acc.to_dict()
    return out


__all__ = ["inside_mask", "lattice", "skill_pixels", "score"]
