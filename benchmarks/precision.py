"""Where the engine keeps float64, and what float32 would cost there, measured on a real tile.

    python -m benchmarks.precision [--size 256] [--start 2019-01-01] [--end 2021-01-01]

Arrays are float32 throughout (inputs, composites, covariates, predictions, the cube); a few steps
accumulate or solve in float64. For each of them this computes the step once more in float32 (plain
numpy, the same arithmetic) on one synthetic Landsat 8 tile near Canberra and prints how far the
result moves, next to the size that matters there (the NDVI noise of an observation is ~0.01-0.02,
Sentinel-1 speckle ~1 dB). Nothing is timed; the figures do not depend on the machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from odc.geo.geobox import GeoBox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backends.local.inputs import read_composites, read_optical, to_days  # noqa: E402
from engine.science import sar  # noqa: E402
from engine.science.neighbourhood import box_mean  # noqa: E402
from engine.science.pca import n_components, pca_basis, pca_smooth  # noqa: E402
from engine.science.regression import predict, robust_fit  # noqa: E402
from engine.sources.synthetic import SyntheticSource  # noqa: E402

F32 = np.float32
ORIGIN = (690000.0, 6090000.0)  # EPSG:32755, near Canberra: the tile's lower-left corner


def box_mean_f32(a: np.ndarray, radius: int) -> np.ndarray:
    """The 21 x 21 NaN-aware box mean with float32 integral images (the engine sums in float64)."""
    ok = np.isfinite(a)
    t, h, w = a.shape
    s = np.zeros((t, h + 1, w + 1), F32)
    n = np.zeros((t, h + 1, w + 1), np.int64)
    s[:, 1:, 1:] = np.cumsum(np.cumsum(np.where(ok, a, 0).astype(F32), axis=1, dtype=F32), axis=2, dtype=F32)
    n[:, 1:, 1:] = np.cumsum(np.cumsum(ok, axis=1), axis=2)
    y0, y1 = np.clip(np.arange(h) - radius, 0, h), np.clip(np.arange(h) + radius + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - radius, 0, w), np.clip(np.arange(w) + radius + 1, 0, w)

    def window(c: np.ndarray) -> np.ndarray:
        return c[:, y1][:, :, x1] - c[:, y0][:, :, x1] - c[:, y1][:, :, x0] + c[:, y0][:, :, x0]

    total, count = window(s), window(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count.astype(F32), np.nan).astype(F32)


def ols(x: np.ndarray, y: np.ndarray, w: np.ndarray, dtype: type) -> np.ndarray:
    """Least squares by the normal equations in ``dtype`` over the dates ``w`` (0/1) of each pixel:
    (P, T, 9), (P, T), (P, T) -> coefficients (P, 9)."""
    x, y, w = x.astype(dtype), np.where(w, y, 0).astype(dtype), w.astype(dtype)
    g = np.einsum("pti,pt,ptj->pij", x, w, x)
    return np.linalg.solve(g, np.einsum("pti,pt,pt->pi", x, w, y)[..., None])[..., 0]


def row(step: str, kept: str, change: str, scale: str) -> None:
    print(f"| {step} | {kept} | {change} | {scale} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="tile side in pixels (30 m)")
    ap.add_argument("--start", default="2019-01-01")
    ap.add_argument("--end", default="2021-01-01")
    a = ap.parse_args(argv)
    n = a.size + 24  # a tile with its 12 px halo
    x0, y0 = ORIGIN
    gbox = GeoBox.from_bbox((x0, y0, x0 + 30 * n, y0 + 30 * n), crs="EPSG:32755", resolution=30)
    src = SyntheticSource(0, missions=["L8"])
    opt_cat = src.optical_catalog(gbox, "L8", a.start, a.end)
    sar_cat = src.sar_catalog(gbox, np.datetime64(a.start) - 12, np.datetime64(a.end) + 12)
    days, sar_days = to_days(opt_cat["time"]), to_days(sar_cat["time"])
    opt = read_optical(src, gbox, list(opt_cat["id"]), "L8")
    vv, vh = read_composites(src, gbox, list(sar_cat["id"]), sar_days, days, 12)
    t = len(days)
    print(f"tile: {n} x {n} px (30 m, {a.size} px and its halo), L8 {a.start} to {a.end}: {t} dates, "
          f"{len(sar_cat)} S1 images\n")
    print("| step | kept in float64 | the step in float32 moves it by | against |\n|---|---|---|---|")

    # Step 3: the composite, a per-pixel mean of the window's S1 images.
    members = [sar.window_members(sar_days, int(d), 12) for d in days]
    stack = src.read_sar(gbox, list(sar_cat["id"]))["vv"].values
    comp32 = np.empty_like(vv)
    for i, m in enumerate(members):
        v = np.where(stack[m] > sar.NOISE_FLOOR_DB, stack[m], np.nan)
        with np.errstate(invalid="ignore"):
            comp32[i] = np.nansum(v, axis=0, dtype=F32) / np.isfinite(v).sum(axis=0).astype(F32)
    d = np.abs(comp32 - vv)[np.isfinite(vv)]
    row("S1 composite (mean of up to 5 dB values)", "the running sum", f"at most {d.max():.1e} dB",
        "speckle ~1 dB: float32 would do; the sum is a row of scalars")

    # Step 4: the 21 x 21 box mean from cumulative sums (differences of large sums cancel).
    ref = box_mean(vv, 10)
    d = np.abs(box_mean_f32(vv, 10) - ref)[np.isfinite(ref)]
    row("21 x 21 neighbourhood mean (cumulative sums)", "column and row sums",
        f"up to {d.max():.1e} dB (99th percentile {np.percentile(d, 99):.1e})",
        "speckle ~1 dB: float32 would do; the sums of a strip of rows (two buffers of ~55 rows x the tile width)")

    # Steps 6-7: the regression. The engine's IRLS solves in float64; the normal equations of
    # plain least squares on the same covariates in float32 show what float32 would do to it.
    cov = sar.covariates(vv, vh, np.nanmean(vv, axis=(1, 2)), np.nanmean(vh, axis=(1, 2)))
    core = (slice(12, -12), slice(12, -12))
    c = cov[:, :, core[0], core[1]].reshape(8, t, -1)
    y = opt.ndvi[:, core[0], core[1]].reshape(t, -1)
    train = opt.clear[:, core[0], core[1]].reshape(t, -1)
    rng = np.random.default_rng(0)
    usable = train & np.isfinite(y) & np.isfinite(c).all(axis=0)
    good = np.flatnonzero(np.isfinite(c).all(axis=(0, 1)) & (usable.sum(axis=0) >= 20))
    pick = rng.choice(good, size=min(2000, good.size), replace=False)
    xs = np.concatenate([np.ones((pick.size, t, 1)), c[:, :, pick].transpose(2, 1, 0)], axis=2)
    ys, ws = y[:, pick].T, usable[:, pick].T
    m = (xs * ws[..., None]).sum(axis=1, keepdims=True) / ws.sum(axis=1)[:, None, None]
    sd = np.sqrt((((xs - m) ** 2) * ws[..., None]).sum(axis=1, keepdims=True) / ws.sum(axis=1)[:, None, None])
    xs_std = (xs - m) / np.where(sd > 0, sd, 1)
    xs_std[:, :, 0] = 1.0
    conds = np.linalg.cond(np.einsum("pti,pt,ptj->pij", xs_std, ws.astype(float), xs_std))
    b64, b32 = ols(xs, ys, ws, np.float64), ols(xs, ys, ws, F32)
    p64, p32 = np.einsum("pti,pi->pt", xs, b64), np.einsum("pti,pi->pt", xs, b32.astype(np.float64))
    d = np.abs(p32 - p64)
    row("per-pixel regression (9 x 9 normal equations; here plain least squares)", "the Gram matrix and its solve",
        f"predictions by up to {np.nanmax(d):.2f} NDVI (median {np.nanmedian(d):.1e}; {np.mean(d > 0.01):.0%} of "
        f"pixel-dates over 0.01); condition number of the standardised Gram: median {np.median(conds):.1e}, "
        f"max {conds.max():.1e}", "observation noise ~0.01-0.02 NDVI: float32 breaks it (the columns are "
        "collinear by construction, algorithm.md step 4)")

    # Step 7: the prediction, a 9-term dot product per pixel-date.
    coef = robust_fit(c, y, train)
    pred = predict(c, coef)
    p32 = coef[0][None, :] + np.einsum("kp,ktp->tp", coef[1:], c, dtype=F32)
    d = np.abs(p32 - pred)[np.isfinite(pred)]
    row("prediction (9-term dot product)", "the accumulator (a register)", f"at most {d.max():.1e} NDVI",
        "float32 would do; the float64 register costs nothing in the loop")

    # Step 8: the PCA basis from the sample's covariance.
    sample = pred.T[np.isfinite(pred).all(axis=0)]
    basis = pca_basis(sample, 0.2)
    xf = sample.astype(F32)
    anom = xf - xf.mean(axis=0, dtype=F32)
    vals, vecs = np.linalg.eigh((anom.T @ anom) / F32(len(xf) - 1))
    k = n_components(t, 0.2)
    comps = vecs[:, np.argsort(vals)[::-1][:k]]
    sm32 = (comps @ (comps.T @ anom.T)).T + xf.mean(axis=0, dtype=F32)
    sm64 = pca_smooth(sample.T, basis).T
    d = np.abs(sm32 - sm64)
    row(f"PCA smoothing ({k} of {t} components)", "the covariance, eigh and the projection",
        f"at most {d.max():.1e} NDVI", "float32 would do; float64 blocks of 16,384 rows cost nothing next to a tile")

    # Skill: the running sums of squared errors over every scored point of an AOI.
    err = rng.normal(0.0, 0.05, 10_000_000).astype(F32)
    sq = err.astype(np.float64) ** 2
    run32 = np.cumsum((err * err).astype(F32), dtype=F32)[-1]  # a running float32 sum, as a kernel adds
    rel = abs(float(run32) - sq.sum()) / sq.sum()
    row("held-out skill sums (10 M points, a running sum)", "the sums", f"RMSE by {rel / 2:.1%} (relative)",
        "skill is reported to 3-4 digits: float32 running sums drift with the count")
    print("\nEvery stack the engine holds or writes (dates x pixels) is float32 (the mask uint8); float64 appears "
          "only in the accumulators and solves above, per-pixel buffers and one date plane at a time (calibration).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
