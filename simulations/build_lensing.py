"""Build the shipped Au/Ag atomic-lensing and linear models from abTEM simulations.

Needs the pure Au and Ag libraries for the zone axis (simulations/build_libraries.py).
Writes, into atomscount/data/libraries/:

- ``{A}{B}_{axis}_mixed_train.h5`` and ``..._mixed_test.h5``: the mixed-column SCS of random
  sequences, and ``..._mixed_train_blocks.h5``, ``..._mixed_test_blocks.h5`` those of core-shell
  columns (shell, a core block, shell) when the settings ask for them;
- ``{A}{B}_{axis}_lensing.h5`` and ``..._linear.h5``: the fitted models;
- ``{A}{B}_{axis}_lensing_test.json`` and ``.png`` (``_blocks.png``): their errors on the held-out
  sequences.

Run:  python simulations/build_lensing.py [--settings simulations/lensing_auag.toml] [--tiny]
      [--libraries DIR] [--workers N] [--device gpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from pathlib import Path

import numpy as np

from atomscount.io import atomic_path
from atomscount.library import (
    LensingModel,
    LinearModel,
    MicroscopeSettings,
    MixedColumns,
    ScsLibrary,
    load_default,
    simulate_mixed_columns,
    zone_axis_crystal,
)

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "atomscount" / "data" / "libraries"


def random_sequences(rng, elements, count, lengths):
    lo, hi = (lengths, lengths) if np.isscalar(lengths) else lengths
    return ["".join(rng.choice(elements, size=int(rng.integers(lo, hi + 1)))) for _ in range(count)]


def block_sequences(rng, inner, outer, count, lengths):
    """Columns through a core-shell particle: ``outer`` atoms, a block of ``inner``, ``outer`` again.

    Each column gets a length in ``lengths`` (a number or an inclusive range), a core
    block of at least one atom and a random split of the rest above and below it.
    """
    lo, hi = (lengths, lengths) if np.isscalar(lengths) else lengths
    out = []
    for _ in range(count):
        n = int(rng.integers(lo, hi + 1))
        core = int(rng.integers(1, n))
        above = int(rng.integers(0, n - core + 1))
        out.append(outer * above + inner * core + outer * (n - core - above))
    return out


def evaluate(models, mixed: MixedColumns) -> dict:
    out = {"n_test_sequences": len(mixed.sequences)}
    last = [(tuple(e for e in row if e), mixed.scs[i, len([e for e in row if e]) - 1])
            for i, row in enumerate(mixed.sequences)]  # fmt: skip
    seqs = [s for s, _ in last]
    truth = np.array([v for _, v in last])
    for name, model in models.items():
        rel = (model.predict(seqs) - truth) / truth
        out[f"{name}_mean_rel_error"] = float(np.mean(np.abs(rel)))
        out[f"{name}_max_rel_error"] = float(np.max(np.abs(rel)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=Path, default=HERE / "lensing_auag.toml")
    ap.add_argument("--tiny", action="store_true", help="coarse smoke run into --out, not the package")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the frozen-phonon tasks on a local dask cluster of this many processes",
    )
    ap.add_argument(
        "--libraries",
        type=Path,
        default=None,
        help="read the pure libraries ({El}_{axis}.h5) from this folder, not the shipped ones",
    )
    ap.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="where abTEM runs; gpu needs CuPy and runs the tasks in this process (--workers 1)",
    )
    args = ap.parse_args(argv)
    if args.device == "gpu":
        import abtem

        abtem.config.set({"device": "gpu"})
        args.workers = 1
    cfg = tomllib.loads(args.settings.read_text())["lensing"]
    elements, axis = cfg["elements"], cfg["zone_axis"]
    if args.tiny:
        from atomscount.library import build_scs_library

        settings = MicroscopeSettings(
            num_configs=1, sampling_angstrom=0.08, outer_angle_mrad=80.0, inner_angle_mrad=30.0,
            scan_step_angstrom=0.5, lateral_extent_angstrom=8.0,
        )  # fmt: skip
        libs = [build_scs_library(e, axis, 6, settings, progress=False) for e in elements]
        cfg = dict(cfg, train_sequences=8, train_length=6, test_sequences=8, test_lengths=[3, 6])
        if "block_train_sequences" in cfg:
            cfg.update(block_train_sequences=4, block_test_sequences=4)
    else:
        libs = [load_default(e, axis) if args.libraries is None
                else ScsLibrary.from_hdf5(args.libraries / f"{e}_{axis}.h5") for e in elements]  # fmt: skip
        settings = dataclasses.replace(libs[0].microscope(), scan_step_angstrom=cfg["scan_step_angstrom"],
                                       num_configs=cfg["num_configs"])  # fmt: skip
    rng = np.random.default_rng(cfg["sequence_seed"])
    train = random_sequences(rng, elements, cfg["train_sequences"], cfg["train_length"])
    test = random_sequences(rng, elements, cfg["test_sequences"], tuple(cfg["test_lengths"]))
    jobs = [("train", train), ("test", test)]
    if "block_train_sequences" in cfg:  # core-shell columns: a block of the core element inside the shell
        brng = np.random.default_rng(cfg["block_seed"])
        inner, outer = cfg["block_core"], cfg["block_shell"]
        jobs += [("train_blocks", block_sequences(brng, inner, outer, cfg["block_train_sequences"],
                                                  cfg["train_length"])),
                 ("test_blocks", block_sequences(brng, inner, outer, cfg["block_test_sequences"],
                                                 tuple(cfg["test_lengths"])))]  # fmt: skip
    crystal = zone_axis_crystal(cfg["host"], axis)
    stem = f"{''.join(elements)}_{axis}"
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {}
    work = args.out / "_work" if args.tiny else HERE / "_work"  # finished tasks; a smoke run keeps its own
    for name, seqs in jobs:
        path = args.out / f"{stem}_mixed_{name}.h5"
        if path.exists():
            sets[name] = MixedColumns.from_hdf5(path)
        else:
            # every finished task is kept in _work/, so a run cut short resumes there
            sets[name] = simulate_mixed_columns(
                seqs, crystal, settings, workers=args.workers, cache_dir=work / f"{stem}_{name}"
            )
            sets[name].to_hdf5(path)
    pure_columns = [((lib.element,) * int(n), float(s), float(e))
                    for lib in libs for n, s, e in zip(lib.n_atoms, lib.scs, lib.scs_sem, strict=True)]  # fmt: skip
    training = [c for name in ("train", "train_blocks") if name in sets for c in sets[name].prefixes()]
    lensing = LensingModel.fit(libs, training, zone_axis=axis)
    linear = LinearModel.fit(pure_columns + training, zone_axis=axis, settings=libs[0].settings)
    lensing.to_hdf5(args.out / f"{stem}_lensing.h5")
    linear.to_hdf5(args.out / f"{stem}_linear.h5")
    models = {"lensing": lensing, "linear": linear}
    report = {"lensing": repr(lensing), "linear": repr(linear), "n_train_columns": len(training),
              **evaluate(models, sets["test"])}  # fmt: skip
    if "test_blocks" in sets:
        # the same held-out test for core-shell columns, and what a model fitted to random sequences alone gives
        random_only = LensingModel.fit(libs, sets["train"], zone_axis=axis)
        report["random_only_lensing"] = repr(random_only)
        report.update({f"random_only_{k}": v for k, v in evaluate({"lensing": random_only}, sets["test"]).items()
                       if k.startswith("lensing")})  # fmt: skip
        report.update({f"blocks_{k}": v for k, v in evaluate({**models, "random_only_lensing": random_only},
                                                              sets["test_blocks"]).items()})  # fmt: skip
    with atomic_path(args.out / f"{stem}_lensing_test.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    from atomscount.plot import plot_mixed_predictions

    for name, suffix in (("test", ""), ("test_blocks", "_blocks")):
        if name in sets:
            fig = plot_mixed_predictions(models, sets[name])
            with atomic_path(args.out / f"{stem}_lensing_test{suffix}.png") as tmp:
                fig.savefig(tmp, dpi=110, format="png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
