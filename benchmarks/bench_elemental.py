"""Benchmark of the elemental stage (issue 28): concentrations from HAADF + EDXS tilt series.

Ground truths (``atomscount.elemental.phantoms``, atoms/Å³ on a voxel grid)
    ``rod``: an Au@Ag core-shell nanorod whose interface is an error function of known
    width (``core_shell_rod``); ``ptau``: a Pt-Au alloy sphere (near-equal Z, where HAADF
    alone cannot tell the elements apart; ``alloy_particle``); ``three``: a Pd core, a Pt
    shell and an Au surface alloy (``three_element_particle``). 128³ voxels of 0.75 Å
    (``--quick``: 40³ voxels of 1.5 Å).

Series
    ±70° in 5° steps (29 projections; ``--quick``: 10° steps, 15), and a fast series of 10
    projections over ±70°. HAADF by ``simulate_haadf`` (default weights ∝ Z^1.7, γ = 1) with
    Poisson noise at the EDXS series' electron dose (the signals are acquired together);
    EDXS by ``simulate_edxs`` at the dose that gives 10, 30 and 100 counts per pixel summed
    over the elements (mean over the pixels the particle covers, over all projections).

Scores
    Per element, the normalised RMSE of the concentration inside the true particle
    (``||c - c_true|| / ||c_true||`` over the voxels where the truth is at least half
    occupied) for separate SIRT per EDXS map (``reconstruct_separate``), HAADF voxel
    composition (``composition_from_haadf`` on a SIRT reconstruction of the HAADF series;
    two-element particles) and ``reconstruct_elemental`` with each regulariser (defaults
    otherwise: weights, γ and regularisation chosen by the method). The counts per pixel
    at which the worst element reaches 10 % error, interpolated in log-log over 10, 30,
    100 counts (extrapolated by a power law, and said so, outside them), and the ratio
    separate / multimodal. The interface width from an erf fit to the core element's
    radial profile in the middle of the rod. Seconds and peak resident memory.

Top-level keys
    ``nrmse_ratio_sirt_over_multimodal_30`` (separate over multimodal "tnv" at 30 counts,
    the lowest over elements and particles), ``dose_ratio_10pct`` (the lowest over the
    particles), ``ptau_concentration_error`` (multimodal, 30 counts, the worse element),
    ``interface_width_rel_error`` (HAADF composition alone, the ``interface`` part: 128³
    voxels of 0.75 Å at 1e4 e/Å² per projection; the particles' coarser grid gives
    ``interface_width_rel_error_particles``), ``seconds_128`` and
    ``peak_memory_mb_128`` (multimodal "tnv", three elements, 29 projections, at 128³; None
    with ``--quick``, whose own size is under ``seconds_quick``), ``fusion_nrmse_ours``,
    ``fusion_nrmse_default`` and ``fusion_nrmse_tuned`` (the 2D comparison).

2D comparison with ``multimodal-fusion`` (``pip install atomscount[bench]``)
    The central slab (one voxel thick) of the three-element particle at one 0° projection:
    HAADF and EDXS maps from the same forward models. ``DataFusion`` with its documented
    defaults (``gamma=1.6``, ``nIter=50``, ``lambdaEDS=0.005``, ``lambdaTV=0.1``), and with
    ``gamma``, ``lambdaEDS`` and ``lambdaTV`` chosen on a grid by the error against the
    truth; ours with its defaults on the same maps (a single-projection series). Each
    output is turned into concentrations the same way (each element's map over the sum
    of the maps) and scored against the true projected composition.

Public data (``../shared/data/public``, read when present): ``_bench_elemental_public.py``
(its docstring): the graptor Yb/Al/Si sinograms (counts), the Han et al. 2021 nanorod and the
fused_2d maps (processed maps: the least-squares path), with the defaults; residuals and
consistency, and ``multimodal-fusion``'s defaults on the same 2D maps.

Usage: python benchmarks/bench_elemental.py --out FILE.json [--quick] [--parts a,b,...]
The JSON file is rewritten after each part, so a long run leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, json_default, save_json_atomic  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_elemental.json"
COUNTS = (10, 30, 100)
REGULARISERS = ("tnv", "tv", "tgv")
PARTS = ("particles", "interface", "timing", "fusion", "public")


def _config(quick: bool) -> dict:
    if quick:
        return {"n": 32, "voxel": 2.0, "angles": np.arange(-70, 71, 10.0), "fast": np.linspace(-70, 70, 10),
                "scaling": (16, 24, 32), "fusion_n": 48, "timing_n": 32, "n_iter": None, "all_regularisers": (30,),
                "public_bin": (2, 8)}  # fmt: skip
    return {"n": 128, "voxel": 0.75, "angles": np.arange(-70, 71, 5.0), "fast": np.linspace(-70, 70, 10),
            "scaling": (64, 128, 192), "fusion_n": 128, "timing_n": 128, "n_iter": None, "all_regularisers": COUNTS,
            "public_bin": (1, 4)}  # fmt: skip


def _phantom(name: str, n: int, voxel: float) -> dict:
    from atomscount.elemental import phantoms

    kw = {"shape": (n, n, n), "voxel_size_angstrom": voxel}
    if name == "rod":
        return phantoms.core_shell_rod(**kw)
    if name == "ptau":
        return phantoms.alloy_particle(elements=("Pt", "Au"), **kw)
    return phantoms.three_element_particle(**kw)


def _truth(densities: dict) -> tuple:
    """(true concentrations (n_el, nz, ny, nx), mask: voxels at least half occupied)."""
    rho = np.stack(list(densities.values()))
    total = rho.sum(axis=0)
    full = np.percentile(total[total > 0], 90)
    mask = total >= 0.5 * full
    conc = np.where(total > 0, rho / np.where(total > 0, total, 1.0), 0.0)
    return conc, mask


def nrmse(conc: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """``||c - c_true|| / ||c_true||`` over ``mask``."""
    return float(np.sqrt(np.sum((conc[mask] - truth[mask]) ** 2) / max(np.sum(truth[mask] ** 2), 1e-30)))


def _scores(result, truth, mask, elements) -> dict:
    order = [list(result.elements).index(e) for e in elements]
    return {
        e: nrmse(result.concentration[i], truth[k], mask) for k, (e, i) in enumerate(zip(elements, order, strict=True))
    }


def _series(densities, voxel, angles, counts, rng) -> tuple:
    """(HAADF TiltSeries, {element: EDXS TiltSeries}, dose [e/Å²]) at ``counts`` per pixel summed over elements."""
    from atomscount.elemental.forward import simulate_edxs, simulate_haadf

    unit = simulate_edxs(densities, voxel, angles, dose_e_per_angstrom2=1.0, noise=False)
    total = sum(s.images for s in unit.values())
    covered = total > 0.01 * total.max()
    dose = counts / float(total[covered].mean())
    edxs = simulate_edxs(densities, voxel, angles, dose_e_per_angstrom2=dose, rng=rng)
    haadf = simulate_haadf(densities, voxel, angles, dose_e_per_angstrom2=dose, rng=rng + 1000)
    return haadf, edxs, dose


def _quiet(fn, *args, **kw):
    """``fn(*args, **kw)`` with its warnings recorded (a non-converged fit warns), and its seconds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        seconds = time.perf_counter() - t0
    return out, seconds, [str(w.message)[:200] for w in caught]


def _haadf_composition(haadf, elements):
    from atomscount.elemental.composition import composition_from_haadf
    from atomscount.tomo import reconstruct

    volume = reconstruct(haadf, n_iter=50, progress=False)
    return composition_from_haadf(volume, elements, max_tilt_degrees=float(np.max(np.abs(haadf.angles))))


def _methods(haadf, edxs, elements, *, with_haadf_composition: bool, regularisers=REGULARISERS,
             n_iter: int | None = None) -> dict:  # fmt: skip
    from atomscount.elemental.reconstruct import reconstruct_elemental, reconstruct_separate

    runs = {"separate": lambda: reconstruct_separate(edxs)}
    if with_haadf_composition:
        runs["haadf_composition"] = lambda: _haadf_composition(haadf, elements)
    for reg in regularisers:
        runs[f"multimodal_{reg}"] = lambda reg=reg: reconstruct_elemental(haadf, edxs, regulariser=reg,
                                                                          progress=False, **_iters(n_iter))  # fmt: skip
    return runs


def _iters(n_iter):
    """``n_iter`` for ``reconstruct_elemental`` where one is given (``--n-iter``); else its default."""
    return {} if n_iter is None else {"n_iter": n_iter}


def _dose_for(errors: dict) -> tuple:
    """(counts per pixel at which the error reaches 0.1, whether extrapolated), in log-log over ``errors``."""
    c = np.array(sorted(errors), dtype=float)
    e = np.array([errors[k] for k in sorted(errors)], dtype=float)
    ok = np.isfinite(e) & (e > 0)
    c, e = c[ok], e[ok]
    if len(c) < 2:
        return None, True
    lc, le = np.log(c), np.log(e)
    for i in range(len(c) - 1):
        if (le[i] - np.log(0.1)) * (le[i + 1] - np.log(0.1)) <= 0 and le[i] != le[i + 1]:
            t = (np.log(0.1) - le[i]) / (le[i + 1] - le[i])
            return float(np.exp(lc[i] + t * (lc[i + 1] - lc[i]))), False
    if e.max() <= 0.1:
        return float(c[0]), True  # below 10 % at every level: at most the lowest
    slope, icept = np.polyfit(lc, le, 1)
    dose = float(np.exp((np.log(0.1) - icept) / slope)) if slope < -0.05 else np.inf
    return (dose if dose < 1e6 else None), True  # None: not reached by any dose in reach of the trend


def _interface_width(conc_core: np.ndarray, voxel: float, mask: np.ndarray) -> float | None:
    """The erf width w of the core element's fraction against the distance r from the rod's axis segment, fitted
    over the particle: ``x(r) = (1 - erf((r - r0) / w)) / 2``, as ``core_shell_rod`` defines it (its axis
    segment along y, of half-length 0.45 ny - 0.3 min(nz, nx) voxels)."""
    from scipy.optimize import curve_fit
    from scipy.special import erf

    nz, ny, nx = conc_core.shape
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2.0) * voxel for n in (nz, ny, nx)], indexing="ij")
    half = max(0.45 * ny * voxel - 0.3 * min(nz, nx) * voxel, 0.0)
    r = np.sqrt(z**2 + x**2 + np.clip(np.abs(y) - half, 0.0, None) ** 2)
    use = mask
    if use.sum() < 20:
        return None
    edges = np.arange(0.0, r[use].max() + voxel / 2, voxel / 2)
    idx = np.digitize(r[use], edges)
    rb = np.array([r[use][idx == i].mean() for i in np.unique(idx)])
    cb = np.array([conc_core[use][idx == i].mean() for i in np.unique(idx)])

    def model(rr, r0, w):
        return 0.5 * (1.0 - erf((rr - r0) / w))

    try:
        (r0, w), _ = curve_fit(
            model, rb, cb, p0=(rb.max() / 2, 3.0 * voxel), bounds=([0, 0.1 * voxel], [rb.max(), rb.max()])
        )
    except RuntimeError:
        return None
    return float(abs(w))


def part_particles(cfg, out, save):
    """Every method on each particle at each count level (full series), and the fast series at 30 counts."""
    res = out.get("particles", {})  # a run of some particles keeps the others'
    only = cfg.get("methods")  # a run of some methods keeps the others' figures (same seeds, same series)
    for name in cfg["particles"]:
        before = res.get(name, {}) if only else {}
        densities = _phantom(name, cfg["n"], cfg["voxel"])
        elements = tuple(densities)
        truth, mask = _truth(densities)
        entry = {"interface_width_truth_fit_angstrom": _interface_width(truth[0], cfg["voxel"], mask)
                 if name == "rod" else None,
                 "elements": list(elements), "shape": list(truth.shape[1:]), "voxel_size_angstrom": cfg["voxel"],
                 "mask_voxels": int(mask.sum()), "counts": {}}  # fmt: skip
        for counts in cfg.get("counts", COUNTS):
            haadf, edxs, dose = _series(densities, cfg["voxel"], cfg["angles"], counts, rng=counts)
            kept = dict(before.get("counts", {}).get(str(counts), {}).get("methods", {}))
            level = {"dose_e_per_angstrom2": dose, "methods": kept}
            regs = REGULARISERS if counts in cfg["all_regularisers"] else ("tnv",)
            runs = _methods(haadf, edxs, elements, with_haadf_composition=len(elements) == 2, regularisers=regs,
                            n_iter=cfg["n_iter"])  # fmt: skip
            runs = {k: v for k, v in runs.items() if not only or k in only}
            for method, run in runs.items():
                try:
                    result, seconds, warned = _quiet(run)
                    m = {"nrmse": _scores(result, truth, mask, elements), "seconds": seconds, "warnings": warned,
                         "converged": bool(result.converged), "iterations": len(result.objective),
                         "regularisation": _plain(result.regularisation), "gamma": result.gamma,
                         "haadf_weights": result.haadf_weights}  # fmt: skip
                    if name == "rod":
                        w = _interface_width(result.concentration[0], cfg["voxel"], mask)
                        m["interface_width_angstrom"] = w
                except Exception as exc:  # a method that fails is reported, the others still run
                    m = {"error": f"{type(exc).__name__}: {exc}"[:400]}
                    traceback.print_exc()
                level["methods"][method] = m
                print(f"{name} {counts} counts {method}: {m.get('nrmse', m.get('error'))}", flush=True)
            entry["counts"][str(counts)] = level
            res[name] = entry
            out["particles"] = res
            save()
        if 30 not in cfg.get("counts", COUNTS):  # the fast series runs with the 30-count level
            _summarise_particles(out, cfg)
            save()
            continue
        # the fast series (10 projections) at 30 counts
        haadf, edxs, dose = _series(densities, cfg["voxel"], cfg["fast"], 30, rng=7)
        fast = dict(before.get("fast_series_30", {}))
        for method in [m for m in ("separate", "multimodal_tnv") if not only or m in only]:
            try:
                runs = _methods(haadf, edxs, elements, with_haadf_composition=False, regularisers=("tnv",),
                                n_iter=cfg["n_iter"])  # fmt: skip
                result, seconds, warned = _quiet(runs[method])
                fast[method] = {"nrmse": _scores(result, truth, mask, elements), "seconds": seconds}
            except Exception as exc:
                fast[method] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        entry["fast_series_30"] = fast
        _summarise_particles(out, cfg)
        save()


def _plain(d):
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _summarise_particles(out, cfg):
    parts = out.get("particles", {})
    ratios, dose_ratios = [], []
    for entry in parts.values():
        lv = entry["counts"]
        at30 = lv.get("30", {}).get("methods", {})
        sep, mm = at30.get("separate", {}).get("nrmse"), at30.get("multimodal_tnv", {}).get("nrmse")
        if sep and mm:
            entry["nrmse_ratio_sirt_over_multimodal_30"] = {e: sep[e] / mm[e] for e in sep}
            ratios.extend(sep[e] / mm[e] for e in sep)
        worst = {}
        for method in ("separate", "multimodal_tnv", "multimodal_tv", "multimodal_tgv", "haadf_composition"):
            errs = {int(c): max(v["methods"][method]["nrmse"].values()) for c, v in lv.items()
                    if "nrmse" in v["methods"].get(method, {})}  # fmt: skip
            if errs:
                dose, extrapolated = _dose_for(errs)
                worst[method] = {"counts_for_10pct": dose, "extrapolated": extrapolated}
        entry["counts_for_10pct_error"] = worst
        s = worst.get("separate", {}).get("counts_for_10pct")
        m = worst.get("multimodal_tnv", {}).get("counts_for_10pct")
        entry.pop("dose_ratio_10pct", None)  # not carried over from a run before
        if s and m:
            entry["dose_ratio_10pct"] = s / m
            dose_ratios.append(s / m)
    out["nrmse_ratio_sirt_over_multimodal_30"] = min(ratios) if ratios else None
    out["dose_ratio_10pct"] = min(dose_ratios) if dose_ratios else None
    out["dose_ratio_10pct_per_particle"] = {name: e.get("dose_ratio_10pct") for name, e in parts.items()}
    ptau = parts.get("ptau", {}).get("counts", {}).get("30", {}).get("methods", {}).get("multimodal_tnv", {})
    out["ptau_concentration_error"] = max(ptau["nrmse"].values()) if "nrmse" in ptau else None
    rod = parts.get("rod", {}).get("counts", {}).get("30", {}).get("methods", {})
    w_true = 6.0  # core_shell_rod's default interface_width_angstrom
    w = rod.get("haadf_composition", {}).get("interface_width_angstrom")
    out["interface_width_true_angstrom"] = w_true
    # the particles' grid (2 Å voxels when quick) is too coarse for a 6 Å interface: the headline
    # figure is the interface part's, on the 128³ grid of 0.75 Å voxels
    out["interface_width_rel_error_particles"] = abs(w - w_true) / w_true if w else None
    w_fit = parts.get("rod", {}).get("interface_width_truth_fit_angstrom")
    out["interface_width_truth_fit_rel_error"] = abs(w_fit - w_true) / w_true if w_fit else None  # the fit's own bias
    w_mm = rod.get("multimodal_tnv", {}).get("interface_width_angstrom")
    out["interface_width_rel_error_multimodal"] = abs(w_mm - w_true) / w_true if w_mm else None


def _timed_run(n, voxel, angles, n_iter):
    import os

    from atomscount.elemental.reconstruct import reconstruct_elemental

    densities = _phantom("three", n, voxel)
    haadf, edxs, _ = _series(densities, voxel, angles, 30, rng=11)
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    with PeakRSS() as mem:
        result, seconds, warned = _quiet(reconstruct_elemental, haadf, edxs, progress=False, **_iters(n_iter))
    cpu = time.process_time() - cpu0
    truth, mask = _truth(densities)
    # the machine is shared: the load average (of 2 cores) before and after, and the CPU seconds this process used
    return {"voxels": n**3, "seconds": seconds, "cpu_seconds": cpu, "load_average_start_end": [load0,
            os.getloadavg()[0]], "peak_memory_mb": mem.mb, "iterations": len(result.objective),
            "seconds_per_iteration": seconds / max(len(result.objective), 1),
            "cpu_seconds_per_iteration": cpu / max(len(result.objective), 1), "converged": bool(result.converged),
            "warnings": warned, "nrmse": _scores(result, truth, mask, tuple(densities)),
            "rounds_voxel_iterations": [[r["voxel_size_angstrom"], r.get("iterations")]
                                        for r in result.regularisation["rounds"]]}  # fmt: skip


def _evaluation_cost(n, voxel, angles, repeats=3):
    """Seconds (wall and CPU, the best of ``repeats``) of one evaluation of the multimodal objective and its
    gradient (three elements, "tnv", HAADF with γ ≠ 1) at ``n``³ voxels: what each iteration costs."""
    from atomscount.elemental.reconstruct import _Problem

    densities = _phantom("three", n, voxel)
    haadf, edxs, _ = _series(densities, voxel, angles, 30, rng=11)
    counts = np.stack([s.images for s in edxs.values()])
    prob = _Problem(counts, np.full(3, 0.5), haadf.images, angles, voxel, (n, n, n), "tnv", 1.0, 0.05)
    prob.w, prob.c, prob.gamma, prob.sigma_h = np.array([0.6, 1.8, 2.3]), 0.0, 1.05, 1.0
    z = (np.stack(list(densities.values())) / 0.06).ravel()
    prob(z)  # compiled
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        prob(z)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"voxels": n**3, "seconds": min(wall), "cpu_seconds": min(cpu)}


def part_interface(cfg, out, save, quick):
    """The interface width of the diffused Au@Ag rod from HAADF composition alone, on the issue's grid
    (128³ voxels of 0.75 Å, a 6 Å erf interface, ±70° in 5° steps, 1e3-1e5 e/Å² per projection; 64³ and
    3 Å when quick): ``benchmarks/_bench_elemental_interface.py``."""
    from _bench_elemental_interface import run

    res = run(quick=quick)
    out["interface"] = res
    out["interface_width_rel_error"] = res["interface_width_rel_error"]
    out["interface_width_dose_e_per_angstrom2"] = res["interface_width_dose_e_per_angstrom2"]
    save()


def part_timing(cfg, out, save, quick):
    """Seconds and peak memory of the default reconstruction (three elements, the full series) against size."""
    voxel0 = cfg["voxel"] * cfg["n"]  # the same particle in Å at every size
    scaling = {}
    for n in cfg["scaling"]:
        try:
            scaling[str(n)] = _timed_run(n, voxel0 / n, cfg["angles"], cfg["n_iter"])
        except Exception as exc:
            scaling[str(n)] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        print(f"timing {n}^3: {scaling[str(n)]}", flush=True)
        out["scaling"] = scaling
        save()
    evals = {}
    for n in cfg["eval_sizes"]:
        evals[str(n)] = _evaluation_cost(n, voxel0 / n, cfg["angles"])
        print(f"one evaluation at {n}^3: {evals[str(n)]}", flush=True)
    out["evaluation_scaling"] = evals
    sizes = np.array([int(k) for k in evals])
    for key in ("seconds", "cpu_seconds") if len(sizes) >= 2 else ():
        per = np.array([evals[str(k)][key] for k in sizes])
        out[f"scaling_exponent_per_evaluation_{key}"] = float(np.polyfit(np.log(sizes**3), np.log(per), 1)[0])
    done = {int(k): v for k, v in scaling.items() if "seconds" in v}
    if len(done) >= 2:
        n = np.array(sorted(done))
        per_it = np.array([done[k]["seconds_per_iteration"] for k in n])
        out["scaling_exponent_per_iteration"] = float(np.polyfit(np.log(n**3), np.log(per_it), 1)[0])
    key = "128" if not quick else str(cfg["timing_n"])
    if not quick and key in scaling and "seconds" in scaling[key]:
        out["seconds_128"] = scaling[key]["seconds"]
        out["peak_memory_mb_128"] = scaling[key]["peak_memory_mb"]
    else:
        out.setdefault("seconds_128", None)
        out.setdefault("peak_memory_mb_128", None)
        q = scaling.get(str(cfg["timing_n"]), {})
        out["seconds_quick"] = {"voxels": cfg["timing_n"] ** 3, "seconds": q.get("seconds"),
                                "peak_memory_mb": q.get("peak_memory_mb")}  # fmt: skip
    save()


def _fusion_maps(n, voxel, counts, rng):
    """2D maps: the central one-voxel slab of the three-element particle, one 0° projection."""
    densities = _phantom("three", n, voxel)
    mid = n // 2
    slab = {e: v[mid : mid + 1] for e, v in densities.items()}
    haadf, edxs, dose = _series(slab, voxel, np.array([0.0]), counts, rng=rng)
    proj = np.stack([v[mid] for v in densities.values()])  # the slab's own densities are its projection
    total = proj.sum(axis=0)
    truth = np.where(total > 0, proj / np.where(total > 0, total, 1.0), 0.0)
    mask = total >= 0.5 * np.percentile(total[total > 0], 90)
    return haadf, edxs, truth, mask, tuple(densities)


def _fusion_run(haadf, edxs, elements, **kw):
    from multimodal_fusion import DataFusion

    gamma = kw.pop("gamma", 1.6)
    fusion = DataFusion(list(elements), gamma=gamma)
    fusion.load_chemical_maps({e: edxs[e].images[0].astype(np.float64).copy() for e in elements})
    fusion.load_haadf(haadf.images[0].astype(np.float64).copy())
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        fusion.run(plot_images=False, plot_convergence=False, **kw)
    maps = fusion.get_results()
    return np.stack([maps[e] for e in elements])


def _as_concentration(maps):
    total = maps.sum(axis=0)
    return np.where(total > 0, maps / np.where(total > 0, total, 1.0), 0.0)


def _score_2d(conc, truth, mask):
    return max(nrmse(conc[i], truth[i], mask) for i in range(len(truth)))


def part_fusion(cfg, out, save):
    """The 2D case against multimodal-fusion: its defaults, its weights tuned to the truth, and ours."""
    try:
        import multimodal_fusion  # noqa: F401
    except ImportError:
        out["fusion"] = {"error": "multimodal-fusion is not installed: pip install atomscount[bench]"}
        out.update({"fusion_nrmse_ours": None, "fusion_nrmse_default": None, "fusion_nrmse_tuned": None})
        save()
        return
    import matplotlib

    matplotlib.use("Agg")
    from atomscount.elemental.reconstruct import reconstruct_elemental

    n, voxel = cfg["fusion_n"], cfg["voxel"] * cfg["n"] / cfg["fusion_n"]
    haadf, edxs, truth, mask, elements = _fusion_maps(n, voxel, 30, rng=21)
    res = {"shape": [n, n], "pixel_size_angstrom": voxel, "counts_per_pixel": 30, "elements": list(elements)}
    t0 = time.perf_counter()
    res["default"] = _score_2d(_as_concentration(_fusion_run(haadf, edxs, elements)), truth, mask)
    res["default_seconds"] = time.perf_counter() - t0
    best, grid = (np.inf, None), []
    for gamma in (1.0, 1.6):
        for lam_eds in (0.0005, 0.005, 0.05):
            for lam_tv in (0.01, 0.03, 0.1, 0.3):
                try:
                    err = _score_2d(
                        _as_concentration(
                            _fusion_run(haadf, edxs, elements, gamma=gamma, lambdaEDS=lam_eds, lambdaTV=lam_tv)
                        ),
                        truth,
                        mask,
                    )
                except Exception as exc:  # a setting that diverges
                    err = float("nan")
                    print(f"fusion gamma {gamma} {lam_eds} {lam_tv}: {exc}", flush=True)
                grid.append({"gamma": gamma, "lambdaEDS": lam_eds, "lambdaTV": lam_tv, "nrmse": err})
                if np.isfinite(err) and err < best[0]:
                    best = (err, grid[-1])
    res["tuned"], res["tuned_settings"], res["grid"] = best[0], best[1], grid
    try:
        result, seconds, warned = _quiet(reconstruct_elemental, haadf, edxs, progress=False)  # all its defaults
        # our volume from one view: each element's projected density over the total's, along the beam (z)
        rho = result.concentration * (result.density if result.density is not None else result.mask)[None]
        ours = _as_concentration(rho.sum(axis=1))
        res["ours"], res["ours_seconds"], res["ours_warnings"] = _score_2d(ours, truth, mask), seconds, warned
    except Exception as exc:
        res["ours"] = None
        res["ours_error"] = f"{type(exc).__name__}: {exc}"[:400]
        traceback.print_exc()
    out["fusion"] = res
    out["fusion_nrmse_ours"], out["fusion_nrmse_default"], out["fusion_nrmse_tuned"] = (res["ours"], res["default"],
                                                                                        res["tuned"])  # fmt: skip
    print(f"fusion: ours {res['ours']}, default {res['default']}, tuned {res['tuned']}", flush=True)
    save()


def part_public(cfg, out, save):
    """The public data with the defaults: graptor's counts, the Han nanorod's and fused_2d's processed maps
    (``_bench_elemental_public``); residuals and consistency (no truth)."""
    from _bench_elemental_public import run

    run(cfg, out, save)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--quick", action="store_true", help="40³ voxels, 15 projections, small scaling sizes")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    ap.add_argument("--particles", default="rod,ptau,three", help="the particles part's particles, comma-separated")
    ap.add_argument("--sizes", default=None, help="the timing part's voxels per side, comma-separated")
    ap.add_argument(
        "--eval-sizes",
        default=None,
        help="the timing part's sizes for the cost of one evaluation (default: those of --sizes)",
    )
    ap.add_argument(
        "--size",
        type=int,
        default=None,
        help="the particles' voxels per side (the particle keeps its 96 Å; default 128, 32 when quick)",
    )
    ap.add_argument("--counts", default=None, help="the particles part's counts per pixel, comma-separated "
                    "(default 10,30,100; the fast series runs when 30 is among them)")  # fmt: skip
    ap.add_argument("--n-iter", type=int, default=None, help="iterations of each multimodal reconstruction")
    ap.add_argument("--methods", default=None, help="the particles part's methods to run, comma-separated (the "
                    "others' figures are kept from --out); default all")  # fmt: skip
    ap.add_argument(
        "--all-regularisers",
        default=None,
        help="counts per pixel at which tv and tgv run beside tnv, comma-separated (default: all levels; "
        "30 when quick)",
    )
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts must be among {PARTS}, got {bad}")
    cfg = _config(args.quick)
    cfg["particles"] = [p.strip() for p in args.particles.split(",") if p.strip()]
    if args.sizes:
        cfg["scaling"] = tuple(int(v) for v in args.sizes.split(","))
    cfg["eval_sizes"] = tuple(int(v) for v in args.eval_sizes.split(",")) if args.eval_sizes else cfg["scaling"]
    if args.size:
        cfg["n"], cfg["voxel"] = args.size, 96.0 / args.size
    if args.n_iter:
        cfg["n_iter"] = args.n_iter
    if args.counts:
        cfg["counts"] = tuple(int(v) for v in args.counts.split(","))
    cfg["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.all_regularisers:
        cfg["all_regularisers"] = tuple(int(v) for v in args.all_regularisers.split(","))
    if set(cfg["particles"]) - {"rod", "ptau", "three"}:
        ap.error(f"--particles must be among rod, ptau, three, got {args.particles!r}")
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for key in ("quick", "n_voxels_side", "voxel_size_angstrom", "n_projections", "started"):
        out.pop(key, None)  # each part's own settings are under parts_run
    for key in ("nrmse_ratio_sirt_over_multimodal_30", "dose_ratio_10pct", "ptau_concentration_error",
                "interface_width_rel_error", "seconds_128", "peak_memory_mb_128", "fusion_nrmse_ours",
                "fusion_nrmse_tuned"):  # fmt: skip
        out.setdefault(key, None)

    def save():
        save_json_atomic(args.out, out)

    t0 = time.perf_counter()
    for part in parts:
        out.setdefault("parts_run", {})[part] = {"quick": args.quick, "n_voxels_side": cfg["n"],
                                                 "n_projections": len(cfg["angles"]), "n_iter": cfg["n_iter"],
                                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        try:
            if part == "particles":
                part_particles(cfg, out, save)
            elif part == "interface":
                part_interface(cfg, out, save, args.quick)
            elif part == "timing":
                part_timing(cfg, out, save, args.quick)
            elif part == "fusion":
                part_fusion(cfg, out, save)
            else:
                part_public(cfg, out, save)
        except Exception as exc:  # one failed part leaves the others' figures
            out[f"{part}_error"] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
            save()
    out["seconds_total"] = time.perf_counter() - t0
    save()
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=1, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
