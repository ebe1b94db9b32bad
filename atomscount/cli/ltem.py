"""``atomscount ltem``: simulate a Lorentz TEM through-focus series of a magnetic sample, and retrieve its
phase by TIE or by the differentiable forward model.

A series file (what ``simulate`` writes and ``tie`` and ``retrieve`` read) is ``series.h5``: the images,
their defoci [nm] and the microscope, in atomscount's HDF5 layout. ``tie`` and ``retrieve`` also read a
through-focus series of image files (``.dm3``, ``.dm4``, ``.tif`` ..., one image each, with ``--defocus``),
which they register to the image nearest focus (shift, magnification and rotation) first. Defocus on the
command line is in µm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files

#: --sample -> (function of :mod:`atomscount.ltem.samples`, its keyword arguments).
SAMPLES = {"bloch": ("skyrmion_lattice", {"kind": "bloch"}), "neel": ("skyrmion_lattice", {"kind": "neel"}),
           "vortex": ("vortex_disk", {}), "wall": ("domain_wall", {})}  # fmt: skip
_SERIES_KIND = "LTEMSeries"


def add_parser(sub, fmt) -> None:
    """Add the ``ltem`` command and its actions to the subparsers ``sub``."""
    e = sub.add_parser("ltem", formatter_class=fmt, help="Lorentz TEM: a film's magnetic phase from Fresnel images")
    e.set_defaults(handler=_cmd_ltem)
    es = e.add_subparsers(dest="ltem_command", metavar="ACTION", required=True)
    s = es.add_parser("simulate", formatter_class=fmt, help="a through-focus series of a simulated magnetic film")
    s.add_argument("--sample", choices=tuple(SAMPLES), default="vortex",
                   help="bloch / neel: skyrmion lattice; vortex: vortex in a disk (with its edge); wall: 180° "
                        "domain wall")  # fmt: skip
    s.add_argument("--size", type=int, default=128, help="pixels along each side")
    s.add_argument("--pixel-size", type=float, default=2.0, help="pixel size [nm]")
    s.add_argument("--defocus", default="-20,0,20", help="comma-separated defocus of each image [µm]")
    s.add_argument("--dose", type=float, default=None,
                   help="Poisson noise at this many electrons per pixel (noise-free when not given)")  # fmt: skip
    s.add_argument("--beam-energy", type=float, default=300e3, help="beam energy [eV]")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument("--out", type=Path, required=True, help="output folder: series.h5 and truth.npz (phase, rad)")
    t = es.add_parser("tie", formatter_class=fmt, help="phase by the transport-of-intensity equation")
    _series_options(t)
    t.add_argument("--tikhonov", type=float, default=None,
                   help="Tikhonov filter frequency [1/nm] (default: TIE's, 0.05 of the lowest frequency)")  # fmt: skip
    figure_options(t)
    t.add_argument("--out", type=Path, required=True, help="output folder: phase.h5 and the figures")
    r = es.add_parser("retrieve", formatter_class=fmt,
                      help="phase (amplitude, defocus ...) fitted by the differentiable forward model")  # fmt: skip
    _series_options(r)
    r.add_argument("--fit", default="phase,amplitude,defocus",
                   help="comma-separated: phase, amplitude, defocus (each image's), defocus_scale (one factor for "
                        "all images, their ratios held; not with defocus), cs, divergence, defocus_spread")  # fmt: skip
    r.add_argument("--regulariser", choices=("spectral", "tv", "smooth"), default="spectral",
                   help="spectral: Gaussian prior with the spectrum the images show; tv: total variation; smooth: "
                        "squared gradient")  # fmt: skip
    r.add_argument("--weight", default="auto",
                   help="spectral: floor of the spectrum [rad² per mode] (auto: none); tv, smooth: weight, or auto "
                        "(discrepancy principle: deviance down to noise)")  # fmt: skip
    r.add_argument("--vacuum", choices=("auto", "stray", "flat", "none"), default="auto",
                   help="after the TV fall-back, the model of the vacuum round an island of material that sets the "
                        "slowest modes: stray: a constant plus the stray field of the island's net moment; flat: a "
                        "constant (the island's flux closes: a vortex); auto: stray only where a chi-squared test "
                        "on the vacuum asks for it; none: no correction")  # fmt: skip
    r.add_argument("--optimiser", choices=("lbfgs", "adam"), default="lbfgs", help="optax optimiser")
    r.add_argument("--iterations", type=int, default=200, help="iterations in all")
    r.add_argument("--seed", type=int, default=0, help="seed of the uncertainty's random probes")
    r.add_argument("--ms", type=float, default=None,
                   help="saturation magnetisation of the film [A/m]: with --thickness, the retrieved phase's "
                        "slowest modes become those of a film with |m| = Ms (in-plane films only)")  # fmt: skip
    r.add_argument("--thickness", type=float, default=None, help="film thickness [nm], with --ms")
    figure_options(r)
    r.add_argument("--out", type=Path, required=True, help="output folder: phase.h5 and the figures")


def _series_options(p) -> None:
    p.add_argument("series", type=Path, nargs="+",
                   help="series file (atomscount ltem simulate), or one image file per defocus (.dm3, .dm4, .tif "
                        "...; with --defocus)")  # fmt: skip
    p.add_argument("--defocus", default=None, help="image files: comma-separated defocus of each [µm]")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="image files: pixel size [nm] (default: the files' calibration)")  # fmt: skip
    p.add_argument("--beam-energy", type=float, default=300e3, help="image files: beam energy [eV]")
    p.add_argument("--no-register", action="store_true",
                   help="image files: taken as aligned (default: registered: shift, scale, rotation)")  # fmt: skip


def load_series(paths, *, defocus: str | None = None, pixel_nm: float | None = None, beam_energy_ev: float = 300e3,
                register: bool = True):  # fmt: skip
    """The series of ``tie`` and ``retrieve``: one ``series.h5``, or image files, one per defocus.

    Image files are read by :meth:`atomscount.ltem.LTEMSeries.from_files` with ``defocus`` (comma-separated
    µm), and aligned to the image nearest focus by :func:`atomscount.ltem.register_series` unless
    ``register`` is False; their pixel size is ``pixel_nm`` or the files' (which must agree).
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].suffix in (".h5", ".hdf5"):
        return read_series(paths[0])
    from ..ltem import LTEMSeries, register_series

    if defocus is None:
        raise ValueError(f"--defocus must give one defocus [µm] per image file, got none for {len(paths)} files")
    defoci = _defoci_nm(defocus)
    if len(defoci) != len(paths):
        raise ValueError(f"--defocus must give one defocus [µm] per image file: {len(paths)} files, "
                         f"got {len(defoci)} values ({defocus!r})")  # fmt: skip
    for p in paths:
        if not p.is_file():
            raise ValueError(f"series file {str(p)!r} does not exist")
    series = LTEMSeries.from_files(paths, defoci, pixel_nm=pixel_nm, beam_energy_ev=beam_energy_ev)
    return register_series(series)[0] if register and len(series) > 1 else series


def _args_series(args: argparse.Namespace):
    return load_series(args.series, defocus=args.defocus, pixel_nm=args.pixel_size, beam_energy_ev=args.beam_energy,
                       register=not args.no_register)  # fmt: skip


def write_series(series, path) -> Path:
    """Write an :class:`~atomscount.ltem.LTEMSeries` to ``path`` (HDF5, atomically)."""
    from ..io import write_hdf5

    attrs = {"pixel_nm": series.pixel_nm, "beam_energy_ev": series.beam_energy_ev, "cs_nm": series.cs_nm,
             "divergence_rad": series.divergence_rad, "defocus_spread_nm": series.defocus_spread_nm,
             "provenance": series.provenance}  # fmt: skip
    write_hdf5(path, _SERIES_KIND, {"images": series.images, "defoci_nm": series.defoci_nm}, attrs)
    return Path(path)


def read_series(path):
    """The :class:`~atomscount.ltem.LTEMSeries` in a file :func:`write_series` wrote."""
    from ..io import read_hdf5
    from ..ltem import LTEMSeries

    if not Path(path).is_file():
        raise ValueError(f"series file {str(path)!r} does not exist")
    arrays, attrs = read_hdf5(path, _SERIES_KIND)
    return LTEMSeries(arrays["images"], arrays["defoci_nm"], **attrs)


def _defoci_nm(text: str) -> list:
    try:
        return [1e3 * float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--defocus must be comma-separated numbers [µm], got {text!r}") from None


def _simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..ltem import samples, simulate_series

    name, kwargs = SAMPLES[args.sample]
    sample = getattr(samples, name)(shape=(args.size, args.size), pixel_nm=args.pixel_size, **kwargs)
    defoci = _defoci_nm(args.defocus)
    with output_folder(args.out, command="ltem simulate") as tmp:
        series = simulate_series(sample, defoci, beam_energy_ev=args.beam_energy, dose_e_per_pixel=args.dose,
                                 rng=args.seed)  # fmt: skip
        files = {"series": write_series(series, tmp / "series.h5"), "truth": tmp / "truth.npz"}
        np.savez_compressed(files["truth"], phase=sample.phase(beam_energy_ev=args.beam_energy),
                            pixel_nm=sample.pixel_nm)  # fmt: skip
    print(series)
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _write_result(result, series, tmp: Path, args: argparse.Namespace) -> dict:
    from ..ltem.plot import save_ltem_figures

    files = {"result": result.to_hdf5(tmp / "phase.h5")}
    files.update(save_ltem_figures(result, tmp / "figures", series=series if result.method == "ad" else None,
                                   fmt=args.format, dpi=args.dpi))  # fmt: skip
    return files


def _tie(args: argparse.Namespace) -> int:
    from ..ltem import tie

    check_output_folder(args.out)
    series = _args_series(args)
    with output_folder(args.out, command="ltem tie") as tmp:
        result = tie(series, tikhonov=args.tikhonov)
        files = _write_result(result, series, tmp, args)
    print(result.report())
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    from ..ltem import retrieve_phase

    check_output_folder(args.out)
    try:
        weight = args.weight if args.weight == "auto" else float(args.weight)
    except ValueError:
        raise ValueError(f"--weight must be 'auto' or a number, got {args.weight!r}") from None
    if (args.ms is None) != (args.thickness is None):
        raise ValueError(f"--ms and --thickness go together (the constraint needs Ms·t), got --ms {args.ms} and "
                         f"--thickness {args.thickness}")  # fmt: skip
    series = _args_series(args)
    with output_folder(args.out, command="ltem retrieve") as tmp:
        result = retrieve_phase(series, fit=tuple(f.strip() for f in args.fit.split(",")),
                                regulariser=args.regulariser, weight=weight, vacuum=args.vacuum,
                                optimiser=args.optimiser,
                                n_iter=args.iterations, rng=args.seed, progress=True)  # fmt: skip
        if args.ms is not None:
            from ..ltem import constrain_magnetisation

            result = constrain_magnetisation(result, ms_a_per_m=args.ms, thickness_nm=args.thickness,
                                             beam_energy_ev=series.beam_energy_ev)  # fmt: skip
        files = _write_result(result, series, tmp, args)
    print(result.report())
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _cmd_ltem(args: argparse.Namespace) -> int:
    return {"simulate": _simulate, "tie": _tie, "retrieve": _retrieve}[args.ltem_command](args)
