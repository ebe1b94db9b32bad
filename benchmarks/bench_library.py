"""Benchmark of the abTEM pure-column library builder: speed, naive baseline, convergence.

- Speed: an Au [001] library for N = 1..30 with 8 frozen-phonon configurations at
  the default settings (``simulations/default_libraries.toml``): one multislice
  pass per configuration with an exit plane per period, scanning only the column's
  Voronoi cell.
- Naive baseline, in the same run: one full-unit-cell scan per thickness at the same
  sampling (no exit planes), timed for N = 1, 2, 3 and extrapolated linearly in N to
  the whole library (times the number of configurations).
- Convergence: the SCS change when the scan step, the sampling and the supercell
  size are each halved/doubled and the number of configurations doubled.
- Lensing: not built yet (issue 3 in progress); its keys are null.

Usage: python benchmarks/bench_library.py --out FILE.json [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PeakRSS  # noqa: E402

from atomscount.io import atomic_path  # noqa: E402
from atomscount.library import MicroscopeSettings, build_scs_library, zone_axis_crystal  # noqa: E402


def naive_seconds(settings, n_atoms):
    """Time one full-unit-cell scan of an Au [001] crystal N periods thick (one configuration)."""
    import abtem

    crystal = zone_axis_crystal("Au", "001")
    a = crystal.cell.lengths()[0]
    reps = int(np.ceil(settings.lateral_extent_angstrom / a))
    atoms = crystal * (reps, reps, n_atoms)
    atoms.positions[:, 2] += a / 4
    atoms.wrap()
    fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas={"Au": settings.rms_for("Au")}, seed=(1,))
    pot = abtem.Potential(fp, sampling=settings.sampling_angstrom, slice_thickness=a / 2, projection="infinite",
                          parametrization="lobato")  # fmt: skip
    probe = abtem.Probe(energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad)
    probe.grid.match(pot)
    scan = abtem.GridScan(start=(0, 0), end=(a, a), sampling=settings.scan_step_angstrom, endpoint=False)
    det = abtem.AnnularDetector(inner=settings.inner_angle_mrad, outer=settings.outer_angle_mrad)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe.scan(pot, scan=scan, detectors=det).compute(progress_bar=False, scheduler="synchronous")
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="coarse settings, N = 1..5, 2 configurations")
    args = ap.parse_args(argv)

    cfg = tomllib.loads((HERE.parent / "simulations" / "default_libraries.toml").read_text())["microscope"]
    settings = MicroscopeSettings.from_dict(cfg)
    max_atoms, conv_atoms = 30, 10
    if args.quick:
        settings = dataclasses.replace(
            settings, num_configs=2, sampling_angstrom=0.06, outer_angle_mrad=100.0, inner_angle_mrad=40.0,
            scan_step_angstrom=0.4, lateral_extent_angstrom=8.0,
        )  # fmt: skip
        max_atoms, conv_atoms = 5, 3

    with PeakRSS() as mem:
        t = time.perf_counter()
        lib = build_scs_library("Au", "001", max_atoms, settings, progress=False)
        build_s = time.perf_counter() - t

    naive_seconds(settings, 1)  # warm-up: imports, FFT plans
    naive = {n: naive_seconds(settings, n) for n in (1, 2, 3)}
    slope, intercept = np.polyfit(list(naive), list(naive.values()), 1)
    naive_total = settings.num_configs * sum(intercept + slope * n for n in range(1, max_atoms + 1))

    base = build_scs_library("Au", "001", conv_atoms, settings, progress=False).scs
    variants = {
        "scan_step_halved": dataclasses.replace(settings, scan_step_angstrom=settings.scan_step_angstrom / 2),
        "sampling_halved": dataclasses.replace(settings, sampling_angstrom=settings.sampling_angstrom / 2),
        "supercell_doubled": dataclasses.replace(
            settings, lateral_extent_angstrom=2 * settings.lateral_extent_angstrom
        ),
        "configs_doubled": dataclasses.replace(settings, num_configs=2 * settings.num_configs),
    }
    conv = {}
    for name, s in variants.items():
        scs = build_scs_library("Au", "001", conv_atoms, s, progress=False).scs
        conv[name] = float(np.max(np.abs(scs - base) / base))

    out = {
        "benchmark": "bench_library",
        "quick": bool(args.quick),
        "library": f"Au [001], N = 1..{max_atoms}, {settings.num_configs} configurations",
        "settings": settings.to_dict(),
        "build_seconds": build_s,
        "peak_memory_mb": mem.mb,
        "n_scan_points": lib.provenance["n_scan_points"],
        "naive_seconds_measured": {str(k): v for k, v in naive.items()},
        "naive_seconds_extrapolated": naive_total,
        "speedup_vs_naive": naive_total / build_s,
        "convergence_atoms": conv_atoms,
        "convergence": conv,
        "convergence_max_rel_change": max(conv.values()),
        "scs": lib.scs.tolist(),
        "scs_sem": lib.scs_sem.tolist(),
        "lensing_mean_rel_error": None,
        "lensing_max_rel_error": None,
        "linear_mean_rel_error": None,
        "n_test_sequences": 0,
        "note": "lensing and linear models are not built yet",
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k not in ("settings", "scs", "scs_sem")}, indent=2))


if __name__ == "__main__":
    main()
