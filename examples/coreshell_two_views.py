"""Find the Au core of an Au@Ag particle from two multislice images ([001] and [110]).

The shipped pair ``atomscount/data/coreshell_auag.npz`` holds abTEM multislice
images (PRISM, 4 frozen-phonon configurations per view) of one 555-atom Au@Ag
sphere with an off-centre ellipsoidal Au core, seen along [001] and [110]
(``simulations/make_coreshell_images.py``). This script adds Poisson noise at a dose,
then runs the whole chain on each view: ``find_columns`` and ``fit_columns`` with
their defaults, then ``search_core_shell`` on both fits with the Au/Ag lensing
models, and compares the model with the true particle.

Counts: with ``--counts true`` the search gets each [001] column's true number of
atoms (the counting is done elsewhere); with ``--counts none`` it fits the
particle's shape as well.

Run: python examples/coreshell_two_views.py [--out DIR] [--dose 1e5] [--counts true|none] [--views 2]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import atomscount as ac
from atomscount.columns.model import add_poisson_noise
from atomscount.coreshell import SearchWarning, search_core_shell
from atomscount.coreshell.plot import save_coreshell_figures
from atomscount.library import load_default_lensing
from atomscount.plot import save_fit_figures

AXES = ("001", "110")


def load_pair(path=None) -> dict:
    """The multislice pair: noise-free images, the true sites (per view's image frame) and elements."""
    path = path or resources.files("atomscount") / "data" / "coreshell_auag.npz"
    with np.load(str(path)) as z:
        data = {k: z[k] for k in z.files}
    data["settings"] = json.loads(str(data["settings"]))
    return data


def lensing_models() -> dict:
    """The shipped Au/Ag lensing models of both zone axes (simulations/build_lensing.py)."""
    return {a: load_default_lensing("Au", "Ag", a) for a in AXES}


def fit_view(data, axis, dose, rng):
    """Poisson noise at ``dose`` [e/Å²], then find_columns and fit_columns with their defaults."""
    pixel = float(data["pixel_size_angstrom"])
    noisy = add_poisson_noise(data[f"image_{axis}"].astype(np.float64), dose_e_per_angstrom2=dose,
                              pixel_size_angstrom=pixel, rng=rng)  # fmt: skip
    image = ac.HAADFImage(noisy, pixel, {"normalised": True, "zone_axis": axis})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = ac.find_columns(image)
        fit = ac.fit_columns(image, found, noise="poisson")
    return image, fit


def true_columns(data, axis, fit):
    """Per fitted column, the true atoms under it (within 0.6 Å) and how many are Au."""
    xyz = data[f"positions_{axis}"].astype(np.float64)
    is_au = data["symbols"] == "Au"
    d, idx = cKDTree(fit.positions).query(xyz[:, :2])
    ok = d < 0.6
    counts = np.bincount(idx[ok], minlength=fit.n_columns)
    au = np.bincount(idx[ok], weights=is_au[ok], minlength=fit.n_columns).astype(int)
    return counts, au, int(np.sum(~ok))


def score(model, data, axis0="001"):
    """Sites of the model against the truth (in view 0's frame): right element, matched, core centroid."""
    truth = data[f"positions_{axis0}"].astype(np.float64)
    is_au = data["symbols"] == "Au"
    found = model.atoms.positions.copy()
    # the model's depth is centred on its mid-plane; shift it onto the truth (x, y are the image's already)
    found[:, 2] += np.median(truth[:, 2]) - np.median(found[:, 2])
    for _ in range(3):
        d, idx = cKDTree(truth).query(found)
        found += np.median(truth[idx] - found, axis=0)
    d, idx = cKDTree(truth).query(found)
    matched = d < 1.0
    right = model.is_core == is_au[idx]
    centroid = found[model.is_core].mean(axis=0) if model.is_core.any() else np.full(3, np.nan)
    return {"sites_correct": float(np.mean(right & matched)), "sites_matched": float(np.mean(matched)),
            "n_sites_model": len(found), "n_sites_true": len(truth), "n_au_model": int(model.is_core.sum()),
            "n_au_true": int(is_au.sum()),
            "core_centre_error_angstrom": float(np.linalg.norm(centroid - truth[is_au].mean(axis=0))),
            "true_sites_found": float(len(np.unique(idx[matched])) / len(truth))}  # fmt: skip


def run(data, *, dose=1e5, counts="true", n_views=2, seed=0, out=None, progress=True):
    """The chain on the pair; returns the scores, timings and the model."""
    rng = np.random.default_rng(seed)
    models, notes = lensing_models(), []
    available = [a for a in AXES if f"image_{a}" in data]
    if len(available) < n_views:
        notes.append(f"the shipped pair holds only the {', '.join(available)} view(s): searching {len(available)}")
        n_views = len(available)
    t0 = time.perf_counter()
    fits, report = {}, {"dose_e_per_angstrom2": dose, "counts": counts, "n_views": n_views, "notes": notes}
    for axis in AXES[:n_views]:
        image, fit = fit_view(data, axis, dose, rng)
        n_true, au_true, missed = true_columns(data, axis, fit)
        fits[axis] = (image, fit, n_true, au_true)
        rel = float(np.median(fit.scs_error / fit.scs))
        report[f"columns_{axis}"] = {"fitted": fit.n_columns, "true_atoms_not_under_a_column": missed,
                                     "scs_relative_error_median": rel}  # fmt: skip
        if progress:
            print(f"[{axis}] {fit.n_columns} columns fitted; {missed} true atoms under none", flush=True)
    report["seconds_fitting"] = time.perf_counter() - t0
    views = [(fits[a][1], a) for a in AXES[:n_views]]
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SearchWarning)
        # the [110] beam in the [001] view's frame, as a goniometer would give it (the simulation's rotations)
        beams = [data["rotation_001"] @ data["rotation_110"][2]] if n_views == 2 else None
        model = search_core_shell(views, {a: models[a] for a in AXES[:n_views]}, "Au",
                                  counts=fits["001"][2] if counts == "true" else None, rng=seed,
                                  beam_directions=beams)  # fmt: skip
    report["seconds_search"] = time.perf_counter() - t1
    report["search_warnings"] = [str(w.message) for w in caught if issubclass(w.category, SearchWarning)]
    report.update(score(model, data))
    report["au_count_mae"] = {a: float(np.mean(np.abs(model.core_counts[v] - fits[a][3])))
                              for v, a in enumerate(AXES[:n_views])}  # fmt: skip
    report["chi2_per_view"] = model.chi2.tolist()
    report["converged"] = bool(model.converged)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.to_hdf5(out / "model.h5")
        model.write_xyz(out / "model.xyz")
        save_coreshell_figures(model, out)
        for a in AXES[:n_views]:
            view_dir = out / f"fit_{a}"
            view_dir.mkdir(exist_ok=True)
            save_fit_figures(fits[a][0], fits[a][1], view_dir, dose_e_per_angstrom2=dose)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report, model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("example-coreshell"))
    ap.add_argument("--dose", type=float, default=1e5, help="electrons per Å²")
    ap.add_argument("--counts", choices=["true", "none"], default="true")
    ap.add_argument("--views", type=int, choices=[1, 2], default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    report, model = run(load_pair(), dose=args.dose, counts=args.counts, n_views=args.views, seed=args.seed,
                        out=args.out)  # fmt: skip
    print(repr(model))
    print(f"sites with the right element: {report['sites_correct']:.3f} ({report['n_au_model']} Au found, "
          f"{report['n_au_true']} true); core centre off by {report['core_centre_error_angstrom']:.2f} Å; "
          f"search {report['seconds_search']:.1f} s")  # fmt: skip
    for note in report["notes"] + report["search_warnings"]:
        print(f"  note: {note}")
    print(f"figures and model in {args.out}")


if __name__ == "__main__":
    main()
