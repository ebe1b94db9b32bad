"""Benchmark of the abTEM pure-column library builder: speed, naive baseline, convergence.

- Speed: an Au [001] library for N = 1..30 with 8 frozen-phonon configurations at
  the default settings (``simulations/default_libraries.toml``): one multislice
  pass per configuration with an exit plane per period, scanning only the column's
  Voronoi cell.
- Naive baseline, in the same run: one full-unit-cell scan per thickness at the same
  sampling (no exit planes), timed for N = 1, 2, 3 and extrapolated linearly in N to
  the whole library (times the number of configurations).
- Convergence: the SCS change when the scan step and the sampling are halved, the
  supercell doubled and the number of configurations doubled. The first three
  compare the same displaced atoms, so the phonon noise cancels and only the
  setting's own effect remains: for the supercell, each displaced configuration
  is tiled 2 x 2 so that only the period at which the probe wraps around
  changes (with fresh random displacements in a bigger cell, the difference is
  dominated by phonon noise, 6-10 % per configuration). Doubling the
  configurations is a statistical check; its change is also given in units of
  the standard error of the mean (``configs_doubled_over_sem``).
- Convergence runs N = 1..10. The scan, sampling and supercell changes use half
  the configurations (4) with the same seeds, so the phonon noise largely cancels;
  the configuration check compares the default 8 with 16 (nested seeds).
- Cell integration: the shipped libraries sum the scan-grid midpoints inside the
  column's Voronoi cell ("grid"); the default for new builds tiles the cell with
  clipped pixel areas ("exact"). Both against a fine reference integration over
  the cell (fine grid, each pixel weighted by its sub-sampled fraction inside) for
  Au [001] and [110] without displacements (``cell_integration_rel_error``).
  Halving the scan step cannot show the grid's error, because both grids can miss
  the same strip along the cell edge.
- Lensing: the shipped Au/Ag [001] atomic-lensing and linear models predict the
  held-out mixed columns (random Au/Ag sequences of 10-30 atoms that were not
  used in the fit) that ``simulations/build_lensing.py`` simulated and shipped;
  the relative errors are computed here. With ``--quick`` a tiny lensing model is
  simulated, fitted and tested in the run instead (coarse settings, N <= 6).

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


def _scanned_column(settings, axis):
    """The library's Au crystal for ``axis``, its scanned column (centre, cell), repeats, period, layers."""
    from atomscount.library.simulate import _lateral_repeats, _layers, clear_of_edges, column_cell

    crystal = clear_of_edges(zone_axis_crystal("Au", axis))
    centre, polygon, _ = column_cell(crystal)
    nx, ny = _lateral_repeats(crystal, settings.lateral_extent_angstrom)
    lx, ly = crystal.cell.lengths()[:2]
    shift = np.array([np.floor(nx / 2) * lx, np.floor(ny / 2) * ly])  # the copy in the middle, as the library
    return crystal, centre + shift, polygon + shift, (nx, ny), crystal.cell.lengths()[2], _layers(crystal)


def _stacked(crystal, reps, n_atoms, period, n_sl):
    """``n_atoms`` periods of the supercell, atomic layers mid-slice (as the library)."""
    atoms = crystal * (*reps, n_atoms)
    atoms.positions[:, 2] += 0.5 * period / n_sl - atoms.positions[:, 2].min() % (period / n_sl)
    atoms.wrap()
    return atoms


def cell_integration_change(settings, n_atoms, axis="001", fine_step=0.1):
    """Relative SCS error of both cell integrations, against a fine reference.

    ``"grid"`` (the shipped libraries) sums the step-grid midpoints inside the
    Voronoi cell, so a strip along the cell edge can be missed (halving the step
    does not reveal it: the finer grid can miss the same strip). ``"exact"`` tiles
    the cell's bounding box with whole pixels weighted by their clipped areas. The
    reference is a ``fine_step`` grid over the whole cell, each point weighted by
    the fraction of its pixel inside the cell from 10 x 10 sub-samples (independent
    of the clipping code), for a crystal without displacements.

    Returns
    -------
    dict
        ``{"grid": rel. errors for N = 1..n_atoms, "exact": ...}``
    """
    from matplotlib.path import Path as PolygonPath

    from atomscount.library.simulate import _scan_points, haadf_exit_planes

    crystal, centre, polygon, (nx, ny), period, n_sl = _scanned_column(settings, axis)
    atoms = _stacked(crystal, (nx, ny), n_atoms, period, n_sl)
    still = dataclasses.replace(settings, rms_displacement_angstrom={"Au": 0.0})

    def integrate(points, areas):
        return haadf_exit_planes(atoms, still, 1, period / n_sl, n_sl, points)[1:] @ areas

    lo, hi = polygon.min(axis=0) - fine_step, polygon.max(axis=0) + fine_step
    grid = np.array(np.meshgrid(np.arange(lo[0] + fine_step / 2, hi[0], fine_step),
                                np.arange(lo[1] + fine_step / 2, hi[1], fine_step), indexing="ij")).reshape(2, -1).T
    sub = ((np.arange(10) + 0.5) / 10 - 0.5) * fine_step
    offsets = np.array(np.meshgrid(sub, sub, indexing="ij")).reshape(2, -1).T
    cell = PolygonPath(polygon)
    weight = np.array([cell.contains_points(p + offsets).mean() for p in grid])
    reference = integrate(grid[weight > 0], weight[weight > 0] * fine_step**2)
    step = settings.scan_step_angstrom
    return {mode: integrate(*_scan_points(centre, polygon, step, exact=mode == "exact")) / reference - 1.0
            for mode in ("grid", "exact")}  # fmt: skip


def wraparound_change(settings, n_atoms, n_configs):
    """Max relative SCS change (N = 1..n_atoms) when the supercell is doubled with the same displaced atoms."""
    from atomscount.library.simulate import _scan_points, haadf_exit_planes

    crystal, centre, polygon, (nx, ny), period, n_sl = _scanned_column(settings, "001")
    points, areas = _scan_points(centre, polygon, settings.scan_step_angstrom,
                                 exact=settings.cell_integration == "exact")  # fmt: skip
    still = dataclasses.replace(settings, rms_displacement_angstrom={"Au": 0.0})  # displacements applied here
    rel = []
    for seed in settings.config_seeds()[:n_configs]:
        atoms = _stacked(crystal, (nx, ny), n_atoms, period, n_sl)
        rng = np.random.default_rng(seed)
        atoms.positions += rng.normal(0.0, settings.rms_for("Au"), atoms.positions.shape)
        a = haadf_exit_planes(atoms, still, seed, period / n_sl, n_sl, points)[1:] @ areas
        b = haadf_exit_planes(atoms * (2, 2, 1), still, seed, period / n_sl, n_sl, points)[1:] @ areas
        rel.append((b - a) / a)
    return float(np.max(np.abs(np.mean(rel, axis=0))))


def _build_lensing_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_lensing", HERE.parent / "simulations" / "build_lensing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lensing_shipped():
    """Relative errors of the shipped models on the shipped held-out mixed columns."""
    from importlib import resources

    from atomscount.library import MixedColumns, load_default_lensing, load_default_linear

    base = resources.files("atomscount") / "data" / "libraries"
    test = MixedColumns.from_hdf5(Path(str(base / "AuAg_001_mixed_test.h5")))
    models = {"lensing": load_default_lensing("Au", "Ag", "001"), "linear": load_default_linear("Au", "Ag", "001")}
    out = _build_lensing_module().evaluate(models, test)
    out["lensing_source"] = "shipped held-out simulations (simulations/build_lensing.py), predicted in this run"
    out["lensing_test_settings"] = {k: test.settings[k] for k in ("num_configs", "scan_step_angstrom",
                                                                  "sampling_angstrom")}  # fmt: skip
    return out


def lensing_quick():
    """Simulate, fit and test a tiny Au/Ag lensing model (coarse settings) in this run."""
    import tempfile

    mod = _build_lensing_module()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        mod.main(["--tiny", "--out", tmp])
        report = json.loads((Path(tmp) / "AuAg_001_lensing_test.json").read_text())
    return {k: report[k] for k in ("lensing_mean_rel_error", "lensing_max_rel_error", "linear_mean_rel_error",
                                   "linear_max_rel_error", "n_test_sequences")} | {
        "lensing_source": "tiny model simulated and fitted in this run (--quick)",
        "lensing_seconds": time.perf_counter() - t}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="coarse settings, N = 1..5, 2 configurations")
    ap.add_argument("--integration-atoms", type=int, default=10,
                    help="thickness up to which the cell-integration check runs (40: about 20 min more)")
    ap.add_argument("--wait-for-lensing-minutes", type=float, default=0.0,
                    help="wait this long for the shipped lensing test set (while it is still being built)")  # fmt: skip
    args = ap.parse_args(argv)

    cfg = tomllib.loads((HERE.parent / "simulations" / "default_libraries.toml").read_text())["microscope"]
    settings = MicroscopeSettings.from_dict(cfg)
    max_atoms, conv_atoms = 30, 10
    conv_settings = dataclasses.replace(settings, num_configs=max(2, settings.num_configs // 2))
    if args.quick:
        settings = dataclasses.replace(
            settings, num_configs=2, sampling_angstrom=0.06, outer_angle_mrad=100.0, inner_angle_mrad=40.0,
            scan_step_angstrom=0.4, lateral_extent_angstrom=8.0,
        )  # fmt: skip
        max_atoms, conv_atoms = 5, 3
        conv_settings = settings

    with PeakRSS() as mem:
        t = time.perf_counter()
        lib = build_scs_library("Au", "001", max_atoms, settings, progress=False)
        build_s = time.perf_counter() - t

    naive_seconds(settings, 1)  # warm-up: imports, FFT plans
    naive = {n: naive_seconds(settings, n) for n in (1, 2, 3)}
    slope, intercept = np.polyfit(list(naive), list(naive.values()), 1)
    naive_total = settings.num_configs * sum(intercept + slope * n for n in range(1, max_atoms + 1))

    cs = conv_settings
    base = build_scs_library("Au", "001", conv_atoms, cs, progress=False).scs
    variants = {
        "scan_step_halved": dataclasses.replace(cs, scan_step_angstrom=cs.scan_step_angstrom / 2),
        "sampling_halved": dataclasses.replace(cs, sampling_angstrom=cs.sampling_angstrom / 2),
    }
    conv = {}
    for name, s in variants.items():
        lib_v = build_scs_library("Au", "001", conv_atoms, s, progress=False)
        conv[name] = float(np.max(np.abs(lib_v.scs - base) / base))
        print(f"convergence {name}: {conv[name]:.4f}", flush=True)
    conv["supercell_doubled"] = wraparound_change(cs, conv_atoms, 2)
    print(f"convergence supercell_doubled: {conv['supercell_doubled']:.4f}", flush=True)
    # Configurations: the default number against twice as many. The seeds are nested
    # (the first half of the doubled run are the default's), so one run gives both.
    doubled = build_scs_library("Au", "001", conv_atoms,
                                dataclasses.replace(settings, num_configs=2 * settings.num_configs), progress=False)
    per_cfg = doubled.scs_per_config
    default_mean = per_cfg[: settings.num_configs].mean(axis=0)
    conv["configs_doubled"] = float(np.max(np.abs(doubled.scs - default_mean) / doubled.scs))
    # the change is half the difference of two independent halves: its standard error
    # equals the doubled run's standard error of the mean
    conv_sem = float(np.max(np.abs(doubled.scs - default_mean) / doubled.scs_sem))
    print(f"convergence configs_doubled: {conv['configs_doubled']:.4f} ({conv_sem:.2f} s.e.)", flush=True)
    integ_atoms = args.integration_atoms if not args.quick else 2
    integ = {ax: cell_integration_change(cs, integ_atoms, ax, 0.1 if not args.quick else 0.2)
             for ax in ("001", "110")}  # fmt: skip
    # the figure of the settings in use (default_libraries.toml); both modes are reported
    conv["cell_integration"] = float(max(np.max(np.abs(v[cs.cell_integration])) for v in integ.values()))
    print("cell integration error: " + ", ".join(f"[{k}] {m} {np.min(e):+.4f}..{np.max(e):+.4f}"
                                                 for k, v in integ.items() for m, e in v.items()),
          flush=True)
    systematic = {k: conv[k] for k in ("scan_step_halved", "sampling_halved", "supercell_doubled", "cell_integration")}

    if args.quick:
        lens = lensing_quick()
    else:
        # the shipped held-out set may still be simulating when this starts: wait for it
        deadline = time.time() + 60 * args.wait_for_lensing_minutes
        while True:
            try:
                lens = lensing_shipped()
                break
            except (FileNotFoundError, ValueError) as exc:
                if time.time() > deadline:
                    lens = {"lensing_mean_rel_error": None, "lensing_max_rel_error": None,
                            "linear_mean_rel_error": None, "n_test_sequences": 0,
                            "lensing_error": str(exc)}  # fmt: skip
                    break
                time.sleep(30)

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
        "convergence_max_systematic_change": max(systematic.values()),
        "configs_doubled_over_sem": conv_sem,
        "phonon_sem_rel_max": float(np.max(lib.scs_sem / lib.scs)),
        "phonon_spread_per_config_rel_max": float(np.max(lib.scs_per_config.std(axis=0, ddof=1) / lib.scs)),
        "scs": lib.scs.tolist(),
        "scs_sem": lib.scs_sem.tolist(),
        "convergence_settings": {"atoms": conv_atoms, "num_configs": cs.num_configs,
                                 "configs_compared": [settings.num_configs, 2 * settings.num_configs]},
        "cell_integration_rel_error": {k: {m: e.tolist() for m, e in v.items()} for k, v in integ.items()},
        "cell_integration_in_use": cs.cell_integration,
        "cell_integration_atoms": integ_atoms,
        "phonon_sem_rel_max_doubled_configs": float(np.max(doubled.scs_sem / doubled.scs)),
        **lens,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k not in ("settings", "scs", "scs_sem")}, indent=2))


if __name__ == "__main__":
    main()
