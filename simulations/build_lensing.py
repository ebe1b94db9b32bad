"""Build the shipped Au/Ag atomic-lensing and linear models from abTEM simulations.

Needs the pure Au and Ag libraries for the zone axis (simulations/build_libraries.py).
Writes, into atomscount/data/libraries/:

- ``{A}{B}_{axis}_mixed_train.h5`` and ``..._mixed_test.h5``: the mixed-column SCS;
- ``{A}{B}_{axis}_lensing.h5`` and ``..._linear.h5``: the fitted models;
- ``{A}{B}_{axis}_lensing_test.json`` and ``.png``: their errors on the held-out sequences.

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
    else:
        libs = [load_default(e, axis) if args.libraries is None
                else ScsLibrary.from_hdf5(args.libraries / f"{e}_{axis}.h5") for e in elements]  # fmt: skip
        settings = dataclasses.replace(libs[0].microscope(), scan_step_angstrom=cfg["scan_step_angstrom"],
                                       num_configs=cfg["num_configs"])  # fmt: skip
    rng = np.random.default_rng(cfg["sequence_seed"])
    train = random_sequences(rng, elements, cfg["train_sequences"], cfg["train_length"])
    test = random_sequences(rng, elements, cfg["test_sequences"], tuple(cfg["test_lengths"]))
    crystal = zone_axis_crystal(cfg["host"], axis)
    stem = f"{''.join(elements)}_{axis}"
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {}
    work = args.out / "_work" if args.tiny else HERE / "_work"  # finished tasks; a smoke run keeps its own
    for name, seqs in (("train", train), ("test", test)):
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
    lensing = LensingModel.fit(libs, sets["train"], zone_axis=axis)
    linear = LinearModel.fit(pure_columns + sets["train"].prefixes(), zone_axis=axis, settings=libs[0].settings)
    lensing.to_hdf5(args.out / f"{stem}_lensing.h5")
    linear.to_hdf5(args.out / f"{stem}_linear.h5")
    report = {"lensing": repr(lensing), "linear": repr(linear),
              **evaluate({"lensing": lensing, "linear": linear}, sets["test"])}  # fmt: skip
    with atomic_path(args.out / f"{stem}_lensing_test.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    from atomscount.plot import plot_mixed_predictions

    fig = plot_mixed_predictions({"lensing": lensing, "linear": linear}, sets["test"])
    with atomic_path(args.out / f"{stem}_lensing_test.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
