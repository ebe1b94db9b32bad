"""``atomscount detect`` and ``atomscount fit``: find the atomic columns of an image, and fit them."""

from __future__ import annotations

import warnings
from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files, warm_up


def add_parser(sub, fmt) -> None:
    """Add the ``detect`` and ``fit`` commands to the subparsers ``sub``."""

    def image_options(q):
        q.add_argument("image", type=Path, help="image file: .tif .npy .dm3 .dm4 .emd .ser .hspy .mrc (or a grey "
                                             ".png/.jpg, with a warning)")  # fmt: skip
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
    dt.add_argument("--sublattices", action="store_true",
                    help="sort the columns into the sublattices of the lattice (by position in the cell, by "
                         "brightness where positions do not tell), add the columns the lattice predicts that a fit "
                         "confirms, write each column's sublattice as its type, and the lattice, sublattices and "
                         "fit to sublattices.h5")  # fmt: skip
    dt.add_argument("--out", type=Path, required=True, help="output folder")
    figure_options(dt)
    dt.set_defaults(handler=_cmd_detect)

    f = sub.add_parser("fit", formatter_class=fmt, help="detect and fit the atomic columns of an image")
    image_options(f)
    detect_options(f)
    f.add_argument("--positions", type=Path, default=None,
                   help="CSV of starting positions (columns x_angstrom, y_angstrom, optional type) instead of "
                        "detection, e.g. the columns.csv of `atomscount detect`, edited; or a StatSTEM .mat "
                        "result (its fitted coordinates, else its input ones, with their types)")  # fmt: skip
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
    f.add_argument("--no-figures", action="store_true", help="write the results only, no figures")
    figure_options(f)
    f.add_argument("--out", type=Path, required=True, help="output folder")
    f.set_defaults(handler=_cmd_fit)


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

    from ..image import HAADFImage
    from ..io import read_image

    if (args.detector_vacuum is None) != (args.detector_black is None):
        raise ValueError("--detector-vacuum and --detector-black go together: give both or neither")
    kwargs = {"pixel_size_angstrom": args.pixel_size, "frame": _frame(args.frame)}
    if args.signal is not None:
        kwargs["signal"] = _signal(args.signal)
    try:
        if Path(args.image).suffix.lower() == ".mat":  # a StatSTEM result holds its image
            from ..lattice.statstem import read_statstem

            image = read_statstem(args.image).image
        else:
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
    from ..columns import detect_columns, find_columns

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
        message = detection.notes[-1]
        for api, option in (("pass min_distance_angstrom", "give --min-distance"),
                            ("pixel_size_angstrom (", "--pixel-size ("),
                            ("(find_columns(..., threshold=0.2), --threshold 0.2)", "(--threshold 0.2)")):  # fmt: skip
            message = message.replace(api, option)
        raise ValueError(message)
    return detection.positions, detection


def _cmd_detect(args) -> int:
    import csv

    from ..columns.plot import save_detection_figure

    check_output_folder(args.out)
    warm_up()
    image, det = _read(args)
    with output_folder(args.out, command="detect", signals=args.signals) as tmp:
        positions, detection = _detect(args, det)
        types = ["column"] * len(positions)
        files = {"csv": tmp / "columns.csv"}
        if args.sublattices:
            from ..lattice.sublattice import find_sublattices

            subl = find_sublattices(positions, image=det)
            positions, types = subl.positions, list(subl.type_names())
            files["sublattices"] = tmp / "sublattices.h5"
            subl.to_hdf5(files["sublattices"])
            print(repr(subl))
        with open(files["csv"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x_angstrom", "y_angstrom", "type"])
            for (x, y), t in zip(positions, types, strict=True):
                w.writerow([f"{x:.6f}", f"{y:.6f}", t])
        if detection is not None:
            files["hdf5"] = tmp / "detection.h5"
            detection.to_hdf5(files["hdf5"])
        files["figure"] = save_detection_figure(image, positions, tmp / "detection.png", detection=detection,
                                                fmt=args.format, dpi=args.dpi)  # fmt: skip
    print(f"{len(positions)} columns found" + (f" ({'; '.join(detection.notes)})" if detection is not None else ""))
    print("check detection.png; edit columns.csv (add rows, delete rows, set types) and pass it to "
          "`atomscount fit --positions` (or --types)")  # fmt: skip
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def read_positions_csv(path, option: str):
    """(positions (n, 2) [Å], types or None) from a CSV with x_angstrom/y_angstrom (or x/y) and an optional type."""
    import csv

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} file does not exist: {str(path)!r}")
    if path.suffix.lower() == ".mat":
        from ..lattice.statstem import read_statstem

        res = read_statstem(path)
        names = np.asarray(res.type_names)
        if res.fit is not None:
            return np.asarray(res.fit.positions), [str(t) for t in np.asarray(res.fit.type_names)[res.fit.types]]
        return res.positions, [str(t) for t in names[res.types]]
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
    from ..columns import fit_columns
    from ..columns.fit import save_fit

    check_output_folder(args.out)
    if args.positions is not None and args.types is not None:
        raise ValueError("give --positions or --types, not both (--types is a positions file with a type column)")
    given = None
    if args.positions is not None or args.types is not None:
        option = "--positions" if args.positions is not None else "--types"
        given = read_positions_csv(args.positions or args.types, option)
        if option == "--types" and given[1] is None:
            raise ValueError(f"--types file {str(args.types)!r} has no 'type' column")
    warm_up()
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
        files = save_fit(fit, tmp, image=image)  # fit.h5 keeps the data, so that figures drawn from it show the image
        if not args.no_figures and fit.n_columns:
            from ..columns.plot import save_fit_figures

            files.update(save_fit_figures(image, fit, tmp, fmt=args.format, dpi=args.dpi))
    print(fit.report())
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0
