"""Train the shipped EDXS denoiser and score it on held-out particles.

Writes ``atomscount/data/edxs_denoiser.npz`` (or ``--out``): the weights, and in the
metadata the settings, the loss curve, the training time and device, the held-out PSNR of
the network against truth-tuned classical baselines at each dose, and a stored
input/output pair that the tests reproduce.

Steps: the training maps (:func:`atomscount.elemental.shapes.training_maps`) are made once
and cached in ``--work``; training (:func:`atomscount.elemental.train.train_denoiser`)
checkpoints there every few hundred steps, so that rerunning the same command after a kill
resumes where it stopped. Needs ``atomscount[learn]`` (JAX, optax) and, for the BM3D
baseline, ``bm3d``.

Held-out scores: maps from seeds at or above ``HELD_OUT_SEED`` at fixed doses; PSNR =
10 log10(max(truth)² / MSE) of each map, averaged over maps, for the network alone and
with test-time augmentation (``predict(..., augment=True)``: the mean over 8 flips and
turns). The baselines are tuned to the truth map by map: a Gaussian filter (best width of a grid), total variation
(scikit-image, Chambolle; best weight) and BM3D (best noise level), the last two on the
Anscombe transform ``2 sqrt(x + 3/8)`` with its closed-form unbiased inverse (Mäkitalo &
Foi, IEEE TIP 20, 99 (2011), doi:10.1109/TIP.2010.2056693).

``--continue`` trains the weights in ``--out`` further (a warm restart of the learning-rate
schedule, ``[continuation]`` in the settings), appends the run to the metadata's ``runs``,
loss curve and training time, rescores the held-out maps (reusing the BM3D scores: the maps
are the same) and replaces the file only if the network's held-out PSNR, averaged over the
doses, rises.

``--joint`` trains the joint network (``atomscount/data/edxs_denoiser_joint.npz``: each map
guided by its projection's total map; settings ``simulations/edxs_denoiser_joint.toml``),
warm-started from the single-map weights, and scores it on held-out projections against
the single-map network and the same baselines.

Run:  python simulations/train_denoiser.py [--settings simulations/edxs_denoiser.toml] [--quick]
      [--continue] [--joint] [--out FILE.npz] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import tomllib
from pathlib import Path

import numpy as np

from atomscount.elemental import _net
from atomscount.elemental.shapes import HELD_OUT_SEED, training_maps
from atomscount.elemental.train import projection_groups, save_denoiser, train_denoiser

HERE = Path(__file__).resolve().parent
SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
TV_WEIGHTS = (0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0)
BM3D_SIGMAS = (0.7, 1.0, 1.4)


def psnr(est, truth):
    mse = float(np.mean((est - truth) ** 2))
    return 10 * np.log10(float(truth.max()) ** 2 / max(mse, 1e-30))


def anscombe(x):
    return 2.0 * np.sqrt(np.asarray(x, float) + 0.375)


def inverse_anscombe(d):
    d = np.maximum(np.asarray(d, float), 0.8)
    s = np.sqrt(1.5)
    return np.maximum(d**2 / 4 + s / (4 * d) - 11 / (8 * d**2) + 5 * s / (8 * d**3) - 1 / 8, 0.0)


def best_gaussian(noisy, truth):
    from scipy.ndimage import gaussian_filter

    return max(psnr(gaussian_filter(noisy, s), truth) for s in SIGMAS_PX)


def best_tv(noisy, truth):
    from skimage.restoration import denoise_tv_chambolle

    a = anscombe(noisy)
    return max(psnr(inverse_anscombe(denoise_tv_chambolle(a, weight=w)), truth) for w in TV_WEIGHTS)


def best_bm3d(noisy, truth):
    import bm3d

    a = anscombe(noisy)
    return max(psnr(inverse_anscombe(bm3d.bm3d(a, sigma_psd=s)), truth) for s in BM3D_SIGMAS)


def held_out_scores(model, doses, n_maps, bm3d_maps, seed, previous=None, before=None):
    """PSNR [dB] of the network and the truth-tuned baselines, averaged over held-out maps, at each dose.

    ``previous``: earlier scores on the same maps (the same seed and numbers of maps), whose BM3D means are
    reused (BM3D is the slow one; the maps are drawn from the seed, so they are the same). ``before``: a model
    (the weights a continued run started from) scored on the same maps too.
    """
    out = {}
    for k, dose in enumerate(doses):
        old = (previous or {}).get(f"{dose:g}", {})
        reuse = old.get("n_maps") == n_maps and old.get("n_maps_bm3d") == min(bm3d_maps, n_maps) and "psnr_bm3d" in old
        data = training_maps(seed + k, n_maps, dose_range=(dose, dose), absent_fraction=0.0)
        mean, _ = _net.predict(data["noisy"], model=model)
        mean_aug, _ = _net.predict(data["noisy"], model=model, augment=True)
        rows = {"network": [], "network_augmented": [], "gaussian": [], "tv": [], "bm3d": []}
        if before is not None:
            rows["network_before"] = [psnr(m, t) for m, t in zip(_net.predict(data["noisy"], model=before)[0],
                                                                 data["clean"], strict=True)]  # fmt: skip
        for i, (noisy, truth) in enumerate(zip(data["noisy"], data["clean"], strict=True)):
            rows["network"].append(psnr(mean[i], truth))
            rows["network_augmented"].append(psnr(mean_aug[i], truth))
            rows["gaussian"].append(best_gaussian(noisy, truth))
            rows["tv"].append(best_tv(noisy, truth))
            if i < bm3d_maps and not reuse:
                rows["bm3d"].append(best_bm3d(noisy, truth))
        res = {f"psnr_{m}": float(np.mean(v)) for m, v in rows.items() if v}
        if reuse:
            res["psnr_bm3d"] = old["psnr_bm3d"]
            res["bm3d_reused"] = True
        # the gain over the best baseline, on the maps where every method ran
        nb = old["n_maps_bm3d"] if reuse else len(rows["bm3d"])
        sub = {m: float(np.mean(v[:nb])) for m, v in rows.items() if v}
        if reuse:
            sub["bm3d"] = old["psnr_bm3d"]
        best = max(sub["gaussian"], sub["tv"], sub.get("bm3d", -np.inf))
        res["gain_db_over_best_classical"] = sub["network"] - best
        res["gain_db_over_best_classical_augmented"] = sub["network_augmented"] - best
        res["gain_db_over_gaussian"] = res["psnr_network"] - res["psnr_gaussian"]
        res.update({"n_maps": n_maps, "n_maps_bm3d": nb})
        out[f"{dose:g}"] = res
        print(f"held out, {dose:g} counts/px: " + ", ".join(f"{k} {float(v):.2f}" for k, v in res.items()), flush=True)
    return out


def digest(obj) -> str:
    """A short key of settings (cache and checkpoint file names)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def _sections(settings, second: str, quick: bool):
    """The settings' data, ``second`` ("network" or "start"), training and held-out sections, with the
    [quick] sizes when ``quick``."""
    data_s, second_s, train_s, held_s = (dict(settings[k]) for k in ("data", second, "training", "held_out"))
    if quick:
        q = settings["quick"]
        data_s["n_maps"], train_s["steps"] = q["n_maps"], q["steps"]
        held_s["n_maps"], held_s["bm3d_maps"] = q["held_out_maps"], q["bm3d_maps"]
    return data_s, second_s, train_s, held_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=None, help="default simulations/edxs_denoiser[_joint].toml")
    ap.add_argument("--quick", action="store_true", help="a briefly trained model (the [quick] settings)")
    ap.add_argument("--out", default=None, help="default the shipped weights (atomscount/data/)")
    ap.add_argument("--joint", action="store_true", help="the joint network (each map with its projection's total)")
    ap.add_argument("--work", default=str(HERE / "_work" / "edxs_denoiser"), help="cache and checkpoints")
    ap.add_argument("--continue", dest="cont", action="store_true",
                    help="train the weights in --out further (the [continuation] settings); they are replaced only "
                         "if the held-out PSNR rises")  # fmt: skip
    args = ap.parse_args(argv)
    if args.settings is None:
        args.settings = str(HERE / ("edxs_denoiser_joint.toml" if args.joint else "edxs_denoiser.toml"))
    if args.out is None:
        args.out = str(_net.DEFAULT_JOINT_PATH if args.joint else _net.DEFAULT_PATH)
    if args.joint:
        return train_joint(args, tomllib.loads(Path(args.settings).read_text()))
    settings = tomllib.loads(Path(args.settings).read_text())
    data_s, net_s, train_s, held_s = _sections(settings, "network", args.quick)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    # the checkpoint's key leaves out the number of steps, so that a run can be extended (its cosine schedule
    # then stretches to the new end)
    resumable = {k: v for k, v in train_s.items() if k not in ("steps", "checkpoint_every", "log_every")}
    cache = work / f"maps_{digest(data_s)}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            data = {"clean": z["clean"], "dose": z["dose"]}
    else:
        t = time.perf_counter()
        maps = training_maps(data_s["seed"], data_s["n_maps"], size=data_s["size"], dose_range=data_s["dose_range"])
        data = {"clean": maps["clean"].astype(np.float32), "dose": maps["dose"]}
        np.savez(cache, **data)
        print(f"{len(data['dose'])} training maps in {time.perf_counter() - t:.0f} s", flush=True)

    if args.cont:
        return _continue(args, settings, data, data_s, net_s, train_s, held_s, work, digest)
    model, history = train_denoiser(seed=train_s["seed"], steps=train_s["steps"], batch=train_s["batch"], data=data,
                                    channels=tuple(net_s["channels"]), dose_range=tuple(data_s["dose_range"]),
                                    learning_rate=train_s["learning_rate"], nll_weight=train_s["nll_weight"],
                                    checkpoint=work / f"checkpoint_{digest([data_s, net_s, resumable])}.pkl",
                                    checkpoint_every=train_s["checkpoint_every"],
                                    log_every=train_s["log_every"])  # fmt: skip
    meta = model["meta"]
    meta["trained_on"] = "cpu" if meta["trained_on"] == "cpu" else "gpu"
    meta["n_params"] = int(sum(v.size for v in model["params"].values()))
    meta["settings"] = {"data": data_s, "network": net_s, "training": train_s, "held_out": held_s,
                        "quick": bool(args.quick)}  # fmt: skip
    meta["loss_history"] = history
    meta["dose_measure"] = DOSE_MEASURE
    t = time.perf_counter()
    meta["held_out"] = held_out_scores(model, held_s["doses"], held_s["n_maps"], held_s["bm3d_maps"], held_s["seed"])
    print(f"held-out scores in {time.perf_counter() - t:.0f} s", flush=True)
    _write(model, args.out)


DOSE_MEASURE = ("atomscount.elemental._net.map_dose: mean counts over the pixels whose 2-px-smoothed value is at "
                "least half the smoothed maximum")  # fmt: skip


def _write(model, out):
    meta = model["meta"]
    # the stored pair: a held-out map whose sides are not a multiple of 16 (so the padding is part of it)
    ref = training_maps(HELD_OUT_SEED + 999, 1, size=48, dose_range=(3.0, 3.0), absent_fraction=0.0)
    counts = ref["noisy"][0][:44, :46]
    mean, sigma = _net.predict(counts, model=model)
    meta["reference"] = {"input": counts.astype(np.float32), "mean": mean, "sigma": sigma}
    path = save_denoiser(model, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), {meta['n_params']} parameters, "
          f"trained {meta['training_seconds']:.0f} s on {meta['trained_on']}")  # fmt: skip
    return path


def _continue(args, settings, data, data_s, net_s, train_s, held_s, work, digest):
    """More training of the weights in ``--out`` (a warm restart); they are replaced only if the held-out PSNR rises."""
    cont = dict(settings["continuation"])
    start = _net.load_denoiser(args.out)
    old = {k: v for k, v in start["meta"].items() if k != "reference"}
    if old.get("settings", {}).get("quick"):
        raise SystemExit(f"--continue: {args.out} holds a --quick model; continue the full one")
    md5 = hashlib.md5(Path(args.out).read_bytes()).hexdigest()
    ckpt = work / f"continue_{digest([data_s, md5, cont['seed'], cont['learning_rate']])}.pkl"
    model, history = train_denoiser(seed=cont["seed"], steps=cont["steps"], batch=train_s["batch"], data=data,
                                    model=start, dose_range=tuple(data_s["dose_range"]),
                                    learning_rate=cont["learning_rate"], nll_weight=train_s["nll_weight"],
                                    checkpoint=ckpt, checkpoint_every=train_s["checkpoint_every"],
                                    log_every=train_s["log_every"])  # fmt: skip
    new = model["meta"]
    runs = old.get("runs") or [
        {k: old.get(k) for k in ("seed", "steps", "batch", "training_seconds", "trained_on")}
        | {"learning_rate": old["settings"]["training"]["learning_rate"], "from": "scratch"}
    ]
    runs = [*runs, {"seed": cont["seed"], "steps": new["steps"], "batch": new["batch"],
                    "training_seconds": new["training_seconds"], "learning_rate": cont["learning_rate"],
                    "trained_on": "cpu" if new["trained_on"] == "cpu" else "gpu", "from": f"weights md5 {md5}",
                    "note": cont.get("note", "")}]  # fmt: skip
    n0, s0 = old["steps"], old["training_seconds"]
    hist = {k: list(v) for k, v in old["loss_history"].items()}
    hist["step"] += [n0 + x for x in history["step"]]
    hist["seconds"] += [s0 + x for x in history["seconds"]]
    for k in ("loss", "mse", "nll"):
        hist[k] += history[k]
    meta = {**old, "runs": runs, "steps": n0 + new["steps"], "training_seconds": s0 + new["training_seconds"],
            "loss_history": hist, "trained_on": "cpu" if all(r["trained_on"] == "cpu" for r in runs) else "cpu+gpu",
            "settings": {**old["settings"], "continuation": cont}}  # fmt: skip
    model["meta"] = meta
    t = time.perf_counter()
    meta["held_out"] = held_out_scores(model, held_s["doses"], held_s["n_maps"], held_s["bm3d_maps"], held_s["seed"],
                                       previous=old["held_out"], before=start)  # fmt: skip
    meta["held_out_before"] = old["held_out"]
    print(f"held-out scores in {time.perf_counter() - t:.0f} s", flush=True)
    before = np.mean([v["psnr_network_before"] for v in meta["held_out"].values()])
    after = np.mean([v["psnr_network"] for v in meta["held_out"].values()])
    print(f"held-out PSNR of the network, mean over doses: {before:.3f} dB before, {after:.3f} dB after", flush=True)
    if after > before:
        return _write(model, args.out)
    path = _write(model, work / "continued_not_shipped.npz")
    print(f"not shipped: the held-out PSNR did not rise; the continued weights are in {path}")
    # the shipped weights stay; their metadata records the run that did not help
    tried = {**runs[-1], "held_out": meta["held_out"], "loss_history": history}
    old["continuations_not_shipped"] = [*old.get("continuations_not_shipped", []), tried]
    return _write({"params": start["params"], "meta": old}, args.out)


def joint_training_data(data_s, work, digest):
    """The training maps of ``[data]`` with their projection index (``group``), cached in ``work``."""
    cache = work / f"maps_joint_{digest(data_s)}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {"clean": z["clean"], "dose": z["dose"], "group": z["group"]}
    t = time.perf_counter()
    maps = training_maps(data_s["seed"], data_s["n_maps"], size=data_s["size"], dose_range=data_s["dose_range"])
    data = {"clean": maps["clean"].astype(np.float32), "dose": maps["dose"], "group": projection_groups(maps["info"])}
    np.savez(cache, **data)
    n, n_proj, sec = len(data["dose"]), data["group"][-1] + 1, time.perf_counter() - t
    print(f"{n} training maps of {n_proj} projections in {sec:.0f} s", flush=True)
    return data


def train_joint(args, settings):
    """Train the joint network from the single-map weights, score it on held-out projections and write it."""
    data_s, start_s, train_s, held_s = _sections(settings, "start", args.quick)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    data = joint_training_data(data_s, work, digest)
    start_path = _net.DEFAULT_PATH.with_name(start_s["weights"])
    start = _net.load_denoiser(start_path)
    md5 = hashlib.md5(start_path.read_bytes()).hexdigest()
    resumable = {k: v for k, v in train_s.items() if k not in ("steps", "checkpoint_every", "log_every")}
    ckpt = work / f"joint_{digest([data_s, md5, resumable])}.pkl"
    model, history = train_denoiser(seed=train_s["seed"], steps=train_s["steps"], batch=train_s["batch"], data=data,
                                    model=start, joint=True, dose_range=tuple(data_s["dose_range"]),
                                    learning_rate=train_s["learning_rate"], nll_weight=train_s["nll_weight"],
                                    absent_fraction=train_s["absent_fraction"], checkpoint=ckpt,
                                    checkpoint_every=train_s["checkpoint_every"],
                                    log_every=train_s["log_every"])  # fmt: skip
    meta = model["meta"]
    meta["trained_on"] = "cpu" if meta["trained_on"] == "cpu" else "gpu"
    meta["n_params"] = int(sum(v.size for v in model["params"].values()))
    meta["settings"] = {"data": data_s, "start": start_s, "training": train_s, "held_out": held_s,
                        "quick": bool(args.quick)}  # fmt: skip
    meta["warm_start"] = {"weights": start_s["weights"], "md5": md5, "steps": start["meta"]["steps"],
                          "training_seconds": start["meta"]["training_seconds"]}  # fmt: skip
    meta["loss_history"] = history
    meta["dose_measure"] = DOSE_MEASURE
    t = time.perf_counter()
    meta["held_out"] = joint_held_out_scores(model, start, held_s, work)
    print(f"held-out scores in {time.perf_counter() - t:.0f} s", flush=True)
    return _write_joint(model, args.out)


def joint_classical_scores(held_s, work):
    """The truth-tuned baselines' PSNR [dB] per held-out map at each dose (as :func:`joint_held_out_scores` draws the
    maps), cached in ``work`` (BM3D is slow; the maps are drawn from seeds, so they are the same every run)."""
    from atomscount.elemental.train import projection_maps

    key = digest(held_s)
    cache = Path(work) / f"joint_held_out_classical_{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    out = {}
    for k, dose in enumerate(held_s["doses"]):
        data = projection_maps(held_s["seed"] + k, held_s["n_maps"], dose_range=(dose, dose))
        nb = min(held_s["bm3d_maps"], len(data["noisy"]))
        pairs = list(zip(data["noisy"], data["clean"], strict=True))
        out[f"{dose:g}"] = {"gaussian": [best_gaussian(x, t) for x, t in pairs],
                            "tv": [best_tv(x, t) for x, t in pairs],
                            "bm3d": [best_bm3d(x, t) for x, t in pairs[:nb]]}  # fmt: skip
        print(f"held-out projections, {dose:g} counts/px: baselines scored", flush=True)
    cache.write_text(json.dumps(out))
    return out


def joint_held_out_scores(model, single, held_s, work):
    """PSNR [dB] of the joint network, the single-map network and the truth-tuned baselines on held-out projections
    (every element at the same dose), averaged over the element maps, at each dose."""
    from atomscount.elemental.train import projection_maps

    classical = joint_classical_scores(held_s, work)
    out = {}
    for k, dose in enumerate(held_s["doses"]):
        data = projection_maps(held_s["seed"] + k, held_s["n_maps"], dose_range=(dose, dose))
        est = {"network": _net.predict(data["noisy"], model=model, total=data["total"])[0],
               "network_augmented": _net.predict(data["noisy"], model=model, total=data["total"], augment=True)[0],
               "network_single": _net.predict(data["noisy"], model=single)[0]}  # fmt: skip
        rows = {m: [psnr(e, t) for e, t in zip(v, data["clean"], strict=True)] for m, v in est.items()}
        rows.update(classical[f"{dose:g}"])
        nb = len(rows["bm3d"])
        res = {f"psnr_{m}": float(np.mean(v)) for m, v in rows.items()}
        sub = {m: float(np.mean(v[:nb])) for m, v in rows.items()}
        best = max(sub["gaussian"], sub["tv"], sub["bm3d"])
        res["gain_db_over_best_classical"] = sub["network"] - best
        res["gain_db_over_best_classical_augmented"] = sub["network_augmented"] - best
        res["gain_db_over_single_network"] = res["psnr_network"] - res["psnr_network_single"]
        res.update({"n_maps": len(data["noisy"]), "n_maps_bm3d": nb,
                    "n_projections": int(len(np.unique(data["group"])))})  # fmt: skip
        out[f"{dose:g}"] = res
        print(f"held out, {dose:g} counts/px: " + ", ".join(f"{k} {float(v):.2f}" for k, v in res.items()), flush=True)
    return out


def _write_joint(model, out):
    """Write the joint model with a stored input (a held-out projection's map and total) and its output."""
    from atomscount.elemental.train import projection_maps

    meta = model["meta"]
    ref = projection_maps(HELD_OUT_SEED + 999, 3, size=48, dose_range=(3.0, 3.0))
    counts, total = ref["noisy"][0][:44, :46], ref["total"][0][:44, :46]
    mean, sigma = _net.predict(counts, model=model, total=total)
    meta["reference"] = {"input": counts.astype(np.float32), "total": total.astype(np.float32), "mean": mean,
                         "sigma": sigma}  # fmt: skip
    path = save_denoiser(model, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), {meta['n_params']} parameters, "
          f"trained {meta['training_seconds']:.0f} s on {meta['trained_on']}")  # fmt: skip
    return path


if __name__ == "__main__":
    main()
