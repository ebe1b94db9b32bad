"""Count the atoms in a nanoparticle image three ways and build a 3D model from the counts.

A truncated Au octahedron (ASE) is imaged along [001] in the column approximation
of the shipped abTEM library, with Poisson noise. The columns are fitted, counted
with the ICL mixture, the library and the hybrid, and compared with the truth.

Run: python examples/count_particle.py [--out DIR]
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from ase.cluster import Octahedron
from scipy.spatial import cKDTree

import atomscount as ac
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.counting import count_atoms, model_from_counts, write_model
from atomscount.library import load_default
from atomscount.plot import save_count_figures

ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path, default=Path("example-count-particle"))
args = ap.parse_args()

library = load_default("Au", "001")
particle = Octahedron("Au", 17, cutoff=5)
key = np.round(particle.positions[:, :2] / 0.3).astype(int)  # project along the beam
_, column_of, true_counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
centres = np.array([particle.positions[column_of.ravel() == k, :2].mean(axis=0) for k in range(len(true_counts))])
centres += 4.0 - centres.min(axis=0)

pixel, width, dose = 0.2, 0.45, 2e4
shape = tuple(int(np.ceil((centres[:, i].max() + 4.0) / pixel)) for i in (1, 0))
truth = ColumnModel(shape, pixel, centres, library.scs_at(true_counts) / (2 * np.pi * width**2), width,
                    background=(0.005,))  # fmt: skip
image = ac.HAADFImage(add_poisson_noise(truth.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=pixel, rng=3),
                      pixel, {"normalised": True})  # fmt: skip

fit = ac.fit_columns(image, ac.find_columns(image, min_distance_angstrom=1.5, threshold=0.05), noise="poisson")
_, idx = cKDTree(centres).query(fit.positions)
expected = true_counts[idx]
print(f"{fit.n_columns} columns fitted ({len(true_counts)} true), {true_counts.sum()} atoms")
for method in ("icl", "library", "hybrid"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = count_atoms(fit.scs, method=method, library=library, scs_errors=fit.scs_error, mask=fit.converged,
                             rng=0)  # fmt: skip
    print(f"{method:8s} G = {counts.n_components:2d}: {100 * np.mean(counts.counts == expected):5.1f} % exact, "
          f"{counts.total_atoms} atoms; {counts.notes[-1] if counts.notes else ''}")  # fmt: skip

args.out.mkdir(parents=True, exist_ok=True)
model = model_from_counts(fit, counts, "Au", "001")
print(f"3D model: {len(model)} atoms -> {write_model(model, args.out / 'model.xyz')}")
for name, path in save_count_figures(fit, counts, args.out, image=image, model=model).items():
    print(f"{name}: {path}")
