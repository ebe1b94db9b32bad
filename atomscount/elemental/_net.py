"""The EDXS denoising network in NumPy: the dose measure, the shipped weights and inference.

The network is a small U-Net over plain functions of a params dict (no framework), so that
the shipped weights run on the default install; :mod:`atomscount.elemental.train` mirrors
the same forward pass in JAX to train it (a test checks that the two agree).

Input: one map of counts ``x`` with its dose measure ``d`` (:func:`map_dose`); the network
sees ``x / d``, split into its four 2 x 2 sub-images (as FFDNet does, so that the
convolutions run at half the resolution: four times less work), and the constant
``1 / sqrt(d)`` (the relative noise level). It returns two maps, the mean ``m >= 0``
(softplus) and the log-variance ``s`` of the expected counts over ``d``: ``predict``
returns ``m d`` and ``exp(s / 2) d``.

The **joint** network (:data:`DEFAULT_JOINT_PATH`) also sees the projection's total map
``t`` (the sum of all its elements' maps, which holds many more counts and shows the
particle's outline and interfaces) as ``t / d_t`` in four sub-images and ``1 / sqrt(d_t)``,
``d_t`` the total's own dose measure: ten input channels, the first five as above. It was
warm-started from the single-map weights with zero weights on the five new channels.
Levels: ``channels[0]`` features at half
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
#: The shipped weights of the joint network (one element's map guided by the projection's total).
DEFAULT_JOINT_PATH = DEFAULT_PATH.with_name("edxs_denoiser_joint.npz")
#: The mirrored margin [px] that :func:`atomscount.elemental.denoise_edxs` adds around each map (``predict``'s
#: ``margin``).
FRAME_MARGIN = 8
#: The outer strip [px] of each edge of the frame that :func:`frame_edges` tests for the sample.
EDGE_STRIP = 2
_EDGE_WINDOW = 8  # px along an edge: its strip is tested window by window (a sample may cross part of an edge)
_EDGE_Z = 3.0  # a window holds the sample only if its counts exceed the background's by this many Poisson sigmas
_EDGE_FRACTION = 0.2  # ... and its mean exceeds the background by this share of the map's dose above it
_BACKGROUND_SHARE = 0.1  # the background level: the mean over the darkest tenth of the (smoothed) map
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


def background_level(counts) -> np.ndarray:
    """The background of each map: its mean counts over its darkest tenth [counts per pixel].

    The darkest tenth: the pixels of lowest value after a Gaussian smoothing of 2 px (the
    smoothing keeps single empty pixels inside the sample out of it).

    Parameters
    ----------
    counts : array_like (n, h, w)
        Counts per pixel.

    Returns
    -------
    ndarray (n,)

    Examples
    --------
    >>> m = np.full((1, 32, 32), 2.0); m[0, 8:24, 8:24] = 30.0
    >>> background_level(m)
    array([2.])
    """
    from scipy.ndimage import gaussian_filter

    a = np.asarray(counts, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"counts must be a stack of maps (n, h, w), got shape {a.shape}")
    out = np.zeros(len(a))
    for i, m in enumerate(a):
        s = gaussian_filter(m, _SMOOTH_PX, mode="nearest").ravel()
        k = max(1, int(round(_BACKGROUND_SHARE * s.size)))
        out[i] = m.ravel()[np.argpartition(s, k - 1)[:k]].mean()
    return out


def frame_edges(counts) -> np.ndarray:
    """Which edges of each map's frame the sample crosses: (n, 4) booleans, top, bottom, left, right.

    Decided on the counts alone. Along each edge, the outer :data:`EDGE_STRIP` px are
    summed in windows of 8 px; the sample crosses the edge if in some window both

    - the counts exceed the background's expectation ``B`` (:func:`background_level`
      times the window's pixels) by more than Poisson noise, ``3 sqrt(B) + 9``, and
    - the window's mean exceeds the background by a fifth of the map's dose above it
      (:func:`map_dose`), so that the faint rim of a particle that stops at the frame
      does not count.

    A map with no background (its darkest tenth above half its dose: a crop inside the
    sample) is crossed on every edge; a map with no counts on none.

    Parameters
    ----------
    counts : array_like (n, h, w)
        Counts per pixel (for several elements' maps of one projection: their sum).

    Returns
    -------
    ndarray of bool (n, 4)

    Examples
    --------
    >>> m = np.zeros((1, 32, 32)); m[0, :, 8:24] = 20.0     # a band cut by the top and bottom edges
    >>> frame_edges(m).tolist()
    [[True, True, False, False]]
    """
    from scipy.ndimage import uniform_filter1d

    a = np.asarray(counts, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"counts must be a stack of maps (n, h, w), got shape {a.shape}")
    back = background_level(a)
    out = np.zeros((len(a), 4), dtype=bool)
    depth = max(1, min(EDGE_STRIP, *a.shape[1:]))
    for i, m in enumerate(a):
        dose, b = map_dose(m), back[i]
        if not dose > 0:
            continue
        if b > 0.5 * dose:
            out[i] = True
            continue
        strips = (m[:depth].sum(0), m[-depth:].sum(0), m[:, :depth].sum(1), m[:, -depth:].sum(1))
        for j, profile in enumerate(strips):
            win = min(_EDGE_WINDOW, profile.size)
            c = uniform_filter1d(profile, win, mode="nearest") * win  # the counts in each window
            npx = depth * win
            expected = b * npx
            above = c > expected + _EDGE_Z * np.sqrt(expected) + _EDGE_Z**2
            strong = c / npx - b > _EDGE_FRACTION * (dose - b)
            out[i, j] = bool(np.any(above & strong))
    return out


def pad_frame(maps, margin: int, multiple: int, mirror=True, fill=0.0) -> np.ndarray:
    """Maps (n, h, w) padded by ``margin`` px on every side and on (bottom, right) to a multiple of ``multiple``.

    Each edge is mirrored where ``mirror`` (n, 4) or (4,) holds (top, bottom, left, right:
    the sample continues past it, :func:`frame_edges`), else filled with the constant
    ``fill`` (n,) (its background: what the network saw round its training particles).
    """
    a = np.asarray(maps)
    n, h, w = a.shape
    ph, pw = (-(h + 2 * margin)) % multiple, (-(w + 2 * margin)) % multiple
    out = np.pad(a, ((0, 0), (margin, margin + ph), (margin, margin + pw)), mode="reflect")
    mirror = np.broadcast_to(np.asarray(mirror, dtype=bool), (n, 4))
    fill = np.broadcast_to(np.asarray(fill, dtype=out.dtype), (n,))
    for i in np.flatnonzero(~mirror.all(axis=1)):
        top, bottom, left, right = mirror[i]
        for keep, region in ((top, np.s_[:margin]), (bottom, np.s_[margin + h :]),
                             (left, np.s_[:, :margin]), (right, np.s_[:, margin + w :])):  # fmt: skip
            if not keep:
                out[i][region] = fill[i]
    return out


def norm_dose(counts) -> float:
    """The dose the network normalises a map by: :func:`map_dose`, at least :data:`DOSE_FLOOR`."""
    return max(map_dose(counts), DOSE_FLOOR)


def init_params(channels=(16, 32, 64, 128), *, seed: int = 0, joint: bool = False) -> dict[str, np.ndarray]:
    """Random (He-normal) weights of the U-Net with ``channels`` features per level, float32; ``joint``: ten
    input channels (the map's and the total's)."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k=3):
        p[name + ".w"] = (rng.standard_normal((k, k, cin, cout)) * np.sqrt(2.0 / (k * k * cin))).astype(np.float32)
        p[name + ".b"] = np.zeros(cout, np.float32)

    cin = 10 if joint else 5  # the four sub-images of x / d, and 1 / sqrt(d) (and the same of the total)
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


def is_joint(params) -> bool:
    """Whether a params dict is the joint network's (ten input channels: the map's and the total's)."""
    return int(params["enc0.0.w"].shape[2]) == 10


def widen_to_joint(params) -> dict[str, np.ndarray]:
    """The joint network that computes exactly what the single-map ``params`` do: its first convolution gets zero
    weights on the total's five new input channels (a warm start that training can only add to)."""
    if is_joint(params):
        return dict(params)
    out = {k: np.asarray(v, np.float32).copy() for k, v in params.items()}
    w = out["enc0.0.w"]
    out["enc0.0.w"] = np.concatenate([w, np.zeros_like(w)], axis=2)
    return out


def multiple_of(params) -> int:
    """Map sides must be a multiple of this (the sub-images, then a 2 x 2 pooling per level)."""
    return 2 ** len(channels_of(params))


def forward(params, x, *, xp=np, conv=None):
    """The U-Net on inputs ``x`` (n, 2, h, w): ``x / d`` and ``1 / sqrt(d)`` (joint: (n, 4, h, w), then ``t / d_t``
    and ``1 / sqrt(d_t)``), h and w multiples of :func:`multiple_of`.

    Written once for NumPy (``xp=np``, ``conv`` = :func:`conv2d`) and JAX (``xp=jax.numpy`` and a
    ``lax`` convolution), channels first. The map is split into its four 2 x 2 sub-images
    (as FFDNet does, so that the convolutions run at half the resolution) and the U-Net
    runs on them; returns (n, 2, h, w): the mean (softplus, >= 0) and the log-variance.
    """
    conv = conv2d if conv is None else conv
    levels = len(channels_of(params))
    n, _, hh, ww = x.shape
    parts = []
    for j in range(0, x.shape[1], 2):  # the map's, then (joint) the total's: four sub-images and the noise plane
        sub = x[:, j].reshape(n, hh // 2, 2, ww // 2, 2).transpose(0, 2, 4, 1, 3).reshape(n, 4, hh // 2, ww // 2)
        parts += [sub, x[:, j + 1 : j + 2, ::2, ::2]]
    h = xp.concatenate(parts, axis=1)

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


def network_input(counts, dose, total=None, total_dose=None):
    """The network's input channels for maps (n, h, w) with doses (n,): ``x / d`` and ``1 / sqrt(d)``, then (for
    the joint network, given the totals (n, h, w) and their doses) ``t / d_t`` and ``1 / sqrt(d_t)``."""
    counts = np.asarray(counts, np.float32)
    d = np.asarray(dose, np.float32).reshape(-1, 1, 1)
    chans = [counts / d, np.broadcast_to(1.0 / np.sqrt(d), counts.shape)]
    if total is not None:
        td = np.asarray(total_dose, np.float32).reshape(-1, 1, 1)
        chans += [np.asarray(total, np.float32) / td, np.broadcast_to(1.0 / np.sqrt(td), counts.shape)]
    return np.stack(chans, axis=1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        params = {k[len("param/") :]: z[k].astype(np.float32) for k in z.files if k.startswith("param/")}
        ref = {k[len("reference/") :]: z[k] for k in z.files if k.startswith("reference/")}
    if ref:
        meta["reference"] = ref
    return {"params": params, "meta": meta}


def load_denoiser(path=None, *, joint: bool = False) -> dict:
    """The denoiser's weights and metadata (the shipped ones by default); cached, so do not modify them.

    Parameters
    ----------
    path : str or Path, optional
        An ``.npz`` written by :func:`atomscount.elemental.train.save_denoiser`.
    joint : bool
        Without ``path``: the shipped joint network (:data:`DEFAULT_JOINT_PATH`) instead of the single-map one.

    Returns
    -------
    dict
        ``params`` (name -> float32 array) and ``meta`` (``dose_range``, ``architecture``,
        ``trained_on``, ``training_seconds``, ``loss_history``, ``held_out``, and
        ``reference``: a stored input with its output, for the reproduction test).
    """
    p = Path((DEFAULT_JOINT_PATH if joint else DEFAULT_PATH) if path is None else path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no denoiser weights at {str(p)!r}")
    return _load(str(p.resolve()), p.stat().st_mtime)


def _run(params, a, dose, batch, total=None, total_dose=None, margin=0, mirror=None, fill=(0.0, 0.0)):
    """The network on maps (n, h, w) float32 with their doses (and totals): (mean, sigma) [counts]; ``mirror``
    (n, 4): the edges mirrored in the margin, the others filled with ``fill``: the maps' (n,) and the totals'."""
    n, h, w = a.shape
    m = multiple_of(params)
    if margin:
        padded = pad_frame(a, margin, m, mirror, fill[0])
        tpad = None if total is None else pad_frame(total, margin, m, mirror, fill[1])
    else:  # the computation the shipped reference outputs were made with
        ph, pw = (-h) % m, (-w) % m
        pads, mode = ((0, 0), (0, ph), (0, pw)), "reflect" if min(h, w) > max(ph, pw) else "edge"
        padded = np.pad(a, pads, mode=mode)
        tpad = None if total is None else np.pad(total, pads, mode=mode)
    per = max(1, int(64e6 // (padded.shape[1] * padded.shape[2] * max(channels_of(params)))))
    batch = per if batch is None else max(1, int(batch))
    mean = np.empty_like(a)
    sigma = np.empty_like(a)
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        extra = () if tpad is None else (tpad[sl], total_dose[sl])
        out = forward(params, network_input(padded[sl], dose[sl], *extra))
        out = out[..., margin : margin + h, margin : margin + w]
        d = dose[i : i + batch, None, None]
        mean[i : i + batch] = out[:, 0] * d
        sigma[i : i + batch] = np.exp(0.5 * out[:, 1]) * d
    return mean, sigma


def predict(counts, *, model=None, total=None, batch: int | None = None, augment: bool = False,
            margin: int = 0, mirror=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Denoise maps of counts with the network: the expected counts and their 1-sigma uncertainty.

    Parameters
    ----------
    counts : array_like (h, w) or (n, h, w)
        Counts per pixel (>= 0, finite); any h, w (maps are reflect-padded to a multiple
        of :func:`multiple_of`, 16, and cropped back). Each map is normalised by its own
        :func:`norm_dose`.
    model : dict, optional
        From :func:`load_denoiser` (default: the shipped single-map weights).
    total : array_like, optional
        For a joint model (:func:`is_joint`), and only then: the total counts of each
        map's projection (the sum over all its elements' maps), of ``counts``' shape or
        one (h, w) map for all. Each total is normalised by its own :func:`norm_dose`.
    batch : int, optional
        Maps per forward pass (default: as many as fit in about 64 Mpx of features).
    augment : bool
        Test-time augmentation: average the network's output over the map's eight flips
        and quarter turns (eight times the work); ``sigma`` then adds their spread,
        ``sqrt(mean(sigma²) + var(mean))``.
    margin : int
        Pixels added on every side before the network runs (and cropped off after) [px].
        The network learnt particles inside an empty frame: a map cut through the sample
        (a crop, a thin sinogram) looks to it like a particle's edge at the frame, and its
        output there is wrong; a mirrored margin continues the map instead. But a
        mirror next to a particle that stops short of the frame shows the network a
        second particle beside it, so only the edges the sample crosses are mirrored
        (``mirror``); the others are filled with the map's background
        (:func:`background_level`), as round the training's particles.
        :func:`atomscount.elemental.denoise_edxs` uses :data:`FRAME_MARGIN`; 0 (the
        default) keeps the computation the shipped reference outputs were made with.
    mirror : array_like of bool (4,) or (n, 4), or bool, optional
        With ``margin``: which edges (top, bottom, left, right) to mirror, for every map
        or each. Default: those the sample crosses, by :func:`frame_edges` of each map
        (of each map's ``total`` for a joint model: one decision for all the elements of
        a projection). True mirrors every edge.

    Returns
    -------
    mean, sigma : ndarray, same shape as ``counts``
        Expected counts per pixel [counts] and the network's 1-sigma uncertainty [counts]
        (from its variance head, trained by a Gaussian likelihood).
    """
    model = load_denoiser() if model is None else model
    params = model["params"]
    a = _as_counts(counts, "counts")
    single = a.ndim == 2
    a = a[None] if single else a
    if a.ndim != 3 or min(a.shape[1:], default=0) < 2:
        raise ValueError(f"counts must be (h, w) or (n, h, w) with h, w >= 2, got shape {np.shape(counts)}")
    joint = is_joint(params)
    if joint != (total is not None):
        what = "joint" if joint else "single-map"
        raise ValueError(f"total must be given for a joint model and only for one: the model is {what}, total is "
                         f"{'None' if total is None else 'given'}")  # fmt: skip
    if joint:
        t = _as_counts(total, "total")
        t = np.broadcast_to(t, a.shape) if t.shape == a.shape[1:] else t
        if t.shape != a.shape:
            raise ValueError(f"total must have counts' shape {np.shape(counts)} or be one map, got shape {t.shape}")
        t = np.ascontiguousarray(t, np.float32)
    if not isinstance(augment, bool | np.bool_):
        raise TypeError(f"augment must be True or False, got {augment!r}")
    if isinstance(margin, bool) or not isinstance(margin, int | np.integer) or margin < 0:
        raise ValueError(f"margin must be a whole number of pixels >= 0, got {margin!r}")
    margin = int(margin)
    edges = _mirror_edges(mirror, t if joint else a) if margin else None
    fill = (background_level(a), background_level(t) if joint else 0.0) if margin else (0.0, 0.0)
    dose = np.array([norm_dose(x) for x in a], np.float32)  # the same for every flip and turn
    tdose = np.array([norm_dose(x) for x in t], np.float32) if joint else None
    if not augment:
        mean, sigma = _run(params, a, dose, batch, *((t, tdose) if joint else (None, None)), margin, edges, fill)
    else:
        means, variances = [], []
        for k in range(8):
            ta, tt = (_turn(x, k) if x is not None else None for x in (a, t if joint else None))
            te = None if edges is None else _turn_edges(edges, k)
            m, s = _run(params, ta, dose, batch, *((tt, tdose) if joint else (None, None)), margin, te, fill)
            means.append(_turn(m, k, back=True))
            variances.append(_turn(s, k, back=True) ** 2)
        mean = np.mean(means, axis=0)
        sigma = np.sqrt(np.mean(variances, axis=0) + np.var(means, axis=0))
    return (mean[0], sigma[0]) if single else (mean, sigma)


def _mirror_edges(mirror, maps):
    """``predict``'s ``mirror`` as (n, 4) booleans for ``maps`` (n, h, w): :func:`frame_edges` by default."""
    if mirror is None:
        return frame_edges(maps)
    m = np.asarray(mirror)
    if m.dtype != bool or m.shape not in ((), (4,), (len(maps), 4)):
        raise ValueError(f"mirror must be booleans of shape (4,) or ({len(maps)}, 4) (top, bottom, left, right), or "
                         f"None, got {m.dtype} of shape {m.shape}")  # fmt: skip
    return np.broadcast_to(m, (len(maps), 4))


def _turn_edges(edges, k):
    """The edges (top, bottom, left, right) of maps turned as :func:`_turn` turns them."""
    order = np.arange(4)
    for _ in range(k % 4):  # np.rot90 turns anticlockwise: the right edge goes to the top, the top to the left
        order = order[[3, 2, 0, 1]]
    if k >= 4:  # then a left-right flip
        order = order[[0, 1, 3, 2]]
    return edges[:, order]


def _as_counts(x, name):
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return a


def _turn(a, k, *, back=False):
    """Maps (n, h, w) turned by ``k % 4`` quarter turns and, for k >= 4, flipped (``back``: the inverse)."""
    if not back:
        t = np.rot90(a, k % 4, axes=(1, 2))
        return np.ascontiguousarray(t[:, :, ::-1] if k >= 4 else t)
    a = a[:, :, ::-1] if k >= 4 else a
    return np.rot90(a, -(k % 4), axes=(1, 2))
