"""Build the benchmark image ``benchmarks/data/<el><axis>_particle.npz`` with abTEM.

Independent data for benchmarking column detection, fitting and counting: another
element, zone axis and pixel size than the bundled demo (Au [001], 0.2 Å/px,
1-8 atoms per column). A particle (in ``benchmark_images.toml``: Cu, 1-12 atoms
per column) is cut from an fcc crystal viewed along [110] in the shape of a dome:
a flat face where the beam enters and a paraboloidal top,
``z < H (1 - r**2 / R**2)``. Its columns then hold from 1 atom at the rim to
``max_atoms`` in the middle, and since the column area grows with ``r**2`` the
counts are spread about evenly over that range. Every column starts at the
entrance surface, as in the library simulations.

The HAADF image is a real abTEM multislice run (PRISM ``SMatrix``, one
frozen-phonon configuration at a time, one atomic layer per slice with the atoms
mid-slice, the microscope of the shipped library of that element and zone axis,
with the sampling and number of configurations of ``benchmark_images.toml``),
blurred by the source size. It is stored noise-free: benchmarks add their own noise.

Each phonon configuration is saved under ``--work`` as it finishes, so an
interrupted run picks up where it stopped, and ``--configs`` runs chosen ones
(chunks) alone. Runs on one core (the command sets the thread counts to 1):

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python simulations/make_benchmark_images.py [--settings simulations/benchmark_images.toml] [--configs 0 1]
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
from scipy.ndimage import gaussian_filter

from atomscount.io import atomic_path
from atomscount.library import load_default, zone_axis_crystal

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "benchmarks" / "data"


def column_counts(atoms, decimals=2):
    """Project atoms along z; the (x, y) of every column [Å] and its number of atoms.

    The atoms of one column share x and y up to rounding, so they are grouped on
    ``decimals`` (0.01 Å), far below the shortest column spacing (2.4 Å along fcc [110]).
    """
    xy = atoms.positions[:, :2]
    uniq, inverse, counts = np.unique(np.round(xy, decimals), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    centres = np.array([xy[inverse == k].mean(axis=0) for k in range(len(uniq))])
    return centres, counts


def dome(cfg, crystal):
    """Cut the dome out of ``crystal`` repeated; z = 0 is the flat entrance face, (0, 0) its axis.

    A column at distance ``r`` from the axis keeps the atoms below ``H (1 - r**2 / R**2)``,
    where ``H`` is ``max_atoms`` periods of the crystal along the beam. The axis
    sits ``axis_offset_angstrom`` from a column: off every mirror line of the
    lattice, no two columns are at the same ``r``, so the counts take most values
    from 1 to ``max_atoms`` instead of one per shell of symmetric columns.
    """
    radius, n_max = cfg["radius_angstrom"], cfg["max_atoms"]
    period = crystal.cell.lengths()
    reps = [2 * int(np.ceil(radius / period[0])) + 2, 2 * int(np.ceil(radius / period[1])) + 2, n_max + 1]
    atoms = crystal.repeat(reps)
    # an atom of the first layer near the middle, from which the axis is offset
    first = np.flatnonzero(atoms.positions[:, 2] < 1e-6)
    middle = 0.5 * np.asarray(reps[:2]) * period[:2]
    axis = atoms.positions[first[np.argmin(np.linalg.norm(atoms.positions[first, :2] - middle, axis=1))], :2]
    atoms.positions[:, :2] -= axis + np.asarray(cfg["axis_offset_angstrom"], dtype=float)
    r2 = np.sum(atoms.positions[:, :2] ** 2, axis=1) / radius**2
    height = n_max * period[2]
    keep = (r2 < 1.0) & (atoms.positions[:, 2] < height * (1.0 - r2) - 1e-6)
    return atoms[keep]


def particle_in_cell(cfg, crystal, layer):
    """The dome centred in a periodic cell with ``margin`` of vacuum; atoms sit mid-slice.

    The lateral cell lengths are whole multiples of the scan step, so that the
    scan tiles the cell exactly and the source-size blur can wrap around.
    """
    atoms = dome(cfg, crystal)
    step, margin = cfg["pixel_size_angstrom"], cfg["margin_angstrom"]
    lo, hi = atoms.positions.min(axis=0), atoms.positions.max(axis=0)
    lengths = step * np.ceil((hi[:2] - lo[:2] + 2 * margin) / step - 1e-9)
    atoms.positions[:, :2] += 0.5 * lengths - 0.5 * (lo[:2] + hi[:2])
    atoms.positions[:, 2] += 0.5 * layer - lo[2]  # one atomic layer per slice, atoms in the middle
    n_layers = int(round((hi[2] - lo[2]) / layer)) + 1
    atoms.set_cell([lengths[0], lengths[1], n_layers * layer])
    atoms.pbc = True
    return atoms, n_layers


def fft_friendly(n, factor):
    """The smallest multiple of ``factor`` that is at least ``n`` and has no prime factor above 7.

    Grid points divisible by the PRISM interpolation factor, for a sampling no
    coarser than asked; a large prime factor would slow every FFT several times.
    """
    m = factor * int(np.ceil(n / factor - 1e-9))
    while True:
        rest = m
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += factor


def check_prism_window(lengths, interpolation, thickness, settings):
    """Refuse a PRISM window too narrow for the electrons the detector collects.

    With interpolation ``f > 1`` the probe repeats every ``cell / f`` and the exit
    wave is cut to that window around it. An electron scattered to angle ``theta``
    moves ``theta * thickness`` sideways on its way out, so in a thick particle the
    detector signal leaks out of the window and its copies' signal leaks in: at
    40 Pt atoms along [110] (109 Å) and ``f = 3`` (10 Å window) columns lose a
    third to a half of their intensity and the vacuum beside the particle lights
    up. ``f = 1`` detects the whole periodic cell in reciprocal space, where
    sideways travel does not matter.
    """
    if interpolation == 1:
        return
    half_window = 0.5 * min(lengths) / interpolation
    angle = 0.5e-3 * (settings.inner_angle_mrad + settings.outer_angle_mrad)  # the detector's middle
    spread = angle * thickness
    if spread > half_window:
        raise ValueError(
            f"prism_interpolation={interpolation} gives a {2 * half_window:.1f} Å probe window, but electrons "
            f"scattered to {1e3 * angle:.0f} mrad move {spread:.1f} Å sideways through {thickness:.0f} Å; "
            f"use prism_interpolation <= {max(1, int(0.5 * min(lengths) / spread))}"
        )


def one_config(atoms, settings, seed, *, layer, n_layers, interpolation, step):
    """One frozen-phonon configuration of the HAADF scan; an (nx, ny) array, first axis x."""
    import abtem

    sigmas = {el: settings.rms_for(el) for el in set(atoms.get_chemical_symbols())}
    fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas=sigmas, seed=(int(seed),))
    lengths = atoms.cell.lengths()[:2]
    gpts = [fft_friendly(length / settings.sampling_angstrom, interpolation) for length in lengths]
    # an explicit list of slices: dividing the cell height by the layer spacing can round
    # up to one more, sliver, slice
    potential = abtem.Potential(fp, gpts=gpts, slice_thickness=(layer,) * n_layers,
                                projection="infinite", parametrization="lobato")  # fmt: skip
    smatrix = abtem.SMatrix(potential=potential, energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad,
                            interpolation=interpolation)  # fmt: skip
    detector = abtem.AnnularDetector(inner=settings.inner_angle_mrad, outer=settings.outer_angle_mrad)
    n_scan = [int(round(length / step)) for length in lengths]
    scan = abtem.GridScan(start=(0.0, 0.0), end=tuple(lengths), gpts=n_scan, endpoint=False)
    aberrations = dict(settings.aberrations)
    aberrations.update(C10=-settings.defocus_angstrom, C30=settings.cs_angstrom)
    ctf = abtem.CTF(energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad,
                    aberration_coefficients=aberrations)  # fmt: skip
    with abtem.config.set({"mkl.threads": 1, "fftw.threads": 1}), warnings.catch_warnings():
        # abTEM warns about dask chunking and an overspecified grid, neither of which matters here
        warnings.simplefilter("ignore")
        measurement = smatrix.scan(scan=scan, detectors=detector, ctf=ctf)
        result = measurement.compute(progress_bar=False, scheduler="synchronous")
    return np.asarray(result.array, dtype=np.float64)


def build(cfg):
    """Settings, library, atoms and geometry of the run described by ``cfg``."""
    library = load_default(cfg["element"], cfg["zone_axis"])
    # another microscope than the library's (an independent test of the defaults): any of these keys
    overrides = {k: cfg[k] for k in ("energy_ev", "semiangle_mrad", "inner_angle_mrad", "outer_angle_mrad",
                                     "defocus_angstrom", "cs_angstrom") if k in cfg}  # fmt: skip
    settings = dataclasses.replace(
        library.microscope(), num_configs=cfg["num_configs"], sampling_angstrom=cfg["sampling_angstrom"],
        scan_step_angstrom=cfg["pixel_size_angstrom"], source_size_angstrom=cfg["source_size_angstrom"],
        seed=cfg["seed"], **overrides,
    )  # fmt: skip
    crystal = zone_axis_crystal(cfg["element"], cfg["zone_axis"])
    layer = crystal.cell.lengths()[2] / len(np.unique(np.round(crystal.positions[:, 2], 3)))
    atoms, n_layers = particle_in_cell(cfg, crystal, layer)
    return settings, atoms, layer, n_layers


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "benchmark_images.toml")
    ap.add_argument("--work", type=Path, help="where finished configurations go (default: _work/bench_<el><axis>)")
    ap.add_argument("--out", type=Path, help="output npz (default: benchmarks/data/<el><axis>_particle.npz)")
    ap.add_argument("--configs", type=int, nargs="*", help="run only these configurations (chunks), then stop")
    args = ap.parse_args(argv)
    cfg = tomllib.loads(args.settings.read_text())
    name = f"{cfg['element'].lower()}{cfg['zone_axis']}"
    work = args.work or HERE / "_work" / f"bench_{name}"
    out = args.out or DATA / f"{name}_particle.npz"
    settings, atoms, layer, n_layers = build(cfg)
    check_prism_window(atoms.cell.lengths()[:2], cfg["prism_interpolation"], n_layers * layer, settings)
    centres, counts = column_counts(atoms)
    step = cfg["pixel_size_angstrom"]
    print(f"{len(atoms)} atoms in {len(counts)} columns of {counts.min()}-{counts.max()} atoms, "
          f"cell {np.round(atoms.cell.lengths(), 2)} Å, {n_layers} slices", flush=True)  # fmt: skip
    seeds = settings.config_seeds()
    work.mkdir(parents=True, exist_ok=True)
    # configurations of other settings must not be averaged in: the folder keeps the settings it was made for.
    # Only num_configs may change: configuration k's seed does not depend on it (SeedSequence.spawn)
    stamp, made_for = work / "settings.json", json.dumps(cfg, sort_keys=True)
    if stamp.exists() and {**json.loads(stamp.read_text()), "num_configs": 0} != {**cfg, "num_configs": 0}:
        raise ValueError(f"{str(work)!r} holds configurations of other settings ({stamp}); pass another --work")
    stamp.write_text(made_for)
    todo = range(len(seeds)) if args.configs is None else args.configs
    for k in todo:
        path = work / f"config_{k:02d}.npy"
        if path.exists():
            continue
        t0 = time.perf_counter()
        arr = one_config(atoms, settings, seeds[k], layer=layer, n_layers=n_layers,
                         interpolation=cfg["prism_interpolation"], step=step)  # fmt: skip
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
        print(f"configuration {k}: {arr.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    done = [work / f"config_{k:02d}.npy" for k in range(len(seeds))]
    missing = [k for k, p in enumerate(done) if not p.exists()]
    if missing:
        print(f"{len(seeds) - len(missing)} of {len(seeds)} configurations done; missing {missing}: run again")
        return
    clean = np.mean([np.load(p) for p in done], axis=0).T  # rows = y, columns = x
    sigma_px = cfg["source_size_angstrom"] / step
    if sigma_px > 0:
        clean = gaussian_filter(clean, sigma_px, mode="wrap")
    # the scan starts at the cell origin with step ``step``: pixel (r, c) sits at (x, y) = (c, r) * step
    meta = {"source": "simulations/make_benchmark_images.py", "normalised": True, **cfg}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, clean=clean.astype(np.float32), pixel_size_angstrom=np.float32(step),
                positions=centres.astype(np.float32), counts=counts.astype(np.int32),
                atom_positions=atoms.positions.astype(np.float32), cell=atoms.cell.array.astype(np.float32),
                element=cfg["element"], zone_axis=cfg["zone_axis"], num_configs=np.int32(len(seeds)),
                microscope=json.dumps(settings.to_dict()), settings=json.dumps(meta),
            )  # fmt: skip
    print(f"wrote {len(counts)} columns ({counts.sum()} atoms, {counts.min()}-{counts.max()} per column), "
          f"image {clean.shape} to {out}")  # fmt: skip


if __name__ == "__main__":
    main()
