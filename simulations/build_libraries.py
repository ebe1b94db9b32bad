"""Build the shipped pure-column SCS libraries with abTEM.

Run:  python simulations/build_libraries.py [--settings simulations/default_libraries.toml]
          [--only Au:001 ...] [--max-atoms N]

Each library goes to ``atomscount/data/libraries/{element}_{zone_axis}.h5`` with its
settings, seeds and provenance inside. A library already present is skipped, so
the build can run in chunks across sessions.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

from atomscount.library import MicroscopeSettings, build_scs_library

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "atomscount" / "data" / "libraries"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "default_libraries.toml")
    ap.add_argument("--only", nargs="*", default=None, help="ELEMENT:AXIS pairs, e.g. Au:001")
    ap.add_argument("--max-atoms", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=OUT, help="where the libraries go (default: the package's)")
    ap.add_argument("--cell-integration", choices=["exact", "grid"], default=None,
                    help="override the settings file's cell integration")
    ap.add_argument("--workers", type=int, default=None,
                    help="run the phonon configurations on a local dask cluster of this many processes")
    ap.add_argument("--refit-curves", action="store_true",
                    help="refit the extrapolation curve of the libraries present, simulating nothing")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="where abTEM runs; gpu needs CuPy and runs the tasks in this process")  # fmt: skip
    args = ap.parse_args(argv)
    if args.device == "gpu":
        import abtem

        abtem.config.set({"device": "gpu"})
        args.workers = None
    if args.refit_curves:
        import dataclasses

        from atomscount.library import ScsLibrary
        from atomscount.library.scs import _fit_curve

        for path in sorted(OUT.glob("*_???.h5")):
            lib = ScsLibrary.from_hdf5(path)
            dataclasses.replace(lib, curve=_fit_curve(lib.n_atoms, lib.scs, lib.scs_sem)).to_hdf5(path)
            print(f"{path.name}: curve refitted")
        return
    cfg = tomllib.loads(args.settings.read_text())
    micro = dict(cfg["microscope"])
    if args.cell_integration:
        micro["cell_integration"] = args.cell_integration
    settings = MicroscopeSettings.from_dict(micro)
    lib_cfg = cfg["libraries"]
    max_atoms = args.max_atoms or lib_cfg["max_atoms"]
    jobs = [(el, ax) for el in lib_cfg["elements"] for ax in lib_cfg["zone_axes"]]
    if args.only:
        jobs = [tuple(s.split(":")) for s in args.only]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for el, ax in jobs:
        path = args.out_dir / f"{el}_{ax}.h5"
        if path.exists():
            print(f"{path.name}: present, skipped")
            continue
        t = time.perf_counter()
        # finished configurations are kept in _work/, so a build cut short resumes
        cache = HERE / "_work" / f"library_{el}_{ax}"  # task files are named by a hash of their settings
        lib = build_scs_library(el, ax, max_atoms, settings, cache_dir=cache,
                                workers=args.workers)
        lib.to_hdf5(path)
        print(f"{path.name}: {lib} in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
