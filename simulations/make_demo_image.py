"""Build the bundled demo image ``atomscount/data/demo_particle.tif`` and its truth with abTEM.

A small Au nanoparticle (an ASE octahedron truncated at the corners, 405 atoms) is
viewed along [001]. The HAADF image is a real abTEM multislice run (PRISM, one
frozen-phonon configuration at a time, the microscope settings of the shipped Au
[001] library), then blurred by the source size and given Poisson noise at the
dose in ``demo_image.toml``. The true number of atoms in every projected column
is stored beside the image in ``demo_particle_truth.npz``, together with the
noise-free image and the atom positions.

Each phonon configuration is saved under ``--work`` as it finishes, so an
interrupted run picks up where it stopped.

Run:  python simulations/make_demo_image.py [--settings simulations/demo_image.toml] [--configs 0 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
import tifffile
from ase.cluster import Octahedron
from scipy.ndimage import gaussian_filter

from atomscount.columns.model import add_poisson_noise
from atomscount.io import atomic_path
from atomscount.library import load_default, zone_axis_crystal

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "atomscount" / "data"


def column_counts(atoms, tol=0.3):
    """Project atoms along z and count them per (x, y) column."""
    xy = atoms.positions[:, :2]
    keys = np.round(xy / tol).astype(np.int64)
    uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    centres = np.array([xy[inverse.ravel() == k].mean(axis=0) for k in range(len(uniq))])
    return centres, counts


def particle_in_cell(cfg, layer):
    """The particle centred in a periodic cell with ``margin`` of vacuum; atoms sit mid-slice."""
    atoms = Octahedron(cfg["element"], cfg["octahedron_length"], cutoff=cfg["octahedron_cutoff"])
    atoms.positions -= atoms.positions.min(axis=0)
    margin = cfg["margin_angstrom"]
    ext = atoms.positions.max(axis=0)
    atoms.positions[:, :2] += margin
    atoms.positions[:, 2] += 0.5 * layer  # one atomic layer per slice, atoms in the middle
    n_layers = int(round(ext[2] / layer)) + 1
    atoms.set_cell([ext[0] + 2 * margin, ext[1] + 2 * margin, n_layers * layer])
    atoms.pbc = True
    return atoms


def one_config(atoms, settings, seed, layer, interpolation, step):
    import abtem

    sigmas = {el: settings.rms_for(el) for el in set(atoms.get_chemical_symbols())}
    fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas=sigmas, seed=(int(seed),))
    # gpts divisible by the PRISM interpolation factor, sampling no coarser than the settings'
    gpts = [int(interpolation * np.ceil(length / settings.sampling_angstrom / interpolation))
            for length in atoms.cell.lengths()[:2]]
    potential = abtem.Potential(fp, gpts=gpts, slice_thickness=layer,
                                projection="infinite", parametrization="lobato")  # fmt: skip
    smatrix = abtem.SMatrix(potential=potential, energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad,
                            interpolation=interpolation)  # fmt: skip
    detector = abtem.AnnularDetector(inner=settings.inner_angle_mrad, outer=settings.outer_angle_mrad)
    lx, ly = atoms.cell.lengths()[:2]
    scan = abtem.GridScan(start=(0.0, 0.0), end=(lx, ly), sampling=step, endpoint=False)
    aberrations = dict(settings.aberrations)
    aberrations.update(C10=-settings.defocus_angstrom, C30=settings.cs_angstrom)
    ctf = abtem.CTF(energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad,
                    aberration_coefficients=aberrations)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measurement = smatrix.scan(scan=scan, detectors=detector, ctf=ctf)
        result = measurement.compute(progress_bar=False, scheduler="threads")
    return np.asarray(result.array)  # (nx, ny): first axis is x


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "demo_image.toml")
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "demo")
    ap.add_argument("--configs", type=int, nargs="*", help="run only these configurations (chunks), then stop")
    args = ap.parse_args(argv)
    cfg = tomllib.loads(args.settings.read_text())
    library = load_default(cfg["element"], "001")
    settings = dataclasses.replace(library.microscope(), num_configs=cfg["num_configs"])
    crystal = zone_axis_crystal(cfg["element"], "001")
    layer = crystal.cell.lengths()[2] / len(np.unique(np.round(crystal.positions[:, 2], 3)))
    atoms = particle_in_cell(cfg, layer)
    centres, counts = column_counts(atoms)
    step = cfg["pixel_size_angstrom"]
    seeds = settings.config_seeds()
    args.work.mkdir(parents=True, exist_ok=True)
    todo = range(len(seeds)) if args.configs is None else args.configs
    for k in todo:
        path = args.work / f"config_{k:02d}.npy"
        if path.exists():
            continue
        t0 = time.perf_counter()
        arr = one_config(atoms, settings, seeds[k], layer, cfg["prism_interpolation"], step)
        np.save(path, arr)
        print(f"configuration {k}: {arr.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    done = sorted(args.work.glob("config_*.npy"))
    if len(done) < len(seeds):
        print(f"{len(done)} of {len(seeds)} configurations done; run again to finish")
        return
    clean = np.mean([np.load(p) for p in done], axis=0).T  # rows = y, columns = x
    sigma_px = cfg["source_size_angstrom"] / step
    if sigma_px > 0:
        clean = gaussian_filter(clean, sigma_px, mode="wrap")
    noisy = add_poisson_noise(clean, dose_e_per_angstrom2=cfg["dose_e_per_angstrom2"], pixel_size_angstrom=step,
                              rng=cfg["seed"])  # fmt: skip
    positions = centres  # the scan starts at the cell origin: pixel (r, c) sits at (c, r) * step
    meta = {"pixel_size_angstrom": step, "normalised": True, "source": "simulations/make_demo_image.py",
            "microscope": settings.to_dict(), **cfg}  # fmt: skip
    DATA.mkdir(exist_ok=True)
    with atomic_path(DATA / "demo_particle.tif") as tmp:
        tifffile.imwrite(tmp, noisy.astype(np.float32), resolution=(1e8 / step, 1e8 / step),
                         resolutionunit="CENTIMETER", description=json.dumps(meta))  # fmt: skip
    with atomic_path(DATA / "demo_particle_truth.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, positions=positions, counts=counts, clean=clean.astype(np.float32),
                                atom_positions=atoms.positions, cell=np.asarray(atoms.cell),
                                scs_library=library.scs_at(counts))  # fmt: skip
    print(f"wrote {len(counts)} columns ({counts.sum()} atoms), image {noisy.shape} to {DATA}")


if __name__ == "__main__":
    main()
