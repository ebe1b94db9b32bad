"""The ``atomscount`` command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__
from ._cli_run import Signals, check_output_folder, final_paths, interruption, output_folder


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atomscount",
        description="Quantitative atomic-resolution HAADF-STEM: column fitting, atom counting and more.",
    )
    p.add_argument("--version", action="version", version=f"atomscount {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="fit the bundled example image and write results and figures")
    d.add_argument(
        "--out", type=Path, default=Path("atomscount-demo"), help="output folder (default ./atomscount-demo)"
    )

    f = sub.add_parser("fit", help="detect and fit the atomic columns of an image")
    f.add_argument("image", type=Path, help="image file: .tif .npy .dm3 .dm4 .emd .ser")
    f.add_argument("--pixel-size", type=float, default=None, help="pixel size in Å (default: from the file)")
    f.add_argument(
        "--min-distance",
        type=float,
        default=None,
        help="smallest column spacing in Å (default: 0.7 x the spacing estimated from the image)",
    )
    f.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="use the plain detector with this relative threshold (default: model-based detection, no threshold)",
    )
    f.add_argument("--max-iter", type=int, default=100, help="most fit iterations per pass (default 100)")
    f.add_argument("--width", choices=["shared", "free"], default="shared")
    f.add_argument("--background", choices=["constant", "plane"], default="constant")
    f.add_argument("--noise", choices=["gaussian", "poisson"], default="gaussian")
    f.add_argument("--detector-vacuum", type=float, default=None, help="detector reading of the full beam")
    f.add_argument("--detector-black", type=float, default=None, help="detector reading with no beam")
    f.add_argument("--mask-invalid", action="store_true", help="ignore NaN/inf pixels")
    f.add_argument("--no-figures", action="store_true")
    f.add_argument("--out", type=Path, required=True, help="output folder")
    c = sub.add_parser("count", help="count the atoms in every column of a fit")
    c.add_argument("fit", type=Path, help="fit.h5 written by `atomscount fit` (unconverged columns are not counted)")
    c.add_argument("--library", default=None,
                   help="library HDF5 file, or ELEMENT:AXIS for a shipped one (e.g. Au:001)")  # fmt: skip
    c.add_argument("--method", choices=["icl", "library", "hybrid"], default="icl")
    c.add_argument("--max-components", type=int, default=50, help="G_max of the mixture scan (default 50)")
    c.add_argument("--components", type=int, default=None, help="force this number of components")
    c.add_argument("--first-count", type=int, default=None, help="count of the lowest component (no library)")
    c.add_argument("--crystal", default=None, help="element for the 3D model (default: the library's)")
    c.add_argument("--zone-axis", default=None, help="zone axis for the 3D model (default: the library's)")
    c.add_argument("--alignment", choices=["centre", "top", "bottom"], default="centre")
    c.add_argument("--seed", type=int, default=0, help="seed of the random EM starts")
    c.add_argument("--out", type=Path, required=True, help="output folder")
    lib = sub.add_parser("library", help="build or inspect abTEM simulation libraries")
    lsub = lib.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    lb = lsub.add_parser("build", help="simulate a pure-column SCS library from a settings file")
    lb.add_argument("settings", type=Path, help="TOML with [microscope] and [library] (element, zone_axis, max_atoms)")
    lb.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    lb.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local dask worker processes for the phonon configurations "
        "(default: one per core, at most one per configuration)",
    )
    lb.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep finished configurations in this folder, so that a build cut short resumes",
    )
    ls = lsub.add_parser("show", help="print a library's table and plot SCS against thickness")
    ls.add_argument("file", help="library HDF5 file, or ELEMENT:AXIS for a shipped one (e.g. Pt:110)")
    ls.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG path (default: beside the file, or ELEMENT_AXIS.png here for a shipped one)",
    )
    lsub.add_parser("list", help="the shipped libraries and lensing models, with key SCS values")
    return p


def _cmd_library(args) -> int:
    import tomllib

    from .library import MicroscopeSettings, build_scs_library

    if args.library_command == "build":
        if not args.settings.is_file():
            raise FileNotFoundError(f"settings file does not exist: {str(args.settings)!r}")
        cfg = tomllib.loads(args.settings.read_text())
        settings = MicroscopeSettings.from_dict(cfg.get("microscope", {}))
        spec = cfg.get("library", {})
        missing = {"element", "zone_axis", "max_atoms"} - set(spec)
        if missing:
            raise ValueError(f"settings [library] table lacks {sorted(missing)}")
        import os

        parent = args.out.absolute().parent
        if args.out.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ValueError(f"--out must be a file in a writable folder, got {str(args.out)!r}")
        workers = args.workers or max(1, min(settings.num_configs, os.cpu_count() or 1))
        lib = build_scs_library(spec["element"], spec["zone_axis"], spec["max_atoms"], settings,
                                workers=workers, cache_dir=args.cache)  # fmt: skip
        lib.to_hdf5(args.out)
        print(f"{lib} written to {args.out.resolve()}")
        return 0
    if args.library_command == "list":
        print(_shipped_table())
        return 0
    lib = _load_library(args.file)
    print(repr(lib))
    print(lib.table())
    from .plot import plot_scs_library

    if args.plot is not None:
        png = args.plot
    elif Path(args.file).is_file():
        png = Path(args.file).with_suffix(".png")
    else:
        png = Path(f"{lib.element}_{lib.zone_axis}.png")
    fig = plot_scs_library(lib)
    fig.savefig(png, dpi=110)
    print(f"plot written to {png.resolve()}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    with output_folder(args.out, command="demo", signals=args.signals) as tmp:
        s = run_demo(tmp)
    s["files"] = {k: str(v) for k, v in final_paths(s["files"], tmp, args.out).items()}
    print(f"demo: {s['n_found_columns']} columns fitted ({s['n_true_columns']} true), "
          f"positions {s['position_rms_error_angstrom']:.3f} Å rms from the truth")  # fmt: skip
    for method, r in s["counting"].items():
        print(f"  {method:8s} counted {100 * r['exact_fraction']:5.1f}% of columns exactly, "
              f"{100 * r['within_one_fraction']:5.1f}% within one atom; {r['total_atoms']} atoms "
              f"({s['true_atoms']} true)")  # fmt: skip
    print(f"results and figures written to {args.out.resolve()}")
    for name, path in s["files"].items():
        print(f"  {name:16s} {path}")
    return 0


def _cmd_fit(args) -> int:
    import numpy as np

    from .columns import find_columns, fit_columns
    from .columns.fit import save_fit
    from .io import read_image

    if (args.detector_vacuum is None) != (args.detector_black is None):
        raise ValueError("--detector-vacuum and --detector-black go together: give both or neither")
    check_output_folder(args.out)
    image = read_image(args.image, pixel_size_angstrom=args.pixel_size)
    if args.mask_invalid and not np.isfinite(image.data).any():
        raise ValueError(f"image {str(args.image)!r} has no finite pixels: --mask-invalid leaves nothing")
    with output_folder(args.out, command="fit", signals=args.signals) as tmp:
        if args.detector_vacuum is not None:
            image = image.normalise(detector_vacuum=args.detector_vacuum, detector_black=args.detector_black)
        elif not image.is_normalised:
            warnings.warn("image is not normalised to the incident beam: SCS are in image units × Å²", stacklevel=1)
        if args.mask_invalid:
            from .image import HAADFImage

            finite = np.isfinite(image.data)
            det = HAADFImage(np.where(finite, image.data, np.median(image.data[finite])), image.pixel_size_angstrom,
                             image.metadata)  # fmt: skip
        else:
            det = image
        positions = find_columns(det, min_distance_angstrom=args.min_distance, threshold=args.threshold,
                                 progress=True)  # fmt: skip
        fit = fit_columns(
            image, positions, width=args.width, background=args.background, noise=args.noise,
            mask_invalid=args.mask_invalid, max_iter=args.max_iter, progress=True,
        )  # fmt: skip
        files = save_fit(fit, tmp)
        if not args.no_figures and fit.n_columns:
            from .plot import save_fit_figures

            files.update(save_fit_figures(image, fit, tmp))
    print(fit.report())
    _print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _print_files(files: dict, out: Path) -> None:
    print(f"results written to {out.resolve()}")
    for name, path in files.items():
        print(f"  {name:16s} {path}")


def _shipped_table() -> str:
    """One line per shipped library: range, configurations, SCS at 1/10/20/40 atoms, worst s.e., cell integration."""
    from importlib import resources

    from .library import available_defaults, load_default

    head = (f"{'library':<9} {'N':>6} {'configs':>7} " + " ".join(f"{f'SCS({n})':>9}" for n in (1, 10, 20, 40))
            + f" {'max s.e.':>9} {'cell':>6}   (SCS in Å², 300 kV, HAADF 55-200 mrad)")  # fmt: skip
    lines = [head]
    for element, axis in available_defaults():
        lib = load_default(element, axis)
        vals = " ".join(f"{lib.scs_at(n):9.4f}" if n <= lib.max_atoms else f"{'-':>9}" for n in (1, 10, 20, 40))
        worst = float((lib.scs_sem / lib.scs).max())
        lines.append(f"{element + ':' + axis:<9} {f'1..{lib.max_atoms}':>6} {lib.scs_per_config.shape[0]:>7} "
                     f"{vals} {100 * worst:8.1f}% {lib.microscope().cell_integration:>6}")  # fmt: skip
    base = resources.files("atomscount") / "data" / "libraries"
    models = sorted(e.name[: -len("_lensing.h5")] for e in base.iterdir() if e.name.endswith("_lensing.h5"))
    if models:
        lines.append("lensing and linear models: " + ", ".join(m.replace("_", " [") + "]" for m in models)
                     + '  (load_default_lensing("Au", "Ag", "001"))')  # fmt: skip
    return "\n".join(lines)


def _load_library(spec):
    from .library import ScsLibrary, load_default

    if spec is None:
        return None
    path = Path(spec)
    if path.suffix.lower() in (".h5", ".hdf5") or path.exists():
        return ScsLibrary.from_hdf5(path)
    if ":" in spec:
        element, axis = spec.split(":", 1)
        return load_default(element, axis)
    raise ValueError(f"--library must be an HDF5 file or ELEMENT:AXIS, got {spec!r}")


def _cmd_count(args) -> int:
    import json

    import numpy as np

    from .columns import ColumnFit
    from .counting import count_atoms, model_from_counts, write_model
    from .plot import save_count_figures

    check_output_folder(args.out)
    fit = ColumnFit.from_hdf5(args.fit)
    library = _load_library(args.library)
    crystal = args.crystal or (library.element if library is not None else None)
    axis = args.zone_axis or (library.zone_axis if library is not None else None)
    if crystal and axis:
        _check_crystal(crystal, axis)
    with output_folder(args.out, command="count", signals=args.signals) as tmp:
        # columns whose fit did not converge (spurious, in vacuum, off the image) are not counted
        scs = np.where(fit.converged, fit.scs, np.nan)
        result = count_atoms(scs, method=args.method, library=library, max_components=args.max_components,
                             scs_errors=fit.scs_error, n_components=args.components, first_count=args.first_count,
                             microscope=fit.metadata.get("microscope"), rng=args.seed, progress=True)  # fmt: skip
        files = {"counts": tmp / "counts.h5", "csv": tmp / "counts.csv"}
        result.to_hdf5(files["counts"])
        result.to_csv(files["csv"])
        model = None
        if crystal and axis:
            model = model_from_counts(fit, result, crystal, axis, alignment=args.alignment)
            files["model_xyz"] = write_model(model, tmp / "model.xyz")
            files["model_cif"] = write_model(model, tmp / "model.cif")
        files.update(save_count_figures(fit, result, tmp, model=model))
        files["summary"] = tmp / "summary.json"
        files["summary"].write_text(json.dumps(result.summary(), indent=2))
    print(repr(result))
    for note in result.notes:
        print(f"  - {note}")
    _print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _check_crystal(crystal, axis) -> None:
    """Refuse an unknown element or zone axis for the 3D model before any work."""
    from .library import zone_axis_crystal

    try:
        zone_axis_crystal(crystal, axis)
    except Exception as exc:  # ase raises KeyError/ValueError/RuntimeError for unknown symbols
        raise ValueError(
            f"--crystal {crystal!r} / --zone-axis {axis!r} give no crystal for the 3D model: {exc}"
        ) from None


def _short_warning(message, category, filename, lineno, line=None):
    return f"atomscount: {category.__name__}: {message}\n"


def main(argv=None) -> int:
    warnings.formatwarning = _short_warning  # users read the message, not our source line
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"demo": _cmd_demo, "fit": _cmd_fit, "count": _cmd_count, "library": _cmd_library}
    with Signals() as signals:
        args.signals = signals
        try:
            return handlers[args.command](args)
        except BaseException as exc:
            code = interruption(exc)
            if code is not None:
                what = "interrupted" if code == 130 else "terminated"
                print(f"atomscount {args.command}: {what}; no output written", file=sys.stderr)
                return code
            if isinstance(exc, (ValueError, TypeError, OSError)):
                print(f"atomscount {args.command}: error: {exc}", file=sys.stderr)
                return 2
            raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
