"""Benchmark of atom counting: accuracy against known truth, the counting limit, and speed.

Accuracy
    Three Au nanoparticles built with ASE and viewed along [001]: a cuboctahedron,
    a truncated octahedron and a rod lying across the beam (a wide range of
    thicknesses). Their images are the column approximation from the shipped Au
    [001] abTEM library (each column a Gaussian of the library SCS for its count)
    with Poisson noise at 1e3, 1e4 and 1e5 e/Å². The columns are fitted
    (Poisson ML, started from the true positions) and counted by ICL (judged and
    aligned with the library), by library matching and by the hybrid. The bundled
    abTEM particle image (``atomscount demo``) is counted the same way.

    The limit is the best any counting can do at that dose (De Backer et al. 2015):
    each column's SCS scatters with its Cramér-Rao bound about the library value,
    and the count is right when the value falls nearer its own library SCS than a
    neighbour's, ``P = Phi(d+/2s) + Phi(d-/2s) - 1`` with ``d±`` the library
    increments. ``limit_exact_*`` is its mean over the columns.

Misleading ICL
    Two cases where the global ICL minimum is not the physical answer: a small
    particle (157 columns, 1-7 atoms) at 3e3 e/Å² and a thin rod (300 columns,
    16 thicknesses between 2 and 25 atoms, some absent) at 1e4 e/Å².
    Reported: the G of the global minimum, the G chosen, and the exact fractions.

Speed
    GMM + ICL for G = 1..60 on 10,000 SCS values, against a plain loop over
    ``sklearn.mixture.GaussianMixture(covariance_type="tied", n_init=<same starts>)``
    (scikit-learn's default tolerance; installed in the benchmark environment only).

Usage: python benchmarks/bench_counting.py --out FILE.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.cluster import Octahedron
from scipy.spatial import cKDTree
from scipy.stats import norm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PeakRSS  # noqa: E402

from atomscount import HAADFImage, crlb, fit_columns  # noqa: E402
from atomscount.columns.model import ColumnModel, add_poisson_noise  # noqa: E402
from atomscount.counting import count_atoms, fit_mixtures, select_components  # noqa: E402
from atomscount.io import atomic_path  # noqa: E402
from atomscount.library import load_default  # noqa: E402

PIXEL = 0.2
WIDTH = 0.45
BACKGROUND = 0.005
METHODS = ("icl", "library", "hybrid")


def rod(radius, length):
    """An Au rod along x, circular cross-section in y-z: thickness along the beam varies with y."""
    a = bulk("Au", "fcc", cubic=True)
    reps = (int(np.ceil(length / a.cell[0, 0])), int(np.ceil(2 * radius / a.cell[1, 1])) + 1,
            int(np.ceil(2 * radius / a.cell[2, 2])) + 1)  # fmt: skip
    atoms = a * reps
    c = atoms.positions.mean(axis=0)
    keep = np.hypot(atoms.positions[:, 1] - c[1], atoms.positions[:, 2] - c[2]) <= radius
    return atoms[keep]


def projected_columns(atoms, tol=0.3):
    key = np.round(atoms.positions[:, :2] / tol).astype(np.int64)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    centres = np.zeros((len(counts), 2))
    np.add.at(centres, inv, atoms.positions[:, :2])
    return centres / counts[:, None], counts


def particles(quick):
    if quick:
        return {"cuboctahedron": Octahedron("Au", 21, cutoff=10),
                "truncated_octahedron": Octahedron("Au", 25, cutoff=8), "rod": rod(30.0, 16.0)}  # fmt: skip
    return {"cuboctahedron": Octahedron("Au", 61, cutoff=30), "truncated_octahedron": Octahedron("Au", 55, cutoff=18),
            "rod": rod(80.0, 30.0)}  # fmt: skip


def column_image(centres, counts, library, dose, seed):
    """The column approximation of a particle's HAADF image, with Poisson noise."""
    margin = 4.0
    pos = centres - centres.min(axis=0) + margin
    shape = tuple(int(np.ceil((pos[:, i].max() + margin) / PIXEL)) for i in (1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counts beyond the library use its fitted curve
        scs = library.scs_at(counts, extrapolate=True)
    model = ColumnModel(shape, PIXEL, pos, scs / (2 * np.pi * WIDTH**2), WIDTH, background=(BACKGROUND,))
    noisy = add_poisson_noise(model.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=PIXEL, rng=seed)
    return HAADFImage(noisy, PIXEL), model


def counting_limit(counts, sigma, library):
    n_max = int(counts.max()) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = np.concatenate([[0.0], library.scs_at(np.arange(1, n_max + 1), extrapolate=True)])
    up = table[counts + 1] - table[counts]
    down = table[counts] - table[counts - 1]
    p = norm.cdf(up / (2 * sigma)) + norm.cdf(down / (2 * sigma)) - 1
    return float(np.mean(p))


def score(result, truth):
    c = result.counts
    return {"exact": float(np.mean(c == truth)), "within_one": float(np.mean(np.abs(c - truth) <= 1)),
            "total_atom_error": int(result.total_atoms - truth.sum()),
            "n_components": int(result.n_components)}  # fmt: skip


def count_all(scs, errors, library, truth, max_components):
    out = {}
    for method in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = count_atoms(scs, method=method, library=library, scs_errors=errors,
                              max_components=max_components, rng=0)  # fmt: skip
        out[method] = score(res, truth)
    return out


def accuracy(library, quick):
    doses = {"1e3": 1e3, "1e4": 1e4, "1e5": 1e5}
    report = {}
    for name, atoms in particles(quick).items():
        centres, counts = projected_columns(atoms)
        report[name] = {"n_columns": int(len(counts)), "n_atoms": int(counts.sum()),
                        "count_range": [int(counts.min()), int(counts.max())]}  # fmt: skip
        for key, dose in doses.items():
            image, model = column_image(centres, counts, library, dose, seed=int(dose) + len(counts))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_columns(image, model.positions, noise="poisson", progress=False)
            _, idx = cKDTree(model.positions).query(fit.positions)
            truth = counts[idx]
            bound = crlb(model, dose_e_per_angstrom2=dose).scs[idx]
            g_max = min(int(counts.max()) + 10, 60)
            entry = count_all(fit.scs, fit.scs_error, library, truth, g_max)
            entry["limit_exact"] = counting_limit(truth, bound, library)
            entry["fitted_columns"] = int(fit.n_columns)
            report[name][key] = entry
            print(f"{name:22s} {key}: limit {entry['limit_exact']:.3f} " +
                  " ".join(f"{m} {entry[m]['exact']:.3f}" for m in METHODS), flush=True)  # fmt: skip
    summary = {}
    for key in doses:
        weights = np.array([report[p]["n_columns"] for p in report])
        for m in METHODS:
            vals = np.array([report[p][key][m]["exact"] for p in report])
            summary[f"{m}_exact_{key}"] = float(np.sum(weights * vals) / weights.sum())
        vals = np.array([report[p][key]["limit_exact"] for p in report])
        summary[f"limit_exact_{key}"] = float(np.sum(weights * vals) / weights.sum())
    return summary, report


def misleading(library, quick):
    """Cases where the global ICL minimum misleads: a small particle and a wide thickness range."""
    cases = {"small_particle_157_columns": (Octahedron("Au", 11, cutoff=4), 3e3),
             "rod_wide_range_300_columns": (rod(50.0, 12.0), 1e4)}  # fmt: skip
    out = {}
    for name, (atoms, dose) in cases.items():
        centres, counts = projected_columns(atoms)
        image, model = column_image(centres, counts, library, dose, seed=7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_columns(image, model.positions, noise="poisson", progress=False)
            _, idx = cKDTree(model.positions).query(fit.positions)
            truth = counts[idx]
            res = count_atoms(fit.scs, method="icl", library=library, scs_errors=fit.scs_error,
                              max_components=min(50, len(truth) // 3), rng=0)  # fmt: skip
            g_global = int(np.argmin(res.icl)) + 1
            forced = count_atoms(fit.scs, method="icl", library=library, scs_errors=fit.scs_error,
                                 max_components=min(50, len(truth) // 3), n_components=g_global, rng=0)  # fmt: skip
        out[name] = {"n_columns": int(len(truth)), "dose": dose, "true_distinct_counts": int(len(np.unique(truth))),
                     "g_global_icl": g_global, "g_chosen": int(res.n_components),
                     "exact_global_icl": float(np.mean(forced.counts == truth)),
                     "exact_chosen": float(np.mean(res.counts == truth)), "notes": list(res.notes)}  # fmt: skip
        print(f"{name}: global G {g_global} ({out[name]['exact_global_icl']:.3f} exact), chosen G "
              f"{res.n_components} ({out[name]['exact_chosen']:.3f} exact)", flush=True)  # fmt: skip
    return out


def speed(library, quick, n_starts=6):
    n, g_max = (2000, 20) if quick else (10000, 60)
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 41, n)
    sd = 0.15 * float(np.mean(np.diff(library.scs)))
    x = library.scs_at(truth) + rng.normal(0, sd, n)
    fit_mixtures(x[:200], max_components=3)  # compile outside the timing
    t0 = time.perf_counter()
    scan = fit_mixtures(x, max_components=g_max, n_starts=n_starts, rng=0)
    select_components(scan, scs_errors=np.full(n, sd))
    ours = time.perf_counter() - t0
    out = {"n_values": n, "g_max": g_max, "n_starts": n_starts, "gmm_icl_seconds": ours,
           "icl_global_minimum": int(np.argmin(scan.icl)) + 1}  # fmt: skip
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        out.update(sklearn_seconds=None, speedup_vs_sklearn=None, note="scikit-learn is not installed")
        return out
    t0 = time.perf_counter()
    sk_ll = []
    for g in range(1, g_max + 1):
        gm = GaussianMixture(n_components=g, covariance_type="tied", n_init=n_starts, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(x[:, None])
        sk_ll.append(gm.score(x[:, None]) * n)
    sk = time.perf_counter() - t0
    out.update(sklearn_seconds=sk, speedup_vs_sklearn=sk / ours,
               loglik_gain_over_sklearn_mean=float(np.mean(scan.loglik - np.array(sk_ll))),
               loglik_gain_over_sklearn_min=float(np.min(scan.loglik - np.array(sk_ll))))  # fmt: skip
    return out


def abtem_image():
    from atomscount import find_columns, read_image
    from atomscount.demo import demo_paths

    paths = demo_paths()
    image = read_image(paths["image"])
    truth = np.load(paths["truth"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_columns(image, find_columns(image, min_distance_angstrom=1.5, threshold=0.05), noise="poisson")
    d, idx = cKDTree(truth["positions"]).query(fit.positions)
    true_counts = truth["counts"][idx]
    out = count_all(fit.scs, fit.scs_error, load_default("Au", "001"), true_counts, 20)
    out["n_columns"] = int(fit.n_columns)
    out["n_true_columns"] = int(len(truth["counts"]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="small particles and G <= 20 (a few minutes)")
    args = ap.parse_args(argv)
    library = load_default("Au", "001")
    t_start = time.perf_counter()
    with PeakRSS() as mem:
        summary, details = accuracy(library, args.quick)
        mis = misleading(library, args.quick)
        spd = speed(library, args.quick)
        ab = abtem_image()
    result = {
        **summary,
        "abtem_image_exact": ab["hybrid"]["exact"],
        "abtem_image": ab,
        "gmm_icl_seconds": spd["gmm_icl_seconds"],
        "speedup_vs_sklearn": spd["speedup_vs_sklearn"],
        "speed": spd,
        "misleading_icl": mis,
        "particles": details,
        "peak_memory_mb": mem.mb,
        "total_seconds": time.perf_counter() - t_start,
        "quick": args.quick,
        "settings": {"pixel_angstrom": PIXEL, "column_width_angstrom": WIDTH, "background": BACKGROUND,
                     "library": "Au [001] shipped"},  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
