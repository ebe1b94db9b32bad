"""Build the core-shell multislice pair ``atomscount/data/coreshell_auag.npz`` with abTEM.

Independent data for the core-shell search (issue 13): an Au@Ag particle, a sphere
of fcc sites (``coreshell_images.toml``) whose sites inside an off-centre ellipsoid
hold Au and the rest Ag, simulated along [001] and [110]. Both views see the same
atoms: the particle is built in the cubic frame and rotated so that each zone axis
points along the beam (z), with [1-10] along x in the [110] view. The images are
real abTEM multislice runs (PRISM, one atomic layer per slice, the microscope of
the shipped Au/Ag libraries), made by the functions of ``make_benchmark_images.py``;
they are stored noise-free with the true sites, elements and rotations, and the
benchmark adds Poisson noise.

Each (view, configuration) is saved under ``--work`` as it finishes, so an
interrupted run resumes, and ``--tasks`` runs chosen ones alone. ``--tiny``
makes a coarse smoke run (small particle, one configuration) into ``--out``.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python simulations/make_coreshell_images.py [--tasks 001:0 110:0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from scipy.ndimage import gaussian_filter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_benchmark_images import check_prism_window, one_config  # noqa: E402

from atomscount.io import atomic_path  # noqa: E402
from atomscount.library import load_default  # noqa: E402

OUT = HERE.parent / "atomscount" / "data" / "coreshell_auag.npz"
#: Rows: the image x, image y and beam z of each view, in cubic coordinates (proper rotations).
ROTATIONS = {
    "001": np.eye(3),
    "110": np.array([[-1.0, 1.0, 0.0], [0.0, 0.0, np.sqrt(2.0)], [1.0, 1.0, 0.0]]) / np.sqrt(2.0),
}
LAYER = {"001": 0.5, "110": 0.25 * np.sqrt(2.0)}  # atomic layer spacing along the beam, in lattice constants


def inside_shape(pos: np.ndarray, cfg) -> np.ndarray:
    """Which cubic-frame positions lie in the particle: ``shape`` of the settings.

    - ``"sphere"`` (the default): ``|r| < radius_angstrom``;
    - ``"polyhedron"``: the intersection of the half-spaces ``|n . r| <= d`` of the
      {100}, {110} and {111} facet families whose distances ``facets_angstrom``
      gives (a missing family is not cut), inside ``radius_angstrom``.
    """
    keep = np.linalg.norm(pos, axis=1) < cfg["radius_angstrom"]
    if cfg.get("shape", "sphere") == "sphere":
        return keep
    normals = {
        "100": np.eye(3),
        "110": np.array([[1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1]]) / np.sqrt(2.0),
        "111": np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]]) / np.sqrt(3.0),
    }
    for family, d in cfg["facets_angstrom"].items():
        keep &= np.all(np.abs(pos @ normals[family].T) <= d + 1e-6, axis=1)
    return keep


def inside_core(pos: np.ndarray, cfg) -> np.ndarray:
    """Which positions hold the core element: ``core_shape`` of the settings.

    - ``"ellipsoid"`` (the default): axis-aligned, ``core_centre_angstrom`` and
      ``core_radii_angstrom``;
    - ``"spheres"``: the union of the spheres ``core_spheres`` (rows of x, y, z, radius).
    """
    if cfg.get("core_shape", "ellipsoid") == "spheres":
        spheres = np.asarray(cfg["core_spheres"], dtype=float)
        return np.any(np.linalg.norm(pos[:, None, :] - spheres[None, :, :3], axis=2) < spheres[:, 3], axis=1)
    rel = (pos - np.asarray(cfg["core_centre_angstrom"])) / np.asarray(cfg["core_radii_angstrom"])
    return np.sum(rel**2, axis=1) < 1.0


def particle(cfg) -> Atoms:
    """The Au@Ag particle in the cubic frame, centred on the origin (a site)."""
    unit = bulk(cfg["host"], "fcc", cubic=True)
    a = unit.cell.lengths()[0]
    n = int(np.ceil(cfg["radius_angstrom"] / a)) + 1
    atoms = unit.repeat((2 * n, 2 * n, 2 * n))
    atoms.positions -= n * a
    atoms = atoms[inside_shape(atoms.positions, cfg)]
    core = inside_core(atoms.positions, cfg)
    atoms.set_chemical_symbols(np.where(core, cfg.get("core_element", "Au"), cfg.get("shell_element", "Ag")))
    atoms.cell = np.zeros((3, 3))
    return atoms


def view(atoms: Atoms, axis: str, cfg) -> tuple[Atoms, int, float]:
    """The particle rotated for ``axis``, centred in a periodic cell, atoms mid-slice."""
    a = bulk(cfg["host"], "fcc", cubic=True).cell.lengths()[0]
    layer = LAYER[axis] * a
    out = atoms.copy()
    out.positions = atoms.positions @ ROTATIONS[axis].T
    step, margin = cfg["pixel_size_angstrom"], cfg["margin_angstrom"]
    lo, hi = out.positions.min(axis=0), out.positions.max(axis=0)
    lengths = step * np.ceil((hi[:2] - lo[:2] + 2 * margin) / step - 1e-9)
    out.positions[:, :2] += 0.5 * lengths - 0.5 * (lo[:2] + hi[:2])
    out.positions[:, 2] += 0.5 * layer - lo[2]
    n_layers = int(round((hi[2] - lo[2]) / layer)) + 1
    out.set_cell([lengths[0], lengths[1], n_layers * layer])
    out.pbc = True
    return out, n_layers, layer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "coreshell_images.toml")
    ap.add_argument("--work", type=Path, default=None, help="finished (view, configuration) images")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tasks", nargs="*", help="run only these AXIS:CONFIG tasks (chunks), then stop")
    ap.add_argument("--tiny", action="store_true", help="coarse smoke run (small particle, one configuration)")
    ap.add_argument("--partial", action="store_true",
                    help="write the views whose configurations are all done, though another is missing")  # fmt: skip
    args = ap.parse_args(argv)
    cfg = tomllib.loads(args.settings.read_text())
    settings = load_default("Au", "001").microscope()
    if args.tiny:
        cfg = dict(cfg, radius_angstrom=6.5, core_radii_angstrom=[3.5, 3.0, 3.0], core_centre_angstrom=[0.5, 0, 0],
                   num_configs=1, pixel_size_angstrom=0.5, sampling_angstrom=0.075, prism_interpolation=1)  # fmt: skip
        settings = dataclasses.replace(settings, outer_angle_mrad=80.0, inner_angle_mrad=30.0)
    settings = dataclasses.replace(settings, num_configs=cfg["num_configs"], sampling_angstrom=cfg["sampling_angstrom"],
                                   scan_step_angstrom=cfg["pixel_size_angstrom"], seed=cfg["seed"],
                                   source_size_angstrom=cfg["source_size_angstrom"])  # fmt: skip
    out = args.out or OUT
    work = args.work or (out.parent / "_work_coreshell" if args.tiny else HERE / "_work" / "coreshell_auag")
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) != cfg:
        raise ValueError(f"{str(work)!r} holds images of other settings ({stamp}); pass another --work")
    stamp.write_text(json.dumps(cfg))
    atoms = particle(cfg)
    symbols = np.array(atoms.get_chemical_symbols())
    print(f"{len(atoms)} atoms: {int((symbols == 'Au').sum())} Au, {int((symbols == 'Ag').sum())} Ag", flush=True)
    seeds = settings.config_seeds()
    views = {axis: view(atoms, axis, cfg) for axis in cfg["zone_axes"]}
    for v, n_layers, layer in views.values():
        check_prism_window(v.cell.lengths()[:2], cfg["prism_interpolation"], n_layers * layer, settings)
    tasks = [(axis, k) for axis in views for k in range(len(seeds))]
    if args.tasks is not None:
        # in the order given, so that two processes can work through one view from either end
        known = {(axis, str(k)): (axis, k) for axis, k in tasks}
        tasks = [known[tuple(t.split(":"))] for t in args.tasks if tuple(t.split(":")) in known]
    for axis, k in tasks:
        path = work / f"{axis}_config_{k:02d}.npy"
        if path.exists():
            continue
        v, n_layers, layer = views[axis]
        t0 = time.perf_counter()
        arr = one_config(v, settings, seeds[k], layer=layer, n_layers=n_layers,
                         interpolation=cfg["prism_interpolation"], step=cfg["pixel_size_angstrom"])  # fmt: skip
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
        print(f"[{axis}] configuration {k}: {arr.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    missing = [f"{axis}:{k}" for axis in views for k in range(len(seeds))
               if not (work / f"{axis}_config_{k:02d}.npy").exists()]  # fmt: skip
    complete = [axis for axis in views if all((work / f"{axis}_config_{k:02d}.npy").exists()
                                              for k in range(len(seeds)))]  # fmt: skip
    if missing and not (args.partial and complete):
        print(f"missing {missing}: run again")
        return
    step = cfg["pixel_size_angstrom"]
    fields = {}
    for axis in complete:
        v = views[axis][0]
        clean = np.mean([np.load(work / f"{axis}_config_{k:02d}.npy") for k in range(len(seeds))], axis=0).T
        if cfg["source_size_angstrom"] > 0:
            clean = gaussian_filter(clean, cfg["source_size_angstrom"] / step, mode="wrap")
        fields[f"image_{axis}"] = clean.astype(np.float32)
        # the view's sites in its image frame: pixel (r, c) sits at (x, y) = (c, r) * step
        fields[f"positions_{axis}"] = v.positions.astype(np.float32)
        fields[f"rotation_{axis}"] = ROTATIONS[axis]
    meta = {"source": "simulations/make_coreshell_images.py", "normalised": True, **cfg}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **fields, symbols=symbols, cubic_positions=atoms.positions.astype(np.float32),
                            pixel_size_angstrom=np.float32(step), zone_axes=np.array(complete),
                            microscope=json.dumps(settings.to_dict()), settings=json.dumps(meta))  # fmt: skip
    print(f"wrote {', '.join(f'{k} {v.shape}' for k, v in fields.items() if k.startswith('image'))} to {out}")


if __name__ == "__main__":
    main()
