"""Build the bundled demo image ``atomscount/data/demo_particle.tif`` and its truth.

A small Au nanoparticle (an ASE octahedron truncated at the corners) is viewed
along [001]. Each projected column gets an SCS from a smooth thickness curve,
``SCS(N) = s1 * N**p`` with the values in ``demo_image.toml``, a Gaussian of width
rho, a small background and Poisson noise at the given dose.

This is the package's own column-model generator, not a multislice simulation;
the abTEM-simulated particle replaces it when the simulation library lands.

Run:  python simulations/make_demo_image.py [--settings simulations/demo_image.toml]
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np
import tifffile
from ase.cluster import Octahedron

from atomscount.columns.model import ColumnModel, add_poisson_noise

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "atomscount" / "data"


def column_counts(atoms, tol=0.3):
    """Project atoms along z and count them per (x, y) column."""
    xy = atoms.positions[:, :2]
    keys = np.round(xy / tol).astype(np.int64)
    uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    centres = np.array([xy[inverse.ravel() == k].mean(axis=0) for k in range(len(uniq))])
    return centres, counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "demo_image.toml")
    args = ap.parse_args(argv)
    cfg = tomllib.loads(args.settings.read_text())
    atoms = Octahedron(cfg["element"], cfg["octahedron_length"], cutoff=cfg["octahedron_cutoff"])
    centres, counts = column_counts(atoms)
    p = cfg["pixel_size_angstrom"]
    shape = (cfg["size_pixels"], cfg["size_pixels"])
    offset = np.array([(shape[1] - 1) * p / 2, (shape[0] - 1) * p / 2]) - centres.mean(axis=0)
    positions = centres + offset
    scs = cfg["scs_single_atom_angstrom2"] * counts ** cfg["scs_exponent"]
    rho = cfg["width_angstrom"]
    heights = scs / (2 * np.pi * rho**2)
    model = ColumnModel(shape, p, positions, heights, rho, background=(cfg["background"],))
    noisy = add_poisson_noise(model.image(), dose_e_per_angstrom2=cfg["dose_e_per_angstrom2"],
                              pixel_size_angstrom=p, rng=cfg["seed"])  # fmt: skip
    DATA.mkdir(exist_ok=True)
    meta = {"pixel_size_angstrom": p, "normalised": True, "source": "simulations/make_demo_image.py", **cfg}
    # resolution in pixels per cm: 1 cm = 1e8 Å
    tifffile.imwrite(DATA / "demo_particle.tif", noisy.astype(np.float32), resolution=(1e8 / p, 1e8 / p),
                     resolutionunit="CENTIMETER", description=json.dumps(meta))  # fmt: skip
    np.savez_compressed(DATA / "demo_particle_truth.npz", positions=positions, counts=counts, scs=scs,
                        widths=np.full(len(scs), rho), background=np.array([cfg["background"]]))  # fmt: skip
    print(f"wrote {len(counts)} columns ({counts.sum()} atoms) to {DATA}")


if __name__ == "__main__":
    main()
