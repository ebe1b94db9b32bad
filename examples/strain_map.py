"""Map strain, rotation and polar displacements of a simulated perovskite, against the known truth.

A 14 x 14-cell SrTiO3-like lattice (Sr columns and fainter Ti columns) is stretched by 1 % along x
right of its middle, and its Ti columns sit 8 pm off the centre of their Sr cell, to the right in
the left half and to the left in the right half (two polar domains). The image has Poisson noise;
the columns are fitted, the reference lattice is fitted to the left third, and the maps come with
their errors.

Run: python examples/strain_map.py [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np

import atomscount as ac
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.lattice import polarisation_map, strain_map
from atomscount.lattice.plot import save_strain_figures

ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path, default=Path("example-strain-map"))
args = ap.parse_args()

a, pixel, dose, cells = 3.905, 0.2, 2e4, 14
ij = np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) * a + 2.5
middle = 2.5 + a * cells / 2
stretch = lambda p: p + np.column_stack([0.01 * np.maximum(p[:, 0] - middle, 0.0), np.zeros(len(p))])  # noqa: E731
sr = stretch(ij)
ti = stretch(ij + a / 2) + np.where(ij[:, :1] + a / 2 < middle, [0.08, 0.0], [-0.08, 0.0])
positions = np.vstack([sr, ti])
types = ["Sr"] * len(sr) + ["Ti"] * len(ti)
side = int(np.ceil((cells * a + 2.5) / pixel))
truth = ColumnModel((side, side), pixel, positions, heights=np.r_[np.full(len(sr), 0.30), np.full(len(ti), 0.12)],
                    widths=np.r_[np.full(len(sr), 0.45), np.full(len(ti), 0.40)], background=(0.01,),
                    types=np.r_[np.zeros(len(sr), int), np.ones(len(ti), int)])  # fmt: skip
data = add_poisson_noise(truth.image(), dose_e_per_angstrom2=dose, pixel_size_angstrom=pixel, rng=3)
image = ac.HAADFImage(data, pixel, normalised=True)

fit = ac.fit_columns(image, positions, types=types, noise="poisson")
strain = strain_map(fit, reference_region=(0, middle - a, 0, side * pixel))
print(strain.report())
right = strain.valid & (fit.positions[:, 0] > middle + 2 * a) & (fit.types == 0)
print(f"eps_xx right of the middle (Sr): {100 * np.mean(strain.eps_xx[right]):.2f} % (truth 1 %), "
      f"a column's error {100 * np.median(strain.eps_xx_error[right]):.2f} %")  # fmt: skip
polar = polarisation_map(fit, "Sr", "Ti")
for name, sign, side_of in (("left", "+", polar.positions[:, 0] < middle - a),
                            ("right", "-", polar.positions[:, 0] > middle + a)):  # fmt: skip
    v = polar.vectors[side_of & polar.valid]
    print(f"Ti displacement, {name} domain: {100 * v[:, 0].mean():+.1f} pm along x (truth {sign}8)")
args.out.mkdir(parents=True, exist_ok=True)
for name, path in save_strain_figures(strain, args.out, image=image, polarisation=polar).items():
    print(f"{name}: {path}")
