"""The bundled demo: fit the example particle image and compare with its truth."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["demo_paths", "run_demo"]


def demo_paths() -> dict:
    """Paths of the bundled demo image and its ground truth."""
    base = resources.files("atomscount") / "data"
    return {"image": Path(str(base / "demo_particle.tif")), "truth": Path(str(base / "demo_particle_truth.npz"))}


def run_demo(out_dir, *, progress: bool = True, fmt: str = "png", dpi: float | None = None) -> dict:
    """The whole 2D pipeline on the bundled abTEM particle: fit, count, compare with the truth.

    Detects and fits the columns, counts the atoms with the three methods (ICL
    mixture, library, hybrid) against the shipped Au [001] library, builds a 3D
    starting model from the hybrid counts, and writes results and figures to
    ``out_dir`` (figures as ``fmt``, "png", "pdf" or "svg", at ``dpi`` dots per
    inch, the style's when None). Returns a plain-type summary with the fraction
    of columns counted exactly by each method.
    """
    from .columns import find_columns, fit_columns
    from .columns.fit import save_fit
    from .columns.plot import save_fit_figures
    from .counting import count_atoms, model_from_counts, write_model
    from .counting.plot import save_count_figures
    from .io import atomic_path, read_image
    from .library import load_default

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = demo_paths()
    image = read_image(paths["image"])
    truth = np.load(paths["truth"])
    positions = find_columns(image, progress=progress)  # model-based: no threshold, spacing from the image
    fit = fit_columns(image, positions, noise="poisson", progress=progress)
    files = save_fit(fit, out, image=image)  # fit.h5 keeps the data (as its residual) for figures drawn from it
    files.update(save_fit_figures(image, fit, out, fmt=fmt, dpi=dpi))
    d, idx = cKDTree(truth["positions"]).query(fit.positions)
    matched = d < 0.7
    true_counts = np.where(matched, truth["counts"][idx], 0)
    library = load_default("Au", "001")
    results = {}
    import warnings

    for method in ("icl", "library", "hybrid"):
        with warnings.catch_warnings():  # every warning is also kept in the result's notes
            warnings.simplefilter("ignore")
            # unconverged (spurious) columns are not counted
            results[method] = count_atoms(fit.scs, method=method, library=library, scs_errors=fit.scs_error,
                                          max_components=20, microscope=fit.metadata.get("microscope"),
                                          mask=np.asarray(fit.converged, dtype=bool), rng=0)  # fmt: skip
    best = results["hybrid"]
    best.to_hdf5(out / "counts.h5")
    best.to_csv(out / "counts.csv")
    files.update(counts=out / "counts.h5", counts_csv=out / "counts.csv")
    model = model_from_counts(fit, best, "Au", "001")
    files["model_xyz"] = write_model(model, out / "model.xyz")
    files.update(save_count_figures(fit, results["icl"], out / "icl", image=image, fmt=fmt, dpi=dpi))
    files.update(save_count_figures(fit, best, out, image=image, model=model, fmt=fmt, dpi=dpi))
    summary = {
        "image": str(paths["image"]),
        "n_true_columns": int(len(truth["positions"])),
        "n_found_columns": int(fit.n_columns),
        "n_matched": int(matched.sum()),
        "position_rms_error_angstrom": float(np.sqrt(np.mean(d[matched] ** 2))),
        "true_atoms": int(truth["counts"].sum()),
        "counting": {
            m: {"exact_fraction": float(np.mean(r.counts[matched] == true_counts[matched])),
                "within_one_fraction": float(np.mean(np.abs(r.counts[matched] - true_counts[matched]) <= 1)),
                "total_atoms": int(r.total_atoms), "n_components": int(r.n_components),
                "library_scale": r.library_scale, "notes": list(r.notes)}
            for m, r in results.items()
        },  # fmt: skip
        "model_atoms": len(model),
        "fit": fit.summary(),
        "files": {k: str(v) for k, v in files.items()},
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    summary["files"]["summary"] = str(out / "summary.json")
    return summary
