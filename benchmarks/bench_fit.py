"""Benchmark of joint column fitting: speed, memory and precision against the CRLB.

A synthetic image (2048x2048 pixels of 0.1 Å, a square lattice of ~10,000 columns
with 2.0 Å spacing, rho = 0.45 Å) carries a pure-column thickness series of SCS,
``SCS(N) = 0.035 N^0.9`` Å² for N = 1..40 atoms, on a 0.02 background, with
Poisson noise at 5e4 e/Å². It is fitted with shared widths and the Poisson
maximum-likelihood estimator (and, for reference, unweighted least squares).

Baseline, in the same run: on a 512x512 crop, one independent
``scipy.optimize.curve_fit`` per column with its neighbours not modelled (the
Atomap-style approach), on a window of half the column spacing.

Usage: python benchmarks/bench_fit.py --out FILE.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np
from scipy.optimize import curve_fit

import atomscount as ac
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice
from atomscount.io import atomic_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS  # noqa: E402


def make_truth(size, pixel, spacing, rho, rng):
    pos = square_lattice((size, size), pixel, spacing)
    pos = pos + rng.normal(0, 0.02, pos.shape)
    n_atoms = rng.integers(1, 41, len(pos))
    scs = 0.035 * n_atoms**0.9
    return ColumnModel((size, size), pixel, pos, scs / (2 * np.pi * rho**2), rho, background=(0.02,))


def independent_baseline(img, pixel, positions, half_window):
    """One curve_fit per column on its own window, neighbours ignored (Atomap-style)."""

    def g(xy, h, x0, y0, s, c):
        x, y = xy
        return c + h * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * s * s))

    hw = int(round(half_window / pixel))
    scs = np.full(len(positions), np.nan)
    for i, (x0, y0) in enumerate(positions):
        c, r = int(round(x0 / pixel)), int(round(y0 / pixel))
        r0, r1, c0, c1 = max(r - hw, 0), min(r + hw + 1, img.shape[0]), max(c - hw, 0), min(c + hw + 1, img.shape[1])
        patch = img[r0:r1, c0:c1]
        yy, xx = np.mgrid[r0:r1, c0:c1] * pixel
        p0 = (patch.max() - patch.min(), x0, y0, 0.4, patch.min())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, _ = curve_fit(g, (xx.ravel(), yy.ravel()), patch.ravel(), p0=p0, maxfev=2000)
            scs[i] = 2 * np.pi * popt[0] * popt[3] ** 2
        except RuntimeError:
            pass
    return scs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="512x512 image, 256x256 baseline crop")
    args = ap.parse_args(argv)

    size, crop = (512, 256) if args.quick else (2048, 512)
    pixel, spacing, rho, dose = 0.1, 2.0, 0.45, 5e4
    rng = np.random.default_rng(2026)
    truth = make_truth(size, pixel, spacing, rho, rng)
    img = add_poisson_noise(truth.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=pixel, rng=7)
    start = truth.positions + rng.normal(0, 0.05, truth.positions.shape)

    # compile the kernels outside the timed region
    t = time.perf_counter()
    warm = ColumnModel((64, 64), pixel, [[3.2, 3.2]], [0.3], rho, background=(0.02,))
    ac.fit_columns(ac.HAADFImage(add_poisson_noise(warm.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=pixel,
                   rng=0), pixel), warm.positions, noise="poisson")  # fmt: skip
    ac.crlb(warm, dose_e_per_angstrom2=dose)
    compile_s = time.perf_counter() - t

    image = ac.HAADFImage(img, pixel)
    with PeakRSS() as mem:
        t = time.perf_counter()
        fit = ac.fit_columns(image, start, noise="poisson", progress=False)
        fit_s = time.perf_counter() - t
    t = time.perf_counter()
    fit_ls = ac.fit_columns(image, start, noise="gaussian", progress=False, voronoi=False)
    fit_ls_s = time.perf_counter() - t
    t = time.perf_counter()
    bound = ac.crlb(truth, dose_e_per_angstrom2=dose)
    crlb_s = time.perf_counter() - t

    def precision(f):
        rel = (f.scs - truth.scs) / truth.scs
        return {
            "scs_bias": float(np.mean(rel)),
            "scs_rel_rmse": float(np.sqrt(np.mean(rel**2))),
            "scs_precision_over_crlb": float(np.std((f.scs - truth.scs) / bound.scs)),
            "position_precision_over_crlb": float(
                np.sqrt(0.5 * (np.var((f.positions[:, 0] - truth.positions[:, 0]) / bound.x)
                               + np.var((f.positions[:, 1] - truth.positions[:, 1]) / bound.y)))  # fmt: skip
            ),
            "scs_error_over_crlb_median": float(np.median(f.scs_error / bound.scs)),
            "n_converged": int(f.converged.sum()),
        }

    ml = precision(fit)
    ls = precision(fit_ls)
    vor_rel = (fit.voronoi_scs - truth.scs) / truth.scs

    # baseline on a crop, against the joint fit of the same crop
    sub = img[:crop, :crop]
    inside = np.all(truth.positions < (crop - 1) * pixel - 0.5 * spacing, axis=1) & np.all(
        truth.positions > 0.5 * spacing, axis=1
    )
    crop_pos = start[inside]
    t = time.perf_counter()
    base_scs = independent_baseline(sub, pixel, crop_pos, 0.5 * spacing)
    base_s = time.perf_counter() - t
    # the joint fit models every column in the crop, edge ones included
    in_crop = ac.HAADFImage(sub, pixel).contains(start)
    t = time.perf_counter()
    crop_fit = ac.fit_columns(ac.HAADFImage(sub, pixel), start[in_crop], noise="gaussian", progress=False,
                              voronoi=False)  # fmt: skip
    crop_s = time.perf_counter() - t
    base_rel = (base_scs - truth.scs[inside]) / truth.scs[inside]
    crop_rel = (crop_fit.scs[inside[in_crop]] - truth.scs[inside]) / truth.scs[inside]

    n = truth.n_columns
    out = {
        "benchmark": "bench_fit",
        "quick": bool(args.quick),
        "image_shape": [size, size],
        "n_columns": int(n),
        "threads": int(numba.get_num_threads()),
        "cpu_count": os.cpu_count(),
        "dose_e_per_angstrom2": dose,
        "estimator": "poisson maximum likelihood (noise='poisson'), shared width",
        "fit_seconds": fit_s,
        "fit_seconds_least_squares": fit_ls_s,
        "jit_compile_seconds": compile_s,
        "crlb_seconds": crlb_s,
        "peak_memory_mb": mem.mb,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ms_per_column": 1e3 * fit_s / n,
        **ml,
        "least_squares": ls,
        "voronoi_scs_bias": float(np.nanmean(vor_rel)),
        "voronoi_scs_rel_rmse": float(np.sqrt(np.nanmean(vor_rel**2))),
        "baseline": "independent scipy curve_fit per column, neighbours not modelled",
        "baseline_crop": [crop, crop],
        "baseline_n_columns": int(inside.sum()),
        "baseline_ms_per_column": 1e3 * base_s / inside.sum(),
        "joint_ms_per_column_on_crop": 1e3 * crop_s / in_crop.sum(),
        "speedup_vs_independent": (base_s / inside.sum()) / (fit_s / n),
        "speedup_vs_independent_same_crop": (base_s / inside.sum()) / (crop_s / in_crop.sum()),
        "baseline_scs_rel_rmse": float(np.sqrt(np.nanmean(base_rel**2))),
        "baseline_scs_bias": float(np.nanmean(base_rel)),
        "baseline_scs_median_abs_rel_error": float(np.nanmedian(np.abs(base_rel))),
        "baseline_n_failed": int(np.isnan(base_rel).sum()),
        "joint_scs_median_abs_rel_error_on_crop": float(np.median(np.abs(crop_rel))),
        "joint_scs_rel_rmse_on_crop": float(np.sqrt(np.mean(crop_rel**2))),
        "python": sys.version.split()[0],
        "atomscount_version": ac.__version__,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
