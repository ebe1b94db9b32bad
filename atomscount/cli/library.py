"""``atomscount library``: build, show and list the SCS libraries; the library options of other commands."""

from __future__ import annotations

from pathlib import Path

from ._run import figure_options


def add_parser(sub, fmt) -> None:
    """Add the ``library`` command and its actions to the subparsers ``sub``."""
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
        help="figure path (its suffix set by --format); beside the file, or ELEMENT_AXIS.png here for a "
        "shipped one, when not given",
    )
    figure_options(ls)
    lsub.add_parser("list", formatter_class=fmt, help="the shipped libraries and lensing models, with key SCS values")
    lib.set_defaults(handler=_cmd_library)


def _cmd_library(args) -> int:
    import tomllib

    from ..library import MicroscopeSettings, build_scs_library

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
    lib = load_library(args.file, option="FILE")
    print(repr(lib))
    print(lib.table())
    from .._figures import write_figures
    from ..library.plot import plot_scs_library

    if args.plot is not None:
        plot = args.plot
    elif Path(args.file).is_file():
        plot = Path(args.file)
    else:
        plot = Path(f"{lib.element}_{lib.zone_axis}")
    written = write_figures({plot.stem: lambda: plot_scs_library(lib)}, plot.parent, fmt=args.format, dpi=args.dpi)
    print(f"plot written to {written[plot.stem].resolve()}")
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


def _shipped_table() -> str:
    """One line per shipped library: range, configurations, SCS at 1/10/20/40 atoms, worst s.e., cell integration."""
    from importlib import resources

    from ..library import available_defaults, load_default

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


def load_library(spec, option: str = "--library"):
    """The library named on the command line: a file (HDF5 or text table) or ELEMENT:AXIS (see resolve_library)."""
    from ..library import resolve_library

    if spec is None:
        return None
    if Path(spec).suffix.lower() in (".h5", ".hdf5", ".txt", ".csv", ".dat") and not Path(spec).exists():
        raise ValueError(f"{option} file {spec!r} does not exist")
    return resolve_library(spec, name=option)


def check_crystal(crystal, axis) -> None:
    """Refuse an unknown element or zone axis for the 3D model before any work."""
    from ..library import zone_axis_crystal

    try:
        zone_axis_crystal(crystal, axis)
    except Exception as exc:  # ase raises KeyError/ValueError/RuntimeError for unknown symbols
        raise ValueError(
            f"--crystal {crystal!r} / --zone-axis {axis!r} give no crystal for the 3D model: {exc}"
        ) from None
