"""``atomscount count``: count the atoms in every column of a fit."""

from __future__ import annotations

import warnings
from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files, warm_up
from .library import check_crystal, load_library


def add_parser(sub, fmt) -> None:
    """Add the ``count`` command to the subparsers ``sub``."""
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
    figure_options(c)
    c.set_defaults(handler=_cmd_count)


def _cmd_count(args) -> int:
    import json

    import numpy as np

    from ..columns import ColumnFit
    from ..counting import count_atoms, model_from_counts, write_model
    from ..counting.plot import save_count_figures

    check_output_folder(args.out)
    fit = ColumnFit.from_hdf5(args.fit)
    library = load_library(args.library)
    normalised = True if args.normalised else fit.normalised
    if library is not None and normalised is False and args.method != "hybrid":
        raise ValueError(f"{str(args.fit)!r} holds the SCS of an unnormalised image (counts·Å²), the library's are "
                         f"in Å² of a normalised one: use --method hybrid (it fits the scale between them), fit "
                         f"the image again with --detector-vacuum and --detector-black to normalise it, or give "
                         f"--normalised if it was normalised elsewhere")  # fmt: skip
    warm_up()
    crystal = args.crystal or (library.element if library is not None else None)
    axis = args.zone_axis or (library.zone_axis if library is not None else None)
    if crystal and axis:
        check_crystal(crystal, axis)
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
        files.update(save_count_figures(fit, result, tmp, model=model, fmt=args.format, dpi=args.dpi))
        files["summary"] = tmp / "summary.json"
        files["summary"].write_text(json.dumps(result.summary(), indent=2))
    print(repr(result))
    for note in result.notes:
        print(f"  - {note}")
    print_files(final_paths(files, tmp, args.out), args.out)
    return 0
