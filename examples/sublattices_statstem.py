"""Sort a perovskite's columns into sublattices, find the columns detection missed, and trade files with StatSTEM.

A 10 x 10-cell SrTiO3-like image (bright Sr columns on the cell's corners, fainter Ti columns at its
centre) with Poisson noise. Six columns are left out of the detected set; find_sublattices finds the
lattice, sorts every column by its place in the cell (the cell doubled because every second column is
brighter), tests the places the lattice predicts against the image, and fits one width per sublattice.
The fit is written as a StatSTEM .mat file and read back unchanged.

Run: python examples/sublattices_statstem.py [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import atomscount as ac
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.lattice import find_sublattices, read_statstem, write_statstem

ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path, default=Path("example-sublattices"))
args = ap.parse_args()
args.out.mkdir(parents=True, exist_ok=True)

a, pixel, cells = 3.905, 0.2, 10
ij = np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2).astype(float)
sr, ti = ij * a + 2.0, (ij + 0.5) * a + 2.0
positions = np.vstack([sr, ti])
is_ti = np.r_[np.zeros(len(sr), bool), np.ones(len(ti), bool)]
side = int(np.ceil((cells * a + 2.0) / pixel))
truth = ColumnModel((side, side), pixel, positions, heights=np.where(is_ti, 0.12, 0.30),
                    widths=np.where(is_ti, 0.40, 0.45), background=(0.01,))  # fmt: skip
data = add_poisson_noise(truth.image(), dose_e_per_angstrom2=2e4, pixel_size_angstrom=pixel, rng=1)
image = ac.HAADFImage(data, pixel, normalised=True)

rng = np.random.default_rng(1)
missed = rng.choice(np.flatnonzero(image.contains(positions, margin_angstrom=-3.0)), 6, replace=False)
start = np.delete(positions, missed, axis=0) + rng.normal(0, 0.05, (len(positions) - 6, 2))

sub = find_sublattices(start, image=image)
print(sub)
print(sub.basis)
_, nearest = cKDTree(positions).query(sub.positions)
right = np.mean(sub.labels == is_ti[nearest].astype(int))
print(f"columns on the right sublattice: {right:.3f}; missed columns found again: {int(sub.added.sum())} of 6")
print("widths per sublattice [Å]:", {k: round(v, 3) for k, v in sub.fit.summary()["widths_by_type"].items()},
      "(truth 0.45 and 0.40)")  # fmt: skip

path = args.out / "sublattices_statstem.mat"
write_statstem(sub.fit, path, image=image)
back = read_statstem(path)
same = all(np.array_equal(getattr(back.fit, name), getattr(sub.fit, name), equal_nan=True)
           for name in ("positions", "positions_error", "widths", "heights", "scs", "scs_error", "types"))  # fmt: skip
print(f"{path}: {back}; read back unchanged: {same}")
