"""Benchmark of the Lorentz TEM stage (issue 30): phase from Fresnel images by TIE and by the differentiable
retrieval.

Ground truths: the four simulated samples of :mod:`atomscount.ltem.samples` (Bloch and Néel skyrmion
lattices, a vortex disk, a domain wall) at 512² pixels of 2 nm, 300 kV, defoci −20, 0, +20 µm, Poisson
noise at 10, 100 and 1000 electrons per pixel (``--quick``: 128² pixels, 100 electrons only), and the
published phase map in ``../shared/data/public/siprad/true_phase.tif`` (512², rad).

Scores, per sample and dose: the phase RMSE against the truth after removing a constant and a plane, the
median angle between the retrieved and true induction where the true induction exceeds a fifth of its
99th percentile, the resolution where the Fourier ring correlation with the truth drops below 1/7, and
the seconds, for TIE with its Tikhonov filter tuned to the truth (the best of ``TIKHONOV``), single-image TIE
(+20 µm), ``ltempy``'s single-image TIE (``ltempy.sitie``, the only TIE it has), the contrast-transfer
Wiener filter (``ctf_wiener``, the retrieval's start), and the differentiable retrieval
(``fit=("phase", "amplitude")``, spectral prior, L-BFGS, at most ``N_ITER`` iterations) from the +20 µm
image and from all three. The defocus fitted from a start 20 % too large with the phase known: one factor
for all images (``fit=("defocus_scale",)``, the steps' ratios known: ``defocus_rel_error``) and one defocus
per image (``fit=("defocus",)``: ``defocus_rel_error_per_image``). Seconds and the process's peak
resident memory of a 512² three-image retrieval (run first) and the seconds of TIE.

Top-level keys: ``phase_rmse_ratio_tie_over_ad_100`` (lowest over samples), ``induction_angle_error_deg_100``
(worst over samples, AD from 3 images), ``single_image_beats_sitie`` (1 when AD from one image beats
single-image TIE on every sample at every dose), ``defocus_rel_error`` (worst; and
``defocus_rel_error_per_image``), ``seconds_512_3img``,
``tie_seconds``.

The |m| = Ms constraint (:func:`atomscount.ltem.constrain_magnetisation`) on the samples magnetised in plane
(the vortex and the wall; not the skyrmion lattices, whose m is out of plane, nor siprad, whose Ms and t are
unknown), with the sample's Ms and nominal thickness: rows ``ad_1_ms``, ``ad_3_ms`` (the AD retrievals
constrained) and ``sitie_ms``; keys ``phase_rmse_ratio_tie_over_ad_ms_100`` (per sample),
``single_image_beats_sitie_ms`` and ``ms_note``. ``--ms-only --merge FILE`` runs only these rows (and the
baselines they are compared with) and merges them into FILE's results.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

DEFOCI = [-2e4, 0.0, 2e4]  # [nm]
N_ITER = 100
# [1/nm]: TIE's Tikhonov frequencies tried against the truth; from 1e-4 (a tenth of a cycle per 512² field of
# 2 nm pixels), since a vortex disk's and a domain wall's phase live in the slowest modes
TIKHONOV = (1e-4, 2e-4, 5e-4, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
# samples magnetised in plane (|m⊥| = 1 in the film), where the |m| = Ms constraint applies; the skyrmion
# lattices (m out of plane, |m⊥| from 0 to 1) and siprad (Ms and t unknown) are left out
IN_PLANE = ("vortex disk", "180° bloch domain wall")
SIPRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "public" / "siprad" / "true_phase.tif"


def _detrend(phase):
    ny, nx = phase.shape
    y, x = np.mgrid[:ny, :nx]
    a = np.column_stack([np.ones(phase.size), x.ravel(), y.ravel()])
    coef, *_ = np.linalg.lstsq(a, phase.ravel(), rcond=None)
    return phase - (a @ coef).reshape(phase.shape)


def phase_rmse(phase, truth) -> float:
    return float(np.sqrt(np.mean(_detrend(phase - truth) ** 2)))


def angle_error_deg(phase, truth, pixel_nm) -> float:
    from atomscount.ltem import induction_map

    bx, by = induction_map(phase, pixel_nm)
    tx, ty = induction_map(truth, pixel_nm)
    mag = np.hypot(tx, ty)
    region = mag > 0.2 * np.percentile(mag, 99)
    d = np.angle(np.exp(1j * (np.arctan2(by, bx) - np.arctan2(ty, tx))))
    return float(np.degrees(np.median(np.abs(d[region]))))


def _samples(n: int) -> dict:
    from atomscount.ltem import domain_wall, skyrmion_lattice, vortex_disk

    kw = {"shape": (n, n), "pixel_nm": 2.0}
    return {"bloch": skyrmion_lattice("bloch", **kw), "neel": skyrmion_lattice("neel", **kw),
            "vortex": vortex_disk(radius_nm=0.35 * n * 2.0, **kw), "wall": domain_wall(**kw)}  # fmt: skip


def _series_of_phase(phase, dose, rng):
    from atomscount.ltem import LTEMSeries, fresnel_image

    images = np.asarray(fresnel_image(phase, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3))
    return LTEMSeries(np.random.default_rng(rng).poisson(np.clip(images, 0, None) * dose).astype(float), DEFOCI,
                      pixel_nm=2.0)  # fmt: skip


def _ltempy_sitie(image):
    """``ltempy.sitie`` (SI units) on the +20 µm image; None when ltempy is not installed."""
    try:
        from ltempy import sitie
    except ImportError:
        return None
    from atomscount.ltem import wavelength_nm

    return sitie(image, defocus=DEFOCI[2] * 1e-9, dx=2e-9, dy=2e-9, wavelength=wavelength_nm(300e3) * 1e-9)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _methods(series, truth, sample=None, *, ms_only: bool = False) -> dict:
    from atomscount.ltem import (
        constrain_magnetisation,
        ctf_wiener,
        fourier_ring_correlation,
        retrieve_phase,
        single_image_tie,
        tie,
    )

    out = {}
    best = None
    t = time.perf_counter()
    for q in TIKHONOV:
        r = tie(series, tikhonov=q)
        e = phase_rmse(r.phase, truth)
        if best is None or e < best[0]:
            best = (e, r.phase, q)
    out["tie_tuned"] = (best[1], best[2], (time.perf_counter() - t) / len(TIKHONOV))
    r, sec = _timed(lambda: single_image_tie(series.images[2], DEFOCI[2], pixel_nm=2.0, beam_energy_ev=300e3))
    out["sitie"] = (r.phase, None, sec)
    sitie_result = r
    if not ms_only:
        r, sec = _timed(lambda: _ltempy_sitie(series.images[2]))
        if r is not None:
            out["ltempy_sitie"] = (r, None, sec)
        r, sec = _timed(lambda: ctf_wiener(series))
        out["wiener_3"] = (r.phase, None, sec)
    one = type(series)(series.images[2:], DEFOCI[2:], pixel_nm=2.0)
    kw = {"fit": ("phase", "amplitude"), "n_iter": N_ITER, "uncertainty": False, "progress": False}
    # the |m| = Ms constraint with the material's Ms and the nominal thickness (films magnetised in plane)
    constrained = sample is not None and sample.name in IN_PLANE
    ms = {"ms_a_per_m": sample.ms_a_per_m, "thickness_nm": float(sample.thickness_nm.max())} if constrained else {}
    for key, s in (("ad_1", one), ("ad_3", series)):
        r, sec = _timed(lambda s=s: retrieve_phase(s, **kw))
        out[key] = (r.phase, None, sec, _route(r))
        if constrained:
            c, sec_c = _timed(lambda r=r: constrain_magnetisation(r, **ms))
            out[f"{key}_ms"] = (c.phase, None, sec + sec_c)
            if key == "ad_1":
                c, sec_c = _timed(lambda: constrain_magnetisation(sitie_result, **ms))
                out["sitie_ms"] = (c.phase, None, out["sitie"][2] + sec_c)
    return {k: {"phase_rmse_rad": phase_rmse(ph, truth), "angle_error_deg": angle_error_deg(ph, truth, 2.0),
                "frc_resolution_nm": fourier_ring_correlation(_detrend(ph - ph.mean()), _detrend(truth),
                                                              pixel_nm=2.0)["resolution_nm"],
                "seconds": sec, "tikhonov": q, **(extra[0] if extra else {})}
            for k, (ph, q, sec, *extra) in out.items()}  # fmt: skip


def _route(result) -> dict:
    """The retrieval's path, after the TV fall-back the vacuum model it used and its test statistic, and on the
    spectral path the coherent ray test (kept, statistic, threshold)."""
    out = {"path": result.parameters["path"]}
    vac = result.parameters.get("vacuum")
    if isinstance(vac, dict):
        out["vacuum"] = {k: vac[k] for k in ("asked", "model", "applied", "stray_statistic") if k in vac}
    elif vac is not None:
        out["vacuum"] = vac
    ray = result.parameters.get("ray")
    if ray is not None:  # the coherent ray test of a straight feature (a wall) in the spectral prior
        out["ray"] = {k: ray[k] for k in ("kept", "statistic", "threshold")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--ms-only", action="store_true",
                   help="only the samples magnetised in plane and the rows the |m| = Ms constraint needs, merged "
                        "into --merge (its other keys kept)")  # fmt: skip
    p.add_argument("--uniform-island", action="store_true",
                   help="only the vacuum-model table (uniform_island: the vortex disk, the same film magnetised "
                        "uniformly, an ellipse; 256², --quick 128²), merged into --merge")  # fmt: skip
    p.add_argument("--merge", type=Path, help="with --ms-only or --uniform-island: the full run's JSON to merge into")
    args = p.parse_args(argv)
    if args.ms_only:
        return _ms_only(args)
    if args.uniform_island:
        return _uniform_island(args)
    from atomscount.ltem import retrieve_phase, tie

    n = 128 if args.quick else 512
    doses = (100,) if args.quick else (10, 100, 1000)
    results = {"size": n, "doses": list(doses), "n_iter": N_ITER, "samples": {}}
    # the timing first, in a fresh process: its peak memory is the retrieval's
    big = _series_of_phase(_samples(512)["bloch"].phase(beam_energy_ev=300e3), 100, rng=0)
    t = time.perf_counter()
    retrieve_phase(big, fit=("phase", "amplitude"), n_iter=N_ITER, uncertainty=False, progress=False)
    results["seconds_512_3img"] = time.perf_counter() - t
    results["peak_rss_mib_512_3img"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    tie(big)
    results["tie_seconds"] = time.perf_counter() - t
    print({k: results[k] for k in ("seconds_512_3img", "peak_rss_mib_512_3img", "tie_seconds")}, flush=True)
    for name, sample in _samples(n).items():
        truth = sample.phase(beam_energy_ev=300e3)
        results["samples"][name] = {}
        for dose in doses:
            series = _series_of_phase(truth, dose, rng=dose)
            results["samples"][name][str(dose)] = _methods(series, truth, sample)
            row = results["samples"][name][str(dose)]
            print(name, dose, {k: round(v["phase_rmse_rad"], 4) for k, v in row.items()}, flush=True)
        series = _series_of_phase(truth, 100, rng=1)
        for key, fit in (("defocus_rel_error", ("defocus_scale",)), ("defocus_rel_error_per_image", ("defocus",))):
            r = retrieve_phase(series, [1.2 * d for d in DEFOCI], fit=fit, initial=truth, n_iter=40,
                               uncertainty=False, progress=False)  # fmt: skip
            found = np.asarray(r.parameters["defocus_nm"])
            rel = np.abs(found[[0, 2]] / np.array(DEFOCI)[[0, 2]] - 1)
            results["samples"][name][key] = float(rel.max())
    if SIPRAD.is_file():
        from atomscount.readers import read_image

        truth = np.asarray(read_image(SIPRAD, pixel_size_angstrom=20.0).data, dtype=float)
        results["siprad"] = {}
        for d in doses:
            results["siprad"][str(d)] = row = _methods(_series_of_phase(truth, d, rng=d), truth)
            print("siprad", d, {k: round(v["phase_rmse_rad"], 4) for k, v in row.items()}, flush=True)
    else:
        print(f"bench_ltem: the siprad phase map {SIPRAD} is absent; its part is left out", file=sys.stderr)
    key = "100"
    rows = [results["samples"][s][key] for s in results["samples"]]
    results["phase_rmse_ratio_tie_over_ad_100"] = min(r["tie_tuned"]["phase_rmse_rad"] / r["ad_3"]["phase_rmse_rad"]
                                                      for r in rows)  # fmt: skip
    results["induction_angle_error_deg_100"] = max(r["ad_3"]["angle_error_deg"] for r in rows)
    cells = [results["samples"][s][str(d)] for s in results["samples"] for d in doses]
    results["single_image_beats_sitie"] = int(all(c["ad_1"]["phase_rmse_rad"] < c["sitie"]["phase_rmse_rad"]
                                                  for c in cells))  # fmt: skip
    for k in ("defocus_rel_error", "defocus_rel_error_per_image"):
        results[k] = max(results["samples"][s][k] for s in results["samples"])
    _ms_summary(results, doses)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print({k: v for k, v in results.items() if k not in ("samples", "siprad")})
    return 0


def _ms_summary(results: dict, doses) -> None:
    """The top-level keys of the rows with the |m| = Ms constraint (samples magnetised in plane only)."""
    names = [s for s in results["samples"] if "ad_3_ms" in results["samples"][s].get("100", {})]
    if not names:
        return
    ratio = {s: results["samples"][s]["100"]["tie_tuned"]["phase_rmse_rad"]
             / results["samples"][s]["100"]["ad_3_ms"]["phase_rmse_rad"] for s in names}  # fmt: skip
    results["phase_rmse_ratio_tie_over_ad_ms_100"] = ratio
    cells = [results["samples"][s][str(d)] for s in names for d in doses]
    results["single_image_beats_sitie_ms"] = int(all(c["ad_1_ms"]["phase_rmse_rad"] < c["sitie"]["phase_rmse_rad"]
                                                     for c in cells))  # fmt: skip
    results["ms_note"] = (
        "rows ad_1_ms, ad_3_ms, sitie_ms: constrain_magnetisation (|m| = Ms in the film) applied to ad_1, ad_3 and "
        "sitie with the sample's Ms and nominal film thickness (the material constants a user knows; the film "
        "mask found from the phase's electrostatic edge, not the truth's), on the samples magnetised in plane "
        f"({', '.join(names)}); the skyrmion lattices (m out of plane) and siprad (Ms, t unknown) are not "
        "applicable. phase_rmse_ratio_tie_over_ad_ms_100 per sample; single_image_beats_sitie_ms over these samples "
        "and every dose. Seconds include the retrieval."
    )


def _ms_only(args) -> int:
    """The constrained rows of the samples magnetised in plane, merged into ``args.merge``."""
    n = 128 if args.quick else 512
    doses = (100,) if args.quick else (10, 100, 1000)
    base = json.loads(args.merge.read_text()) if args.merge else {"size": n, "doses": list(doses), "samples": {}}
    for name, sample in _samples(n).items():
        if sample.name not in IN_PLANE:
            continue
        truth = sample.phase(beam_energy_ev=300e3)
        for dose in doses:
            row = _methods(_series_of_phase(truth, dose, rng=dose), truth, sample, ms_only=True)
            cell = base["samples"].setdefault(name, {}).setdefault(str(dose), {})
            cell.update({k: v for k, v in row.items() if k.endswith("_ms")})
            for k in ("tie_tuned", "sitie", "ad_1", "ad_3"):
                cell.setdefault(k, row[k])
            print(name, dose, {k: round(v["phase_rmse_rad"], 4) for k, v in row.items()}, flush=True)
    _ms_summary(base, doses)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(base, indent=1) + "\n")
    print({k: v for k, v in base.items() if k.endswith("_ms") or "_ms_" in k})
    return 0


def _islands(n: int) -> dict:
    """The vortex disk of :func:`_samples` (radius 0.35 n pixels), the same film magnetised uniformly along x and
    at 0.7 rad from x (a net moment: stray field in the vacuum), and an ellipse (half-axes 0.38 n and 0.18 n,
    sharp edge, m along its long axis)."""
    from atomscount.ltem import MagneticSample, vortex_disk

    v = vortex_disk(shape=(n, n), pixel_nm=2.0, radius_nm=0.35 * n * 2.0)
    inside = (v.thickness_nm > 0).astype(float)
    out = {"vortex": v}
    for angle in (0.0, 0.7):
        out[f"uniform_{angle}"] = MagneticSample(np.cos(angle) * inside, np.sin(angle) * inside, 0 * inside,
                                                 v.thickness_nm, 2.0, v.ms_a_per_m, v.mean_inner_potential_v,
                                                 f"uniform disk at {angle} rad")  # fmt: skip
    yy, xx = np.mgrid[:n, :n] - n / 2
    ell = ((xx / (0.38 * n)) ** 2 + (yy / (0.18 * n)) ** 2 < 1).astype(float)
    out["ellipse"] = MagneticSample(ell, 0 * ell, 0 * ell, ell * float(v.thickness_nm.max()), 2.0, v.ms_a_per_m,
                                    v.mean_inner_potential_v, "ellipse")  # fmt: skip
    return out


def _vacuum_models(series, truth) -> dict:
    """Phase RMSE [rad] of one retrieval (the TV fall-back fitted once) with each vacuum model applied to it, the
    model "auto" chose and its test statistic; None where the retrieval took the spectral path (no vacuum step)."""
    import copy

    from atomscount.ltem import retrieve_phase
    from atomscount.ltem.retrieve import _vacuum_corrected
    from atomscount.ltem.spectral import _noise_dose, _spectral_terms

    r = retrieve_phase(series, fit=("phase", "amplitude"), n_iter=N_ITER, vacuum="none", uncertainty=False,
                       progress=False)  # fmt: skip
    if r.parameters["path"] != "tv (spectral prior inadequate)":
        return {"path": r.parameters["path"], "rmse": phase_rmse(r.phase, truth)}
    dose = _noise_dose(series.images, None)  # as retrieve_phase finds it for counts
    precision = _spectral_terms(series, dose)["precision"]
    row = {"path": r.parameters["path"], "none": phase_rmse(r.phase, truth)}
    for model in ("flat", "stray", "auto"):
        t = time.perf_counter()
        out = _vacuum_corrected(copy.deepcopy(r), series, dose, precision, model=model)
        vac = out.parameters["vacuum"]
        row[model] = phase_rmse(out.phase, truth)
        row[f"{model}_seconds"] = time.perf_counter() - t
        if isinstance(vac, dict):
            row[f"{model}_refused"] = not vac["applied"]
            if model == "auto":
                row.update(auto_chose=vac["model"], stray_statistic=vac["stray_statistic"],
                           stray_threshold=vac["stray_threshold"])  # fmt: skip
        else:
            row[f"{model}_refused"] = vac
    return row


def _uniform_island(args) -> int:
    """The vacuum-model table (``uniform_island``): each island of :func:`_islands` at 100 and 1000 e/px from the
    +20 µm image and from all three (seed 1), and a 512² disk magnetised along x at 100 e/px from three images;
    merged into ``args.merge``."""
    n = 128 if args.quick else 256
    base = json.loads(args.merge.read_text()) if args.merge else {}
    block = {"size": n, "rows": {}}
    cells = [(name, sample, dose, k) for name, sample in _islands(n).items() for dose in (100, 1000) for k in (3, 1)]
    if not args.quick:
        cells.append(("uniform_0.0 512²", _islands(512)["uniform_0.0"], 100, 3))
    from atomscount.ltem import LTEMSeries

    for name, sample, dose, k in cells:
        truth = sample.phase(beam_energy_ev=300e3)
        series = _series_of_phase(truth, dose, rng=1)
        if k == 1:
            series = LTEMSeries(series.images[2:], DEFOCI[2:], pixel_nm=2.0)
        key = f"{name} {dose} e/px {k} image{'s' if k > 1 else ''}"
        block["rows"][key] = row = _vacuum_models(series, truth)
        print(key, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    block["note"] = (
        f"Phase RMSE [rad] of retrieve_phase (fit phase and amplitude, {N_ITER} L-BFGS iterations, seed 1) at {n}² "
        "(one row at 512²), 2 nm pixels, 300 kV, -20/0/+20 um (one image: +20 um): the TV fall-back fitted once "
        "(vacuum='none'), then the vacuum step (retrieve.py _vacuum_corrected) with each model: 'flat' (a constant), "
        "'stray' (a constant plus the stray field of a net moment), 'auto' (the default: 'stray' when the stray "
        "amplitudes' chi-squared statistic exceeds stray_threshold, else 'flat'). *_refused: the deviance check "
        "kept the TV fit. Samples: the vortex disk (radius 0.35 of the field), the same film magnetised uniformly "
        "along x and at 0.7 rad, an ellipse (half-axes 0.38 and 0.18 of the field, sharp edge, m along its long "
        "axis). Rows with only 'path' and 'rmse' took the spectral path (no vacuum step). "
        "Regenerate: bench_ltem.py --uniform-island --merge FILE --out FILE; "
        f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    base["uniform_island"] = {**base.get("uniform_island", {}), **block}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(base, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
