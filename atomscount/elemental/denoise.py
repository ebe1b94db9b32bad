"""Denoising of low-dose EDXS elemental maps before reconstruction (issue 29).

:func:`denoise_edxs` takes X-ray count maps (one map, a stack, or one per element) and
returns the expected counts per pixel with a 1-σ uncertainty, by one of four methods in
one interface:

``"network"`` (default)
    The shipped convolutional network (:mod:`._net`, trained on simulated particles of
    :mod:`.shapes` projected by :func:`~atomscount.elemental.simulate_edxs` with Poisson
    noise at 0.5-100 counts per pixel; ``simulations/train_denoiser.py`` retrains it). It
    runs in NumPy (no extra needed), is conditioned on each map's dose, and returns the
    expected counts and a 1-σ from its variance head. ``tta=True`` adds the spread over
    the eight flips and rotations of the map (test-time augmentation) in quadrature.
    Given several elements' maps (a dict of two or more), each map is denoised by the
    **joint** network, which also sees the projection's total map (the sum over the
    elements, which holds many more counts and shows the particle's outline and
    interfaces); one map or one element's stack uses the single-map network
    (``joint`` overrides the choice; ``result.parameters["network"]`` records it).
    Two guards for maps unlike the training's particles in an empty frame: each map gets
    a margin of :data:`~atomscount.elemental._net.FRAME_MARGIN` px first, mirrored at the
    edges the sample crosses (a frame cut through the sample is not a particle's edge) and
    filled with the map's background at the others (a mirror there would show the network
    a second particle beside one that stops short of the frame; the decision,
    :func:`~atomscount.elemental._net.frame_edges`, is made on the counts, on the
    projection's total for the joint network; ``parameters["frame"]`` counts the mirrored
    edges), and by default
    (``blend="auto"``) the output is blended with the Gaussian filter's, the network's
    weight chosen on the maps themselves by thinning cross-validation (no truth).
``"gaussian"``
    A Gaussian filter of the counts (linear, so unbiased on flat regions). Width
    ``strength`` [px]; by default chosen per map by the Poisson unbiased risk estimate
    (PURE, Luisier et al. 2010), which needs no truth: for a linear filter ``f`` with
    centre weight ``k₀``, ``E‖f(y) − λ‖² = E[‖f(y)‖² − 2 y·f(y) + 2 k₀ Σy] + const``. σ is
    the Poisson noise propagated through the filter (``Σⱼ kⱼ² λⱼ``); it leaves out the
    blur's bias.
``"tv"``
    Total-variation denoising (scikit-image's Chambolle algorithm) of the Anscombe
    transform ``2 √(y + 3/8)``, whose noise is about unit Gaussian above a few counts,
    then the closed-form unbiased inverse (Mäkitalo & Foi 2011). Weight ``strength``
    (in the transform's units); by default chosen per map by Stein's unbiased risk
    estimate with a Monte-Carlo divergence (Ramani et al. 2008) for unit noise. σ: None
    (TV has no simple error propagation).
``"bm3d"``
    BM3D (the ``bm3d`` package, ``pip install "atomscount[bm3d]"``) on the Anscombe
    transform, with the noise level ``strength`` (default 1, the transform's noise),
    then the same inverse. σ: None. Maps under 128 px a side are denoised together, tiled
    in mosaics of about 256 x 256 px with 8 px of zero counts between them (each ``bm3d``
    call costs about 2 s however small its image), so that its block matching may find
    similar patches in the other maps of the stack.

At a few counts per pixel the Anscombe transform's noise is not yet Gaussian, so TV and
BM3D there are biased (Mäkitalo & Foi's inverse removes most of it).

**Feeding the reconstruction.** Denoised maps are expected counts, not Poisson counts:
:func:`denoise_series` returns tilt series marked ``provenance["noise"] = False`` (which
:func:`~atomscount.elemental.reconstruct_separate` and
:func:`~atomscount.elemental.reconstruct_elemental` accept as non-integer counts).
Reconstruct them by least squares, with :func:`~atomscount.elemental.reconstruct_separate`
(SIRT), or with :func:`~atomscount.elemental.reconstruct_elemental` and a fixed
``weights``: its automatic weight (the discrepancy principle on the Poisson deviance)
assumes Poisson counts and over-smooths denoised maps.

**Self-supervised fine-tuning** (:func:`finetune_denoiser`, needs ``pip install
"atomscount[learn]"``): Noise2Noise on two independent halves of one acquisition (alternate
frames, or :func:`split_counts`: binomial thinning of the counts into two halves, which are
independent Poisson maps at half the dose).

References
----------
Skorikov et al., Nanoscale (2021) (learned denoising of EDXS maps of nanoparticles).
Mäkitalo & Foi, IEEE Trans. Image Process. 20, 99 (2011) (the inverse Anscombe transform).
Luisier, Vonesch, Blu & Unser, Signal Process. 90, 415 (2010) (PURE).
Ramani, Blu & Unser, IEEE Trans. Image Process. 17, 1540 (2008) (Monte-Carlo SURE).
Lehtinen et al., ICML (2018), arXiv:1803.04189 (Noise2Noise).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from .._checks import check_bool, check_choice, check_integer, check_real, check_rng
from ..io import _plain, read_hdf5, write_hdf5

__all__ = ["DENOISE_METHODS", "DenoisedMaps", "denoise_edxs", "denoise_series", "finetune_denoiser", "split_counts"]

#: The methods of :func:`denoise_edxs`.
DENOISE_METHODS = ("network", "gaussian", "tv", "bm3d")
#: How far a count may lie from a whole number and still be a count.
COUNT_TOLERANCE = 1e-6
_KIND = "DenoisedMaps"
_GAUSSIAN_WIDTHS = np.geomspace(0.4, 12.0, 16)  # the PURE search's widths [px]
_TV_WEIGHTS = np.geomspace(0.05, 8.0, 12)  # the SURE search's weights (Anscombe units)
_ANSCOMBE_ZERO = 2.0 * np.sqrt(3.0 / 8.0)
_MOSAIC_SIDE = 256  # BM3D: maps under half this side are denoised together, tiled in mosaics of about this side
_MOSAIC_GAP = 8  # px of zero counts between the tiles of a mosaic
_CV_SEED = 0  # the thinning of the network's blend cross-validation (so that a map always gives one result)
_CV_MAX_PIXELS = 2**19  # the cross-validation runs on evenly spaced maps of a larger input, up to about this many px
_EDGES = ("top", "bottom", "left", "right")  # the frame's edges, in the order of _net.frame_edges
_CV_Z = 3.0  # the blend leaves the network only by what exceeds this many standard errors of its fitted weight


# --- the result ---


@dataclasses.dataclass(frozen=True, repr=False)
class DenoisedMaps:
    """Denoised EDXS maps: expected X-ray counts per pixel and their 1-σ uncertainty.

    Attributes
    ----------
    maps : ndarray
        Expected counts per pixel, the input's shape; for a dict of element maps,
        ``(n_elements, *shape)`` in the order of ``elements``.
    sigma : ndarray or None
        1-σ uncertainty of ``maps`` [counts per pixel]; None for a method without one
        ("tv", "bm3d").
    method : str
        One of :data:`DENOISE_METHODS`.
    dose : ndarray
        The dose measure of each noisy 2D map [counts per pixel] (``maps.shape[:-2]``).
    elements : tuple of str or None
        The elements of a dict input, else None.
    parameters : dict
        The method's parameters: the chosen ``strength`` per map for the classical
        methods (and whether it was chosen automatically), the model for the network.
    provenance : dict
    """

    maps: np.ndarray
    sigma: np.ndarray | None
    method: str
    dose: np.ndarray
    elements: tuple | None = None
    parameters: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        maps = np.asarray(self.maps, dtype=np.float64)
        if maps.ndim < 2:
            raise ValueError(f"maps must be at least 2D (h, w), got shape {maps.shape}")
        sigma = None if self.sigma is None else np.asarray(self.sigma, dtype=np.float64)
        if sigma is not None and sigma.shape != maps.shape:
            raise ValueError(f"sigma must have maps' shape {maps.shape}, got {sigma.shape}")
        dose = np.asarray(self.dose, dtype=np.float64)
        if dose.shape != maps.shape[:-2]:
            raise ValueError(f"dose must have shape {maps.shape[:-2]} (one per map), got {dose.shape}")
        elements = None if self.elements is None else tuple(str(e) for e in self.elements)
        if elements is not None and (maps.ndim < 3 or len(elements) != maps.shape[0]):
            raise ValueError(f"elements ({list(elements)}) must name maps' first axis, of shape {maps.shape}")
        check_choice(self.method, "method", DENOISE_METHODS)
        for name, value in (("maps", maps), ("sigma", sigma), ("dose", dose), ("elements", elements),
                            ("parameters", dict(self.parameters)), ("provenance", dict(self.provenance))):  # fmt: skip
            object.__setattr__(self, name, value)

    def __getitem__(self, element: str) -> np.ndarray:
        """The denoised map(s) of ``element`` (a dict input)."""
        if self.elements is None or element not in self.elements:
            raise KeyError(f"no element {element!r}: the maps' elements are {self.elements}")
        return self.maps[self.elements.index(element)]

    def __repr__(self) -> str:
        what = "/".join(self.elements) + ", " if self.elements else ""
        return f"DenoisedMaps({what}{'x'.join(map(str, self.maps.shape))}, method {self.method!r})"

    def summary(self) -> dict:
        """Plain-type summary: method, shape, dose range, mean counts and median σ."""
        return {
            "method": self.method,
            "shape": list(self.maps.shape),
            "elements": None if self.elements is None else list(self.elements),
            "dose_min": float(self.dose.min()) if self.dose.size else None,
            "dose_max": float(self.dose.max()) if self.dose.size else None,
            "mean_counts": float(self.maps.mean()),
            "median_sigma": None if self.sigma is None else float(np.median(self.sigma)),
            "parameters": _plain(self.parameters),
        }

    def to_hdf5(self, path) -> Path:
        """Write every field (atomically)."""
        arrays = {"maps": self.maps, "sigma": self.sigma, "dose": self.dose,
                  "elements": None if self.elements is None else np.array(self.elements)}  # fmt: skip
        attrs = {"method": self.method, "parameters": _plain(self.parameters), "provenance": _plain(self.provenance),
                 "has_sigma": self.sigma is not None, "has_elements": self.elements is not None}  # fmt: skip
        write_hdf5(path, _KIND, arrays, attrs)
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> DenoisedMaps:
        """Read a file :meth:`to_hdf5` wrote."""
        arrays, attrs = read_hdf5(path, _KIND)
        elements = tuple(str(e) for e in np.asarray(arrays["elements"]).tolist()) if attrs["has_elements"] else None
        return cls(arrays["maps"], arrays["sigma"] if attrs["has_sigma"] else None, attrs["method"], arrays["dose"],
                   elements, attrs.get("parameters", {}), attrs.get("provenance", {}))  # fmt: skip


# --- inputs ---


def _check_counts(arr, name: str) -> np.ndarray:
    """``arr`` as float64, refused unless it holds X-ray counts: finite, >= 0 and whole numbers."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold X-ray counts (numbers), got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim not in (2, 3) or min(a.shape) == 0:
        raise ValueError(f"{name} must be a map (h, w) or a stack of maps (n, h, w), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds {int((~np.isfinite(a)).sum())} NaN or infinite pixels; X-ray counts are "
                         "finite")  # fmt: skip
    if (a < 0).any():
        raise ValueError(f"{name} holds counts, which cannot be negative: got minimum {a.min():.6g}")
    off = np.abs(a - np.round(a))
    if off.max() > COUNT_TOLERANCE:
        raise ValueError(f"{name} must hold whole X-ray counts per pixel, got {a.flat[off.argmax()]:.6g} (a "
                         "normalised, background-subtracted or interpolated map is not counts)")  # fmt: skip
    return a


def _parse_maps(maps):
    """(stack (m, h, w), shape of the result, elements or None) from a map, a stack or a dict of them."""
    if isinstance(maps, dict):
        if not maps:
            raise ValueError("maps must hold at least one element's map, got an empty dict")
        elements = tuple(str(e) for e in maps)
        arrays = [_check_counts(v, f"maps[{e!r}]") for e, v in maps.items()]
        for e, a in zip(elements, arrays, strict=True):
            if a.shape != arrays[0].shape:
                raise ValueError(f"maps[{e!r}] has shape {a.shape}, but maps[{elements[0]!r}] has {arrays[0].shape}: "
                                 "every element's maps must share one shape")  # fmt: skip
        shape = (len(elements), *arrays[0].shape)
        return np.stack(arrays).reshape(-1, *shape[-2:]), shape, elements
    if not isinstance(maps, np.ndarray | list | tuple):
        raise TypeError(f"maps must be an array of counts or a dict of element -> counts, got {type(maps).__name__}")
    a = _check_counts(maps, "maps")
    return a.reshape(-1, *a.shape[-2:]), a.shape, None


def _doses(stack, dose, n_layout):
    """The dose measure of each map [counts per pixel]: measured (``_net.map_dose``) or given."""
    from . import _net

    if dose is None:
        return np.array([float(_net.map_dose(m)) for m in stack])
    d = np.asarray(dose, dtype=np.float64)
    if d.ndim == 0:
        d = np.full(len(stack), float(d))
    elif d.shape == n_layout:
        d = d.ravel()
    else:
        raise ValueError(f"dose must be one number or one per map, of shape {n_layout}, got shape {d.shape}")
    if not np.all(np.isfinite(d)) or (d < 0).any():
        raise ValueError(f"dose must be finite and >= 0 [counts per pixel], got {d.min() if d.size else d}")
    return d


# --- the variance-stabilising transform ---


def anscombe(counts: np.ndarray) -> np.ndarray:
    """``2 √(y + 3/8)``: Poisson counts to values of about unit Gaussian noise (above a few counts)."""
    return 2.0 * np.sqrt(np.asarray(counts, dtype=np.float64) + 3.0 / 8.0)


def inverse_anscombe(d: np.ndarray) -> np.ndarray:
    """The closed-form approximation of the exact unbiased inverse of :func:`anscombe` (Mäkitalo & Foi 2011),
    clipped at zero counts (where a transformed value falls below that of zero counts)."""
    d = np.maximum(np.asarray(d, dtype=np.float64), _ANSCOMBE_ZERO)
    s = np.sqrt(1.5)
    out = 0.25 * d**2 + 0.25 * s / d - 1.375 / d**2 + 0.625 * s / d**3 - 0.125
    return np.maximum(out, 0.0)


# --- the classical methods ---


def _kernel(width: float) -> np.ndarray:
    r = max(1, int(np.ceil(4.0 * width)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / width) ** 2)
    return w / w.sum()


def _filter(stack, w):
    from scipy.ndimage import correlate1d

    return correlate1d(correlate1d(stack, w, axis=-1, mode="reflect"), w, axis=-2, mode="reflect")


def _gaussian(stack, strength):
    """Gaussian filter per map; the width by PURE per map unless given; σ from the propagated Poisson noise."""
    widths = _GAUSSIAN_WIDTHS if strength is None else np.array([strength])
    best = np.full(len(stack), np.inf)
    chosen = np.zeros(len(stack))
    out = np.zeros_like(stack)
    total = stack.sum(axis=(1, 2))
    for width in widths:
        w = _kernel(width)
        f = _filter(stack, w)
        pure = np.sum(f * f, axis=(1, 2)) - 2.0 * np.sum(stack * f, axis=(1, 2)) + 2.0 * w.max() ** 2 * total
        better = pure < best
        best[better], chosen[better], out[better] = pure[better], width, f[better]
    var = np.zeros_like(stack)
    for width in np.unique(chosen):
        sel = chosen == width
        var[sel] = _filter(np.maximum(out[sel], 0.0), _kernel(width) ** 2)
    return out, np.sqrt(var), chosen


def _tv(stack, strength, rng=0):
    """TV on the Anscombe transform; the weight by Monte-Carlo SURE per map (unit noise) unless given."""
    from skimage.restoration import denoise_tv_chambolle

    a = anscombe(stack)
    weights = _TV_WEIGHTS if strength is None else np.array([strength])
    chosen = np.zeros(len(stack))
    out = np.zeros_like(stack)
    gen = check_rng(rng)
    eps = 0.05
    for i, m in enumerate(a):
        if len(weights) == 1:
            out[i], chosen[i] = denoise_tv_chambolle(m, weight=float(weights[0])), weights[0]
            continue
        probe = gen.standard_normal(m.shape)
        best = np.inf
        for weight in weights:
            f = denoise_tv_chambolle(m, weight=float(weight))
            div = float(np.sum(probe * (denoise_tv_chambolle(m + eps * probe, weight=float(weight)) - f))) / eps
            sure = float(np.sum((f - m) ** 2)) - m.size + 2.0 * div
            if sure < best:
                best, out[i], chosen[i] = sure, f, weight
    return inverse_anscombe(out), None, chosen


def _mosaics(n, h, w, gap):
    """Groups of map indices that fit one mosaic of about 256 x 256 px, and the mosaic's grid (rows, cols)."""
    if h >= _MOSAIC_SIDE // 2 or w >= _MOSAIC_SIDE // 2:
        return [[i] for i in range(n)], (1, 1)
    rows, cols = max(1, (_MOSAIC_SIDE + gap) // (h + gap)), max(1, (_MOSAIC_SIDE + gap) // (w + gap))
    per = rows * cols
    return [list(range(i, min(i + per, n))) for i in range(0, n, per)], (rows, cols)


def _bm3d(stack, strength):
    """BM3D on the Anscombe transform; small maps go together in mosaics (each bm3d call costs about 2 s)."""
    try:
        import bm3d
    except ImportError:
        raise ImportError('method="bm3d" needs the bm3d package, which the default install leaves out; install it '
                          "with: pip install 'atomscount[bm3d]'") from None  # fmt: skip
    sigma = 1.0 if strength is None else strength
    a = anscombe(stack)
    n, h, w = a.shape
    gap = _MOSAIC_GAP
    groups, (rows, cols) = _mosaics(n, h, w, gap)
    out = np.empty_like(a)
    for group in groups:
        mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), _ANSCOMBE_ZERO)
        for k, i in enumerate(group):
            r, c = divmod(k, cols)
            mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = a[i]
        den = np.asarray(bm3d.bm3d(mosaic, sigma_psd=sigma), dtype=np.float64)
        for k, i in enumerate(group):
            r, c = divmod(k, cols)
            out[i] = den[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w]
    return inverse_anscombe(out), None, np.full(n, sigma)


# --- the network ---


def _network(stack, model, tta, total=None, mirror=None):
    from . import _net

    return _net.predict(stack, model=model, augment=tta, total=total, margin=_net.FRAME_MARGIN, mirror=mirror)


def _groups(shape, elements, joint) -> int:
    """How many groups the maps' blend weights are chosen for: one per element (a dict, or joint's elements-first
    array), else one for the whole input."""
    return shape[0] if len(shape) >= 3 and (elements is not None or joint) else 1


def _blend_weights(stack, shape, n_groups, model, tta, joint, mirror):
    """Per group, the network's weight in ``w net + (1 - w) gaussian`` that predicts best, by thinning
    cross-validation on the maps themselves: the counts are split into two independent halves (binomial
    thinning), both methods denoise the first, and ``w`` is the least-squares fit (clipped to [0, 1]) of the second,
    ``E|f(A1) - A2|² = E|f(A1) - λ/2|² + E var A2``: no truth needed. Returns (weights, the fit's standard errors,
    maps used per group)."""
    per = stack.reshape(n_groups, -1, *stack.shape[-2:])
    n = per.shape[1]
    keep = max(1, min(n, _CV_MAX_PIXELS // (n_groups * per.shape[2] * per.shape[3])))
    idx = np.unique(np.linspace(0, n - 1, keep).round().astype(int))  # evenly spaced maps (tilts) of each group
    counts = per[:, idx].astype(np.int64)
    # each group thinned by a generator seeded from its own counts: a map gives one result, whatever came with it
    a1 = np.stack([np.random.default_rng([_CV_SEED, zlib.crc32(c.tobytes())]).binomial(c, 0.5) for c in counts])
    a1 = a1.reshape(-1, *stack.shape[-2:]).astype(np.float64)
    a2 = counts.reshape(a1.shape) - a1
    edges = mirror.reshape(n_groups, n, 4)[:, idx].reshape(-1, 4)  # the full counts' decision, not the half's
    net = _network(a1, model, tta, _totals(a1, (n_groups, len(idx), *shape[-2:])) if joint else None, edges)[0]
    gauss = _gaussian(a1, None)[0]
    d = (net - gauss).reshape(n_groups, -1)
    r = (a2 - gauss).reshape(n_groups, -1)
    dd = np.sum(d * d, axis=1)
    safe = np.where(dd > 0, dd, 1.0)
    w = np.where(dd > 0, np.sum(d * r, axis=1) / safe, 1.0)
    # the fit's standard error from A2's Poisson noise (A2 estimates its own variance): the departure from the
    # network, 1 - w, is soft-thresholded at _CV_Z of it, so that an input too small to tell keeps the network
    se = np.where(dd > 0, np.sqrt(np.sum(d * d * a2.reshape(n_groups, -1), axis=1)) / safe, 0.0)
    away = np.maximum(1.0 - w - _CV_Z * se, 0.0)
    return np.clip(1.0 - away, 0.0, 1.0), se, len(idx)


def _totals(stack, shape):
    """The total map of each map's projection: the sum over the elements (the first axis of ``shape``)."""
    per = stack.reshape(shape[0], -1, *shape[-2:])
    return np.broadcast_to(per.sum(axis=0), per.shape).reshape(stack.shape)


def _check_range(doses, model, names):
    lo, hi = (float(v) for v in model["meta"]["dose_range"])
    bad = [(n, d) for n, d in zip(names, doses, strict=True) if d > 0 and not (lo <= d <= hi)]
    if bad:
        which = ", ".join(f"{n} ({d:.3g})" for n, d in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        warnings.warn(f"maps has a dose outside the network's training range of {lo:g} to {hi:g} counts per pixel "
                      f"(dose measure of atomscount.elemental._net.map_dose): {which}; its output there is an "
                      "extrapolation", UserWarning, stacklevel=3)  # fmt: skip


def _map_names(shape, elements):
    lead = shape[:-2]
    names = []
    for idx in np.ndindex(*lead) if lead else [()]:
        if elements is not None:
            e, rest = elements[idx[0]], idx[1:]
            names.append(f"maps[{e!r}]" + (f"[{rest[0]}]" if rest else ""))
        else:
            names.append("maps" + (f"[{idx[0]}]" if idx else ""))
    return names


# --- public ---


def denoise_edxs(maps, *, dose=None, method: str = "network", strength: float | None = None, tta: bool = False,
                 model: dict | None = None, joint: bool | None = None,
                 blend: str | float = "auto") -> DenoisedMaps:  # fmt: skip
    """Denoise EDXS elemental maps of X-ray counts: the expected counts per pixel, with their uncertainty.

    Parameters
    ----------
    maps : ndarray (h, w) or (n, h, w), or dict of str to such arrays
        X-ray counts per pixel (whole numbers >= 0): one map, a stack (for example a
        tilt series), or one map or stack per element, all of one shape.
    dose : float or array_like, optional
        The dose measure of each map [counts per pixel, as ``_net.map_dose`` defines it:
        the counts per pixel over the pixels that hold signal]; default measured from
        each map. The network warns outside its training range (the network normalises
        each map by its own measure unless its ``predict`` takes a ``dose``).
    method : {"network", "gaussian", "tv", "bm3d"}
        See the module docstring.
    strength : float, optional
        The classical method's parameter: the Gaussian's standard deviation [px], the
        TV weight or BM3D's noise level (both in units of the Anscombe transform, whose
        noise is 1). Default: chosen per map without the truth (PURE for the Gaussian,
        SURE for TV, 1 for BM3D). Not used by the network.
    tta : bool
        Network only: average over the eight flips and rotations (eight times the time)
        and add their spread to σ in quadrature.
    model : dict, optional
        Network only: a model of :func:`finetune_denoiser` or
        ``atomscount.elemental.train.train_denoiser``; default the shipped weights (the
        joint ones where ``joint`` holds). A joint model (``_net.is_joint``) sets ``joint``.
    joint : bool, optional
        Network only: denoise each map with its projection's total map (the sum over the
        elements: the first axis of a stack, or the dict's elements). Default: True for a
        dict of two or more elements, else False. With ``joint=True`` an array
        ``(n_elements, h, w)`` or ``(n_elements, n, h, w)`` is taken as elements first.
    blend : "auto" or float
        Network only: the result is ``w net + (1 - w) gaussian``, the network's output
        blended with the Gaussian filter of PURE width (whose σ blends likewise). ``w``
        in [0, 1] given, or ``"auto"`` (default): chosen without truth on the maps
        themselves, one ``w`` per element (a dict, or joint's elements first) or one for
        an array, by thinning cross-validation: the counts are split into two
        independent halves by binomial thinning (seeded, so that a map always gives one
        result), both methods denoise the first half and ``w`` is the least-squares fit
        of the second, its departure from the network ``1 - w`` less three standard
        errors of the fit (so that an input too small to tell keeps the network; clipped
        to [0, 1]). It guards against maps unlike the network's
        training (real maps: see ``docs/denoise.rst``), at about twice the network's
        time (a stack of more than about 0.5 Mpx is cross-validated on evenly spaced
        maps). ``parameters["blend"]`` records ``w`` and the standard error. ``blend=1``
        is the network alone.

    Returns
    -------
    DenoisedMaps
        ``maps`` in expected counts per pixel, in the input's layout (a dict becomes
        ``(n_elements, ...)`` with ``elements``), and ``sigma`` (None for "tv" and "bm3d").

    Raises
    ------
    TypeError
        For maps that are not numbers or a dict of them.
    ValueError
        For maps with negative, NaN or non-integer counts, element maps of different
        shapes, or bad ``dose``, ``method`` or ``strength``.
    ImportError
        For "bm3d" without the ``bm3d`` package.

    Warns
    -----
    UserWarning
        When a map's dose lies outside the network's training range (maps with no
        counts at all are not warned about: they stay zero).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((32, 32)); truth[8:24, 8:24] = 3.0          # expected counts per pixel
    >>> noisy = np.random.default_rng(0).poisson(truth)
    >>> out = denoise_edxs(noisy, method="gaussian")
    >>> bool(np.abs(out.maps - truth).mean() < np.abs(noisy - truth).mean())
    True
    """
    check_choice(method, "method", DENOISE_METHODS)
    tta = check_bool(tta, "tta")
    if strength is not None:
        strength = check_real(strength, "strength", low=0.0, open_low=True)
    t0 = time.perf_counter()
    stack, shape, elements = _parse_maps(maps)
    doses = _doses(stack, dose, shape[:-2])
    params: dict = {"strength_auto": strength is None}
    if joint is not None:
        joint = check_bool(joint, "joint")
    auto_blend = isinstance(blend, str)
    if auto_blend:
        check_choice(blend, "blend", ("auto",))
    else:
        blend = check_real(blend, "blend", low=0.0, high=1.0)
    if method == "network":
        from . import _net

        if model is not None and joint is None:
            joint = _net.is_joint(model["params"])
        if joint is None:
            joint = elements is not None and len(elements) >= 2
        if joint and len(shape) < 3:
            raise ValueError(f"joint=True needs several elements' maps (a dict, or an array with the elements first), "
                             f"got one map of shape {shape}")  # fmt: skip
        model = _net.load_denoiser(joint=joint) if model is None else model
        if _net.is_joint(model["params"]) != joint:
            raise ValueError(f"model is a {'joint' if not joint else 'single-map'} network, but joint={joint}")
        _check_range(doses, model, _map_names(shape, elements))
        totals = _totals(stack, shape) if joint else None
        edges = _net.frame_edges(stack if totals is None else totals)  # one decision for a projection's elements
        mean, sigma = _network(stack, model, tta, totals, edges)
        n_groups = _groups(shape, elements, joint)
        if auto_blend:
            weights, se, n_cv = _blend_weights(stack, shape, n_groups, model, tta, joint, edges)
        else:
            weights, se, n_cv = np.full(n_groups, blend), np.zeros(n_groups), 0
        if (weights < 1).any():
            gmean, gsigma, gwidth = _gaussian(stack, None)
            w = np.repeat(weights, len(stack) // n_groups)[:, None, None]
            mean = w * np.maximum(mean, 0.0) + (1.0 - w) * gmean
            sigma = w * sigma + (1.0 - w) * gsigma  # an upper bound (the two errors correlate by at most 1)
        keys = ("trained_on", "dose_range", "source", "finetuned")
        params = {"tta": tta, "network": "joint" if joint else "single-map",
                  "model": {k: model["meta"][k] for k in keys if k in model["meta"]},
                  "blend": {"network_weight": weights.tolist() if n_groups > 1 else float(weights[0]),
                            "auto": auto_blend, "cv_maps_per_group": n_cv,
                            "weight_se": se.tolist() if n_groups > 1 else float(se[0])},
                  "frame": {"margin_px": _net.FRAME_MARGIN, "maps": len(stack),
                            "mirrored": dict(zip(_EDGES, edges.sum(0).tolist(), strict=True))}}  # fmt: skip
    else:
        fn = {"gaussian": _gaussian, "tv": _tv, "bm3d": _bm3d}[method]
        mean, sigma, chosen = fn(stack, strength)
        params["strength"] = chosen.reshape(shape[:-2]) if shape[:-2] else float(chosen[0])
        params["strength_unit"] = {"gaussian": "px", "tv": "Anscombe units", "bm3d": "Anscombe units"}[method]
    mean = np.maximum(np.asarray(mean, dtype=np.float64), 0.0).reshape(shape)
    sigma = None if sigma is None else np.asarray(sigma, dtype=np.float64).reshape(shape)
    prov = {"source": "atomscount.elemental.denoise_edxs", "seconds": time.perf_counter() - t0}
    return DenoisedMaps(mean, sigma, method, doses.reshape(shape[:-2]), elements, params, prov)


def denoise_series(edxs: dict, *, method: str = "network", **kwargs) -> tuple[dict, DenoisedMaps]:
    """Denoise each element's EDXS tilt series, ready for the reconstruction.

    Parameters
    ----------
    edxs : dict of str to TiltSeries
        X-ray counts per pixel of each element's line, all of one shape.
    method : str
        See :func:`denoise_edxs`.
    **kwargs
        Passed to :func:`denoise_edxs` (``dose``, ``strength``, ``tta``, ``model``, ``joint``:
        by default two or more elements' series are denoised by the joint network, each
        tilt's maps with that tilt's total).

    Returns
    -------
    series : dict of str to TiltSeries
        The denoised expected counts, with the input's angles and pixel size, and its
        provenance plus ``noise: False`` (expected counts, which the reconstructions take
        as non-integer counts) and ``denoised`` (the method and its parameters).
        Reconstruct them with :func:`~atomscount.elemental.reconstruct_separate` or with
        :func:`~atomscount.elemental.reconstruct_elemental` and a fixed ``weights`` (its
        automatic weight assumes Poisson counts).
    result : DenoisedMaps
        With the uncertainty.
    """
    from ..tomo.geometry import TiltSeries

    if not isinstance(edxs, dict) or not edxs:
        raise TypeError(f"edxs must be a non-empty dict of element -> TiltSeries of counts, got {type(edxs).__name__}")
    for e, s in edxs.items():
        if not isinstance(s, TiltSeries):
            raise TypeError(f"edxs[{e!r}] must be a TiltSeries, got {type(s).__name__}")
    result = denoise_edxs({e: s.images for e, s in edxs.items()}, method=method, **kwargs)
    out = {}
    for e, s in edxs.items():
        how = {"method": method, "strength_auto": "strength" not in kwargs, "tta": bool(kwargs.get("tta", False))}
        if "network" in result.parameters:
            how["network"] = result.parameters["network"]
            how["blend"] = result.parameters["blend"]
        prov = {**s.provenance, "noise": False, "denoised": how}
        out[e] = TiltSeries(result[e], s.angles, s.pixel_size_angstrom, prov)
    return out, result


def split_counts(maps, *, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """Two independent halves of count maps, by binomial thinning (each count goes to one half with probability ½).

    Thinning Poisson counts of expectation λ gives two independent Poisson maps of
    expectation λ/2 each: a pair for Noise2Noise (:func:`finetune_denoiser`) when the
    acquisition's frames are not at hand.

    Parameters
    ----------
    maps : ndarray
        X-ray counts (whole numbers >= 0), any shape of at least two dimensions.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    a, b : ndarray
        ``a + b == maps``.
    """
    a = np.asarray(maps)
    if a.ndim < 2:
        raise ValueError(f"maps must be a map or a stack of maps, got shape {a.shape}")
    counts = _check_counts(a.reshape(-1, *a.shape[-2:]), "maps").reshape(a.shape)
    half = check_rng(rng).binomial(counts.astype(np.int64), 0.5).astype(np.float64)
    return half, counts - half


def finetune_denoiser(maps_a, maps_b, *, steps: int = 300, seed: int = 0, model: dict | None = None,
                      progress: bool = False) -> dict:  # fmt: skip
    """Fine-tune the network on a user's own maps by Noise2Noise: no clean truth needed.

    The pairs get the frame margin :func:`denoise_edxs` gives a map (mirrored where the
    sample crosses the frame) and are cut into random crops of up to 64 px a side. Of two or more maps, every fifth
    (at least one) is held out: their Noise2Noise error ``mean |f(a) - b|²`` is measured
    before training and every 25 steps, and the weights where it was lowest are returned
    (early stopping: the result is never worse on the held-out maps than the weights it
    started from). On the graptor sinograms (36 maps of 30 x 216 px; see
    ``docs/denoise.rst``), 300 steps take about a minute on two cores.

    Parameters
    ----------
    maps_a, maps_b : ndarray (n, h, w) or (h, w)
        Two independent noisy acquisitions of the same maps (alternate frames, or the
        halves of :func:`split_counts`), X-ray counts, of one shape.
    steps : int
        Optimiser steps (Adam, peak learning rate 2e-3, warm-up and cosine decay).
    seed : int
        Seed of the batches.
    model : dict, optional
        The model to start from; default the shipped weights.
    progress : bool

    Returns
    -------
    dict
        The model, for ``denoise_edxs(..., model=...)``; its ``meta`` says it was
        fine-tuned (``finetuned``: steps, maps, the final loss, and ``validation``: the
        held-out maps' error at the start and at the best step).

    Raises
    ------
    ImportError
        Without JAX and optax (``pip install "atomscount[learn]"``).
    ValueError
        For halves of different shapes or that are not counts.
    """
    steps = check_integer(steps, "steps", low=1)
    seed = check_integer(seed, "seed", low=0)
    progress = check_bool(progress, "progress")
    a = _check_counts(maps_a, "maps_a")
    b = _check_counts(maps_b, "maps_b")
    if a.shape != b.shape:
        raise ValueError(f"maps_a and maps_b must have one shape, got {a.shape} and {b.shape}")
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    from . import train  # raises an ImportError naming the learn extra without JAX

    held = np.arange(len(a)) % 5 == 4 if len(a) >= 5 else np.arange(len(a)) == len(a) - 1
    validation = (a[held], b[held]) if len(a) >= 2 else None
    train_idx = ~held if len(a) >= 2 else np.ones(1, bool)
    tuned, history = train.train_denoiser(seed=seed, steps=steps, model=model, mode="noise2noise",
                                          pairs=(a[train_idx], b[train_idx]), validation=validation,
                                          progress=progress)  # fmt: skip
    meta = dict(tuned.get("meta", {}))
    meta["finetuned"] = {"mode": "noise2noise", "steps": steps, "seed": seed, "n_maps": int(train_idx.sum()),
                         "final_loss": float(np.asarray(history.get("loss", [np.nan]) if isinstance(history, dict)
                                                        else history)[-1]),
                         "validation": meta.get("validation")}  # fmt: skip
    return {**tuned, "meta": meta}
