"""``atomscount strain`` and ``atomscount edit``: strain maps of a fit, and correcting columns by hand.

Only the parser is built at import; the lattice stage is imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files


def add_parser(sub, fmt) -> None:
    """Add the ``strain`` and ``edit`` commands to the subparsers ``sub``."""
    s = sub.add_parser(
        "strain",
        formatter_class=fmt,
        help="strain, rotation and displacement maps of fitted columns against a reference lattice",
    )
    s.add_argument("fit", type=Path, help="fit.h5 written by `atomscount fit`, or a StatSTEM result (.mat)")
    s.add_argument("--image", type=Path, default=None,
                   help="image to draw the maps over; the fit's own data (or model) when not given")  # fmt: skip
    s.add_argument("--pixel-size", type=float, default=None,
                   help="pixel size of --image in Å; the file's calibration when not given")  # fmt: skip
    s.add_argument("--region", type=float, nargs=4, metavar=("X0", "X1", "Y0", "Y1"), default=None,
                   help="rectangle in Å whose columns fix the reference lattice; the whole image when not "
                        "given")  # fmt: skip
    s.add_argument("--reference-at", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="StatSTEM's reference: the columns of one sublattice within --cells unit cells "
                        "(|i| + |j|) of the column nearest this point in Å (instead of --region)")  # fmt: skip
    s.add_argument("--cells", type=int, default=3, help="size of the --reference-at region, in unit cells")
    s.add_argument("--sublattice", action="append", default=None,
                   help="column type to map (repeat for several); every type when not given")  # fmt: skip
    s.add_argument("--angle", type=float, default=None,
                   help="hold the angle between the reference vectors at this value in degrees (90 for a cubic "
                        "projection, as StatSTEM); fitted freely when not given")  # fmt: skip
    s.add_argument("--neighbour-radius", type=float, default=1.5,
                   help="neighbours within this many lattice spacings give each column's strain (1.1: only ±a "
                        "and ±b, as StatSTEM)")  # fmt: skip
    s.add_argument("--min-neighbours", type=int, default=3,
                   help="fewer neighbours leave a column without strain (2 with --neighbour-radius 1.1: as "
                        "StatSTEM, one along a and one along b)")  # fmt: skip
    s.add_argument("--polarisation", nargs=2, metavar=("A_SITE", "B_SITE"), default=None,
                   help="also map the B-site displacement from the centre of its four A-site neighbours "
                        "(perovskites), by the types' names")  # fmt: skip
    s.add_argument("--no-figures", action="store_true", help="write the results only, no figures")
    figure_options(s)
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.set_defaults(handler=_cmd_strain)

    e = sub.add_parser("edit", formatter_class=fmt,
                       help="add, remove and retype columns by hand over the image (needs a display)")  # fmt: skip
    e.add_argument("columns", type=Path, help="CSV of positions (x_angstrom, y_angstrom, optional type), "
                                              "e.g. the columns.csv of `atomscount detect` or `fit`")  # fmt: skip
    e.add_argument("image", type=Path, help="image file: .tif .npy .dm3 .dm4 .emd .ser .hspy .mrc")
    e.add_argument("--pixel-size", type=float, default=None,
                   help="pixel size in Å; the file's calibration when not given")  # fmt: skip
    e.add_argument("--types", default=None,
                   help="comma-separated types that the 't' key cycles through, e.g. Sr,Ti; those in the file "
                        "when not given")  # fmt: skip
    e.add_argument("--out", type=Path, default=None,
                   help="CSV to write when the window is closed; COLUMNS with '_edited' added when not "
                        "given")  # fmt: skip
    e.set_defaults(handler=_cmd_edit)


def _cmd_strain(args) -> int:
    from ..columns.fit import ColumnFit

    check_output_folder(args.out)
    if not args.fit.is_file():
        raise FileNotFoundError(f"fit file does not exist: {str(args.fit)!r}")
    if args.region is not None and args.reference_at is not None:
        raise ValueError("give --region or --reference-at, not both")
    if args.fit.suffix.lower() == ".mat":
        fit, image = _statstem(args)
    else:
        fit = ColumnFit.from_hdf5(args.fit)
        image = _backdrop_image(args, fit)
    from ..lattice.polarisation import polarisation_map
    from ..lattice.strain import reference_cells, strain_map

    region = None if args.region is None else tuple(args.region)
    if args.reference_at is not None:
        region = reference_cells(fit, tuple(args.reference_at), n_cells=args.cells)
    strain = strain_map(fit, reference_region=region, sublattice=args.sublattice, angle_degrees=args.angle,
                        neighbour_radius=args.neighbour_radius, min_neighbours=args.min_neighbours)  # fmt: skip
    pol = None
    if args.polarisation is not None:
        pol = polarisation_map(fit, *args.polarisation)
    with output_folder(args.out, command="strain", signals=args.signals) as tmp:
        files = {"hdf5": tmp / "strain.h5", "csv": tmp / "strain.csv"}
        strain.to_hdf5(files["hdf5"])
        strain.to_csv(files["csv"])
        if pol is not None:
            files["polarisation_hdf5"] = tmp / "polarisation.h5"
            pol.to_hdf5(files["polarisation_hdf5"])
        if not args.no_figures:
            from ..lattice.plot import save_strain_figures

            files.update(save_strain_figures(strain, tmp, image=image, polarisation=pol, fmt=args.format,
                                             dpi=args.dpi))  # fmt: skip
    print(strain.report())
    if pol is not None:
        s = pol.summary()
        print(f"polarisation: {s['n_with_vector']} of {s['n_b_columns']} {pol.b_site} columns with four "
              f"{pol.a_site} neighbours; median displacement {_pm(s['median_magnitude_angstrom'])}")  # fmt: skip
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0


def _statstem(args):
    """(fit, image) of a StatSTEM file: its fitted columns (NaN errors), or its input columns."""
    from ..lattice.statstem import read_statstem

    if args.image is not None or args.pixel_size is not None:
        raise ValueError("--image and --pixel-size are for a fit.h5; a StatSTEM file brings its own image")
    res = read_statstem(args.fit)
    if res.fit is not None:
        return res.fit, res.image
    return _as_fit(res.positions, res.types, res.type_names, res.image), res.image


def _as_fit(positions, types, type_names, image):
    """Positions with types as a ColumnFit of unknown heights and errors (all converged)."""
    import numpy as np

    from ..columns.fit import ColumnFit

    n = len(positions)
    nan = np.full(n, np.nan)
    return ColumnFit(positions=positions, positions_error=np.full((n, 2), np.nan), types=types,
                     type_names=type_names, heights=nan, heights_error=nan, widths=nan, widths_error=nan, scs=nan,
                     scs_error=nan, voronoi_scs=nan, background=np.full(3, np.nan), background_error=np.full(3, np.nan),
                     converged=np.ones(n, dtype=bool), input_index=np.arange(n), reduced_chi2=float("nan"),
                     n_iterations=0, image_shape=image.data.shape,
                     pixel_size_angstrom=image.pixel_size_angstrom)  # fmt: skip


def _pm(value) -> str:
    return "none" if value is None else f"{100 * value:.3g} pm"


def _backdrop_image(args, fit):
    """The image the maps are drawn over: --image, else the fit's data (model + residual) or model."""
    from ..image import HAADFImage

    if args.image is not None:
        from ..io import read_image

        image = read_image(args.image, pixel_size_angstrom=args.pixel_size)
        if tuple(image.data.shape) != tuple(fit.image_shape):
            raise ValueError(f"--image has shape {image.data.shape}, but the fit is of an image of shape "
                             f"{tuple(fit.image_shape)}")  # fmt: skip
        return image
    if args.pixel_size is not None:
        raise ValueError("--pixel-size is for --image; the fit has its own pixel size")
    if fit.n_columns == 0:
        return None
    from .._figures import _backdrop

    data, _ = _backdrop(fit, None)
    return HAADFImage(data, fit.pixel_size_angstrom)


def _interactive_backend() -> str | None:
    """The name of matplotlib's backend when it can open a window (or a notebook widget); None otherwise."""
    import matplotlib

    backend = matplotlib.get_backend()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        interactive = rcsetup.interactive_bk
    known = {b.lower() for b in interactive}
    return backend if backend.lower() in known or backend.lower().startswith("module://ipympl") else None


def _cmd_edit(args) -> int:
    from .columns import read_positions_csv

    positions, types = read_positions_csv(args.columns, "COLUMNS")
    out = args.out or args.columns.with_name(f"{args.columns.stem}_edited.csv")
    if out.exists() and out.is_dir():
        raise ValueError(f"--out must be a CSV file, got the folder {str(out)!r}")
    from ..io import read_image

    image = read_image(args.image, pixel_size_angstrom=args.pixel_size)
    import matplotlib

    if _interactive_backend() is None:
        raise ValueError(f"the editor needs a display, but matplotlib's backend is {matplotlib.get_backend()!r} "
                         "(no window can open): run it on a desktop, or set MPLBACKEND (e.g. QtAgg or TkAgg); in "
                         "Jupyter use atomscount.lattice.ColumnEditor with %matplotlib widget")  # fmt: skip
    import matplotlib.pyplot as plt

    from ..lattice.editor import ColumnEditor

    type_names = None if args.types is None else [t.strip() for t in args.types.split(",") if t.strip()]
    editor = ColumnEditor(image, positions, types, type_names=type_names)
    print("click on empty space: add a column; click on a column: remove it; 't': cycle its type; 'z': undo; "
          "close the window to save")  # fmt: skip
    plt.show()
    editor.save(out)
    print(f"{editor.n_columns} columns ({len(positions)} before) written to {out}")
    return 0
