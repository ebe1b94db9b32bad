"""Build the multislice HAADF tilt series ``atomscount/data/fept_tilt_series.npz`` with abTEM.

Independent data for atom-tracing tomography (issue 14): the tomography benchmark
otherwise projects Gaussian atoms, the package's own forward model. Here the atoms
of the Yang et al. (2017) FePt particle within a radius of its centre
(``fept_tilt_series.toml``) are rotated to each tilt (about the image's y axis, the
convention of :mod:`atomscount.tomo.geometry`) and imaged by a real abTEM
multislice run (PRISM, frozen phonons, the microscope of the shipped Pt library),
so the projections carry channelling, probe tails and thermal diffuse scattering
that no Gaussian model has. They are stored noise-free, in fractions of the
incident beam per pixel, as ``[tilt, row (y), column (x)]`` with the tilt axis
through the image centre (pixel (n - 1) / 2), with the true atoms; the benchmark
adds Poisson noise.

Each (tilt, configuration) is saved under ``--work`` as it finishes, so an
interrupted run resumes. ``--device gpu`` runs abTEM on a GPU (CuPy).

    python simulations/make_fept_tilt_series.py [--device gpu] [--limit-seconds S]
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
from scipy.ndimage import gaussian_filter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_benchmark_images import check_prism_window, one_config  # noqa: E402

from atomscount.io import atomic_path  # noqa: E402
from atomscount.library import load_default  # noqa: E402
from atomscount.tomo.geometry import rotation_matrices  # noqa: E402

OUT = HERE.parent / "atomscount" / "data" / "fept_tilt_series.npz"
FEPT = HERE.parent.parent / "shared" / "data" / "fept"


def load_particle(radius, folder=FEPT):
    """Positions [Å] about the particle's centre, and elements, of the FePt atoms within ``radius``."""
    folder = Path(folder)
    model = np.load(folder / "model.npy").T.astype(np.float64)
    symbols = np.where(np.load(folder / "atoms.npy")[0] == 0, "Fe", "Pt")
    tilts = np.load(folder / "angles.npy")[:, 0].astype(np.float64)
    pos = model - model.mean(axis=0)
    keep = np.linalg.norm(pos, axis=1) <= radius
    return pos[keep], symbols[keep], tilts


def geometry(cfg, pos):
    """Pixels per side and the cell [Å]: square, n pixels of the pixel size, the particle at every tilt inside."""
    extent = 2.0 * (np.max(np.linalg.norm(pos, axis=1)) + cfg["margin_angstrom"])
    n = int(np.ceil(extent / cfg["pixel_size_angstrom"]))
    return n, n * cfg["pixel_size_angstrom"]


def tilted_atoms(cfg, pos, symbols, tilt, n, length):
    """The particle at ``tilt`` in the periodic cell; the tilt axis at the pixel centre (n - 1) / 2 of the scan."""
    q = pos @ rotation_matrices([tilt])[0].T
    centre = 0.5 * (n - 1) * cfg["pixel_size_angstrom"]
    q[:, :2] += centre
    q[:, 2] += 0.5 * length
    return Atoms(symbols=list(symbols), positions=q, cell=[length, length, length], pbc=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "fept_tilt_series.toml")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "fept_tilt_series")
    ap.add_argument("--fept", type=Path, default=FEPT, help="folder of model.npy, atoms.npy and angles.npy")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where abTEM runs (gpu needs CuPy)")
    ap.add_argument(
        "--limit-seconds",
        type=float,
        default=None,
        help="stop starting new tasks after this long (the finished ones are kept in --work)",
    )
    ap.add_argument("--tiny", action="store_true", help="a coarse smoke run: 2 tilts, one configuration")
    args = ap.parse_args(argv)
    cfg = tomllib.loads(args.settings.read_text())
    if args.tiny:
        cfg.update(radius_angstrom=4.0, num_configs=1, margin_angstrom=3.0)
    if args.device == "gpu":
        import abtem

        abtem.config.set({"device": "gpu"})
    pos, symbols, all_tilts = load_particle(cfg["radius_angstrom"], args.fept)
    tilts = all_tilts[:: cfg["every_nth_tilt"]]
    if args.tiny:
        tilts = tilts[[0, len(tilts) // 2]]
    settings = dataclasses.replace(load_default("Pt", "001").microscope(), sampling_angstrom=cfg["sampling_angstrom"])
    n, length = geometry(cfg, pos)
    n_slices = int(np.ceil(length / cfg["slice_angstrom"]))
    check_prism_window((length, length), cfg["prism_interpolation"], 2.0 * cfg["radius_angstrom"], settings)
    print(f"{len(pos)} atoms ({int(np.sum(symbols == 'Fe'))} Fe), {len(tilts)} tilts, {n} x {n} pixels, "
          f"{n_slices} slices, {cfg['num_configs']} configurations", flush=True)  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = np.zeros((len(tilts), n, n))
    missing = 0
    for k, tilt in enumerate(tilts):
        for c in range(cfg["num_configs"]):
            path = args.work / f"tilt{k:03d}_config{c}{'_tiny' if args.tiny else ''}.npy"
            if not path.exists():
                if args.limit_seconds is not None and time.perf_counter() - t0 > args.limit_seconds:
                    missing += 1
                    continue
                atoms = tilted_atoms(cfg, pos, symbols, tilt, n, length)
                arr = one_config(atoms, settings, cfg["seed"] + 1000 * k + c, layer=length / n_slices,
                                 n_layers=n_slices, interpolation=cfg["prism_interpolation"],
                                 step=cfg["pixel_size_angstrom"])  # fmt: skip
                tmp = path.with_name(path.name + ".part")
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(arr, dtype=np.float64))
                tmp.replace(path)
                print(f"tilt {k + 1}/{len(tilts)} ({tilt:+.1f}°) configuration {c}: "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
            images[k] += np.load(path).T / cfg["num_configs"]  # abTEM's (x, y) -> rows y, columns x
    if missing:
        print(f"{missing} tasks left: run again to finish", flush=True)
        return 1
    if cfg["source_size_angstrom"] > 0:
        images = gaussian_filter(images, (0, *(2 * [cfg["source_size_angstrom"] / cfg["pixel_size_angstrom"]])),
                                 mode="wrap")  # fmt: skip
    meta = {"source": "simulations/make_fept_tilt_series.py", **cfg, "n_atoms": len(pos),
            "microscope": settings.to_dict(), "tiny": bool(args.tiny),
            "wall_seconds": time.perf_counter() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=images.astype(np.float32), tilts_deg=tilts, positions=pos,
                                symbols=symbols.astype("U2"), pixel_size_angstrom=cfg["pixel_size_angstrom"],
                                settings=json.dumps(meta))  # fmt: skip
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
