"""Benchmark of the EDXS denoiser (issue 29): the network against truth-tuned classical baselines.

Maps and doses
    Held-out shapes: ``atomscount.elemental.shapes.training_maps`` at seeds >= ``HELD_OUT_SEED``
    (the training used seeds below it), 64² maps, each element's noise-free map rescaled to
    1, 3, 10 and 30 counts per pixel in the dose measure of ``_net.map_dose`` and drawn
    Poisson here (maps of an absent element are left out of the scores: their PSNR is
    undefined). ``mean_counts_per_pixel`` gives each dose in two other measures too: the mean
    over the whole frame, and over the particle's projected area (pixels above 1 % of the
    maximum, as ``bench_elemental`` counts a series' dose). The elemental benchmark's
    particles (``bench_elemental``: Au@Ag rod, Pt-Au alloy, Pd/Pt/Au three-element particle),
    their EDXS tilt series at 1, 3, 10, 30 counts per pixel summed over the elements
    (``bench_elemental._series``' definition).

    Held-out projections (``held_out_joint``): ``atomscount.elemental.train.projection_maps`` at a
    held-out seed, every element's map of each projection (1-3 elements: solid, alloy,
    core-shell, Janus, gradient), all of a projection's elements at the same dose.

Methods
    ``network_joint`` (the joint network: each map with its projection's total, the default of
    ``denoise_edxs`` for two or more elements) and ``network`` (the single-map network), both
    shipped weights with no tuning, through ``denoise_edxs``'s defaults (a margin of ``_net.FRAME_MARGIN`` px
    round each map, mirrored at the edges the sample crosses (``_net.frame_edges``) and filled with the map's
    background at the others, and the output blended with the PURE Gaussian filter by a weight chosen
    on the noisy maps by thinning cross-validation: ``blend="auto"``), with ``_alone`` the network
    without the blend (``blend=1``) and ``_tta`` their test-time augmentation; ``gaussian``,
    ``tv``, ``bm3d`` with their automatic parameter (PURE / SURE / unit noise, no truth:
    ``*_auto``) and tuned to the truth (``*_tuned``: for each map the grid value of best PSNR
    against the truth, the most favourable tuning a baseline can get; BM3D on the particles' series: one noise level per
    series, chosen on four of its maps). BM3D denoises small maps together in mosaics
    (``denoise_edxs``), and on the held-out shapes only the first ``n_bm3d`` maps (it is slow).

Scores
    PSNR (peak: the true map's maximum) and SSIM (scikit-image, data range the true maximum)
    per map, averaged. ``psnr_gain_db_3``: the joint network minus the best tuned classical method
    at 3 counts per pixel on the held-out projections (``held_out_joint``; the baselines are
    single-map, as the issue names them); ``psnr_gain_db_3_single_map``: the single-map network
    on the single maps of ``held_out`` (the figure ``psnr_gain_db_3`` was before the joint network).
    Reconstruction: each method's denoised series
    (expected counts, ``denoise_series``) reconstructed by SIRT (``reconstruct_separate``,
    least squares, 50 iterations), the concentration NRMSE inside the particle
    (``bench_elemental.nrmse``), averaged over elements; ``recon_error_ratio_3`` = the best
    tuned classical method's error / the joint network's at 3 counts per pixel, the lowest over the
    particles (``_single_map``: the single-map network's). The same reconstruction of the
    noise-free maps (``clean``) is the error no
    denoiser can remove (the few projections, the missing wedge, SIRT's own bias);
    ``recon_error_ratio_3_above_floor`` is the ratio of the errors above it. The network's
    uncertainty is not used by the reconstruction (a weighted data term would give the network
    a reconstruction the classical methods, with no per-pixel variance, cannot have).
    ``recon_multimodal`` (3 counts per pixel): the same maps behind the multimodal
    reconstruction (``reconstruct_elemental``, EDXS only, TNV): the raw counts with its
    automatic weight, and the network, its TTA, the tuned Gaussian filter and the noise-free
    maps with one fixed weight (the discrepancy principle assumes Poisson counts);
    ``recon_error_ratio_3_multimodal`` = tuned Gaussian's error / the network's, the lowest
    over the particles.
    ``recon_oracle`` (3 counts per pixel, ``part_recon``'s maps; ``_bench_denoise_oracle.py``): the maps
    truth + α·(D − truth) for D the joint network and the tuned Gaussian, each scored like ``recon``;
    ``recon_oracle_needed_gain_db_3``: per particle, the map PSNR gain over the tuned Gaussian at which the
    network-shaped curve's 3D error is the tuned Gaussian's / 1.5 (what ``recon_error_ratio_3`` = 1.5 would need of
    a denoiser whose errors are shaped like the network's), against ``recon_oracle_gain_db_3_now``, the network's
    gain; and the split of each denoiser's error maps into their tilt-consistent part (the reprojection of their
    least-squares volume) and the rest, with the 3D error of each alone (the raw counts' noise split the same way as
    a reference).
    Hallucination: solid particles (spheres and every shape of ``shapes.SHAPES``,
    one element, projected) denoised at each dose; a shell is a band within the outer third of
    the particle's depth (distance from its edge) whose mean exceeds the mean of the inner
    third by more than 10 % although the truth's does not; ``hallucinated_shell_rate`` over
    all particles and doses. An absent element (an all-zero map) whose denoised maximum
    exceeds 0.05 counts counts against ``absent_element_rate``. The joint network is tested on the
    same particles alone (its total is its map), as a solid two-element alloy (neither map may
    gain a shell) and beside an absent element whose projection's total shows the particle
    (``hallucination_joint``); the rates are the worse of the two networks'.

Public data (``../shared/data/public``): the graptor Yb/Al/Si EDX sinograms (real photon
counts, each angle's (slices, pixels) sinogram a map): no truth, so each stack is split into
two independent halves by binomial thinning (``split_counts``); each method denoises half A
and is scored by the mean squared difference to half B (``E|f(A) - B|² = E|f(A) - λ/2|² +
var B``: lower is better, the differences between methods are differences of true MSE);
``_bench_denoise_public.py``. The shipped network without retraining, and after
``finetune_denoiser`` on a thinning of A (Noise2Noise; the data have no frames). The Han et
al. nanorod's EDX input is not counts (it is stored as floats normalised per projection, not
whole numbers), so the network, which takes counts, is not run on it; that is recorded.

``install_mb``: not measured here; the last measurement (stop 33: a fresh venv with the
default dependencies, no extras) is recorded with its source.

``--network-only`` rescores the network alone (for new weights), reusing the classical methods'
scores of the previous run in ``--out``: every map is drawn from a fixed seed, so the maps are
the same.

Usage: python benchmarks/bench_denoise.py --out FILE.json [--quick] [--parts a,b,...] [--network-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import json_default, save_json_atomic  # noqa: E402

PUBLIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_denoise.json"
DOSES = (1.0, 3.0, 10.0, 30.0)
PARTS = ("held_out", "held_out_joint", "hallucination", "timing", "recon", "recon_multimodal", "recon_oracle", "public")
GRIDS = {"gaussian": np.geomspace(0.4, 12.0, 16), "tv": np.geomspace(0.05, 8.0, 14),
         "bm3d": np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8])}  # fmt: skip
INSTALL = {"install_mb": 990, "install_mb_source": "measured at stop 33: fresh venv, pip install atomscount with "
           "its default dependencies, no extras (not remeasured by this script)"}  # fmt: skip


def _config(quick: bool) -> dict:
    if quick:
        return {"n_maps": 12, "n_bm3d": 4, "n_solid": 4, "particles_n": 32, "voxel": 2.0,
                "angles": np.arange(-70, 71, 10.0), "finetune_steps": 300, "public_bin": 2}  # fmt: skip
    return {"n_maps": 48, "n_bm3d": 16, "n_solid": 12, "particles_n": 64, "voxel": 1.5,
            "angles": np.arange(-70, 71, 5.0), "finetune_steps": 300, "public_bin": 1}  # fmt: skip


# --- scores ---


def psnr(est, truth) -> float:
    mse = float(np.mean((est - truth) ** 2))
    return float(10 * np.log10(truth.max() ** 2 / max(mse, 1e-30)))


def ssim(est, truth) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(truth, est, data_range=float(truth.max())))


def _denoise(noisy, method, **kw):
    from atomscount.elemental.denoise import denoise_edxs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # out-of-range doses are recorded, not warned
        return denoise_edxs(noisy, method=method, **kw).maps


def _denoise_result(noisy, method, **kw):
    from atomscount.elemental.denoise import denoise_edxs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return denoise_edxs(noisy, method=method, **kw)


def _tuned(noisy, clean, method, maps=None):
    """Per map, the grid value of best PSNR against the truth: (denoised stack, chosen values)."""
    idx = range(len(noisy)) if maps is None else maps
    best = np.full(len(noisy), -np.inf)
    out = np.zeros_like(noisy, dtype=float)
    chosen = np.zeros(len(noisy))
    for value in GRIDS[method]:
        sub = np.array(list(idx))
        d = _denoise(noisy[sub], method, strength=float(value))
        for j, i in enumerate(sub):
            p = psnr(d[j], clean[i])
            if p > best[i]:
                best[i], out[i], chosen[i] = p, d[j], value
    return out, chosen


NETWORKS = ("network", "network_tta", "network_joint", "network_joint_tta", "network_alone", "network_joint_alone")


def _network_outputs(noisy):
    """The shipped network, plain and with test-time augmentation: method -> (denoised stack, indices scored)."""
    idx = np.arange(len(noisy))
    return {
        "network": (_denoise(noisy, "network"), idx),
        "network_tta": (_denoise(noisy, "network", tta=True), idx),
        "network_alone": (_denoise(noisy, "network", blend=1.0), idx),
    }


JOINT = {"network_joint": {}, "network_joint_tta": {"tta": True}, "network_joint_alone": {"blend": 1.0}}


def _joint_outputs(noisy: dict, methods=tuple(JOINT)):
    """The joint network on all elements' maps (each map with its projection's total), plain and with TTA:
    method -> element -> denoised stack, for each of ``methods`` (keys of ``JOINT``)."""
    elements = list(noisy)
    out = {}
    for m in methods:
        d = _denoise(noisy, "network", joint=True, **JOINT[m])
        out[m] = {e: d[i] for i, e in enumerate(elements)}
    return out


def _classical_outputs(noisy, clean, n_bm3d, *, tuned_bm3d_series=False, bm3d_auto=True):
    """The noisy maps and the classical methods: method -> (denoised stack, indices scored)."""
    all_idx = np.arange(len(noisy))
    bm_idx = all_idx[:n_bm3d]
    outs = {"noisy": (noisy.astype(float), all_idx)}
    for m in ("gaussian", "tv"):
        outs[f"{m}_auto"] = (_denoise(noisy, m), all_idx)
        outs[f"{m}_tuned"] = (_tuned(noisy, clean, m)[0], all_idx)
    if bm3d_auto:
        outs["bm3d_auto"] = (_denoise(noisy[bm_idx], "bm3d"), bm_idx)
    if tuned_bm3d_series:
        _, chosen = _tuned(noisy, clean, "bm3d", maps=bm_idx)
        sigma = float(np.median(chosen[bm_idx]))
        outs["bm3d_tuned"] = (_denoise(noisy, "bm3d", strength=sigma), all_idx)
    else:
        d, _ = _tuned(noisy, clean, "bm3d", maps=bm_idx)
        outs["bm3d_tuned"] = (d[bm_idx], bm_idx)
    return outs


def _scores(outs, clean):
    res = {}
    for m, (d, idx) in outs.items():
        truth = clean[idx]
        res[m] = {"psnr": float(np.mean([psnr(a, t) for a, t in zip(d, truth, strict=True)])),
                  "ssim": float(np.mean([ssim(a, t) for a, t in zip(d, truth, strict=True)])),
                  "n_maps": len(idx)}  # fmt: skip
    return res


def _same_maps(scores, net_outs, clean):
    """For a method scored on the first n maps only (BM3D): the networks' PSNR on those maps."""
    for m, sc in scores.items():
        n = sc["n_maps"]
        if n < len(clean) and m not in NETWORKS:
            for net, (d, _) in net_outs.items():
                pairs = zip(d[:n], clean[:n], strict=True)
                sc[f"{net}_psnr_same_maps"] = float(np.mean([psnr(a, t) for a, t in pairs]))


def _gain(scores, net="network") -> tuple:
    """Network PSNR minus the best tuned classical method's (on the same maps), and which method that was."""
    gains = {}
    for m in ("gaussian_tuned", "tv_tuned", "bm3d_tuned"):
        gains[m] = scores[m].get(f"{net}_psnr_same_maps", scores[net]["psnr"]) - scores[m]["psnr"]
    worst = min(gains, key=gains.get)
    return float(gains[worst]), worst


def _prior(cfg, out, *keys):
    """The previous run's entry at ``keys`` when --network-only reuses it (else None)."""
    if not cfg["network_only"]:
        return None
    d = cfg["previous"]
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            raise ValueError(f"--network-only: the previous results lack {'/'.join(keys)}; run without it first")
        d = d[k]
    return d


# --- parts ---


def part_held_out(cfg, out, save):
    from atomscount.elemental import _net
    from atomscount.elemental.shapes import HELD_OUT_SEED, training_maps

    data = training_maps(HELD_OUT_SEED + 17, cfg["n_maps"], size=64, absent_fraction=0.0)
    clean0 = np.asarray(data["clean"], dtype=float)
    keep = np.array([_net.map_dose(c) > 0 for c in clean0])
    clean0 = clean0[keep]
    rng = np.random.default_rng(HELD_OUT_SEED + 18)
    res = {"n_maps": int(len(clean0)), "seed": HELD_OUT_SEED + 17, "size": 64}
    for dose in DOSES:
        clean = np.stack([c * dose / _net.map_dose(c) for c in clean0])
        noisy = rng.poisson(clean).astype(float)
        t0 = time.perf_counter()
        # the same maps in two other dose measures: the whole 64² frame, and the particle's projected area (pixels
        # above 1 % of the maximum, as bench_elemental counts a series' dose)
        covered = [c[c > 0.01 * c.max()].mean() for c in clean]
        doses_as = {"map_dose (thick part)": dose, "frame_mean": float(clean.mean()),
                    "projected_area_mean": float(np.mean(covered))}  # fmt: skip
        prior = _prior(cfg, out, "held_out", f"{dose:g}", "scores")
        net_outs = _network_outputs(noisy)
        if prior is None:
            scores = _scores({**_classical_outputs(noisy, clean, cfg["n_bm3d"]), **net_outs}, clean)
        else:
            scores = {**{m: v for m, v in prior.items() if m not in NETWORKS}, **_scores(net_outs, clean)}
        _same_maps(scores, net_outs, clean)
        gain, against = _gain(scores)
        gain_tta, against_tta = _gain(scores, "network_tta")
        gain_alone, _ = _gain(scores, "network_alone")
        res[f"{dose:g}"] = {"scores": scores, "gain_db_over_best_tuned": gain, "best_tuned": against,
                            "mean_counts_per_pixel": doses_as,
                            "gain_db_over_best_tuned_tta": gain_tta, "best_tuned_tta": against_tta,
                            "gain_db_over_best_tuned_alone": gain_alone,
                            "seconds": time.perf_counter() - t0}  # fmt: skip
        print(f"held-out {dose:g} counts/px: network {scores['network']['psnr']:.2f} dB, gain {gain:+.2f} dB over "
              f"{against} ({gain_tta:+.2f} dB with TTA)", flush=True)  # fmt: skip
        out["held_out"] = res
        save()
    out["psnr_gain_db_3_single_map"] = res["3"]["gain_db_over_best_tuned"]
    out["psnr_gain_db_3_single_map_tta"] = res["3"]["gain_db_over_best_tuned_tta"]
    out["psnr_gain_db_3_single_map_alone"] = res["3"]["gain_db_over_best_tuned_alone"]
    save()


def part_held_out_joint(cfg, out, save):
    """Held-out multi-element projections: every element's map of a projection at one dose, the joint network (each
    map with its projection's total) against the single-map network and the single-map baselines tuned to the truth."""
    from atomscount.elemental import _net
    from atomscount.elemental.shapes import HELD_OUT_SEED
    from atomscount.elemental.train import projection_maps

    seed = HELD_OUT_SEED + 41
    data = projection_maps(seed, cfg["n_maps"], size=64, absent_fraction=0.0)
    clean0, group = np.asarray(data["clean"], dtype=float), data["group"]
    keep = np.array([_net.map_dose(c) > 0 for c in clean0])
    keep &= np.array([keep[group == g].all() for g in group])  # whole projections only
    clean0, group = clean0[keep], group[keep]
    projections = [np.flatnonzero(group == g) for g in np.unique(group)]
    rng = np.random.default_rng(seed + 1)
    rng_bright = np.random.default_rng(seed + 2)  # its own stream: the scored maps are those of earlier runs
    res = {"n_maps": int(len(clean0)), "n_projections": len(projections), "seed": seed, "size": 64,
           "elements_per_projection": {str(k): int(v) for k, v in zip(*np.unique([len(p) for p in projections],
                                                                                return_counts=True), strict=True)},
           "maps": "atomscount.elemental.train.projection_maps: every element of a projection at the same dose "
                   "(map_dose); the joint network sees each map with the sum of its projection's noisy maps; the "
                   "baselines are single-map (as the issue names them), tuned to the truth map by map. "
                   "network_joint_faint: the same noisy map denoised beside its projection's other elements at ten "
                   "times the dose (at most 100 counts per pixel), through denoise_edxs with a dict: a faint element "
                   "beside bright ones"}  # fmt: skip
    for dose in DOSES:
        clean = np.stack([c * dose / _net.map_dose(c) for c in clean0])
        noisy = rng.poisson(clean).astype(float)
        t0 = time.perf_counter()
        joint = {m: np.zeros_like(clean) for m in ("network_joint", "network_joint_tta", "network_joint_alone")}
        for idx in projections:
            for m, per in _joint_outputs({str(i): noisy[i] for i in idx}).items():
                for i in idx:
                    joint[m][i] = per[str(i)]
        bright = rng_bright.poisson(clean * min(10.0, 100.0 / dose)).astype(float)
        faint = np.zeros_like(clean)
        for idx in projections:
            for i in idx:
                maps = {str(j): (noisy[j] if j == i else bright[j]) for j in idx}
                faint[i] = _denoise(maps, "network", joint=True)[list(idx).index(i)]
        idx_all = np.arange(len(clean))
        net_outs = {**_network_outputs(noisy), **{m: (d, idx_all) for m, d in joint.items()},
                    "network_joint_faint": (faint, idx_all)}  # fmt: skip
        prior = _prior(cfg, out, "held_out_joint", f"{dose:g}", "scores")
        if prior is None:
            scores = _scores({**_classical_outputs(noisy, clean, cfg["n_bm3d"]), **net_outs}, clean)
        else:
            scores = {**{m: v for m, v in prior.items() if m not in NETWORKS}, **_scores(net_outs, clean)}
        _same_maps(scores, net_outs, clean)
        row = {"scores": scores, "seconds": time.perf_counter() - t0}
        for net in (*NETWORKS, "network_joint_faint"):
            row[f"gain_db_over_best_tuned_{net}"], row[f"best_tuned_{net}"] = _gain(scores, net)
        row["gain_db_joint_over_single"] = scores["network_joint"]["psnr"] - scores["network"]["psnr"]
        multi = np.array([np.sum(group == g) > 1 for g in group])  # maps with other elements beside them
        for net in ("network", "network_joint", "network_joint_faint"):
            pairs = zip(net_outs[net][0][multi], clean[multi], strict=True)
            row[f"psnr_{net}_multi_element_maps"] = float(np.mean([psnr(a, t) for a, t in pairs]))
        row["n_multi_element_maps"] = int(multi.sum())
        res[f"{dose:g}"] = row
        print(f"held-out projections {dose:g} counts/px: joint {scores['network_joint']['psnr']:.2f} dB, single "
              f"{scores['network']['psnr']:.2f} dB, gain {row['gain_db_over_best_tuned_network_joint']:+.2f} dB over "
              f"{row['best_tuned_network_joint']} (TTA {row['gain_db_over_best_tuned_network_joint_tta']:+.2f}); "
              f"single {row['gain_db_over_best_tuned_network']:+.2f}", flush=True)  # fmt: skip
        out["held_out_joint"] = res
        save()
    out["psnr_gain_db_3"] = res["3"]["gain_db_over_best_tuned_network_joint"]
    out["psnr_gain_db_3_tta"] = res["3"]["gain_db_over_best_tuned_network_joint_tta"]
    out["psnr_gain_db_3_projections_single_map"] = res["3"]["gain_db_over_best_tuned_network"]
    out["psnr_gain_db_3_network_alone"] = res["3"]["gain_db_over_best_tuned_network_joint_alone"]
    save()


def _depth_shell(m, support, tolerance=0.1) -> bool:
    """A band in the outer third of the depth brighter by ``tolerance`` than the inner third."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(support)
    top = depth.max()
    if top < 4:
        return False
    edges = np.linspace(0.0, top, 7)
    bands = [m[(depth > a) & (depth <= b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)
             if ((depth > a) & (depth <= b)).any()]  # fmt: skip
    core = np.mean(bands[-2:])
    return bool(max(bands[:2]) > (1 + tolerance) * core)


def _solid_maps(n, seed):
    """Noise-free projections of solid one-element particles: spheres and every shape of shapes.SHAPES."""
    from atomscount.elemental.shapes import SHAPES, random_particle
    from atomscount.tomo.operators import project_volume

    rng = np.random.default_rng(seed)
    maps = []
    y, x = np.mgrid[:64, :64]
    for _ in range(n):
        r = rng.uniform(10, 24)
        c = rng.uniform(28, 36, 2)
        maps.append(("sphere", np.sqrt(np.clip(r**2 - (x - c[0]) ** 2 - (y - c[1]) ** 2, 0, None))))
        for kind in SHAPES:
            dens, _ = random_particle(rng, shape=(64, 64, 64), kind=kind, composition="solid")
            (rho,) = dens.values()
            maps.append((kind, project_volume(rho[None], [0.0], 5.0)[0, 0]))
    return maps


def part_hallucination(cfg, out, save):
    from atomscount.elemental import _net
    from atomscount.elemental.shapes import HELD_OUT_SEED

    maps = _solid_maps(cfg["n_solid"], HELD_OUT_SEED + 31)
    rng = np.random.default_rng(HELD_OUT_SEED + 32)
    n = shells = skipped = absent_bad = 0
    by_kind, absent_max, flagged = {}, 0.0, []
    for dose in DOSES:
        for kind, m in maps:
            support = m > 0.02 * m.max()
            if _depth_shell(m, support):  # the truth itself has a bright rim here: not a test of the denoiser
                skipped += 1
                continue
            clean = m * dose / _net.map_dose(m)
            den = _denoise(rng.poisson(clean).astype(float), "network")
            shell = _depth_shell(den, support)
            n += 1
            shells += shell
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += shell
            by_kind[kind][1] += 1
            if shell:
                flagged.append({"kind": kind, "dose": dose})
        zero = _denoise(np.zeros((4, 64, 64)), "network")
        absent_max = max(absent_max, float(zero.max()))
        absent_bad += int((zero.reshape(4, -1).max(axis=1) > 0.05).sum())
    out["hallucination"] = {"n_tests": n, "n_shells": int(shells), "skipped_truth_has_rim": skipped,
                            "by_kind": {k: {"shells": v[0], "n": v[1]} for k, v in by_kind.items()},
                            "flagged": flagged[:20], "absent_max_counts": absent_max,
                            "absent_maps": 4 * len(DOSES), "absent_over_0p05": absent_bad}  # fmt: skip
    out["hallucinated_shell_rate_single_map"] = shells / max(n, 1)
    out["absent_element_rate_single_map"] = absent_bad / (4 * len(DOSES))
    print(f"hallucination: {shells} shells in {n} solid particles; absent max {absent_max:.3g}", flush=True)
    joint = _hallucination_joint(maps, HELD_OUT_SEED + 33)
    out["hallucination_joint"] = joint
    out["hallucinated_shell_rate"] = max(shells / max(n, 1), joint["n_shells"] / max(joint["n_tests"], 1))
    out["absent_element_rate"] = max(absent_bad / (4 * len(DOSES)), joint["absent_over_0p05"] / joint["absent_maps"])
    save()


def _hallucination_joint(maps, seed):
    """The joint network's honesty on the same solid particles: alone (its total is its map), as a solid alloy of two
    elements (each at the dose; neither map may gain a shell) and beside an absent element (an all-zero map whose
    projection's total shows the particle: it must stay below 0.05 counts)."""
    from atomscount.elemental import _net

    rng = np.random.default_rng(seed)
    n = shells = absent_bad = n_absent = 0
    absent_max, flagged, by_test = 0.0, [], {"alone": [0, 0], "alloy": [0, 0]}
    for dose in DOSES:
        for kind, m in maps:
            support = m > 0.02 * m.max()
            if _depth_shell(m, support):
                continue
            clean = m * dose / _net.map_dose(m)
            noisy = rng.poisson(clean).astype(float)
            # a solid alloy: both elements' maps have the particle's profile, each at the dose
            alloy = {"A": rng.poisson(clean).astype(float), "B": rng.poisson(clean).astype(float)}
            tests = {"alone": [_denoise({"A": noisy}, "network", joint=True)[0]],
                     "alloy": list(_denoise(alloy, "network", joint=True))}  # fmt: skip
            for test, dens in tests.items():
                for den in dens:
                    shell = _depth_shell(den, support)
                    n += 1
                    shells += shell
                    by_test[test][0] += shell
                    by_test[test][1] += 1
                    if shell:
                        flagged.append({"kind": kind, "dose": dose, "test": test})
            zero = _denoise({"A": noisy, "Z": np.zeros_like(noisy)}, "network", joint=True)[1]
            absent_max = max(absent_max, float(zero.max()))
            absent_bad += int(zero.max() > 0.05)
            n_absent += 1
    print(f"hallucination, joint: {shells} shells in {n} denoised maps of solid particles; absent element max "
          f"{absent_max:.3g} counts ({absent_bad} of {n_absent} over 0.05)", flush=True)  # fmt: skip
    return {"n_tests": n, "n_shells": int(shells),
            "by_test": {k: {"shells": v[0], "n": v[1]} for k, v in by_test.items()}, "flagged": flagged[:20],
            "absent_maps": n_absent, "absent_over_0p05": absent_bad,
            "absent_max_counts": absent_max}  # fmt: skip


def part_timing(cfg, out, save):
    from atomscount.elemental import _net

    y, x = np.mgrid[:512, :512]
    clean = 3.0 * np.sqrt(np.clip(1 - ((x - 256) ** 2 + (y - 256) ** 2) / 180.0**2, 0, None)) * 1.2
    m = np.random.default_rng(5).poisson(clean).astype(float)
    _denoise(m[:64, :64], "network")  # load the weights
    times, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        _denoise(m, "network")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # the CPU seconds of all threads: less sensitive to the other jobs on the machine than the wall time
    res = {"seconds_512_runs": times, "cpu_seconds_512_runs": cpu, "cpu_count": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0]}  # fmt: skip
    out["seconds_512"] = float(np.median(times))
    two = {"A": m, "B": np.random.default_rng(7).poisson(clean).astype(float)}
    joint = []
    for _ in range(3):
        t0 = time.perf_counter()
        _denoise(two, "network", joint=True)
        joint.append((time.perf_counter() - t0) / 2)
    res["seconds_512_joint_per_map_runs"] = joint
    alone = []
    for _ in range(3):
        t0 = time.perf_counter()
        _denoise(m, "network", blend=1.0)
        alone.append(time.perf_counter() - t0)
    res["seconds_512_network_alone_runs"] = alone  # without the blend's cross-validation (blend=1)
    out["seconds_512_network_alone"] = float(np.median(alone))
    out["seconds_512_joint_per_map"] = float(np.median(joint))
    stack = np.random.default_rng(6).poisson(np.tile(clean[192:320, 192:320], (16, 1, 1))).astype(float)
    mps = {}
    for method, k in (("network", 16), ("gaussian", 16), ("tv", 16), ("bm3d", 2)):
        t0 = time.perf_counter()
        _denoise(stack[:k], method)
        mps[method] = k / (time.perf_counter() - t0)
    res["maps_per_second_128"] = mps
    meta = _net.load_denoiser()["meta"]
    res["training"] = {k: meta.get(k) for k in ("trained_on", "training_seconds", "steps", "batch", "n_params")}
    mj = _net.load_denoiser(joint=True)["meta"]
    res["training_joint"] = {k: mj.get(k) for k in ("trained_on", "training_seconds", "steps", "batch", "n_params")}
    out["training_seconds_joint"] = mj.get("training_seconds")
    out["timing"] = res
    out["training_seconds"] = meta.get("training_seconds")
    out["trained_on"] = meta.get("trained_on")
    print(f"512² in {out['seconds_512']:.3f} s, joint {out['seconds_512_joint_per_map']:.3f} s per map (load "
          f"{res['load_average_1min']:.1f}); maps/s 128²: {mps}", flush=True)  # fmt: skip
    save()


def _recon_error(series, truth, mask, elements):
    import bench_elemental as be

    from atomscount.elemental.reconstruct import reconstruct_separate

    rec = reconstruct_separate(series, n_iter=50)
    errs = be._scores(rec, truth, mask, elements)
    return float(np.mean(list(errs.values()))), errs


def _particle_unit_maps(name, n, voxel, angles):
    """One elemental-benchmark particle: its elements, truth and mask, its noise-free EDXS series at 1 e/Å²,
    their summed maps and the pixels those cover (above 1 % of their maximum), where the dose is measured."""
    import bench_elemental as be

    from atomscount.elemental.forward import simulate_edxs

    dens = be._phantom(name, n, voxel)
    truth, mask = be._truth(dens)
    unit = simulate_edxs(dens, voxel, angles, dose_e_per_angstrom2=1.0, noise=False)
    total = sum(s.images for s in unit.values())
    return list(dens), truth, mask, unit, total, total > 0.01 * total.max()


def part_recon(cfg, out, save):
    from atomscount.tomo import TiltSeries

    n, voxel, angles = cfg["particles_n"], cfg["voxel"], cfg["angles"]
    res = {"n_voxels_side": n, "voxel_size_angstrom": voxel, "n_projections": len(angles), "particles": {}}
    ratios_3, ratios_3_tta, above_3, single_3, alone_3 = {}, {}, {}, {}, {}
    res["reconstruction"] = ("reconstruct_separate: SIRT of each element's series (50 iterations, positivity, no "
                             "regulariser), the same for every method and for the noise-free maps ('clean', the "
                             "reconstruction's own error)")  # fmt: skip
    for name in ("rod", "ptau", "three"):
        elements, truth, mask, unit, total, covered = _particle_unit_maps(name, n, voxel, angles)
        per = {}
        for k, dose in enumerate(DOSES):
            scale = dose / float(total[covered].mean())
            clean = {e: unit[e].images * scale for e in elements}
            rng = np.random.default_rng(100 * k + len(name))
            noisy = {e: rng.poisson(clean[e]).astype(float) for e in elements}
            prior = _prior(cfg, out, "recon", "particles", name, f"{dose:g}", "methods")
            outs = {}
            for e in elements:
                per_e = _network_outputs(noisy[e])
                if prior is None:
                    per_e.update(_classical_outputs(noisy[e], clean[e], 4, tuned_bm3d_series=True, bm3d_auto=False))
                for m, (d, _) in per_e.items():
                    outs.setdefault(m, {})[e] = d
            outs.update(_joint_outputs(noisy))
            outs["clean"] = clean  # the noise-free maps: the reconstruction's own error, the floor
            row = {} if prior is None else {m: v for m, v in prior.items() if m not in (*NETWORKS, "clean")}
            for m, maps in outs.items():
                keep = [i for i in range(len(angles)) if all(clean[e][i].max() > 0 for e in elements)]
                pairs = [(maps[e][i], clean[e][i]) for e in elements for i in keep]
                row[m] = {} if m == "clean" else {"psnr": float(np.mean([psnr(a, t) for a, t in pairs])),
                                                  "ssim": float(np.mean([ssim(a, t) for a, t in pairs]))}  # fmt: skip
                series = {}
                for e in elements:
                    prov = {**unit[e].provenance, "dose_e_per_angstrom2": unit[e].provenance["dose_e_per_angstrom2"]
                            * scale, "noise": m == "noisy"}  # fmt: skip
                    series[e] = TiltSeries(maps[e], angles, voxel, prov)
                row[m]["recon_nrmse"], row[m]["recon_nrmse_per_element"] = _recon_error(series, truth, mask, elements)
            classical = {m: row[m]["recon_nrmse"] for m in ("gaussian_tuned", "tv_tuned", "bm3d_tuned")}
            best = min(classical, key=classical.get)
            floor = row["clean"]["recon_nrmse"]
            entry = {"methods": row, "best_tuned_classical": best}
            for net in NETWORKS:  # the ratios of the joint network (the default for several elements) and the others
                suffix = {"network_joint": "", "network_joint_tta": "_tta", "network": "_single_map",
                          "network_tta": "_single_map_tta", "network_joint_alone": "_alone",
                          "network_alone": "_single_map_alone"}[net]  # fmt: skip
                entry[f"recon_error_ratio{suffix}"] = classical[best] / row[net]["recon_nrmse"]
                above = (classical[best] - floor) / max(row[net]["recon_nrmse"] - floor, 1e-12)
                entry[f"recon_error_ratio_above_floor{suffix}"] = above
                entry[f"psnr_gain_db{suffix}"] = row[net]["psnr"] - max(row[m]["psnr"] for m in classical)
            ratio = entry["recon_error_ratio"]
            per[f"{dose:g}"] = entry
            if dose == 3.0:
                ratios_3[name] = ratio
                ratios_3_tta[name] = entry["recon_error_ratio_tta"]
                above_3[name] = entry["recon_error_ratio_above_floor"]
                single_3[name] = entry["recon_error_ratio_single_map"]
                alone_3[name] = entry["recon_error_ratio_alone"]
            print(f"recon {name} {dose:g} counts/px: joint {row['network_joint']['recon_nrmse']:.3f}, single "
                  f"{row['network']['recon_nrmse']:.3f}, {best} {classical[best]:.3f}, noisy "
                  f"{row['noisy']['recon_nrmse']:.3f} (ratio {ratio:.2f})", flush=True)  # fmt: skip
            res["particles"][name] = per
            out["recon"] = res
            save()
    out["recon_error_ratio_3"] = float(min(ratios_3.values())) if ratios_3 else None
    out["recon_error_ratio_3_per_particle"] = ratios_3
    out["recon_error_ratio_3_tta"] = float(min(ratios_3_tta.values())) if ratios_3_tta else None
    out["recon_error_ratio_3_above_floor"] = float(min(above_3.values())) if above_3 else None
    out["recon_error_ratio_3_single_map"] = float(min(single_3.values())) if single_3 else None
    out["recon_error_ratio_3_network_alone"] = float(min(alone_3.values())) if alone_3 else None
    save()


MULTIMODAL_WEIGHT = 0.1  # fixed a priori for denoised maps (their noise is not Poisson: no discrepancy principle)


def part_recon_multimodal(cfg, out, save):
    """At 3 counts per pixel: the multimodal reconstruction (EDXS only, TNV) behind the denoisers."""
    import bench_elemental as be

    from atomscount.elemental.reconstruct import reconstruct_elemental
    from atomscount.tomo import TiltSeries

    n, voxel, angles = cfg["particles_n"], cfg["voxel"], cfg["angles"]
    res = {"n_voxels_side": n, "voxel_size_angstrom": voxel, "n_projections": len(angles), "dose": 3.0,
           "reconstruction": "reconstruct_elemental(None, edxs, regulariser='tnv', n_iter=100): the raw counts "
           "with weights='auto' (discrepancy principle); every denoised series and the noise-free maps with "
           f"weights={MULTIMODAL_WEIGHT} (fixed before the run, the same for all)", "particles": {}}  # fmt: skip
    ratios, single = {}, {}
    for name in ("rod", "ptau", "three"):
        elements, truth, mask, unit, total, covered = _particle_unit_maps(name, n, voxel, angles)
        scale = 3.0 / float(total[covered].mean())
        clean = {e: unit[e].images * scale for e in elements}
        rng = np.random.default_rng(100 * DOSES.index(3.0) + len(name))  # the maps of part_recon at 3 counts/px
        noisy = {e: rng.poisson(clean[e]).astype(float) for e in elements}
        outs = {"noisy": noisy, "clean": clean}
        for e in elements:
            for m, (d, _) in _network_outputs(noisy[e]).items():
                outs.setdefault(m, {})[e] = d
            outs.setdefault("gaussian_tuned", {})[e] = _tuned(noisy[e], clean[e], "gaussian")[0]
        outs.update(_joint_outputs(noisy))
        row = {}
        for m, maps in outs.items():
            series = {e: TiltSeries(maps[e], angles, voxel, {**unit[e].provenance, "noise": m == "noisy",
                                    "dose_e_per_angstrom2": unit[e].provenance["dose_e_per_angstrom2"] * scale})
                      for e in elements}  # fmt: skip
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a fit that stops at n_iter warns; recorded by its error
                rec = reconstruct_elemental(None, series, weights="auto" if m == "noisy" else MULTIMODAL_WEIGHT,
                                            n_iter=100, progress=False)  # fmt: skip
            errs = be._scores(rec, truth, mask, elements)
            row[m] = {"recon_nrmse": float(np.mean(list(errs.values()))), "recon_nrmse_per_element": errs,
                      "seconds": time.perf_counter() - t0}  # fmt: skip
        ratios[name] = row["gaussian_tuned"]["recon_nrmse"] / row["network_joint"]["recon_nrmse"]
        single[name] = row["gaussian_tuned"]["recon_nrmse"] / row["network"]["recon_nrmse"]
        res["particles"][name] = {"methods": row, "ratio_gaussian_tuned_to_network_joint": ratios[name],
                                  "ratio_gaussian_tuned_to_network_single_map": single[name]}  # fmt: skip
        print(f"multimodal {name} 3 counts/px: " + ", ".join(f"{m} {v['recon_nrmse']:.3f}" for m, v in row.items()),
              flush=True)  # fmt: skip
        out["recon_multimodal"] = res
        save()
    out["recon_error_ratio_3_multimodal"] = float(min(ratios.values()))
    out["recon_error_ratio_3_multimodal_single_map"] = float(min(single.values()))
    save()


def part_recon_oracle(cfg, out, save):
    """At 3 counts per pixel: the map gain a 1.5× lower 3D error would need (``_bench_denoise_oracle.py``)."""
    from _bench_denoise_oracle import run

    run(cfg, out, save)


def part_public(cfg, out, save):
    """The graptor sinograms (real counts, no truth): ``_bench_denoise_public.py``."""
    from _bench_denoise_public import run

    run(cfg, out, save)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--quick", action="store_true", help="fewer maps, 32³ particles, 15 projections")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    ap.add_argument("--network-only", action="store_true",
                    help="rescore only the network (new weights), reusing the classical methods' scores of the "
                         "previous run in --out (the same maps: every draw is seeded)")  # fmt: skip
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts must be among {PARTS}, got {bad}")
    cfg = _config(args.quick)
    cfg["network_only"] = args.network_only
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    cfg["previous"] = json.loads(json.dumps(out))  # what --network-only reuses, untouched by this run
    for key in ("psnr_gain_db_3", "recon_error_ratio_3", "hallucinated_shell_rate", "seconds_512"):
        out.setdefault(key, None)
    out.update(INSTALL)

    def save():
        save_json_atomic(args.out, out)

    runners = {"held_out": part_held_out, "held_out_joint": part_held_out_joint, "hallucination": part_hallucination,
               "timing": part_timing,
               "recon": part_recon, "recon_multimodal": part_recon_multimodal, "recon_oracle": part_recon_oracle,
               "public": part_public}  # fmt: skip
    t0 = time.perf_counter()
    for part in parts:
        out.setdefault("parts_run", {})[part] = {"quick": args.quick, "network_only": args.network_only,
                                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        out.pop(f"{part}_error", None)
        try:
            runners[part](cfg, out, save)
        except Exception as exc:  # one failed part leaves the others' figures
            out[f"{part}_error"] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
        out["parts_run"][part]["seconds"] = time.perf_counter() - t0
        save()
    out["seconds_total"] = time.perf_counter() - t0
    save()
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=1, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
