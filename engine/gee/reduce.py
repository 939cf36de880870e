"""Global reduce on Earth Engine: PCA basis and calibration statistics from the saved models.

Both are estimated over the statistics sample (the AOI at ``STATS_SCALE``) from the mosaic of
the tiles' model assets, so they do not depend on the tiling. Two ``value:compute`` requests:

1. per-date mean and centred covariance of the predictions (complete pixels only); the
   eigen-decomposition is done here with the same conventions as ``engine.science.pca``;
2. for images with ``CLOUD_PERCENTAGE_AOI < STD_CLOUD_THRESHOLD``: mean and the 5-15 / 85-95
   percentile interval means of the smoothed prediction and the observation on clear pixels.

The results are constants of every tile's stage B (:func:`finish_constants`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from engine.backends.base import GlobalStats, Reduction
from engine.context import RunContext
from engine.errors import DataError
from engine.gee import expressions as X
from engine.gee.api import EEApi
from engine.gee.global_pass import _expect, all_days, donor_day
from engine.science.calibration import CalStats
from engine.science.pca import PCABasis, n_components

log = logging.getLogger(__name__)


def basis_from_covariance(mean: np.ndarray, cov: np.ndarray, ratio: float) -> PCABasis:
    """The PCA basis of ``engine.science.pca.pca_basis`` from a mean and covariance matrix."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    n = mean.shape[0]
    if cov.shape != (n, n) or not np.all(np.isfinite(cov)):
        raise DataError(f"the AOI prediction covariance is unusable (shape {cov.shape} for {n} dates); "
                        "set PCA_SMOOTH to false or use a larger AOI")
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    order = np.argsort(vals, kind="stable")[::-1]
    k = n_components(n, ratio)
    vals = vals[order][:k]
    vecs = vecs[:, order][:, :k]
    lead = np.argmax(np.abs(vecs), axis=0)
    vecs = vecs * np.where(vecs[lead, np.arange(k)] < 0, -1.0, 1.0)
    return PCABasis(mean=mean, components=np.ascontiguousarray(vecs), explained=np.ascontiguousarray(vals))


def reduce_models(ctx: RunContext, api: EEApi, spec: X.Spec, stats: GlobalStats, model_assets: Sequence[str]) -> Reduction:
    p = ctx.params
    paired = stats.paired
    rows = X.image_rows(paired, donor_day(stats))
    ids = [r["id"] for r in rows]
    aoi = X.aoi_geometry(spec)
    step = stats.sample_step
    model = X.models_mosaic(model_assets)
    pred = X.prediction_stack(spec, model, rows, aoi)
    smoothed = pred
    basis = None
    sample = 0
    if p.PCA_SMOOTH:
        ans = _expect(api.compute(X.pca_mean_query(pred, ids, spec, step), "PCA mean"), X.Q_PCA)
        mean_d = ans.get("mean") or {}
        mean = np.array([np.nan if mean_d.get(i) is None else float(mean_d[i]) for i in ids])
        sample = int(ans.get("count") or 0)
        if sample >= 2 and np.all(np.isfinite(mean)):
            ans = _expect(api.compute(X.pca_query(pred, ids, mean, spec, step), "PCA covariance"), X.Q_PCA)
        if sample < 2 or not np.all(np.isfinite(mean)) or ans.get("covariance") is None:
            raise DataError(f"temporal PCA impossible: only {sample} statistics sample pixel(s) have a prediction on "
                            f"all {len(ids)} dates; set PCA_SMOOTH to false or use a larger AOI")
        basis = basis_from_covariance(mean, np.asarray(ans["covariance"], dtype=float), p.PCA_COMPONENT_RATIO)
        smoothed = X.pca_smooth(pred, basis.mean, basis.components)
    calibrated_ids = [r["id"] for r in paired.to_dict("records") if r["cloud_pct"] < p.STD_CLOUD_THRESHOLD]
    calibration: dict[str, tuple[CalStats, CalStats]] = {}
    if calibrated_ids:
        obs, mask = X.observation_stacks(spec, rows, donor_day(stats), aoi)
        ans = _expect(api.compute(X.calibration_query(smoothed, obs, mask, calibrated_ids, spec, step),
                                  "calibration statistics"), X.Q_CALIBRATION)
        st = ans.get("stats") or {}
        for i in calibrated_ids:
            def get(prefix: str, what: str) -> float:
                v = st.get(f"{prefix}_{i}_{what}")
                return float("nan") if v is None else float(v)

            if get("p", "count") < 2 or get("o", "count") < 2:
                continue
            pc = CalStats(get("p", "mean"), get("p", "lower"), get("p", "upper"))
            oc = CalStats(get("o", "mean"), get("o", "lower"), get("o", "upper"))
            if all(np.isfinite([*pc, *oc])):
                calibration[i] = (pc, oc)
            sample = max(sample, int(get("p", "count")))
    log.info("global reduce: %d models, PCA %s, %d of %d images calibrated", len(model_assets),
             "on" if basis is not None else "off", len(calibration), len(ids))
    return Reduction(basis=basis, calibration=calibration, sample_pixels=sample)


def finish_constants(ctx: RunContext, stats: GlobalStats, reduction: Reduction) -> X.Finish:
    """Everything stage B needs as constants: rows, PCA reconstruction, calibration scales."""
    paired = stats.paired
    dday = donor_day(stats)
    rows = X.image_rows(paired, dday)
    p_mean, up, lo, o_mean = [], [], [], []
    for r in rows:
        cal = reduction.calibration.get(r["id"])
        if cal is None:
            p_mean.append(0.0), up.append(1.0), lo.append(1.0), o_mean.append(0.0)
            continue
        ps, os_ = cal
        up_range, lo_range = ps.upper - ps.mean, ps.lower - ps.mean
        p_mean.append(float(ps.mean))
        up.append(float((os_.upper - os_.mean) / up_range) if up_range != 0 else 1.0)
        lo.append(float((os_.lower - os_.mean) / lo_range) if lo_range != 0 else 1.0)
        o_mean.append(float(os_.mean))
    pca_mean = pca_v = None
    if reduction.basis is not None:
        b = reduction.basis
        pca_mean = tuple(float(v) for v in b.mean)
        pca_v = tuple(tuple(float(v) for v in row) for row in b.components)
    table_rows = []
    for _, r in paired.iterrows():
        table_rows.append({"ID": str(r["id"]), "Date": r["time"].strftime("%Y-%m-%d"),
                           "Cloud_cover": round(float(r["cloud_pct"]), 3), "Random": float(r["random"]),
                           "SplitLabel": str(r["split"]), "S1_count": int(r["s1_count"])})
    return X.Finish(rows=tuple(rows), donor_day=dday, pca_mean=pca_mean, pca_components=pca_v,
                    calibration={"p_mean": p_mean, "up": up, "lo": lo, "o_mean": o_mean},
                    all_days=tuple(all_days(stats)), table_rows=tuple(table_rows))
