"""The ``atomscount`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from ._cli_run import Signals, check_output_folder, final_paths, interruption, output_folder


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="atomscount", formatter_class=fmt,
        description="Quantitative atomic-resolution HAADF-STEM: column fitting, atom counting and more.",
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"atomscount {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", formatter_class=fmt, help="fit the bundled example image and write results and figures")
    d.add_argument("--out", type=Path, default=Path("atomscount-demo"), help="output folder")

    def image_options(q):
        q.add_argument("image", type=Path, help="image file: .tif .npy .dm3 .dm4 .emd .ser .hspy .mrc")
        q.add_argument("--pixel-size", type=float, default=None,
                       help="pixel size in Å; the file's calibration when not given")  # fmt: skip
        q.add_argument(
            "--signal",
            default=None,
            help="which signal of a multi-signal file, by title or index; the HAADF/ADF one when not given",
        )
        q.add_argument("--frame", default=None,
                       help="which frame of a stack (an index), or 'mean' to average them; frame 0, with a "
                            "warning, when not given")  # fmt: skip
        q.add_argument(
            "--detector-vacuum",
            type=float,
            default=None,
            help="detector reading of the full beam, to normalise the image (give with --detector-black)",
        )
        q.add_argument("--detector-black", type=float, default=None, help="detector reading with no beam")
        q.add_argument("--normalised", action="store_true",
                       help="declare the image already normalised to the incident beam (e.g. by StatSTEM, or a "
                            "simulation): its SCS are in Å² on the library's scale, and `count` holds the library "
                            "scale at 1")  # fmt: skip
        q.add_argument("--mask-invalid", action="store_true", help="ignore NaN/inf pixels instead of refusing them")

    def detect_options(q):
        q.add_argument(
            "--min-distance",
            type=float,
            default=None,
            help="smallest column spacing in Å; 0.7 x the spacing estimated from the image when not given",
        )
        q.add_argument("--threshold", type=float, default=None,
                       help="use the plain detector with this relative threshold (0-1) instead of model-based "
                            "detection")  # fmt: skip
        q.add_argument(
            "--exclude-border", type=float, default=0.0, help="drop columns closer than this to the edge [Å]"
        )

    dt = sub.add_parser(
        "detect",
        formatter_class=fmt,
        help="find the atomic columns only, and draw them over the image to check before fitting",
    )
    image_options(dt)
    detect_options(dt)
    dt.add_argument("--out", type=Path, required=True, help="output folder")

    f = sub.add_parser("fit", formatter_class=fmt, help="detect and fit the atomic columns of an image")
    image_options(f)
    detect_options(f)
    f.add_argument("--positions", type=Path, default=None,
                   help="CSV of starting positions (columns x_angstrom, y_angstrom, optional type) instead of "
                        "detection, e.g. the columns.csv of `atomscount detect`, edited")  # fmt: skip
    f.add_argument(
        "--types",
        type=Path,
        default=None,
        help="CSV of positions with a 'type' column (element or sublattice): widths are shared per type",
    )
    f.add_argument("--max-iter", type=int, default=100, help="most fit iterations per pass")
    f.add_argument("--width", choices=["shared", "free"], default="shared",
                   help="one Gaussian width per column type, or one per column")  # fmt: skip
    f.add_argument("--background", choices=["constant", "plane"], default="constant",
                   help="background under the columns: a constant level, or a tilted plane")  # fmt: skip
    f.add_argument(
        "--noise",
        choices=["gaussian", "poisson"],
        default="gaussian",
        help="least squares (as StatSTEM), or Poisson maximum likelihood for counting-noise images",
    )
    f.add_argument("--no-figures", action="store_true", help="write the results only, no PNG figures")
    f.add_argument("--out", type=Path, required=True, help="output folder")

    c = sub.add_parser("count", formatter_class=fmt, help="count the atoms in every column of a fit")
    c.add_argument("fit", type=Path, help="fit.h5 written by `atomscount fit` (unconverged columns are not counted)")
    c.add_argument("--library", default=None,
                   help="library file: HDF5, or a text table of atoms and SCS (StatSTEM's library .txt, or two "
                        "columns in .csv/.dat); or ELEMENT:AXIS for a shipped one (e.g. Au:001; see `atomscount "
                        "library list`)")  # fmt: skip
    c.add_argument("--normalised", action="store_true",
                   help="declare the fit's SCS normalised (in Å² on the library's scale) even where fit.h5 does not "
                        "say so: the library and hybrid methods hold the library scale at 1 instead of fitting it; "
                        "a fit of a normalised image implies it")  # fmt: skip
    c.add_argument("--method", choices=["icl", "library", "hybrid"], default="icl",
                   help="Gaussian mixture with ICL selection, nearest library SCS, or a mixture tied to the library "
                        "with a free scale")  # fmt: skip
    c.add_argument("--max-components", type=int, default=50, help="largest number of mixture components scanned")
    c.add_argument("--components", type=int, default=None,
                   help="force this number of components; chosen by ICL when not given")  # fmt: skip
    c.add_argument(
        "--first-count",
        type=int,
        default=None,
        help="atoms in the lowest component; from the library, or 1 without one, when not given",
    )
    c.add_argument("--crystal", default=None, help="element for the 3D model; the library's when not given")
    c.add_argument("--zone-axis", default=None, help="zone axis for the 3D model; the library's when not given")
    c.add_argument("--alignment", choices=["centre", "top", "bottom"], default="centre",
                   help="where each column's atoms sit along the beam in the 3D model")  # fmt: skip
    c.add_argument("--seed", type=int, default=0, help="seed of the random EM starts")
    c.add_argument("--out", type=Path, required=True, help="output folder")

    cs = sub.add_parser("coreshell", formatter_class=fmt,
                        help="find the core and shell sites of a bimetallic particle from one or two fits")  # fmt: skip
    cs.add_argument("fits", type=Path, nargs="+", metavar="FIT",
                    help="fit.h5 of `atomscount fit`, one per view (two at most); first sets the frame")  # fmt: skip
    cs.add_argument("--lensing", action="append", required=True,
                    help="lensing model HDF5 file, or A:B:AXIS for a shipped one (e.g. Au:Ag:001); once per zone "
                         "axis")  # fmt: skip
    cs.add_argument("--counts", type=Path, action="append", default=[],
                    help="counts.h5 of `atomscount count` for the first fit (atoms per column: the particle's "
                         "shape); again for the second fit to check its total. Without it the shape is fitted "
                         "too")  # fmt: skip
    cs.add_argument("--zone-axis", default="001", help="zone axis of the first fit")
    cs.add_argument("--zone-axis2", default="110", help="zone axis of the second fit")
    cs.add_argument("--beam2", default=None, metavar="X,Y,Z",
                    help="beam of the second fit in the first fit's frame (x, y of its image, z along its beam), "
                         "as the goniometer gives it; picks the relative orientation, which the data alone leave "
                         "nearly open (the particle turned 180 degrees about the tilt axis)")  # fmt: skip
    cs.add_argument("--crystal", default="Au", help="element whose fcc lattice holds the sites")
    cs.add_argument("--core-element", default="Au", help="element of the core")
    cs.add_argument("--shell-element", default="Ag", help="element of the shell")
    cs.add_argument("--core", choices=["ellipsoid", "sphere", "star"], default="ellipsoid",
                    help="shape of the parametric core that seeds the site-level search")  # fmt: skip
    cs.add_argument("--symmetric", action="store_true",
                    help="mirror symmetry about the particle's mid-plane")  # fmt: skip
    cs.add_argument("--n-core", type=int, default=None, help="known composition: the number of core atoms")
    cs.add_argument("--fit-shape", action="store_true",
                    help="let the search add and remove surface atoms even with --counts")  # fmt: skip
    cs.add_argument("--penalty", type=float, default=0.5, help="cost added to chi2 per exposed core bond")
    cs.add_argument("--n-anneal", type=int, default=None,
                    help="proposals in the annealing (default 100 per site, at least 50,000)")  # fmt: skip
    cs.add_argument("--n-sample", type=int, default=None,
                    help="proposals sampled at temperature 1 for the per-site probabilities (default 50 per site, "
                         "at least 20,000)")  # fmt: skip
    cs.add_argument("--seed", type=int, default=0, help="seed of the search")
    cs.add_argument("--no-figures", action="store_true", help="write the results only, no PNG figures")
    cs.add_argument("--out", type=Path, required=True, help="output folder")

    from ._cli_tomo import add_parser as add_tomo_parser

    add_tomo_parser(sub, fmt)

    lib = sub.add_parser("library", formatter_class=fmt, help="build or inspect abTEM simulation libraries")
    lsub = lib.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    lb = lsub.add_parser("build", formatter_class=fmt, help="simulate pure-column SCS libraries from a settings file")
    lb.add_argument("settings", type=Path,
                    help="TOML with [microscope] and [library] (element, zone_axis, max_atoms) or [libraries] "
                         "(elements, zone_axes, max_atoms), e.g. simulations/default_libraries.toml")  # fmt: skip
    lb.add_argument("--element", default=None, help="build only this element of a [libraries] table")
    lb.add_argument("--zone-axis", default=None, help="build only this zone axis of a [libraries] table")
    lb.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output HDF5 file for one library, or folder (ELEMENT_AXIS.h5 files) for several",
    )
    lb.add_argument("--workers", type=int, default=None,
                    help="local dask worker processes for the phonon configurations; one per core (at most one "
                         "per configuration) when not given")  # fmt: skip
    lb.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep finished configurations in this folder, so that a build cut short resumes",
    )
    ls = lsub.add_parser("show", formatter_class=fmt, help="print a library's table and plot SCS against thickness")
    ls.add_argument("file", help="library file (HDF5, or a text table of atoms and SCS), or ELEMENT:AXIS for a "
                                 "shipped one (e.g. Pt:110)")  # fmt: skip
    ls.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG path; beside the file, or ELEMENT_AXIS.png here for a shipped one, when not given",
    )
    lsub.add_parser("list", formatter_class=fmt, help="the shipped libraries and lensing models, with key SCS values")
    return p


def _cmd_library(args) -> int:
    import tomllib

    from .library import MicroscopeSettings, build_scs_library

    if args.library_command == "build":
        import os

        if not args.settings.is_file():
            raise FileNotFoundError(f"settings file does not exist: {str(args.settings)!r}")
        cfg = tomllib.loads(args.settings.read_text())
        settings = MicroscopeSettings.from_dict(cfg.get("microscope", {}))
        jobs = _library_jobs(cfg, args)
        several = len(jobs) > 1
        if several and args.out.suffix.lower() in (".h5", ".hdf5"):
            raise ValueError(f"--out must be a folder for {len(jobs)} libraries, got the file name {str(args.out)!r}")
        target = args.out if several else args.out.absolute().parent
        if several:
            target.mkdir(parents=True, exist_ok=True)
        if (not several and args.out.is_dir()) or not target.is_dir() or not os.access(target, os.W_OK):
            raise ValueError(f"--out must be {'a writable folder' if several else 'a file in a writable folder'}, "
                             f"got {str(args.out)!r}")  # fmt: skip
        workers = args.workers or max(1, min(settings.num_configs, os.cpu_count() or 1))
        for element, axis, max_atoms in jobs:
            out = args.out / f"{element}_{axis}.h5" if several else args.out
            lib = build_scs_library(element, axis, max_atoms, settings, workers=workers, cache_dir=args.cache)
            lib.to_hdf5(out)
            print(f"{lib} written to {out.resolve()}")
        return 0
    if args.library_command == "list":
        print(_shipped_table())
        return 0
    lib = _load_library(args.file, option="FILE")
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


def _library_jobs(cfg: dict, args) -> list:
    """(element, zone axis, max atoms) of each library a settings file asks for, filtered by --element/--zone-axis."""
    if "library" in cfg:
        spec = cfg["library"]
        missing = {"element", "zone_axis", "max_atoms"} - set(spec)
        if missing:
            raise ValueError(f"settings [library] table lacks {sorted(missing)}")
        jobs = [(spec["element"], str(spec["zone_axis"]), spec["max_atoms"])]
    elif "libraries" in cfg:
        spec = cfg["libraries"]
        missing = {"elements", "zone_axes", "max_atoms"} - set(spec)
        if missing:
            raise ValueError(f"settings [libraries] table lacks {sorted(missing)}")
        jobs = [(e, str(a), spec["max_atoms"]) for e in spec["elements"] for a in spec["zone_axes"]]
    else:
        raise ValueError(f"settings file {str(args.settings)!r} has neither a [library] nor a [libraries] table")
    chosen = [j for j in jobs if args.element in (None, j[0]) and args.zone_axis in (None, j[1])]
    if not chosen:
        raise ValueError(f"--element {args.element!r} / --zone-axis {args.zone_axis!r} match none of "
                         f"{[f'{e}:{a}' for e, a, _ in jobs]}")  # fmt: skip
    return chosen


def _cmd_demo(args) -> int:
    from .demo import run_demo

    check_output_folder(args.out)
    _warm_up()
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


def _frame(text):
    if text is None or text == "mean":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--frame must be an index (0, 1, ...) or 'mean', got {text!r}") from None


def _signal(text):
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _read(args):
    """The image of ``args``, normalised if asked, and the copy that detection sees (NaN filled)."""
    import numpy as np

    from .image import HAADFImage
    from .io import read_image

    if (args.detector_vacuum is None) != (args.detector_black is None):
        raise ValueError("--detector-vacuum and --detector-black go together: give both or neither")
    kwargs = {"pixel_size_angstrom": args.pixel_size, "frame": _frame(args.frame)}
    if args.signal is not None:
        kwargs["signal"] = _signal(args.signal)
    try:
        image = read_image(args.image, **kwargs)
    except ValueError as exc:
        if "pixel_size_angstrom must be given" in str(exc):
            raise ValueError(f"{exc}: give --pixel-size (in Å)") from None
        raise
    if args.mask_invalid and not np.isfinite(image.data).any():
        raise ValueError(f"image {str(args.image)!r} has no finite pixels: --mask-invalid leaves nothing")
    if args.normalised:
        if args.detector_vacuum is not None:
            raise ValueError("give --normalised (the image is normalised already) or --detector-vacuum and "
                             "--detector-black (normalise it here), not both")  # fmt: skip
        if image.metadata.get("normalised") is False:
            warnings.warn(f"image {str(args.image)!r} says it is not normalised; --normalised overrides it",
                          stacklevel=1)  # fmt: skip
        image = HAADFImage(image.data, image.pixel_size_angstrom, image.metadata, normalised=True)
    elif args.detector_vacuum is not None:
        image = image.normalise(detector_vacuum=args.detector_vacuum, detector_black=args.detector_black)
    elif not image.is_normalised:
        warnings.warn("image is not normalised to the incident beam: SCS are in counts·Å² (give --detector-vacuum "
                      "and --detector-black to normalise)", stacklevel=1)  # fmt: skip
    det = image
    if args.mask_invalid:
        finite = np.isfinite(image.data)
        det = HAADFImage(np.where(finite, image.data, np.median(image.data[finite])), image.pixel_size_angstrom,
                         image.metadata)  # fmt: skip
    return image, det


def _detect(args, det):
    """(positions, ColumnDetection or None) by the options of ``args``."""
    from .columns import detect_columns, find_columns

    # an empty result is an error here: the run stops before writing anything, saying what to change
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no columns found")
        if args.threshold is not None:
            pos = find_columns(det, min_distance_angstrom=args.min_distance, threshold=args.threshold,
                               exclude_border_angstrom=args.exclude_border)  # fmt: skip
            if len(pos) == 0:
                raise ValueError(f"no columns found with --threshold {args.threshold:g}: lower it, or leave it out "
                                 "for the model-based detection")  # fmt: skip
            return pos, None
        detection = detect_columns(det, min_distance_angstrom=args.min_distance,
                                   exclude_border_angstrom=args.exclude_border, progress=True)  # fmt: skip
    if detection.n_columns == 0:
        raise ValueError(detection.notes[-1].replace("pass min_distance_angstrom", "give --min-distance")
                         .replace("pixel_size_angstrom (", "--pixel-size (")
                         .replace("(find_columns(..., threshold=0.2), --threshold 0.2)", "(--threshold 0.2)"))
    return detection.positions, detection


def _cmd_detect(args) -> int:
    import csv

    from .plot import save_detection_figure

    check_output_folder(args.out)
    _warm_up()
    image, det = _read(args)
    with output_folder(args.out, command="detect", signals=args.signals) as tmp:
        positions, detection = _detect(args, det)
        files = {"csv": tmp / "columns.csv"}
        with open(files["csv"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x_angstrom", "y_angstrom", "type"])
            for x, y in positions:
                w.writerow([f"{x:.6f}", f"{y:.6f}", "column"])
        if detection is not None:
            files["hdf5"] = tmp / "detection.h5"
            detection.to_hdf5(files["hdf5"])
        files["figure"] = save_detection_figure(image, positions, tmp / "detection.png", detection=detection)
    print(f"{len(positions)} columns found" + (f" ({'; '.join(detection.notes)})" if detection is not None else ""))
    print("check detection.png; edit columns.csv (add rows, delete rows, set types) and pass it to "
          "`atomscount fit --positions` (or --types)")  # fmt: skip
    _print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def read_positions_csv(path, option: str):
    """(positions (n, 2) [Å], types or None) from a CSV with x_angstrom/y_angstrom (or x/y) and an optional type."""
    import csv

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} file does not exist: {str(path)!r}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{option} file {str(path)!r} holds no rows")
    keys = {k.strip().lower(): k for k in rows[0] if k}
    xk = keys.get("x_angstrom", keys.get("x"))
    yk = keys.get("y_angstrom", keys.get("y"))
    if xk is None or yk is None:
        raise ValueError(f"{option} file {str(path)!r} needs columns x_angstrom and y_angstrom (or x and y), "
                         f"got {sorted(keys)}")  # fmt: skip
    try:
        pos = np.array([[float(r[xk]), float(r[yk])] for r in rows])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{option} file {str(path)!r} has a position that is not a number: {exc}") from None
    tk = keys.get("type")
    types = [r[tk].strip() for r in rows] if tk is not None else None
    return pos, types


def _cmd_fit(args) -> int:
    from .columns import fit_columns
    from .columns.fit import save_fit

    check_output_folder(args.out)
    if args.positions is not None and args.types is not None:
        raise ValueError("give --positions or --types, not both (--types is a positions file with a type column)")
    given = None
    if args.positions is not None or args.types is not None:
        option = "--positions" if args.positions is not None else "--types"
        given = read_positions_csv(args.positions or args.types, option)
        if option == "--types" and given[1] is None:
            raise ValueError(f"--types file {str(args.types)!r} has no 'type' column")
    _warm_up()
    image, det = _read(args)
    with output_folder(args.out, command="fit", signals=args.signals) as tmp:
        if given is None:
            positions, types = _detect(args, det)[0], None
        else:
            positions, types = given
        fit = fit_columns(
            image, positions, types=types, width=args.width, background=args.background, noise=args.noise,
            mask_invalid=args.mask_invalid, max_iter=args.max_iter, progress=True,
        )  # fmt: skip
        files = save_fit(fit, tmp)
        if not args.no_figures and fit.n_columns:
            from .plot import save_fit_figures

            files.update(save_fit_figures(image, fit, tmp))
    print(fit.report())
    _print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _warm_up() -> None:
    """Compile the numba kernels with a progress bar on the first run (otherwise a silent minute)."""
    from ._warmup import compile_kernels, kernels_compiled

    if not kernels_compiled():
        print("atomscount: first run on this machine: compiling the numerical kernels (about a minute, once)",
              file=sys.stderr)  # fmt: skip
        compile_kernels(progress=True)


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


def _load_library(spec, option: str = "--library"):
    """The library named on the command line: a file (HDF5 or text table) or ELEMENT:AXIS (see resolve_library)."""
    from .library import resolve_library

    if spec is None:
        return None
    if Path(spec).suffix.lower() in (".h5", ".hdf5", ".txt", ".csv", ".dat") and not Path(spec).exists():
        raise ValueError(f"{option} file {spec!r} does not exist")
    return resolve_library(spec, name=option)


def _cmd_count(args) -> int:
    import json

    import numpy as np

    from .columns import ColumnFit
    from .counting import count_atoms, model_from_counts, write_model
    from .plot import save_count_figures

    check_output_folder(args.out)
    fit = ColumnFit.from_hdf5(args.fit)
    library = _load_library(args.library)
    normalised = True if args.normalised else fit.normalised
    if library is not None and normalised is False and args.method != "hybrid":
        raise ValueError(f"{str(args.fit)!r} holds the SCS of an unnormalised image (counts·Å²), the library's are "
                         f"in Å² of a normalised one: use --method hybrid (it fits the scale between them), fit "
                         f"the image again with --detector-vacuum and --detector-black to normalise it, or give "
                         f"--normalised if it was normalised elsewhere")  # fmt: skip
    _warm_up()
    crystal = args.crystal or (library.element if library is not None else None)
    axis = args.zone_axis or (library.zone_axis if library is not None else None)
    if crystal and axis:
        _check_crystal(crystal, axis)
    with output_folder(args.out, command="count", signals=args.signals) as tmp:
        # columns whose fit did not converge (spurious, in vacuum, off the image) are not counted
        mask = np.array(fit.converged, dtype=bool)
        if not mask.any():
            raise ValueError(f"no column of {str(args.fit)!r} converged: nothing to count")
        # a converged column with a negative (or NaN) SCS holds no atoms to count: say which, and leave it out
        bad = np.flatnonzero(mask & ~(np.asarray(fit.scs) >= 0))
        left_out = []
        if bad.size:
            shown = ", ".join(f"{i} ({fit.scs[i]:.4g})" for i in bad[:5]) + (", ..." if bad.size > 5 else "")
            left_out = [f"{bad.size} converged columns with a negative or NaN SCS are not counted (-1): {shown}; "
                        "check the background of the fit"]  # fmt: skip
            warnings.warn(left_out[0], stacklevel=1)
            mask[bad] = False
            if not mask.any():
                raise ValueError(f"no column of {str(args.fit)!r} has a converged fit with an SCS >= 0: nothing to "
                                 "count")  # fmt: skip
        result = count_atoms(fit.scs, method=args.method, library=library, max_components=args.max_components,
                             scs_errors=fit.scs_error, n_components=args.components, first_count=args.first_count,
                             microscope=fit.metadata.get("microscope"), normalised=normalised, mask=mask,
                             rng=args.seed, progress=True)  # fmt: skip
        if left_out:
            import dataclasses

            result = dataclasses.replace(result, notes=list(result.notes) + left_out)
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


def _load_lensing(spec: str):
    from .library import load_default_lensing
    from .library.lensing import LensingModel

    path = Path(spec)
    if path.suffix.lower() in (".h5", ".hdf5") or path.exists():
        return LensingModel.from_hdf5(path)
    parts = spec.split(":")
    if len(parts) == 3:
        return load_default_lensing(*parts)
    raise ValueError(f"--lensing must be an HDF5 file or A:B:AXIS (e.g. Au:Ag:001), got {spec!r}")


def _cmd_coreshell(args) -> int:
    import json

    import numpy as np

    from .columns import ColumnFit
    from .coreshell.search import SearchWarning, search_core_shell
    from .counting import ColumnCounts

    check_output_folder(args.out)
    if len(args.fits) > 2:
        raise ValueError(f"give one or two fits (views), got {len(args.fits)}")
    if len(args.counts) > len(args.fits):
        raise ValueError(f"--counts given {len(args.counts)} times for {len(args.fits)} fits")
    axes = [str(a).strip("[]") for a in (args.zone_axis, args.zone_axis2)][: len(args.fits)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"the two fits need different zone axes, got --zone-axis {axes[0]} --zone-axis2 {axes[1]}")
    _check_crystal(args.crystal, axes[0])
    beams = None
    if args.beam2 is not None:
        if len(args.fits) != 2:
            raise ValueError(f"--beam2 {args.beam2!r} is the beam of a second fit, but {len(args.fits)} fit is given")
        try:
            beam = [float(t) for t in args.beam2.split(",")]
        except ValueError:
            beam = []
        if len(beam) != 3:
            raise ValueError(f"--beam2 must be three numbers X,Y,Z, got {args.beam2!r}")
        beams = [beam]
    pair = sorted((args.core_element, args.shell_element))
    models = {}
    for spec in args.lensing:
        model = _load_lensing(spec)
        if sorted(model.elements) != pair or args.core_element == args.shell_element:
            raise ValueError(f"--lensing {spec!r} is a model for {'/'.join(model.elements)}, but the particle is "
                             f"{args.core_element} (core) / {args.shell_element} (shell)")  # fmt: skip
        models[str(model.zone_axis).strip("[]")] = model
    missing = [a for a in axes if a not in models]
    if missing:
        raise ValueError(f"no --lensing model for zone axis {', '.join(missing)} (given: {sorted(models) or 'none'})")
    fits = [ColumnFit.from_hdf5(f) for f in args.fits]
    counts = []
    for v, path in enumerate(args.counts):
        c = ColumnCounts.from_hdf5(path).counts
        if c.ndim != 1:
            raise ValueError(f"--counts {str(path)!r} holds {c.shape[0]} frames; count a single frame")
        if len(c) != fits[v].n_columns:
            raise ValueError(f"--counts {str(path)!r} has {len(c)} columns, fit {str(args.fits[v])!r} "
                             f"{fits[v].n_columns}")  # fmt: skip
        counts.append(c)
    _warm_up()
    views = [(fit, axis) for fit, axis in zip(fits, axes, strict=True)]
    lensing = {a: models[a] for a in axes}
    with output_folder(args.out, command="coreshell", signals=args.signals) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SearchWarning)  # reported below, with the reason
            model = search_core_shell(views, lensing, args.crystal, core=args.core, counts=counts or None,
                                      symmetric=args.symmetric, rng=args.seed, core_element=args.core_element,
                                      shell_element=args.shell_element, penalty=args.penalty,
                                      n_anneal=args.n_anneal, n_sample=args.n_sample, n_core=args.n_core,
                                      fit_shape=True if args.fit_shape else None,
                                      beam_directions=beams)  # fmt: skip
        files = {"model": tmp / "model.h5", "model_xyz": tmp / "model.xyz", "model_cif": tmp / "model.cif"}
        model.to_hdf5(files["model"])
        model.write_xyz(files["model_xyz"])
        model.write_cif(files["model_cif"])
        if not args.no_figures:
            from .coreshell.plot import save_coreshell_figures

            files.update(save_coreshell_figures(model, tmp, views=views, lensing=lensing))
        summary = model.summary()
        summary["core_counts"] = [c.tolist() for c in model.core_counts]
        summary["core_counts_std"] = [np.round(s, 4).tolist() for s in model.core_counts_std]
        summary["inputs"] = {"fits": [str(f) for f in args.fits], "counts": [str(c) for c in args.counts],
                             "lensing": list(args.lensing), "zone_axes": axes}  # fmt: skip
        files["summary"] = tmp / "summary.json"
        files["summary"].write_text(json.dumps(summary, indent=2))
    print(repr(model))
    if not model.converged:
        print(f"  - the search did not converge: best chi2 {float(model.chi2.sum()):.1f} over "
              f"{int(model.n_columns.sum())} columns; {model.info['convergence']}")  # fmt: skip
    _print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _cmd_tomo(args) -> int:
    from ._cli_tomo import run

    return run(args)


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
    handlers = {
        "demo": _cmd_demo,
        "detect": _cmd_detect,
        "fit": _cmd_fit,
        "count": _cmd_count,
        "library": _cmd_library,
        "coreshell": _cmd_coreshell,
        "tomo": _cmd_tomo,
    }
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


def run() -> None:  # pragma: no cover - the console entry point, run in a process of its own
    """``atomscount`` on the command line: :func:`main`, then exit with its code.

    An interrupted run (130, 143) has cleaned up its output and printed its line
    already; it leaves at once, skipping the interpreter's teardown, where threads
    that the signal caught mid-work (numba, BLAS) once crashed the process (exit
    -11 instead of 143 in a CI run).
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
