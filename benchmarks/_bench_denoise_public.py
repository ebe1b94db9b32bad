"""The public part of ``bench_denoise.py``: the graptor Yb/Al/Si EDX sinograms (real counts, no truth).

Each element's stack of sinograms (angles, slices, pixels), binned by ``public_bin``, is split into two
independent halves by binomial thinning (``split_counts``); each method denoises half A and is scored by the mean
squared difference to half B: ``E|f(A) - B|² = E|f(A) - λ/2|² + E var B``, lower is better, and since B is Poisson
its mean estimates ``E var B``, so ``excess_mse_estimate`` (the score less B's mean) estimates the true squared error
``E|f(A) - λ/2|²`` with no truth. Methods: the identity, the Gaussian filter (PURE width) and TV (SURE weight),
BM3D on six maps (slow), and the network: the default (``network``: the frame margin, mirrored at the edges the
sample crosses, and the blend with the Gaussian filter chosen by thinning cross-validation), ``network_alone``
(``blend=1``), with TTA, the joint network (the element's half with the total of the three elements' halves), and
fine-tuned by Noise2Noise on a thinning of A (``finetune_denoiser``; the data have no frames).
``blend_network_weight``: the weight each default chose.
"""

from __future__ import annotations

import time

import numpy as np


def run(cfg, out, save):
    """Score every method on the graptor sinograms: denoise half A, compare with half B."""
    import mrcfile
    from bench_denoise import PUBLIC, _denoise, _denoise_result, _prior

    from atomscount.elemental import _net
    from atomscount.elemental.denoise import finetune_denoiser, split_counts

    res = {"han2021_nanorod": "not run: STEM_EDX_input.mat holds floats normalised per projection (0 to 0.42, not "
           "whole numbers), not X-ray counts; the network and the Poisson baselines take counts"}  # fmt: skip
    folder = PUBLIC / "graptor_yb_al_si"
    if not folder.is_dir():
        res["graptor"] = f"public data not found in {folder}"
        out["public"] = res
        save()
        return
    b = cfg["public_bin"]
    elements = ("Yb", "Al", "Si")
    halves = {}
    for element in elements:
        with mrcfile.open(folder / f"{element}_EDXsino.mrc", permissive=True) as f:
            data = np.round(np.clip(np.asarray(f.data, dtype=np.float64), 0, None))  # (angles, slices, pixels)
        k, rows, cols = data.shape
        rows, cols = rows // b * b, cols // b * b
        data = data[:, :rows, :cols].reshape(k, rows // b, b, cols // b, b).sum(axis=(2, 4))
        halves[element] = (data, *split_counts(data, rng=0))
    # the joint network: each element's half-a map with the total of the three at the same projection
    a_maps = {e: halves[e][1] for e in elements}
    joint = _denoise_result(a_maps, "network")
    joint_alone = _denoise_result(a_maps, "network", blend=1.0)
    for element in elements:
        data, a, half_b = halves[element]
        t0 = time.perf_counter()
        a1, a2 = split_counts(a, rng=1)
        tuned = finetune_denoiser(a1, a2, steps=cfg["finetune_steps"], seed=0)
        ft_seconds = time.perf_counter() - t0
        n6 = min(6, len(a))  # BM3D on six maps (slow), with the network on the same six
        prior = _prior(cfg, out, "public", f"graptor_{element}", "mse_to_other_half")
        if prior is None:
            scores = {"identity": float(np.mean((a - half_b) ** 2))}
            for m in ("gaussian", "tv"):
                scores[m] = float(np.mean((_denoise(a, m) - half_b) ** 2))
            scores["bm3d_6_maps"] = float(np.mean((_denoise(a[:n6], "bm3d") - half_b[:n6]) ** 2))
        else:
            scores = {m: v for m, v in prior.items() if not m.startswith("network")}
        if "gaussian_6_maps" not in scores:
            scores["gaussian_6_maps"] = float(np.mean((_denoise(a[:n6], "gaussian") - half_b[:n6]) ** 2))
        runs = {
            m: _denoise_result(a[:n6] if m.endswith("6_maps") else a, "network", **kw)
            for m, kw in (
                ("network", {}),
                ("network_alone", {"blend": 1.0}),
                ("network_tta", {"tta": True}),
                ("network_6_maps", {}),
                ("network_finetuned", {"model": tuned}),
                ("network_finetuned_alone", {"model": tuned, "blend": 1.0}),
            )
        }
        weights = {}
        for m, r in runs.items():
            target = half_b[:n6] if m.endswith("6_maps") else half_b
            scores[m] = float(np.mean((r.maps - target) ** 2))
            weights[m] = r.parameters["blend"]["network_weight"]
        k = elements.index(element)
        scores["network_joint"] = float(np.mean((joint[element] - half_b) ** 2))
        scores["network_joint_alone"] = float(np.mean((joint_alone[element] - half_b) ** 2))
        weights["network_joint"] = joint.parameters["blend"]["network_weight"][k]
        # half B's mean estimates its variance (Poisson), so each score less it estimates E|f(A) - λ/2|², the true
        # squared error of the denoised half (no truth); the six-map rows less the six maps' mean of B
        base = {m: float(half_b[:n6].mean() if m.endswith("6_maps") else half_b.mean()) for m in scores}
        excess = {m: v - base[m] for m, v in scores.items()}
        res[f"graptor_{element}"] = {"shape": list(data.shape), "counts_max": float(data.max()),
                                     "counts_mean": float(data.mean()),
                                     "half_a_dose_median": float(np.median([_net.map_dose(m) for m in a])),
                                     "mse_to_other_half": scores, "excess_mse_estimate": excess,
                                     "blend_network_weight": weights, "finetune_seconds": ft_seconds,
                                     "finetune_steps": cfg["finetune_steps"],
                                     "seconds": {m: r.provenance["seconds"] for m, r in runs.items()}}  # fmt: skip
        print(f"graptor {element}: {scores}", flush=True)
        out["public"] = res
        save()
