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


def run_demo(out_dir, *, progress: bool = True) -> dict:
    """Detect and fit the demo image, write results and figures to ``out_dir``.

    Returns a plain-type summary that includes the comparison with the true SCS.
    """
    from .columns import find_columns, fit_columns
    from .columns.fit import save_fit
    from .io import atomic_path, read_image
    from .plot import save_fit_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = demo_paths()
    image = read_image(paths["image"])
    truth = np.load(paths["truth"])
    positions = find_columns(image, min_distance_angstrom=1.5, threshold=0.1)
    fit = fit_columns(image, positions, noise="poisson", progress=progress)
    files = save_fit(fit, out)
    files.update(save_fit_figures(image, fit, out))
    d, idx = cKDTree(truth["positions"]).query(fit.positions)
    matched = d < 0.5
    rel = (fit.scs[matched] - truth["scs"][idx[matched]]) / truth["scs"][idx[matched]]
    summary = {
        "image": str(paths["image"]),
        "n_true_columns": int(len(truth["positions"])),
        "n_found_columns": int(fit.n_columns),
        "n_matched": int(matched.sum()),
        "scs_mean_rel_error": float(np.mean(rel)),
        "scs_rms_rel_error": float(np.sqrt(np.mean(rel**2))),
        "position_rms_error_angstrom": float(np.sqrt(np.mean(d[matched] ** 2))),
        "fit": fit.summary(),
        "files": {k: str(v) for k, v in files.items()},
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    summary["files"]["summary"] = str(out / "summary.json")
    return summary
