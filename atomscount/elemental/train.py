"""Training the EDXS denoiser (:mod:`atomscount.elemental._net`) in JAX: supervised on simulated maps, or
self-supervised (Noise2Noise) on two halves of one acquisition.

Needs JAX and optax (``pip install "atomscount[learn]"``); inference with the trained
weights does not (it runs in NumPy).

**Supervised** (:func:`train_denoiser`, ``mode="supervised"``): the noise-free maps of
:func:`atomscount.elemental.shapes.training_maps` are the truth; at every step each map of
the batch gets a fresh dose, drawn log-uniformly in the dose range, fresh Poisson counts and
a random flip or quarter turn, so the network never sees the same noise twice. With ``d``
the dose measure of the noisy map (:func:`atomscount.elemental._net.norm_dose`), ``y`` the
truth over ``d``, and the network's mean ``m`` and log-variance ``s``, the loss is::

    mean(w (m - y)²) + nll_weight · mean(s + (stop_gradient(m) - y)² exp(-s)) / 2

with each map weighted by ``w = sqrt(d)`` (over the batch's mean), so that the mean is
the least-squares estimate (the best PSNR) and the variance head learns the mean's error
without pulling the mean towards it.

**Joint** (``joint=True``): the network also sees the total map of the projection (the
sum of all its elements' noisy maps, :func:`atomscount.elemental._net.network_input`). The
training maps then come in projections (``data["group"]``, :func:`projection_groups`):
each map of a batch gets the noisy maps of its projection's other elements too, with doses
either all equal or drawn independently (half the batches each), and a share
``absent_fraction`` of the batch's maps are swapped for an all-zero map of an absent
element beside its projection's total, so that the network learns not to paint the
total's particle into an element the projection does not hold. A single-map ``model`` is
widened first (:func:`~atomscount.elemental._net.widen_to_joint`: zero weights on the
total's channels), so training starts at what it computes.

**Noise2Noise** (``mode="noise2noise"``, ``pairs=(a, b)``): two independent halves of one
acquisition (for example odd and even frames) have the same expected counts and independent
noise, so least squares of the network's output on ``a`` against ``b`` (and the other way
round) trains towards the expectation with no clean truth (Lehtinen et al., ICML 2018,
arXiv:1803.04189). The network fine-tunes from ``model`` (default: the shipped weights) on
random crops; its variance head is left as trained on simulations. Apply the fine-tuned
network to ``a + b``: its dose conditioning covers the doubled dose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np

from .._checks import check_choice, check_integer, check_positive
from . import _net

__all__ = ["train_denoiser", "save_denoiser", "projection_groups", "projection_maps"]

#: What training needs beyond the default install, and the command that installs it.
NEEDED = ("jax", "optax")
INSTALL = 'pip install "atomscount[learn]"'


def _require_jax() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"training the EDXS denoiser needs {' and '.join(missing)}, which the default install "
                          "leaves out (denoising with the shipped weights does not); install them with: "
                          f"{INSTALL}")  # fmt: skip


def _jax_conv(x, w, b):
    from jax import lax

    out = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))
    return out + b[None, :, None, None]


def jax_forward(params, x):
    """The network's forward pass in JAX (:func:`atomscount.elemental._net.forward`, channels first)."""
    import jax.numpy as jnp

    return _net.forward(params, x, xp=jnp, conv=_jax_conv)


def _augment(maps, rng):
    """A random flip or quarter turn of each map (n, h, w), the same for every array in ``maps``."""
    k = rng.integers(8, size=maps[0].shape[0])
    out = [np.empty_like(m) for m in maps]
    for i, t in enumerate(k):
        for m, o in zip(maps, out, strict=True):
            a = np.rot90(m[i], t % 4)
            o[i] = a[:, ::-1] if t >= 4 else a
    return out


def _supervised_batch(unit, rng, batch, dose_range):
    """Fresh noisy maps from truths of unit dose measure: (input (n, 2, h, w), target (n, h, w))."""
    idx = rng.integers(len(unit), size=batch)
    (truth,) = _augment([unit[idx]], rng)
    lo, hi = dose_range
    d = np.exp(rng.uniform(np.log(lo), np.log(hi), size=batch))[:, None, None]
    clean = truth * d
    noisy = rng.poisson(clean).astype(np.float32)
    dn = np.array([_net.norm_dose(m) for m in noisy], np.float32)
    return _net.network_input(noisy, dn), (clean / dn[:, None, None]).astype(np.float32)


def projection_groups(info) -> np.ndarray:
    """The projection index of each map of :func:`atomscount.elemental.shapes.training_maps` (from its ``info``).

    The maps of one particle's projection are consecutive and share the tilt and the
    particle's centre.

    Parameters
    ----------
    info : list of dict
        ``training_maps(...)["info"]``.

    Returns
    -------
    ndarray of int (n,)
    """
    groups, key, g = [], None, -1
    for d in info:
        k = (d["tilt_degrees"], tuple(d["centre_angstrom"]), d["kind"])
        if k != key:
            key, g = k, g + 1
        groups.append(g)
    return np.array(groups, dtype=np.int64)


def projection_maps(seed: int, n: int, *, size: int = 64, dose_range=(0.5, 100.0), absent_fraction: float = 0.0,
                    voxel_size_angstrom: float = 5.0) -> dict:  # fmt: skip
    """All elements' noisy and noise-free maps of random projections, with each projection's total.

    The maps of :func:`atomscount.elemental.shapes.training_maps` (the same for a seed),
    grouped by projection (:func:`projection_groups`); a last projection that lacks one of
    its particle's elements (``training_maps`` stops at ``n`` maps) is left out. Needs no JAX.

    Parameters
    ----------
    seed, n, size, dose_range, absent_fraction, voxel_size_angstrom
        As :func:`~atomscount.elemental.shapes.training_maps` (``n``: maps drawn, before
        the incomplete projection is left out).

    Returns
    -------
    dict
        ``training_maps``' ``noisy``, ``clean``, ``dose`` and ``info``, and ``group`` (the
        projection of each map), ``total`` and ``total_clean`` (n, size, size): the sum of
        the noisy (noise-free) maps of each map's projection [counts].

    Examples
    --------
    >>> p = projection_maps(10**6, 3, size=32)
    >>> bool(np.allclose(p["total"][p["group"] == 0][0], p["noisy"][p["group"] == 0].sum(axis=0)))
    True
    """
    from .shapes import training_maps

    data = training_maps(seed, n, size=size, dose_range=dose_range, absent_fraction=absent_fraction,
                         voxel_size_angstrom=voxel_size_angstrom)  # fmt: skip
    group = projection_groups(data["info"])
    last = group == group[-1]
    present = {d["element"] for d, k in zip(data["info"], last, strict=True) if k}
    keep = ~last if not set(data["info"][-1]["elements"]) <= present else np.ones(len(group), bool)
    if not keep.any():
        raise ValueError(f"n must be large enough for one whole projection, got {n}")
    out = {k: data[k][keep] for k in ("noisy", "clean", "dose")}
    out["info"] = [d for d, k in zip(data["info"], keep, strict=True) if k]
    out["group"] = group[keep]
    for key, src in (("total", "noisy"), ("total_clean", "clean")):
        sums = {g: out[src][out["group"] == g].sum(axis=0) for g in np.unique(out["group"])}
        out[key] = np.stack([sums[g] for g in out["group"]])
    return out


def _joint_batch(unit, members, rng, batch, dose_range, absent_fraction):
    """Fresh noisy maps with their projections' totals: (input (n, 4, h, w), target (n, h, w))."""
    lo, hi = np.log(dose_range[0]), np.log(dose_range[1])
    idx = rng.integers(len(unit), size=batch)
    same = rng.random() < 0.5
    maps, totals, truths = [], [], []
    for i in idx:
        group = members[i]
        d = np.exp(rng.uniform(lo, hi) if same else rng.uniform(lo, hi, size=len(group)))
        d = np.broadcast_to(d, (len(group),))
        clean = unit[group] * d[:, None, None]
        noisy = rng.poisson(clean).astype(np.float32)
        j = int(np.flatnonzero(group == i)[0])
        if rng.random() < absent_fraction:
            maps.append(np.zeros_like(noisy[j]))
            truths.append(np.zeros_like(clean[j]))
        else:
            maps.append(noisy[j])
            truths.append(clean[j])
        totals.append(noisy.sum(axis=0))
    el, tot, truth = _augment([np.stack(maps), np.stack(totals), np.stack(truths).astype(np.float32)], rng)
    dn = np.array([_net.norm_dose(m) for m in el], np.float32)
    dt = np.array([_net.norm_dose(m) for m in tot], np.float32)
    return _net.network_input(el, dn, tot, dt), (truth / dn[:, None, None]).astype(np.float32)


def _crop_batch(a, b, rng, batch, crop):
    """Random crops (``crop``: rows, columns) of the pairs, each way round at random: (input, target)."""
    n, h, w = a.shape
    ch, cw = crop
    idx = rng.integers(n, size=batch)
    y0 = rng.integers(h - ch + 1, size=batch)
    x0 = rng.integers(w - cw + 1, size=batch)
    swap = rng.random(batch) < 0.5
    picks = list(zip(idx, y0, x0, swap, strict=True))
    src = np.stack([(b if s else a)[i, y : y + ch, x : x + cw] for i, y, x, s in picks])
    tgt = np.stack([(a if s else b)[i, y : y + ch, x : x + cw] for i, y, x, s in picks])
    src, tgt = src.astype(np.float32), tgt.astype(np.float32)
    if ch == cw:
        src, tgt = _augment([src, tgt], rng)
    else:  # a rectangle keeps its shape under the flips only
        flip = rng.integers(4, size=batch)
        src, tgt = ([np.ascontiguousarray(x[i, :: 1 - 2 * (f & 1), :: 1 - (f & 2)]) for i, f in enumerate(flip)]
                    for x in (src, tgt))  # fmt: skip
        src, tgt = np.stack(src), np.stack(tgt)
    dn = np.array([_net.norm_dose(m) for m in src], np.float32)
    return _net.network_input(src, dn), (tgt / dn[:, None, None]).astype(np.float32)


def _frame_pairs(a, b, margin, m):
    """Pairs of maps (n, h, w) padded as ``denoise_edxs`` pads a map (:func:`~atomscount.elemental._net.pad_frame`:
    mirrored at the edges the sample crosses, decided on ``a + b``, and filled with each map's background at the
    others) by ``margin`` px and on to a multiple of ``m``: (a, b, crop slices)."""
    _, h, w = a.shape
    edges = _net.frame_edges(a + b)
    a, b = (_net.pad_frame(x, margin, m, edges, _net.background_level(x)) for x in (a, b))
    return a, b, (slice(None), slice(margin, margin + h), slice(margin, margin + w))


def _check_pairs(pairs):
    if not isinstance(pairs, tuple | list) or len(pairs) != 2:
        raise TypeError(f"pairs must be (a, b), two arrays of counts (n, h, w), got {type(pairs).__name__}")
    a, b = (np.asarray(p, dtype=np.float64) for p in pairs)
    a, b = (x[None] if x.ndim == 2 else x for x in (a, b))
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"pairs must be two arrays of one shape (n, h, w), got {a.shape} and {b.shape}")
    for name, x in (("pairs[0]", a), ("pairs[1]", b)):
        if not np.isfinite(x).all() or (x < 0).any():
            raise ValueError(f"{name} must hold counts (finite, >= 0)")
    return a, b


def train_denoiser(*, seed: int = 0, steps: int = 2000, batch: int = 16, model=None, data=None,
                   mode: str = "supervised", pairs=None, channels=(16, 32, 64, 128), n_maps: int = 2000,
                   dose_range=(0.5, 100.0), learning_rate: float = 2e-3, nll_weight: float = 0.1,
                   crop: int = 64, checkpoint=None, checkpoint_every: int = 100, log_every: int = 20,
                   progress: bool = True, joint: bool = False, absent_fraction: float = 0.06,
                   validation=None, validate_every: int = 25) -> tuple[dict, dict]:  # fmt: skip
    """Train the EDXS denoiser, or fine-tune it on a user's data.

    Parameters
    ----------
    seed : int
        Seeds the initial weights, the training maps (when ``data`` is omitted) and the
        batches; keep it below :data:`atomscount.elemental.shapes.HELD_OUT_SEED`.
    steps : int
        Optimiser steps (Adam with warm-up and cosine decay, gradients clipped to norm 1).
    batch : int
        Maps per step.
    model : dict, optional
        Weights to start from (:func:`atomscount.elemental._net.load_denoiser`); default a
        fresh network for ``"supervised"`` and the shipped weights for ``"noise2noise"``.
    data : dict, optional
        :func:`atomscount.elemental.shapes.training_maps` output (its ``clean`` maps and
        ``dose``); generated from ``seed`` with ``n_maps`` maps when omitted.
    mode : {"supervised", "noise2noise"}
    pairs : (a, b), arrays (n, h, w) of counts
        For ``"noise2noise"``: two independent halves of one acquisition.
    channels : tuple of int
        Features per U-Net level, for a fresh network.
    n_maps : int
        Training maps to generate when ``data`` is omitted.
    dose_range : (float, float)
        Doses [counts per pixel, :func:`~atomscount.elemental._net.map_dose`] to train at.
    learning_rate : float
        Peak learning rate.
    nll_weight : float
        Weight of the variance head's Gaussian likelihood (supervised mode).
    crop : int
        Crop side [px] for ``"noise2noise"``: the pairs get a margin of
        :data:`~atomscount.elemental._net.FRAME_MARGIN` px first, as
        :func:`~atomscount.elemental.denoise_edxs` pads a map (mirrored at the edges the
        sample crosses, background at the others), then are cropped to at most
        ``crop`` along each axis (rounded down to a multiple of 16; a thin map gives
        rectangular crops).
    checkpoint : str or Path, optional
        A file to save the state to every ``checkpoint_every`` steps and to resume from if
        it exists (so that a run killed loses little).
    checkpoint_every, log_every : int
        Steps between checkpoints and between entries of the loss history.
    progress : bool
        Print the loss every ``log_every`` steps.
    joint : bool
        Supervised only: train the joint network (each map with its projection's total);
        ``data`` must then hold ``group`` (:func:`projection_groups`).
    absent_fraction : float
        Joint only: the share of a batch's maps swapped for an absent element's (all-zero) map.
    validation : (a, b), arrays (n, h, w) of counts, optional
        For ``"noise2noise"``: held-out pairs (other maps of the same acquisition). Their
        Noise2Noise error ``mean |f(a) - b|²`` [counts²] is measured at the start and every
        ``validate_every`` steps, and the weights of the lowest are returned (early
        stopping: never worse on them than the starting weights).
    validate_every : int

    Returns
    -------
    model : dict
        ``params`` (NumPy float32 arrays) and ``meta`` (``architecture``, ``dose_range``,
        ``trained_on``, ``training_seconds``, ``steps``, ``mode``), ready for
        :func:`~atomscount.elemental._net.predict` and :func:`save_denoiser`.
    history : dict
        ``step``, ``loss``, ``mse``, ``nll`` (means over each ``log_every`` steps) and
        ``seconds`` (wall time since the start, including resumed runs).

    Raises
    ------
    ImportError
        Without JAX or optax (``pip install "atomscount[learn]"``).
    """
    _require_jax()
    import jax
    import jax.numpy as jnp
    import optax

    seed = check_integer(seed, "seed", low=0)
    steps = check_integer(steps, "steps", low=1)
    batch = check_integer(batch, "batch", low=1)
    check_choice(mode, "mode", ("supervised", "noise2noise"))
    lr = check_positive(learning_rate, "learning_rate")
    nll_weight = check_positive(nll_weight, "nll_weight", allow_zero=True)
    lo, hi = (check_positive(d, "dose_range") for d in dose_range)
    rng = np.random.default_rng([seed, 1])

    if mode == "noise2noise":
        if pairs is None:
            raise ValueError("mode='noise2noise' needs pairs=(a, b), two halves of one acquisition")
        a, b = _check_pairs(pairs)
        if min(a.shape[1:]) < 2:
            raise ValueError(f"pairs maps must be at least 2 px on each side, got {a.shape[1:]}")
        start = _net.load_denoiser() if model is None else model
        if _net.is_joint(start["params"]):
            raise ValueError("model must be a single-map network for mode='noise2noise', got a joint one")
        m = _net.multiple_of(start["params"])
        crop = check_integer(crop, "crop", low=m)
        a, b, _ = _frame_pairs(a, b, _net.FRAME_MARGIN, m)
        crop = (min(crop, a.shape[1]) // m * m, min(crop, a.shape[2]) // m * m)
        params0 = start["params"]
        arch = start["meta"].get("architecture", {"channels": list(_net.channels_of(params0))})
        nll_weight = 0.0
        next_batch = lambda: _crop_batch(a, b, rng, batch, crop)  # noqa: E731
    else:
        if data is None:
            from .shapes import training_maps

            data = training_maps(seed, check_integer(n_maps, "n_maps", low=1), dose_range=(lo, hi))
            data["group"] = projection_groups(data["info"])
        clean, dose = np.asarray(data["clean"], np.float32), np.asarray(data["dose"], np.float32)
        unit = clean / np.where(dose > 0, dose, 1.0)[:, None, None]
        params0 = model["params"] if model is not None else _net.init_params(tuple(channels), seed=seed, joint=joint)
        arch = {"channels": list(_net.channels_of(params0))}
        if joint:
            if "group" not in data:
                raise ValueError("joint=True needs data['group'], the projection of each map (projection_groups)")
            if not 0.0 <= float(absent_fraction) <= 1.0:
                raise ValueError(f"absent_fraction must be in [0, 1], got {absent_fraction!r}")
            params0 = _net.widen_to_joint(params0)
            group = np.asarray(data["group"])
            members = [np.flatnonzero(group == g) for g in group]
            next_batch = lambda: _joint_batch(unit, members, rng, batch, (lo, hi), absent_fraction)  # noqa: E731
        else:
            next_batch = lambda: _supervised_batch(unit, rng, batch, (lo, hi))  # noqa: E731

    val_fn = None
    if validation is not None:
        if mode != "noise2noise":
            raise ValueError(f"validation is for mode='noise2noise' (held-out pairs), got mode={mode!r}")
        validate_every = check_integer(validate_every, "validate_every", low=1)
        va, vb = _check_pairs(validation)
        if min(va.shape[1:]) < 2:
            raise ValueError(f"validation maps must be at least 2 px on each side, got {va.shape[1:]}")
        padded, _, region = _frame_pairs(va, vb, _net.FRAME_MARGIN, _net.multiple_of(params0))
        vdn = np.array([_net.norm_dose(x) for x in va], np.float32)
        vx, vb = jnp.asarray(_net.network_input(padded, vdn)), jnp.asarray(vb, jnp.float32)

        @jax.jit
        def val_fn(p):  # the Noise2Noise error of the held-out pairs [counts²]
            return jnp.mean((jax_forward(p, vx)[:, 0][region] * vdn[:, None, None] - vb) ** 2)

    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(200, max(1, steps // 10)), steps, lr * 0.02)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    params = {k: jnp.asarray(v) for k, v in params0.items()}
    state = opt.init(params)
    history = {"step": [], "loss": [], "mse": [], "nll": [], "seconds": []}
    done, elapsed = 0, 0.0
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.is_file():
        with open(ckpt, "rb") as f:
            saved = pickle.load(f)
        params = jax.tree_util.tree_map(jnp.asarray, saved["params"])
        state = jax.tree_util.tree_map(jnp.asarray, saved["state"])
        history, done, elapsed = saved["history"], saved["step"], saved["seconds"]
        rng.bit_generator.state = saved["rng"]

    def loss_fn(p, x, y):
        out = jax_forward(p, x)
        mu, lv = out[:, 0], out[:, 1]
        # maps weighted by sqrt(dose) (x[:, 1] is 1 / sqrt(d)): the error over d falls with the dose, and
        # unweighted the lowest doses would take nearly all of the gradient
        wt = 1.0 / x[:, 1, 0, 0]
        mse = jnp.mean(jnp.mean((mu - y) ** 2, axis=(1, 2)) * wt / jnp.mean(wt))
        nll = 0.5 * jnp.mean(lv + (jax.lax.stop_gradient(mu) - y) ** 2 * jnp.exp(-lv))
        return mse + nll_weight * nll, (mse, nll)

    @jax.jit
    def step_fn(p, s, x, y):
        (loss, (mse, nll)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, y)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss, mse, nll

    def save_checkpoint(step):
        tmp = ckpt.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"params": jax.device_get(params), "state": jax.device_get(state), "history": history,
                         "step": step, "seconds": elapsed + time.perf_counter() - t0,
                         "rng": rng.bit_generator.state}, f)  # fmt: skip
        os.replace(tmp, ckpt)

    best = None

    def validate(step):
        nonlocal best
        v = float(val_fn(params))
        history.setdefault("val_step", []).append(step)
        history.setdefault("val_loss", []).append(v)
        if best is None or v < best[0]:
            best = (v, params, step)

    t0 = time.perf_counter()
    acc = []
    if val_fn is not None:
        validate(done)
    for step in range(done, steps):
        x, y = next_batch()
        params, state, loss, mse, nll = step_fn(params, state, x, y)
        acc.append((float(loss), float(mse), float(nll)))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            mean = np.mean(acc, axis=0)
            acc = []
            history["step"].append(step + 1)
            for key, v in zip(("loss", "mse", "nll"), mean, strict=True):
                history[key].append(float(v))
            history["seconds"].append(elapsed + time.perf_counter() - t0)
            if progress:
                print(f"step {step + 1}/{steps}  loss {mean[0]:.5f}  mse {mean[1]:.5f}  nll {mean[2]:.4f}  "
                      f"{history['seconds'][-1]:.0f} s", flush=True)  # fmt: skip
        if val_fn is not None and ((step + 1) % validate_every == 0 or step + 1 == steps):
            validate(step + 1)
        if ckpt is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            save_checkpoint(step + 1)
    if best is not None:
        params = best[1]
    seconds = elapsed + time.perf_counter() - t0
    inp = "x/d as four 2x2 sub-images + 1/sqrt(d)" + (", then the same of the projection's total" if joint else "")
    meta = {"architecture": {**arch, "input": inp, "output": "mean, log-var", "joint": bool(joint),
                             "convs": "3x3 ReLU, two per level", "framework": "numpy inference, jax training"},
            "dose_range": [lo, hi], "trained_on": jax.default_backend(), "training_seconds": seconds,
            "steps": steps, "batch": batch, "mode": mode, "seed": seed}  # fmt: skip
    if best is not None:
        meta["validation"] = {"best_step": best[2], "best_loss": best[0], "start_loss": history["val_loss"][0],
                              "n_maps": int(vb.shape[0]), "every": validate_every}  # fmt: skip
    out = {"params": {k: np.asarray(v, np.float32) for k, v in jax.device_get(params).items()}, "meta": meta}
    return out, history


def save_denoiser(model: dict, path) -> Path:
    """Write a denoiser (``params`` and ``meta``, as :func:`train_denoiser` returns) to an ``.npz``.

    Arrays under ``meta["reference"]`` are stored as arrays; the rest of ``meta`` as JSON.

    Parameters
    ----------
    model : dict
    path : str or Path

    Returns
    -------
    Path
    """
    if not isinstance(model, dict) or "params" not in model:
        raise TypeError(f"model must be a dict with 'params' and 'meta', got {type(model).__name__}")
    meta = dict(model.get("meta", {}))
    ref = meta.pop("reference", {}) or {}
    arrays = {f"param/{k}": np.asarray(v, np.float32) for k, v in model["params"].items()}
    arrays.update({f"reference/{k}": np.asarray(v) for k, v in ref.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(path)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
