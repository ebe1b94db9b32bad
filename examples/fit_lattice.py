"""Fit a noisy synthetic lattice and compare the precision with the Cramér–Rao bound.

Run: python examples/fit_lattice.py [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import atomscount as ac
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice
from atomscount.plot import save_fit_figures

ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path, default=Path("example-fit-lattice"))
args = ap.parse_args()

rng = np.random.default_rng(1)
shape, pixel, dose = (256, 256), 0.1, 5e4
positions = square_lattice(shape, pixel, 2.0)
n_atoms = rng.integers(1, 30, len(positions))
scs = 0.035 * n_atoms**0.9  # Å², a pure-column thickness series
truth = ColumnModel(shape, pixel, positions, heights=scs / (2 * np.pi * 0.45**2), widths=0.45, background=(0.02,))
image = ac.HAADFImage(add_poisson_noise(truth.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=pixel, rng=2),
                      pixel, {"normalised": True})  # fmt: skip

found = ac.find_columns(image, min_distance_angstrom=1.5, threshold=0.02)
fit = ac.fit_columns(image, found, noise="poisson")
bound = ac.crlb(truth, dose_e_per_angstrom2=dose)

print(fit.report())
dist, idx = cKDTree(positions).query(fit.positions)  # match fitted columns to the truth
print(f"{fit.n_columns} of {len(positions)} columns found, worst match {dist.max():.3f} Å")
z = (fit.scs - scs[idx]) / bound.scs[idx]
print(f"SCS error / CRLB: std {z.std():.3f} (1.0 is the best any unbiased estimator can do)")
args.out.mkdir(parents=True, exist_ok=True)
for name, path in save_fit_figures(image, fit, args.out).items():
    print(f"{name}: {path}")
