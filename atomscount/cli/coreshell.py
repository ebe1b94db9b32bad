"""``atomscount coreshell``: the core and shell sites of a bimetallic particle from one or two fits."""

from __future__ import annotations

import warnings
from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, print_files, warm_up
from .library import check_crystal


def add_parser(sub, fmt) -> None:
    """Add the ``coreshell`` command to the subparsers ``sub``."""
    cs = sub.add_parser("coreshell", formatter_class=fmt,
                        help="find the core and shell sites of a bimetallic particle from one or two fits")  # fmt: skip
    cs.add_argument("fits", type=Path, nargs="+", metavar="FIT",
                    help="fit.h5 of `atomscount fit`, one per view (two at most); first sets the frame")  # fmt: skip
    cs.add_argument("--lensing", action="append", required=True,
                    help="lensing model HDF5 file, or A:B:AXIS for a shipped one (e.g. Au:Ag:001); once per zone "
                         "axis")  # fmt: skip
    cs.add_argument("--counts", type=Path, action="append", default=[],
                    help="counts.h5 of `atomscount count` for the first fit (atoms per column: the particle's "
                         "shape); again for the second fit to check its total. Without it (the default) the "
                         "particle's faceted shape is fitted from the SCS too")  # fmt: skip
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
    cs.add_argument("--scale-prior", default="0.94,0.02", metavar="MEAN,SD",
                    help="without --counts: the measured over the lensing model's SCS, which the shape fit "
                         "holds at MEAN and the final check allows 3 SD from (0.94: fit_columns on normalised "
                         "images)")  # fmt: skip
    cs.add_argument("--n-anneal", type=int, default=None,
                    help="proposals in the annealing (default 100 per site, at least 50,000)")  # fmt: skip
    cs.add_argument("--n-sample", type=int, default=None,
                    help="proposals sampled at temperature 1 for the per-site probabilities (default 50 per site, "
                         "at least 20,000)")  # fmt: skip
    cs.add_argument("--n-chains", type=int, default=None,
                    help="independent annealing chains; each site takes the majority's element (default 5 "
                         "without --counts, 1 with)")  # fmt: skip
    cs.add_argument("--max-proposals", default=None, metavar="N",
                    help="most annealing and sampling proposals, all chains and passes together; a search "
                         "that reaches it stops there and is reported not converged; 'none' for no cap (default: "
                         "the search's MAX_PROPOSALS, 50 million, about 8 minutes at 10,000 sites)")  # fmt: skip
    cs.add_argument("--seed", type=int, default=0, help="seed of the search")
    cs.add_argument("--no-figures", action="store_true", help="write the results only, no figures")
    figure_options(cs)
    cs.add_argument("--out", type=Path, required=True, help="output folder")
    cs.set_defaults(handler=_cmd_coreshell)


def _load_lensing(spec: str):
    from ..library import load_default_lensing
    from ..library.lensing import LensingModel

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

    from ..columns import ColumnFit
    from ..coreshell.search import SearchWarning, search_core_shell
    from ..counting import ColumnCounts

    check_output_folder(args.out)
    if len(args.fits) > 2:
        raise ValueError(f"give one or two fits (views), got {len(args.fits)}")
    if len(args.counts) > len(args.fits):
        raise ValueError(f"--counts given {len(args.counts)} times for {len(args.fits)} fits")
    axes = [str(a).strip("[]") for a in (args.zone_axis, args.zone_axis2)][: len(args.fits)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"the two fits need different zone axes, got --zone-axis {axes[0]} --zone-axis2 {axes[1]}")
    check_crystal(args.crystal, axes[0])
    try:
        scale_prior = tuple(float(t) for t in args.scale_prior.split(","))
    except ValueError:
        scale_prior = ()
    if len(scale_prior) != 2 or not all(np.isfinite(scale_prior)) or min(scale_prior) <= 0:
        raise ValueError(f"--scale-prior must be two positive numbers MEAN,SD, got {args.scale_prior!r}")
    cap = {}  # the search's own default unless given
    if args.max_proposals is not None:
        text = str(args.max_proposals).strip().replace("_", "").replace(",", "")
        if text.lower() == "none":
            cap["max_proposals"] = None
        elif text.isdigit() and int(text) >= 1:
            cap["max_proposals"] = int(text)
        else:
            raise ValueError(f"--max-proposals must be a positive integer or 'none', got {args.max_proposals!r}")
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
    warm_up()
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
                                      beam_directions=beams, scale_prior=scale_prior,
                                      n_chains=args.n_chains, **cap)  # fmt: skip
        files = {"model": tmp / "model.h5", "model_xyz": tmp / "model.xyz", "model_cif": tmp / "model.cif"}
        model.to_hdf5(files["model"])
        model.write_xyz(files["model_xyz"])
        model.write_cif(files["model_cif"])
        if not args.no_figures:
            from ..coreshell.plot import save_coreshell_figures

            files.update(save_coreshell_figures(model, tmp, views=views, lensing=lensing, fmt=args.format,
                                                dpi=args.dpi))  # fmt: skip
        summary = model.summary()
        summary["core_counts"] = [c.tolist() for c in model.core_counts]
        summary["core_counts_std"] = [np.round(s, 4).tolist() for s in model.core_counts_std]
        summary["inputs"] = {"fits": [str(f) for f in args.fits], "counts": [str(c) for c in args.counts],
                             "lensing": list(args.lensing), "zone_axes": axes}  # fmt: skip
        files["summary"] = tmp / "summary.json"
        files["summary"].write_text(json.dumps(summary, indent=2))
    print(repr(model))
    print_files(final_paths(files, tmp, args.out), args.out)
    if not model.converged:
        # the last line, and a non-zero status: a script must not take this model for an answer
        print(f"NOT CONVERGED: best chi2 {float(model.chi2.sum()):.1f} over {int(model.n_columns.sum())} columns; "
              f"{model.info['convergence']}. The files are written for inspection.")  # fmt: skip
        return 3
    return 0
