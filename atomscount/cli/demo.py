"""``atomscount demo``: fit and count the bundled example image."""

from __future__ import annotations

from pathlib import Path

from ._run import check_output_folder, figure_options, final_paths, output_folder, warm_up


def add_parser(sub, fmt) -> None:
    """Add the ``demo`` command to the subparsers ``sub``."""
    d = sub.add_parser("demo", formatter_class=fmt, help="fit the bundled example image and write results and figures")
    d.add_argument("--out", type=Path, default=Path("atomscount-demo"), help="output folder")
    figure_options(d)
    d.set_defaults(handler=_cmd_demo)


def _cmd_demo(args) -> int:
    from ..demo import run_demo

    check_output_folder(args.out)
    warm_up()
    with output_folder(args.out, command="demo", signals=args.signals) as tmp:
        s = run_demo(tmp, fmt=args.format, dpi=args.dpi)
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
