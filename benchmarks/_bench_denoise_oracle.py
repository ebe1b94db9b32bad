"""The ``recon_oracle`` part of ``bench_denoise.py`` (issue 29): what map gain a 1.5× lower 3D error would need.

At 3 counts per pixel, on the particles and Poisson draws of ``part_recon`` (the same seeds), for two denoisers D
(``network_joint``, the joint network with its defaults, and ``gaussian_tuned``, the Gaussian filter tuned to the
truth map by map):

- the oracle curve: maps ``truth + α·(D − truth)`` for α in ``ALPHAS``, each scored like ``part_recon`` (mean map
  PSNR over element × tilt, SIRT with 50 iterations, mean concentration NRMSE inside the particle). α < 1 is D with
  its error scaled by α, its shape kept;
- ``needed_gain_db_*_shaped``: the map PSNR over the tuned Gaussian at which a curve's 3D error reaches the tuned
  Gaussian's divided by ``TARGET_RATIO`` (linear in log NRMSE between the curve's points; None when the curve does
  not get there), i.e. the map gain a denoiser whose errors are shaped like the network's (or the Gaussian's)
  would need for ``recon_error_ratio_3`` = 1.5; ``gain_db_now``: the network's map gain;
- the split of each error map E = D − truth into its tilt-consistent part E_c (the reprojection of the signed
  least-squares volume of E, ``CGLS_ITERATIONS`` of CGLS from zero, no positivity) and the rest E − E_c, with the
  fraction of the error energy E_c holds and the map PSNR and 3D NRMSE of ``truth + E_c`` and of ``truth + (E − E_c)``;
  the same split of the raw counts' Poisson noise (``noisy``) as a reference: with fewer data than voxels (15
  projections of 32² for 32³ voxels at ``--quick``) much of any error, even white noise, is "consistent" in this
  sense, i.e. fitted by a short least-squares reconstruction.

Maps are clipped at 0 before the reconstruction (a count map is not negative), not for the map PSNR.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

ALPHAS = (1.0, 0.85, 0.7, 0.6, 0.5, 0.35, 0.25)
TARGET_RATIO = 1.5
CGLS_ITERATIONS = 20
DOSE = 3.0


def consistent_part(maps, angles, voxel, n_iter):
    """The reprojection of the least-squares volume of signed maps (k, ny, nx): CGLS from zero, no positivity."""
    from atomscount.tomo.operators import backproject_volume, project_volume

    shape = (maps.shape[2], maps.shape[1], maps.shape[2])
    volume = np.zeros(shape)
    residual = np.asarray(maps, dtype=float).copy()
    grad = backproject_volume(residual, angles, voxel, shape)
    direction = grad.copy()
    grad_sq = float(np.vdot(grad, grad))
    for _ in range(n_iter):
        if grad_sq == 0.0:
            break
        image = project_volume(direction, angles, voxel)
        step = grad_sq / max(float(np.vdot(image, image)), 1e-300)
        volume += step * direction
        residual -= step * image
        grad = backproject_volume(residual, angles, voxel, shape)
        new_sq = float(np.vdot(grad, grad))
        direction = grad + (new_sq / grad_sq) * direction
        grad_sq = new_sq
    return project_volume(volume, angles, voxel)


def needed_gain(curve, reference_psnr, target_error):
    """Map PSNR over ``reference_psnr`` [dB] where ``curve`` (points by α falling) first reaches ``target_error``."""
    for hi, lo in zip(curve, curve[1:], strict=False):
        if hi["recon_nrmse"] >= target_error >= lo["recon_nrmse"]:
            a, b = np.log(hi["recon_nrmse"]), np.log(lo["recon_nrmse"])
            t = 0.0 if a == b else (a - np.log(target_error)) / (a - b)
            return float(hi["psnr"] + t * (lo["psnr"] - hi["psnr"]) - reference_psnr)
    if curve and curve[0]["recon_nrmse"] <= target_error:
        return float(curve[0]["psnr"] - reference_psnr)
    return None


def _particle(name, n, voxel, angles) -> dict:
    """One particle at ``DOSE``: what ``_score`` needs, and the noisy draw of ``part_recon`` (the same seed)."""
    from bench_denoise import DOSES, _particle_unit_maps

    elements, truth, mask, unit, total, covered = _particle_unit_maps(name, n, voxel, angles)
    scale = DOSE / float(total[covered].mean())
    clean = {e: unit[e].images * scale for e in elements}
    rng = np.random.default_rng(100 * DOSES.index(DOSE) + len(name))
    return {"elements": elements, "truth": truth, "mask": mask, "unit": unit, "scale": scale, "clean": clean,
            "noisy": {e: rng.poisson(clean[e]).astype(float) for e in elements},
            "keep": [i for i in range(len(angles)) if all(clean[e][i].max() > 0 for e in elements)]}  # fmt: skip


def _score(maps, part, angles, voxel) -> dict:
    """Mean map PSNR [dB] over element × tilt and the 3D concentration NRMSE of ``part_recon`` (SIRT, 50 iterations)."""
    from bench_denoise import _recon_error, psnr

    from atomscount.tomo import TiltSeries

    elements, clean, unit = part["elements"], part["clean"], part["unit"]
    p = float(np.mean([psnr(maps[e][i], clean[e][i]) for e in elements for i in part["keep"]]))
    series = {e: TiltSeries(np.maximum(maps[e], 0.0), angles, voxel, {**unit[e].provenance, "noise": False,
                            "dose_e_per_angstrom2": unit[e].provenance["dose_e_per_angstrom2"] * part["scale"]})
              for e in elements}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        err = _recon_error(series, part["truth"], part["mask"], elements)[0]
    return {"psnr": p, "recon_nrmse": err}


def _split(maps, part, angles, voxel) -> dict:
    """The error maps' tilt-consistent part E_c and the rest: E_c's share of the error energy, and the scores of
    truth + E_c and of truth + (E − E_c)."""
    elements, clean = part["elements"], part["clean"]
    err = {e: maps[e] - clean[e] for e in elements}
    cons = {e: consistent_part(err[e], angles, voxel, CGLS_ITERATIONS) for e in elements}
    energy = sum(float(np.sum(err[e] ** 2)) for e in elements)
    return {"energy_fraction_consistent": sum(float(np.sum(cons[e] ** 2)) for e in elements) / energy,
            "consistent_only": _score({e: clean[e] + cons[e] for e in elements}, part, angles, voxel),
            "rest_only": _score({e: maps[e] - cons[e] for e in elements}, part, angles, voxel)}  # fmt: skip


def run(cfg, out, save):
    """The oracle curves, the needed gains and the consistent split on each particle at 3 counts per pixel."""
    from bench_denoise import _joint_outputs, _tuned

    n, voxel, angles = cfg["particles_n"], cfg["voxel"], cfg["angles"]
    res = {"n_voxels_side": n, "voxel_size_angstrom": voxel, "n_projections": len(angles), "dose": DOSE,
           "alphas": list(ALPHAS), "target_ratio": TARGET_RATIO, "cgls_iterations": CGLS_ITERATIONS,
           "maps": "truth + alpha (D - truth), D = network_joint (defaults) or gaussian_tuned; the draws of "
                   "part_recon at 3 counts per pixel", "particles": {}}  # fmt: skip
    needed, now = {}, {}
    for name in ("rod", "ptau", "three"):
        t0 = time.perf_counter()
        part = _particle(name, n, voxel, angles)
        elements, clean, noisy = part["elements"], part["clean"], part["noisy"]
        denoised = {"network_joint": _joint_outputs(noisy, methods=("network_joint",))["network_joint"],
                    "gaussian_tuned": {e: _tuned(noisy[e], clean[e], "gaussian")[0] for e in elements}}  # fmt: skip
        row = {"clean_recon_nrmse": _score(clean, part, angles, voxel)["recon_nrmse"]}
        for m, d in denoised.items():
            curve = [{"alpha": a, **_score({e: clean[e] + a * (d[e] - clean[e]) for e in elements}, part, angles,
                                           voxel)} for a in ALPHAS]  # fmt: skip
            row[m] = {"curve": curve, "split": _split(d, part, angles, voxel)}
        row["noisy"] = {"split": _split(noisy, part, angles, voxel)}  # the raw counts' Poisson noise: a reference
        g, net = row["gaussian_tuned"]["curve"][0], row["network_joint"]["curve"][0]
        target = g["recon_nrmse"] / TARGET_RATIO
        row.update({"ratio_now": g["recon_nrmse"] / net["recon_nrmse"], "gain_db_now": net["psnr"] - g["psnr"],
                    "target_recon_nrmse": target,
                    "needed_gain_db_network_shaped": needed_gain(row["network_joint"]["curve"], g["psnr"], target),
                    "needed_gain_db_gaussian_shaped": needed_gain(row["gaussian_tuned"]["curve"], g["psnr"], target),
                    "seconds": time.perf_counter() - t0})  # fmt: skip
        needed[name], now[name] = row["needed_gain_db_network_shaped"], row["gain_db_now"]
        res["particles"][name] = row
        need = row["needed_gain_db_network_shaped"]
        print(f"oracle {name} 3 counts/px: ratio {row['ratio_now']:.2f}, network gain {row['gain_db_now']:.1f} dB, "
              f"needed (network-shaped) {'-' if need is None else f'{need:.1f}'} dB, consistent part alone "
              f"{row['network_joint']['split']['consistent_only']['recon_nrmse']:.3f}, rest alone "
              f"{row['network_joint']['split']['rest_only']['recon_nrmse']:.3f} ({row['seconds']:.0f} s)",
              flush=True)  # fmt: skip
        out["recon_oracle"] = res
        save()
    out["recon_oracle_needed_gain_db_3"] = needed
    out["recon_oracle_gain_db_3_now"] = now
    save()
