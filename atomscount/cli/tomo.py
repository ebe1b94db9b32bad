"""``atomscount tomo``: simulate a tilt series, reconstruct it, trace its atoms and compare them with a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._run import figure_options


def add_parser(sub, fmt) -> None:
    """Add the ``tomo`` command and its actions to the subparsers ``sub``."""
    t = sub.add_parser("tomo", formatter_class=fmt, help="atom-tracing tomography: simulate, reconstruct, trace")
    t.set_defaults(handler=_cmd_tomo)
    ts = t.add_subparsers(dest="tomo_command", metavar="ACTION", required=True)
    s = ts.add_parser("simulate", formatter_class=fmt, help="a tilt series of an atomic model")
    s.add_argument("model", type=Path, help="atomic model (.xyz or any file ASE reads), centred on the origin")
    s.add_argument("--angles", required=True,
                   help="START:STOP:COUNT single-axis tilts in degrees (write --angles=-70:70:71 when START is "
                        "negative), or a .npy/.txt file of (k,) tilts or "
                        "(k, 3) ZYZ Euler triples")  # fmt: skip
    s.add_argument("--pixel-size", type=float, required=True, help="pixel size [Å]")
    s.add_argument("--dose", type=float, default=None, help="Poisson noise at this dose per projection [e/Å²]")
    s.add_argument("--blur", type=float, default=0.4, help="probe blur (standard deviation) [Å]")
    s.add_argument("--b-factor", type=float, default=0.5, help="Debye-Waller B [Å²]")
    s.add_argument("--background", type=float, default=0.0, help="constant added to every pixel")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise and the misalignment")
    s.add_argument("--out", type=Path, required=True, help="tilt series HDF5 file")
    r = ts.add_parser("reconstruct", formatter_class=fmt, help="SIRT reconstruction of a tilt series")
    r.add_argument("series", type=Path,
                   help="tilt series: HDF5 file (atomscount tomo simulate) or .npz archive of noise-free images "
                        "(atomscount/data/fept_tilt_series.npz)")  # fmt: skip
    _series_options(r, "")
    r.add_argument("--iterations", type=int, default=50, help="SIRT iterations")
    r.add_argument("--thickness", type=int, default=None, help="voxels along the beam (default: the image width)")
    r.add_argument("--figures", type=Path, default=None, help="folder for the orthoslices and the R1 curve")
    figure_options(r)
    r.add_argument("--out", type=Path, required=True, help="volume HDF5 file")
    tr = ts.add_parser("trace", formatter_class=fmt, help="trace and classify the atoms of a volume")
    tr.add_argument("volume", type=Path, help="volume HDF5 file (atomscount tomo reconstruct)")
    tr.add_argument("--classes", type=int, default=3, help="number of intensity classes, the first is non-atom")
    tr.add_argument("--names", default=None, help="class names, darkest first, comma-separated (e.g. non-atom,Fe,Pt)")
    tr.add_argument("--min-distance", type=float, default=None,
                    help="smallest distance between atoms [Å] (default: from the data, 0.8 times the onset of the "
                         "first peak of the radial distribution of the bright maxima)")  # fmt: skip
    tr.add_argument("--lattice", choices=("auto", "crystal", "none"), default="auto",
                    help="whether the atoms sit on a lattice: auto detects it; none (an amorphous particle) "
                         "proposes no lattice sites in the refinement")  # fmt: skip
    tr.add_argument("--series", type=Path, default=None,
                    help="the tilt series of the volume: refine the atoms against its projections (width, integrals, "
                         "positions, missing atoms) and classify the fitted integrals")  # fmt: skip
    _series_options(tr, " of --series (the same as for reconstruct)")
    tr.add_argument("--figures", type=Path, default=None,
                    help="folder for the histogram, slices, 3D view, pair distribution and Q4-Q6 map")  # fmt: skip
    figure_options(tr)
    tr.add_argument("--out", type=Path, required=True, help="extended XYZ of the classified atoms")
    c = ts.add_parser("compare", formatter_class=fmt, help="match traced atoms to a true model")
    c.add_argument("traced", type=Path)
    c.add_argument("truth", type=Path, help="true model: any file ASE reads, or a .npz archive with positions and "
                                            "symbols (atomscount/data/fept_tilt_series.npz)")  # fmt: skip
    c.add_argument("--max-distance", type=float, default=1.0, help="largest distance of a match [Å]")
    c.add_argument("--superpose", action="store_true",
                   help="first move the traced model onto the truth by the best rigid motion (Kabsch)")  # fmt: skip


def _series_options(p, which: str) -> None:
    p.add_argument("--dose", type=float, default=None,
                   help=f"Poisson noise at this dose per projection [e/Å²], added to the noise-free images{which} "
                        "(such as a .npz archive's)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help=f"seed of the noise{which}")
    p.add_argument("--every", type=int, default=1, help=f"use every N-th projection{which}")


def _read_series(path: Path, args: argparse.Namespace):
    from ..tomo import read_tilt_series

    return read_tilt_series(path, dose_e_per_angstrom2=args.dose, every=args.every, rng=args.seed)


def _angles(spec: str):
    import numpy as np

    path = Path(spec)
    if path.suffix in (".npy", ".txt", ".csv") or path.exists():
        if not path.is_file():
            raise ValueError(f"--angles file {spec!r} does not exist")
        return np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv"
                                                                      else None)  # fmt: skip
    parts = spec.split(":")
    if len(parts) != 3:
        raise ValueError(f"--angles must be START:STOP:COUNT or a file, got {spec!r}")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--angles must be START:STOP:COUNT (numbers), got {spec!r}") from None
    if count < 1:
        raise ValueError(f"--angles COUNT must be >= 1, got {count}")
    return np.linspace(start, stop, count)


def _read_atoms(path: Path):
    import ase.io
    import numpy as np

    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npz":
        from ase import Atoms

        with np.load(path, allow_pickle=False) as z:
            if "positions" not in z.files or "symbols" not in z.files:
                raise ValueError(f"model archive {str(path)!r} needs positions and symbols, it has {sorted(z.files)}")
            return Atoms([str(e) for e in z["symbols"]], positions=z["positions"])
    try:
        return ase.io.read(str(path))
    except Exception as exc:  # ase raises many kinds for unreadable files
        raise ValueError(f"cannot read an atomic model from {str(path)!r}: {exc}") from None


def _cmd_tomo(args: argparse.Namespace) -> int:
    from ..tomo import classify_atoms, compare_models, reconstruct, refine_atoms, simulate_tilt_series, trace_atoms
    from ..tomo.plot import save_tomo_figures
    from ..tomo.reconstruct import Volume

    if args.tomo_command == "simulate":
        atoms = _read_atoms(args.model)
        series = simulate_tilt_series(atoms, _angles(args.angles), pixel_size_angstrom=args.pixel_size,
                                      b_factor=args.b_factor, probe_blur_angstrom=args.blur,
                                      dose_e_per_angstrom2=args.dose, background=args.background,
                                      rng=args.seed)  # fmt: skip
        series.to_hdf5(args.out)
        print(f"{series} -> {args.out}")
    elif args.tomo_command == "reconstruct":
        volume = reconstruct(_read_series(args.series, args), n_iter=args.iterations, thickness=args.thickness)
        volume.to_hdf5(args.out)
        print(f"{volume} -> {args.out}")
        if args.figures is not None:
            save_tomo_figures(args.figures, volume=volume, fmt=args.format, dpi=args.dpi)
    elif args.tomo_command == "trace":
        volume = Volume.from_hdf5(args.volume)
        names = args.names.split(",") if args.names else None
        traced = trace_atoms(volume, min_distance_angstrom=args.min_distance, lattice=args.lattice)
        print(f"traced {len(traced)} candidates {traced.tracing['min_distance_angstrom']:.2f} Å apart "
              f"({traced.tracing['min_distance_source']}); lattice: {traced.tracing['lattice']} "
              f"({traced.tracing['lattice_source']})")  # fmt: skip
        if args.series is not None:
            traced = refine_atoms(traced, _read_series(args.series, args), volume)
            print(f"refined: width {traced.refinement['width_angstrom']:.3f} Å, R1 {traced.refinement['r1']:.3f}")
        traced = classify_atoms(traced, args.classes, names=names)
        traced.write_xyz(args.out)
        print(f"{traced} -> {args.out}")
        if args.figures is not None:
            save_tomo_figures(args.figures, volume=volume, traced=traced, fmt=args.format, dpi=args.dpi)
    else:
        traced, truth = _read_atoms(args.traced), _read_atoms(args.truth)
        scores = compare_models(traced.positions, traced.get_chemical_symbols(), truth.positions,
                                truth.get_chemical_symbols(), max_distance_angstrom=args.max_distance,
                                superpose=args.superpose)  # fmt: skip
        print(json.dumps(scores, indent=2))
    return 0
