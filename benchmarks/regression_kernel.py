"""Benchmark of the per-pixel robust regression kernel (engine.science.regression).

Usage::

    source .venv/bin/activate
    python benchmarks/regression_kernel.py                 # T=46, P=1e6
    python benchmarks/regression_kernel.py --pixels 200000 --repeat 3

Synthetic but realistic inputs: 8 SAR covariates built the way algorithm.md step 3 builds them
(``*_mean`` is one number per date, ``*_diff = composite - mean`` exactly, ``*_Nmean`` a smooth
per-pixel neighbourhood level, ``*_Ndiff = composite - Nmean``), NDVI a per-pixel linear
function of the composites plus noise and ~3 % gross outliers, and ~30 % of observations masked
(cloud / test dates). Prints single-thread Mpx/s (the acceptance figure: >= 0.5 Mpx/s per core
at T = 46) and, for comparison, the rate of a plain-numpy IRLS formulation on a subset.
No assertions on time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402

from engine.science import regression as reg  # noqa: E402


def synthetic(T: int, P: int, seed: int = 0, masked: float = 0.3):
    rng = np.random.default_rng(seed)
    tt = np.linspace(0, 2 * np.pi, T)
    vv_mean = (-12 + 1.5 * np.sin(tt) + 0.3 * rng.standard_normal(T)).astype(np.float32)
    vh_mean = (-19 + 2.0 * np.sin(tt + 0.5) + 0.3 * rng.standard_normal(T)).astype(np.float32)
    cov = np.empty((8, T, P), dtype=np.float32)
    y = np.empty((T, P), dtype=np.float32)
    train = np.empty((T, P), dtype=bool)
    step = 100_000
    for p0 in range(0, P, step):
        p1 = min(P, p0 + step)
        n = p1 - p0
        off_vv = 2.0 * rng.standard_normal(n)
        off_vh = 2.0 * rng.standard_normal(n)
        vv = vv_mean[:, None] + off_vv + 1.0 * rng.standard_normal((T, n))
        vh = vh_mean[:, None] + off_vh + 1.2 * rng.standard_normal((T, n))
        vv_n = vv_mean[:, None] + off_vv + 0.3 * rng.standard_normal((T, n))
        vh_n = vh_mean[:, None] + off_vh + 0.3 * rng.standard_normal((T, n))
        vv = vv.astype(np.float32)
        vh = vh.astype(np.float32)
        cov[0, :, p0:p1] = vv_mean[:, None]
        cov[1, :, p0:p1] = vh_mean[:, None]
        cov[2, :, p0:p1] = vv - vv_mean[:, None]
        cov[3, :, p0:p1] = vh - vh_mean[:, None]
        cov[4, :, p0:p1] = vv_n
        cov[5, :, p0:p1] = vh_n
        cov[6, :, p0:p1] = vv - vv_n
        cov[7, :, p0:p1] = vh - vh_n
        a = 0.5 + 0.1 * rng.standard_normal(n)
        bvv = 0.02 + 0.01 * rng.standard_normal(n)
        bvh = 0.03 + 0.01 * rng.standard_normal(n)
        ndvi = a + bvv * (vv + 12) + bvh * (vh + 19) + 0.03 * rng.standard_normal((T, n))
        out = rng.random((T, n)) < 0.03
        ndvi[out] -= 0.4 * rng.random(out.sum())  # clouds slipping through the mask
        y[:, p0:p1] = ndvi
        train[:, p0:p1] = rng.random((T, n)) >= masked
    return cov, y, train


def numpy_reference(cov, y, train, c=reg.TALWAR_C, max_iter=reg.MAX_ITER, ridge=reg.RIDGE):
    """The same algorithm (same ridge, scale, floor and stopping rule) as a plain, batched numpy
    formulation: einsum Grams, batched np.linalg.solve, np.nanmedian. This is what the numba
    kernel replaces."""
    _, T, P = cov.shape
    X = np.moveaxis(cov.astype(np.float64), 0, -1)  # (T, P, 8)
    Y = y.astype(np.float64)
    U = train & np.isfinite(Y) & np.isfinite(X).all(axis=-1)
    n = U.sum(axis=0)
    first = np.argmax(U, axis=0)
    cols = np.arange(P)
    x0, y0 = X[first, cols], Y[first, cols]
    Z = np.where(U[..., None], X - x0, 0.0)
    yz = np.where(U, Y - y0, 0.0)
    D = np.concatenate([U[..., None].astype(np.float64), Z], axis=-1)  # (T, P, 9)
    nn = np.maximum(n, 1)[:, None]
    mean = Z.sum(axis=0) / nn
    var = np.maximum((Z**2).sum(axis=0) / nn - mean**2, 0.0)
    rms = np.sqrt((Z**2).sum(axis=0) / nn)
    zero = var <= (reg.ZERO_VAR_REL * np.maximum(np.abs(x0), rms)) ** 2
    ym = yz.sum(axis=0) / nn[:, 0]
    ysd = np.sqrt(np.maximum((yz**2).sum(axis=0) / nn[:, 0] - ym**2, 0.0))
    floor = np.maximum(reg.SCALE_FLOOR_REL * (np.abs(ym + y0) + ysd), 1e-300)
    eye = np.eye(9)

    def solve(W):
        A = np.einsum("tpk,tp,tpl->pkl", D, W, D)
        rhs = np.einsum("tpk,tp,tp->pk", D, W, yz)
        diag = np.concatenate([np.zeros((P, 1)), ridge * W.sum(axis=0)[:, None] * var], axis=1)
        A += diag[:, :, None] * eye
        z = np.concatenate([np.zeros((P, 1), bool), zero], axis=1)
        A = np.where(z[:, :, None] | z[:, None, :], eye, A)
        rhs = np.where(z, 0.0, rhs)
        A[n < reg.MIN_OBS] = eye
        return np.linalg.solve(A, rhs[..., None])[..., 0]

    W = U.astype(np.float64)
    b = solve(W)
    active = n >= reg.MIN_OBS
    for _ in range(max_iter):
        r = np.abs(yz - np.einsum("tpk,pk->tp", D, b))
        med = np.nanmedian(np.where(U, r, np.nan), axis=0)
        thr = c * np.maximum(med / 0.6744897501960817, floor)
        new = U & (r <= thr)
        active &= ((new != (W > 0)).any(axis=0)) & (new.sum(axis=0) >= reg.MIN_OBS)
        if not active.any():
            break
        W = np.where(active, new, W > 0).astype(np.float64)
        b = np.where(active[:, None], solve(W), b)
    coef = np.concatenate([(b[:, 0] + y0 - (b[:, 1:] * x0).sum(axis=1))[:, None], b[:, 1:]], axis=1).T
    coef[:, n < reg.MIN_OBS] = np.nan
    return coef


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pixels", type=float, default=1e6)
    ap.add_argument("--dates", type=int, default=46)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-pixels", type=int, default=20000)
    ap.add_argument("--parallel", action="store_true", help="also time the numba-threaded variant")
    args = ap.parse_args(argv)
    P, T = int(args.pixels), args.dates

    t0 = time.perf_counter()
    cov, y, train = synthetic(T, P)
    print(f"data: T={T} P={P:,} masked={1 - train.mean():.1%} (generated in {time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    reg.robust_fit(cov[:, :, :1000], y[:, :1000], train[:, :1000])
    print(f"JIT warm-up (compile or cache load): {time.perf_counter() - t0:.2f} s")

    numba.set_num_threads(1)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        coef = reg.robust_fit(cov, y, train)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"robust_fit serial, 1 thread: best {best:.3f} s of {args.repeat} -> {P / best / 1e6:.3f} Mpx/s per core")
    print(f"  masked pixels: {np.isnan(coef[0]).sum():,}; finite coefficients: {np.isfinite(coef).all(axis=0).sum():,}")

    t0 = time.perf_counter()
    pred = reg.predict(cov, coef)
    dt = time.perf_counter() - t0
    print(f"predict serial: {dt:.3f} s -> {P / dt / 1e6:.2f} Mpx/s per core (T={T})")
    res = np.abs(pred - y)[train]
    print(f"  median |residual| on training obs: {np.nanmedian(res):.4f}")

    if args.parallel:
        nthreads = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(nthreads)
        reg.robust_fit(cov[:, :, :1000], y[:, :1000], train[:, :1000], parallel=True)
        t0 = time.perf_counter()
        coef_p = reg.robust_fit(cov, y, train, parallel=True)
        dt = time.perf_counter() - t0
        same = np.array_equal(coef_p, coef, equal_nan=True)
        print(f"robust_fit parallel, {nthreads} threads: {dt:.3f} s -> {P / dt / 1e6:.3f} Mpx/s (identical to serial: {same})")
        numba.set_num_threads(1)

    n = min(args.ref_pixels, P)
    t0 = time.perf_counter()
    ref = numpy_reference(cov[:, :, :n], y[:, :n], train[:, :n])
    dt = time.perf_counter() - t0
    print(f"plain numpy reference (same algorithm) on {n:,} px: {dt:.2f} s -> {n / dt / 1e6:.4f} Mpx/s")
    pr = reg.predict(cov[:, :, :n], ref.astype(np.float32))
    d = np.abs(pr - pred[:, :n]).max(axis=0)
    print(f"  kernel vs reference predictions: max |diff| <= 1e-4 on {np.mean(d <= 1e-4):.2%} of pixels "
          f"(the rest: Talwar threshold ties / 2-cycles stopped at max_iter)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
