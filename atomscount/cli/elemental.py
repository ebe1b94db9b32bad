"""``atomscount elemental``: simulate HAADF + EDXS tilt series of a phantom, denoise the EDXS series, reconstruct
each element's concentration from them, or read the composition of a two-element particle off a HAADF reconstruction.

A series folder (what ``simulate`` writes and ``reconstruct`` reads) holds ``haadf.h5`` (optional) and one
``edxs_ELEMENT.h5`` per element, each a tilt series as :meth:`atomscount.tomo.TiltSeries.to_hdf5` writes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files

#: --phantom -> the function of :mod:`atomscount.elemental.phantoms` that builds it.
PHANTOMS = {"core-shell-rod": "core_shell_rod", "alloy": "alloy_particle", "three-element": "three_element_particle"}
#: --method of ``denoise``: :data:`atomscount.elemental.denoise.DENOISE_METHODS` (not imported to keep --help fast).
DENOISE_METHODS = ("network", "gaussian", "tv", "bm3d")


def add_parser(sub, fmt) -> None:
    """Add the ``elemental`` command and its actions to the subparsers ``sub``."""
    e = sub.add_parser("elemental", formatter_class=fmt,
                       help="element concentrations in 3D from HAADF and EDXS tilt series")  # fmt: skip
    e.set_defaults(handler=_cmd_elemental)
    es = e.add_subparsers(dest="elemental_command", metavar="ACTION", required=True)
    s = es.add_parser("simulate", formatter_class=fmt, help="HAADF and EDXS tilt series of a phantom particle")
    s.add_argument("--phantom", choices=tuple(PHANTOMS), default="core-shell-rod",
                   help="core-shell-rod: Au@Ag rod with a diffuse interface; alloy: Pt-Au particle; "
                        "three-element: Pd core, Pt shell, Au surface alloy")  # fmt: skip
    s.add_argument("--size", type=int, default=None, help="voxels along each side (default: the phantom's, 128)")
    s.add_argument("--voxel-size", type=float, default=0.75, help="voxel size [Å]")
    s.add_argument("--angles", default="-70:70:29",
                   help="START:STOP:COUNT single-axis tilts in degrees (write --angles=-70:70:29 when START is "
                        "negative), or a .npy/.txt file of (k,) tilts")  # fmt: skip
    s.add_argument("--dose", type=float, required=True, help="electron dose per projection for the EDXS maps [e/Å²]")
    s.add_argument("--haadf-dose", type=float, default=None,
                   help="Poisson noise on the HAADF series at this dose per projection [e/Å²] (noise-free when "
                        "not given)")  # fmt: skip
    s.add_argument("--solid-angle", type=float, default=0.7, help="EDXS detector's collection solid angle [sr]")
    s.add_argument("--beam-energy", type=float, default=200e3, help="beam energy [eV]")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument("--out", type=Path, required=True,
                   help="series folder: haadf.h5, edxs_ELEMENT.h5 per element and truth.npz (atoms/Å³)")  # fmt: skip
    d = es.add_parser("denoise", formatter_class=fmt,
                      help="denoise each element's EDXS series of a series folder (before reconstruct)")  # fmt: skip
    d.add_argument("series", type=Path, help="series folder (atomscount elemental simulate)")
    d.add_argument("--method", choices=DENOISE_METHODS, default="network",
                   help="network: the shipped network (expected counts and 1σ); gaussian, tv, bm3d: the classical "
                        "baselines, their strength chosen per map without the truth")  # fmt: skip
    d.add_argument("--strength", type=float, default=None,
                   help="a classical method's parameter: the Gaussian's width [px], the TV weight or BM3D's noise "
                        "level (in units of the Anscombe transform) (default: chosen per map)")  # fmt: skip
    d.add_argument("--tta", action="store_true",
                   help="network: average over the 8 flips and rotations, their spread added to 1σ (8x the "
                        "time)")  # fmt: skip
    d.add_argument("--blend", type=_blend, default="auto",
                   help="network: 'auto' blends the network's maps with the Gaussian filter's, the network's weight "
                        "w chosen by thinning cross-validation on the counts (leaving 1 only by more than 3 standard "
                        "errors); a number in [0, 1] fixes w (1: the network alone)")  # fmt: skip
    d.add_argument("--single-map", action="store_true",
                   help="network: denoise each element's series alone (the single-map network) instead of each map "
                        "with its tilt's total over the elements (the joint network, the default for two or more "
                        "elements)")  # fmt: skip
    d.add_argument("--model", type=Path, default=None,
                   help="network weights (.npz of atomscount.elemental.train.save_denoiser; default: the "
                        "shipped joint or single-map ones)")  # fmt: skip
    figure_options(d)
    d.add_argument("--out", type=Path, required=True,
                   help="series folder: the denoised edxs_ELEMENT.h5 (expected counts), haadf.h5 and truth.npz "
                        "copied, denoised.h5 (maps and 1σ) and the figures; reconstruct it with --method "
                        "separate")  # fmt: skip
    r = es.add_parser("reconstruct", formatter_class=fmt, help="each element's concentration from a series folder")
    r.add_argument("series", type=Path, help="series folder (atomscount elemental simulate)")
    r.add_argument("--method", choices=("multimodal", "separate"), default="multimodal",
                   help="multimodal: HAADF and EDXS in one objective (weights, γ and regularisation fitted); "
                        "separate: SIRT of each EDXS series alone (the baseline)")  # fmt: skip
    r.add_argument("--regulariser", choices=("tnv", "tv", "tgv"), default="tnv",
                   help="tnv: total nuclear variation (the elements share edges); tv: per element; "
                        "tgv: second order, for gradual interfaces")  # fmt: skip
    r.add_argument("--no-haadf", action="store_true", help="leave out the series' HAADF (EDXS only)")
    r.add_argument("--sum-to-one", action="store_true",
                   help="the concentrations add to one in the particle (a dense alloy)")  # fmt: skip
    r.add_argument("--iterations", type=int, default=None,
                   help="iterations (default: the method's, at most 1000 multimodal, stopping when converged, "
                        "plus at most half as many for the weight's cross-validation, and 50 separate)")  # fmt: skip
    r.add_argument("--tol", type=float, default=1e-4, help="relative change of the objective that stops it")
    r.add_argument("--export", action="store_true", help="also write each element's concentration as .mrc and .tif")
    figure_options(r)
    r.add_argument("--out", type=Path, required=True, help="output folder: elemental.h5 and the figures")
    c = es.add_parser("composition", formatter_class=fmt,
                      help="voxel composition of a two-element particle from its HAADF reconstruction")  # fmt: skip
    c.add_argument("volume", type=Path, help="volume HDF5 file (atomscount tomo reconstruct)")
    c.add_argument("--elements", default="Au,Ag", help="the two elements, the brighter first, comma-separated")
    c.add_argument("--levels", default=None,
                   help="the pure elements' grey levels, in the order of --elements, comma-separated (default: "
                        "a mixture fit on the particle's voxels)")  # fmt: skip
    c.add_argument("--max-tilt", type=float, default=None,
                   help="the series' tilt range ±α [degrees]: the partial-volume band at the surface is thicker "
                        "along z by the missing wedge (default: no missing wedge)")  # fmt: skip
    c.add_argument("--export", action="store_true", help="also write each element's concentration as .mrc and .tif")
    figure_options(c)
    c.add_argument("--out", type=Path, required=True, help="output folder: elemental.h5 and the figures")


def _numbers(text: str, option: str) -> list:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated numbers, got {text!r}") from None


def _blend(text: str):
    """--blend: "auto" or a network weight in [0, 1]."""
    if text == "auto":
        return text
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--blend must be 'auto' or a number in [0, 1], got {text!r}") from None
    if not 0.0 <= w <= 1.0:
        raise argparse.ArgumentTypeError(f"--blend must be 'auto' or a number in [0, 1], got {text!r}")
    return w


def read_series_folder(folder: Path, *, haadf: bool = True) -> tuple:
    """(HAADF TiltSeries or None, {element: EDXS TiltSeries}) from a series folder."""
    from ..tomo import TiltSeries

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"series folder {str(folder)!r} does not exist")
    edxs = {p.stem.removeprefix("edxs_"): TiltSeries.from_hdf5(p) for p in sorted(folder.glob("edxs_*.h5"))}
    if not edxs:
        raise ValueError(f"series folder {str(folder)!r} holds no edxs_ELEMENT.h5 file")
    path = folder / "haadf.h5"
    return (TiltSeries.from_hdf5(path) if haadf and path.is_file() else None), edxs


def _write_result(result, tmp: Path, args: argparse.Namespace) -> dict:
    from ..elemental.plot import save_elemental_figures

    files = {"result": tmp / "elemental.h5"}
    result.to_hdf5(files["result"])
    if args.export:
        result.to_mrc(tmp / "mrc")
        result.to_tif(tmp / "tif")
        files.update({"mrc": tmp / "mrc", "tif": tmp / "tif"})
    figures = save_elemental_figures(result, tmp / "figures", fmt=args.format, dpi=args.dpi)
    files.update(figures)
    return files


def _simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..elemental import phantoms
    from ..elemental.forward import simulate_edxs, simulate_haadf
    from .tomo import _angles

    kwargs = {"voxel_size_angstrom": args.voxel_size}
    if args.size is not None:
        kwargs["shape"] = (args.size,) * 3
    densities = getattr(phantoms, PHANTOMS[args.phantom])(**kwargs)
    angles = _angles(args.angles)
    with output_folder(args.out, command="elemental simulate", signals=args.signals) as tmp:
        edxs = simulate_edxs(densities, args.voxel_size, angles, dose_e_per_angstrom2=args.dose,
                             solid_angle_sr=args.solid_angle, beam_energy_ev=args.beam_energy,
                             rng=args.seed)  # fmt: skip
        haadf = simulate_haadf(densities, args.voxel_size, angles, dose_e_per_angstrom2=args.haadf_dose,
                               rng=args.seed + 1)  # fmt: skip
        files = {"haadf": haadf.to_hdf5(tmp / "haadf.h5")}
        for element, series in edxs.items():
            files[f"edxs_{element}"] = series.to_hdf5(tmp / f"edxs_{element}.h5")
            print(f"{element}: {series.images.sum(axis=(1, 2)).mean():.0f} counts per projection")
        files["truth"] = tmp / "truth.npz"
        np.savez_compressed(files["truth"], voxel_size_angstrom=args.voxel_size, **densities)
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _expected_truth(folder: Path, edxs: dict):
    """The noise-free counts of a simulated series folder (from its truth.npz and the series' settings), else None."""
    import numpy as np

    from ..elemental.forward import simulate_edxs

    path = folder / "truth.npz"
    first = next(iter(edxs.values()))
    need = ("dose_e_per_angstrom2", "solid_angle_sr", "beam_energy_ev")
    if not path.is_file() or not first.single_axis or not all(k in first.provenance for k in need):
        return None
    with np.load(path) as z:
        densities = {e: z[e] for e in edxs if e in z.files}
    if set(densities) != set(edxs):
        return None
    p = first.provenance
    clean = simulate_edxs(densities, first.pixel_size_angstrom, first.angles[:, 1],
                          dose_e_per_angstrom2=p["dose_e_per_angstrom2"], solid_angle_sr=p["solid_angle_sr"],
                          beam_energy_ev=p["beam_energy_ev"], noise=False)  # fmt: skip
    return {e: s.images for e, s in clean.items()}


def _denoise(args: argparse.Namespace) -> int:
    import shutil

    from .._figures import write_figures
    from ..elemental import _net
    from ..elemental.denoise import denoise_series
    from ..elemental.plot import plot_denoised

    check_output_folder(args.out)
    _, edxs = read_series_folder(args.series, haadf=False)
    kwargs = {"method": args.method, "tta": args.tta}
    if args.method == "network":
        kwargs["blend"] = args.blend
    if args.strength is not None:
        kwargs["strength"] = args.strength
    if args.single_map:
        kwargs["joint"] = False
    if args.model is not None:
        kwargs["model"] = _net.load_denoiser(args.model)
    with output_folder(args.out, command="elemental denoise", signals=args.signals) as tmp:
        series, result = denoise_series(edxs, **kwargs)
        files = {}
        for element, s in series.items():
            files[f"edxs_{element}"] = s.to_hdf5(tmp / f"edxs_{element}.h5")
        for name in ("haadf.h5", "truth.npz"):
            if (Path(args.series) / name).is_file():
                files[name.split(".")[0]] = Path(shutil.copy2(Path(args.series) / name, tmp / name))
        files["denoised"] = result.to_hdf5(tmp / "denoised.h5")
        first = next(iter(edxs.values()))
        noisy = {e: s.images for e, s in edxs.items()}
        truth = _expected_truth(Path(args.series), edxs)
        (tmp / "figures").mkdir()
        files.update(write_figures({"denoised_maps": lambda: plot_denoised(noisy, result, truth=truth,
                                                                      pixel_size_angstrom=first.pixel_size_angstrom)},
                                   tmp / "figures", fmt=args.format, dpi=args.dpi))  # fmt: skip
    s = result.summary()
    spread = f", median 1σ {s['median_sigma']:.3g} counts" if s["median_sigma"] is not None else ""
    how = ""
    if "network" in result.parameters:
        w = result.parameters["blend"]["network_weight"]
        w = ", ".join(f"{x:.2f}" for x in w) if isinstance(w, list) else f"{w:.2f}"
        how = f" ({result.parameters['network']}), blended with the Gaussian filter at network weight {w},"
    print(f"denoised {len(edxs)} series by {s['method']}{how}: dose {s['dose_min']:.3g} to {s['dose_max']:.3g} "
          f"counts per pixel{spread}")  # fmt: skip
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from ..elemental.reconstruct import reconstruct_elemental, reconstruct_separate

    check_output_folder(args.out)
    haadf, edxs = read_series_folder(args.series, haadf=not args.no_haadf)
    with output_folder(args.out, command="elemental reconstruct", signals=args.signals) as tmp:
        if args.method == "separate":
            result = reconstruct_separate(edxs, n_iter=50 if args.iterations is None else args.iterations)
        else:
            result = reconstruct_elemental(haadf, edxs, regulariser=args.regulariser, sum_to_one=args.sum_to_one,
                                           n_iter=1000 if args.iterations is None else args.iterations, tol=args.tol,
                                           progress=True)  # fmt: skip
        files = _write_result(result, tmp, args)
    print(result.report())
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _composition(args: argparse.Namespace) -> int:
    from ..elemental.composition import composition_from_haadf
    from ..tomo.reconstruct import Volume

    check_output_folder(args.out)
    elements = tuple(e.strip() for e in args.elements.split(","))
    levels = None if args.levels is None else _numbers(args.levels, "--levels")
    if not Path(args.volume).is_file():
        raise ValueError(f"volume file {str(args.volume)!r} does not exist")
    volume = Volume.from_hdf5(args.volume)
    with output_folder(args.out, command="elemental composition", signals=args.signals) as tmp:
        result = composition_from_haadf(volume, elements, levels=levels, max_tilt_degrees=args.max_tilt)
        files = _write_result(result, tmp, args)
    print(result.report())
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _cmd_elemental(args: argparse.Namespace) -> int:
    actions = {"simulate": _simulate, "denoise": _denoise, "reconstruct": _reconstruct, "composition": _composition}
    return actions[args.elemental_command](args)
