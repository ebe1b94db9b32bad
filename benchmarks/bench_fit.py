"""Benchmark of joint column fitting: speed, memory and precision against the CRLB.

A synthetic image (2048x2048 pixels of 0.1 Å, a square lattice of ~10,000 columns
with 2.0 Å spacing, rho = 0.45 Å) carries a pure-column thickness series of SCS,
``SCS(N) = 0.035 N^0.9`` Å² for N = 1..40 atoms, on a 0.02 background, with
Poisson noise at 5e4 e/Å². It is fitted with shared widths and the Poisson
maximum-likelihood estimator (and, for reference, unweighted least squares).

Baseline, in the same run: on a 512x512 crop, one independent
``scipy.optimize.curve_fit`` per column with its neighbours not modelled (the
Atomap-style approach), on a window of half the column spacing.

Realistic fit (data the package did not make): an Au-like nanorod at 0.34 Å per
pixel (484x473, as an experimental rod image) in raw detector counts, background
2e4, peaks up to about 1.6x background, Poisson noise at those counts. The columns
are Gaussians plus Lorentzian tails, so the model cannot fit exactly. Fitted with
the defaults from positions 0.05 Å off; compared with a run to tol=1e-3.

Detection with defaults (no threshold, no spacing given), against the true
columns: the bundled abTEM Au [001] particle (normalised, and in raw counts on a
2e4 background), and every independent abTEM particle in
``benchmarks/data/*_particle.npz`` (other elements, zone axes and pixel sizes;
made by ``simulations/make_benchmark_images.py``), at 1e5 e/Å² and in raw counts.

Position-error calibration (``position_error_calibration``): the stated position
errors against the scatter of the fitted positions over noise realisations of one
clean image: z-scores on a Gaussian-column lattice under Gaussian noise (the model
exact), and the ratio stated / scatter on the bundled abTEM Au [001] particle and
the independent abTEM particles, under counting noise at 1e4 to 1e7 e/Å², fitted
from the true positions with either noise model. ``chi2_over_noise`` is the reduced
chi-square over the noise's own: the factor by which scaling the covariance by the
reduced chi-square (as before) inflates the variances.

Usage: python benchmarks/bench_fit.py --out FILE.json [--quick] [--only calibration]
(``--only calibration`` runs that part alone and updates its entry in FILE.json)
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


def realistic_rod(rng, pixel=0.34, shape=(484, 473), spacing=2.04, background=2.0e4):
    """Raw-count image of a rod of non-Gaussian columns; returns (image, true positions)."""
    ny, nx = shape
    xs = np.arange(-spacing, nx * pixel + spacing, spacing)
    ys = np.arange(-spacing, ny * pixel + spacing, spacing)
    X, Y = np.meshgrid(xs, ys)
    pos = np.column_stack([X.ravel(), Y.ravel()]) + rng.normal(0, 0.03, (X.size, 2))
    centre = 0.5 * np.array([nx, ny]) * pixel
    ang = np.deg2rad(10.0)
    v = -(pos[:, 0] - centre[0]) * np.sin(ang) + (pos[:, 1] - centre[1]) * np.cos(ang)
    radius = 0.42 * ny * pixel
    keep = np.abs(v) < radius
    pos, v = pos[keep], v[keep]
    thick = np.maximum(1, np.round(40 * np.sqrt(1 - (v / radius) ** 2)))
    rho, gamma = 0.5, 0.35
    eta = 1.0e4 * (thick / 40) ** 0.9
    img = np.full(shape, background)
    half = 12
    for (x0, y0), h in zip(pos, eta, strict=True):
        c, r = int(round(x0 / pixel)), int(round(y0 / pixel))
        r0, r1, c0, c1 = max(r - half, 0), min(r + half + 1, ny), max(c - half, 0), min(c + half + 1, nx)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1] * pixel
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        img[r0:r1, c0:c1] += h * (np.exp(-r2 / (2 * rho**2)) + 0.15 * gamma**2 / (r2 + gamma**2))
    return rng.poisson(img).astype(float), pos


def realistic_fit():
    rng = np.random.default_rng(11)
    img, pos = realistic_rod(rng)
    image = ac.HAADFImage(img, 0.34)
    start = pos[image.contains(pos)] + rng.normal(0, 0.05, (int(image.contains(pos).sum()), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        fit = ac.fit_columns(image, start)
        fit_s = time.perf_counter() - t
        long = ac.fit_columns(image, start, tol=1e-3, max_iter=300)
    return {
        "realistic_n_columns": int(fit.n_columns),
        "realistic_fit_seconds": fit_s,
        "realistic_iterations": int(fit.n_iterations),
        "realistic_unconverged_fraction": float(np.mean(~fit.converged)),
        "realistic_lm_converged": bool(fit.metadata["lm_converged"]),
        "realistic_scs_change_vs_converged": float(np.median(np.abs(fit.scs / long.scs - 1))),
        "realistic_long_run_iterations": int(long.n_iterations),
        "realistic_n_dropped_outside": int(fit.metadata["n_dropped_outside"]),
    }


def _detect_score(image, truth, tol=0.7):
    from scipy.spatial import cKDTree

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = ac.find_columns(image)  # defaults: no threshold, no spacing
    sec = time.perf_counter() - t
    d, _ = cKDTree(found).query(truth)
    d2, _ = cKDTree(truth).query(found)
    return {"recall": float(np.mean(d < tol)), "spurious": float(np.mean(d2 >= tol)), "n_true": len(truth),
            "n_found": len(found), "seconds": sec}  # fmt: skip


def detection(quick):
    from atomscount.demo import demo_paths

    rng = np.random.default_rng(5)
    out = {}
    paths = demo_paths()
    demo = ac.read_image(paths["image"])
    truth = np.load(paths["truth"])
    out["au001_demo"] = _detect_score(demo, truth["positions"])
    if not quick:
        raw = rng.poisson(2.0e4 + 6.0e4 * truth["clean"] / truth["clean"].max()).astype(float)
        out["au001_demo_raw_counts"] = _detect_score(ac.HAADFImage(raw, demo.pixel_size_angstrom), truth["positions"])
        # independent abTEM particles of other elements, zone axes and pixel sizes
        for path in sorted((Path(__file__).resolve().parent / "data").glob("*_particle.npz")):
            d = np.load(path)
            px = float(d["pixel_size_angstrom"])
            name = path.stem.replace("_particle", "")
            normal = add_poisson_noise(np.clip(d["clean"], 0, None), dose_e_per_angstrom2=1e5, pixel_size_angstrom=px,
                                       rng=6)  # fmt: skip
            out[name] = _detect_score(ac.HAADFImage(normal, px), d["positions"])
            raw = rng.poisson(2.0e4 + 4.0e4 * d["clean"] / d["clean"].max()).astype(float)
            out[f"{name}_raw_counts"] = _detect_score(ac.HAADFImage(raw, px), d["positions"])
    recall = float(np.mean([v["recall"] for v in out.values()]))
    spurious = float(np.mean([v["spurious"] for v in out.values()]))
    return {"detect_recall": recall, "detect_spurious": spurious, "detect_cases": out}


def _scatter_ratio(clean, pixel, start, make_noise, repeats, noise):
    """Median over columns and axes of (mean stated error) / (scatter over the noise realisations)."""
    pos, err, chi = [], [], []
    for seed in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ac.fit_columns(ac.HAADFImage(make_noise(clean, seed), pixel), start, noise=noise, voronoi=False,
                                 progress=False)  # fmt: skip
        pos.append(fit.positions)
        err.append(fit.positions_error)
        chi.append(fit.metadata["chi2_over_noise"])
    pos, err = np.array(pos), np.array(err)
    scatter = pos.std(axis=0, ddof=1)
    ok = np.all(np.isfinite(err), axis=0) & (scatter > 0)
    return pos, err, {"stated_over_scatter": float(np.median(err.mean(axis=0)[ok] / scatter[ok])),
                      "median_error_pm": float(1e3 * np.median(err[:, ok])),
                      "median_scatter_pm": float(1e3 * np.median(scatter[ok])),
                      "chi2_over_noise": float(np.median(chi)), "n_columns": int(pos.shape[1])}  # fmt: skip


def position_error_calibration(quick):
    """Stated position errors against the scatter over noise realisations (see the module docstring)."""
    from atomscount.demo import demo_paths

    repeats = 4 if quick else 12
    out = {"repeats": repeats}
    # (a) exact model, Gaussian noise of known sigma: z-scores against the truth
    rng = np.random.default_rng(21)
    pixel, size = 0.1, 128
    pos = square_lattice((size, size), pixel, 2.0)
    pos = pos + rng.normal(0, 0.02, pos.shape)
    truth = ColumnModel((size, size), pixel, pos, rng.uniform(0.1, 0.4, len(pos)), 0.45, background=(0.02,))
    sigma = 0.01
    fitted, err, summary = _scatter_ratio(truth.image(), pixel, truth.positions + 0.03,
                                          lambda img, s: img + np.random.default_rng(s).normal(0, sigma, img.shape),
                                          repeats, "gaussian")  # fmt: skip
    z = (fitted - truth.positions) / err
    out["gaussian_columns_gaussian_noise"] = {"z_std": float(np.std(z)), "z_mean": float(np.mean(z)),
                                              "n_z": int(z.size), **summary}  # fmt: skip
    # (b) abTEM particles under counting noise: stated error / scatter
    data = Path(__file__).resolve().parent / "data"
    particles = {"au001_demo": Path(demo_paths()["truth"])}
    if not quick:
        particles.update({p.stem.replace("_particle", ""): p for p in sorted(data.glob("*_particle.npz"))})
    doses = (1e5, 1e7) if quick else (1e4, 1e5, 1e6, 1e7)
    for name, path in particles.items():
        d = np.load(path)
        px = float(d["pixel_size_angstrom"]) if "pixel_size_angstrom" in d else ac.read_image(
            demo_paths()["image"]).pixel_size_angstrom  # fmt: skip
        clean = np.clip(d["clean"], 0, None).astype(float)
        for dose in doses:
            for noise in ("gaussian", "poisson"):

                def noisy(img, s, dose=dose, px=px):
                    return add_poisson_noise(img, dose_e_per_angstrom2=dose, pixel_size_angstrom=px, rng=100 + s)

                _, _, summary = _scatter_ratio(clean, px, d["positions"], noisy, repeats, noise)
                out[f"{name}_{dose:.0e}_{noise}"] = summary
    ratios = [v["stated_over_scatter"] for k, v in out.items() if isinstance(v, dict) and k != "repeats"]
    out["stated_over_scatter_range"] = [float(min(ratios)), float(max(ratios))]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="512x512 image, 256x256 baseline crop")
    ap.add_argument("--only", choices=["calibration"], help="run this part alone and update its entry in --out")
    args = ap.parse_args(argv)
    if args.only == "calibration":
        out = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "bench_fit"}
        t = time.perf_counter()
        out["position_error_calibration"] = position_error_calibration(args.quick)
        out["position_error_calibration"]["seconds"] = time.perf_counter() - t
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
        print(json.dumps(out["position_error_calibration"], indent=2))
        return

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
                np.sqrt(
                    0.5
                    * (
                        np.var((f.positions[:, 0] - truth.positions[:, 0]) / bound.x)
                        + np.var((f.positions[:, 1] - truth.positions[:, 1]) / bound.y)
                    )
                )  # fmt: skip
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
        **(realistic_fit() if not args.quick else {}),
        **detection(args.quick),
        "position_error_calibration": position_error_calibration(args.quick),
        "python": sys.version.split()[0],
        "atomscount_version": ac.__version__,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
