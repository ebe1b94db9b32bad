"""The EDXS denoising network in NumPy: the dose measure, the shipped weights and inference.

The network is a small U-Net over plain functions of a params dict (no framework), so that
the shipped weights run on the default install; :mod:`atomscount.elemental.train` mirrors
the same forward pass in JAX to train it (a test checks that the two agree).

Input: one map of counts ``x`` with its dose measure ``d`` (:func:`map_dose`); the network
sees ``x / d``, split into its four 2 x 2 sub-images (as FFDNet does, so that the
convolutions run at half the resolution: four times less work), and the constant
``1 / sqrt(d)`` (the relative noise level). It returns two maps, the mean ``m >= 0``
(softplus) and the log-variance ``s`` of the expected counts over ``d``: ``predict``
returns ``m d`` and ``exp(s / 2) d``. Levels: ``channels[0]`` features at half
resolution, each next level at half the resolution (2 x 2 max-pooling) with
``channels[i]`` features, two 3 x 3 ReLU convolutions per level and per decoder step
(nearest-neighbour upsampling, then the skip connection's features concatenated), and a
1 x 1 head that gives the four sub-pixels' mean and log-variance.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

#: Below this dose measure [counts per pixel] a map is normalised as if it had this dose (an empty map).
DOSE_FLOOR = 0.25
#: The shipped weights.
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "edxs_denoiser.npz"
_SMOOTH_PX = 2.0
_MAX_TILE_BYTES = 48 * 2**20


def map_dose(counts) -> float:
    """The dose measure of one map: mean counts per pixel over the particle's thick part [counts].

    The map is smoothed by a Gaussian of 2 px; the pixels whose smoothed value is at least
    half the smoothed maximum are the particle's thick part, and the measure is the mean of
    the counts over them. It is the same measure for noisy counts and for their
    expectation, within the noise, and 0 for a map with no counts.

    Parameters
    ----------
    counts : array_like (h, w)
        Counts per pixel (or expected counts).

    Returns
    -------
    float

    Examples
    --------
    >>> m = np.zeros((32, 32)); m[8:24, 8:24] = 3.0
    >>> map_dose(m)
    3.0
    """
    from scipy.ndimage import gaussian_filter

    a = np.asarray(counts, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"counts must be one (h, w) map, got shape {a.shape}")
    top = a.max() if a.size else 0.0
    if not top > 0:
        return 0.0
    s = gaussian_filter(a, _SMOOTH_PX, mode="constant")
    return float(a[s >= 0.5 * s.max()].mean())


def norm_dose(counts) -> float:
    """The dose the network normalises a map by: :func:`map_dose`, at least :data:`DOSE_FLOOR`."""
    return max(map_dose(counts), DOSE_FLOOR)


def init_params(channels=(16, 32, 64, 128), *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random (He-normal) weights of the U-Net with ``channels`` features per level, float32."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k=3):
        p[name + ".w"] = (rng.standard_normal((k, k, cin, cout)) * np.sqrt(2.0 / (k * k * cin))).astype(np.float32)
        p[name + ".b"] = np.zeros(cout, np.float32)

    cin = 5  # the four sub-images of x / d, and 1 / sqrt(d)
    for i, c in enumerate(channels):
        conv(f"enc{i}.0", cin, c)
        conv(f"enc{i}.1", c, c)
        cin = c
    for i in range(len(channels) - 2, -1, -1):
        conv(f"dec{i}.0", channels[i + 1] + channels[i], channels[i])
        conv(f"dec{i}.1", channels[i], channels[i])
    conv("head", channels[0], 8, k=1)  # mean and log-variance of the four sub-pixels
    p["head.w"] *= 0.1
    return p


def channels_of(params) -> tuple[int, ...]:
    """The features per level of a params dict."""
    n = sum(1 for k in params if k.startswith("enc") and k.endswith(".0.w"))
    return tuple(int(params[f"enc{i}.1.w"].shape[-1]) for i in range(n))


def multiple_of(params) -> int:
    """Map sides must be a multiple of this (the sub-images, then a 2 x 2 pooling per level)."""
    return 2 ** len(channels_of(params))


def forward(params, x, *, xp=np, conv=None):
    """The U-Net on inputs ``x`` (n, 2, h, w): ``x / d`` and ``1 / sqrt(d)``, h and w multiples of
    :func:`multiple_of`.

    Written once for NumPy (``xp=np``, ``conv`` = :func:`conv2d`) and JAX (``xp=jax.numpy`` and a
    ``lax`` convolution), channels first. The map is split into its four 2 x 2 sub-images
    (as FFDNet does, so that the convolutions run at half the resolution) and the U-Net
    runs on them; returns (n, 2, h, w): the mean (softplus, >= 0) and the log-variance.
    """
    conv = conv2d if conv is None else conv
    levels = len(channels_of(params))
    n, _, hh, ww = x.shape
    sub = x[:, 0].reshape(n, hh // 2, 2, ww // 2, 2).transpose(0, 2, 4, 1, 3).reshape(n, 4, hh // 2, ww // 2)
    h = xp.concatenate([sub, x[:, 1:, ::2, ::2]], axis=1)

    def block(name, h):
        h = xp.maximum(conv(h, params[name + ".0.w"], params[name + ".0.b"]), 0.0)
        return xp.maximum(conv(h, params[name + ".1.w"], params[name + ".1.b"]), 0.0)

    skips = []
    for i in range(levels):
        if i:
            nn, c, a, b = h.shape
            h = h.reshape(nn, c, a // 2, 2, b // 2, 2).max(axis=(3, 5))
        h = block(f"enc{i}", h)
        skips.append(h)
    for i in range(levels - 2, -1, -1):
        h = xp.repeat(xp.repeat(h, 2, axis=2), 2, axis=3)
        h = block(f"dec{i}", xp.concatenate([h, skips[i]], axis=1))
    out = conv(h, params["head.w"], params["head.b"])  # (n, 8, h/2, w/2)
    out = out.reshape(n, 2, 2, 2, hh // 2, ww // 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2, hh, ww)
    mean = xp.logaddexp(out[:, 0], 0.0)
    logvar = xp.clip(out[:, 1], -12.0, 6.0)
    return xp.stack([mean, logvar], axis=1)


def conv2d(x, w, b):
    """'Same' (zero-padded) convolution of (n, cin, h, w) by (k, k, cin, cout) weights, float32, as im2col + one
    matrix product (BLAS) per map and band of rows."""
    n, cin, hh, ww = x.shape
    k, cout = w.shape[0], w.shape[-1]
    wm = np.ascontiguousarray(np.asarray(w, np.float32).reshape(k * k * cin, cout).T)
    bias = np.asarray(b, np.float32)[:, None]
    out = np.empty((n, cout, hh, ww), np.float32)
    if k == 1:
        for i in range(n):
            out[i] = (wm @ x[i].reshape(cin, -1) + bias).reshape(cout, hh, ww)
        return out
    p = k // 2
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    rows = max(1, min(hh, _MAX_TILE_BYTES // max(1, ww * k * k * cin * 4)))
    for i in range(n):
        for r0 in range(0, hh, rows):
            r1 = min(hh, r0 + rows)
            cols = np.empty((k, k, cin, r1 - r0, ww), np.float32)
            for dy in range(k):
                for dx in range(k):
                    cols[dy, dx] = xpad[i, :, r0 + dy : r1 + dy, dx : dx + ww]
            res = wm @ cols.reshape(k * k * cin, -1)
            res += bias
            out[i, :, r0:r1] = res.reshape(cout, r1 - r0, ww)
    return out


def network_input(counts, dose):
    """The network's two input channels for maps (n, h, w) with doses (n,): ``x / d`` and ``1 / sqrt(d)``."""
    counts = np.asarray(counts, np.float32)
    d = np.asarray(dose, np.float32).reshape(-1, 1, 1)
    return np.stack([counts / d, np.broadcast_to(1.0 / np.sqrt(d), counts.shape)], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        params = {k[len("param/") :]: z[k].astype(np.float32) for k in z.files if k.startswith("param/")}
        ref = {k[len("reference/") :]: z[k] for k in z.files if k.startswith("reference/")}
    if ref:
        meta["reference"] = ref
    return {"params": params, "meta": meta}


def load_denoiser(path=None) -> dict:
    """The denoiser's weights and metadata (the shipped ones by default); cached, so do not modify them.

    Parameters
    ----------
    path : str or Path, optional
        An ``.npz`` written by :func:`atomscount.elemental.train.save_denoiser`.

    Returns
    -------
    dict
        ``params`` (name -> float32 array) and ``meta`` (``dose_range``, ``architecture``,
        ``trained_on``, ``training_seconds``, ``loss_history``, ``held_out``, and
        ``reference``: a stored input with its output, for the reproduction test).
    """
    p = Path(DEFAULT_PATH if path is None else path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no denoiser weights at {str(p)!r}")
    return _load(str(p.resolve()), p.stat().st_mtime)


def _run(params, a, dose, batch):
    """The network on maps (n, h, w) float32 with their doses: (mean, sigma) [counts]."""
    n, h, w = a.shape
    m = multiple_of(params)
    ph, pw = (-h) % m, (-w) % m
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    padded = np.pad(a, ((0, 0), (0, ph), (0, pw)), mode=mode)
    per = max(1, int(64e6 // (padded.shape[1] * padded.shape[2] * max(channels_of(params)))))
    batch = per if batch is None else max(1, int(batch))
    mean = np.empty_like(a)
    sigma = np.empty_like(a)
    for i in range(0, n, batch):
        out = forward(params, network_input(padded[i : i + batch], dose[i : i + batch]))[..., :h, :w]
        d = dose[i : i + batch, None, None]
        mean[i : i + batch] = out[:, 0] * d
        sigma[i : i + batch] = np.exp(0.5 * out[:, 1]) * d
    return mean, sigma


def predict(counts, *, model=None, batch: int | None = None, augment: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Denoise maps of counts with the network: the expected counts and their 1-sigma uncertainty.

    Parameters
    ----------
    counts : array_like (h, w) or (n, h, w)
        Counts per pixel (>= 0, finite); any h, w (maps are reflect-padded to a multiple
        of :func:`multiple_of`, 16, and cropped back). Each map is normalised by its own
        :func:`norm_dose`.
    model : dict, optional
        From :func:`load_denoiser` (default: the shipped weights).
    batch : int, optional
        Maps per forward pass (default: as many as fit in about 64 Mpx of features).
    augment : bool
        Test-time augmentation: average the network's output over the map's eight flips
        and quarter turns (eight times the work); ``sigma`` then adds their spread,
        ``sqrt(mean(sigma²) + var(mean))``.

    Returns
    -------
    mean, sigma : ndarray, same shape as ``counts``
        Expected counts per pixel [counts] and the network's 1-sigma uncertainty [counts]
        (from its variance head, trained by a Gaussian likelihood).
    """
    model = load_denoiser() if model is None else model
    params = model["params"]
    a = np.asarray(counts)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"counts must hold real numbers, got dtype {a.dtype}")
    single = a.ndim == 2
    a = a[None] if single else a
    if a.ndim != 3 or min(a.shape[1:], default=0) < 2:
        raise ValueError(f"counts must be (h, w) or (n, h, w) with h, w >= 2, got shape {np.shape(counts)}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("counts must be finite and >= 0")
    if not isinstance(augment, bool | np.bool_):
        raise TypeError(f"augment must be True or False, got {augment!r}")
    dose = np.array([norm_dose(x) for x in a], np.float32)  # the same for every flip and turn
    if not augment:
        mean, sigma = _run(params, a, dose, batch)
    else:
        means, variances = [], []
        for k in range(8):
            t = np.rot90(a, k % 4, axes=(1, 2))
            t = np.ascontiguousarray(t[:, :, ::-1] if k >= 4 else t)
            m, s = _run(params, t, dose, batch)
            m, s = (x[:, :, ::-1] if k >= 4 else x for x in (m, s))
            means.append(np.rot90(m, -(k % 4), axes=(1, 2)))
            variances.append(np.rot90(s, -(k % 4), axes=(1, 2)) ** 2)
        mean = np.mean(means, axis=0)
        sigma = np.sqrt(np.mean(variances, axis=0) + np.var(means, axis=0))
    return (mean[0], sigma[0]) if single else (mean, sigma)
