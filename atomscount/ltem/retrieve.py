"""Differentiable phase retrieval: the exit-wave phase (and amplitude, and microscope parameters) fitted to
one or more Lorentz TEM images through the forward model :func:`~atomscount.ltem.forward.fresnel_image`.

The objective is the Poisson deviance of the counts plus a prior: by default a Gaussian prior on the
phase's Fourier modes with the spectrum the images show (:mod:`~atomscount.ltem.spectral`), else total
variation or smoothness of the phase and of the log-amplitude; it is minimised with optax's L-BFGS from
the contrast-transfer Wiener estimate, or from TIE for the other regularisers (Zhou, Cherukara and Phatak,
npj Comput. Mater. 7, 141 (2021), https://doi.org/10.1038/s41524-021-00600-x).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .._checks import check_bool, check_choice, check_integer, check_rng
from .result import LTEMSeries, PhaseRetrieval

__all__ = ["retrieve_phase", "FIT_NAMES"]

#: What :func:`retrieve_phase` can fit.
FIT_NAMES = ("phase", "amplitude", "defocus", "defocus_scale", "cs", "divergence", "defocus_spread")
_REGULARISERS = ("spectral", "tv", "smooth")
_VACUUM_MODELS = ("auto", "stray", "flat", "none")
_STALL = 5  # L-BFGS stops when the loss has fallen by less than _STALL_TOL (relative) over this many iterations
_STALL_TOL = 1e-6
_TV_EPS = 1e-3  # [rad per pixel]: below this a phase step is treated as smooth (keeps TV differentiable)
_STAGES = 4  # weights tried by the discrepancy rule, each a quarter of the one before
_PROBES = 16  # random probes of the Fisher information's diagonal
_OPTIMISERS = ("lbfgs", "adam")
_ADAM_STEP = 0.05
# a spectral fit whose mean deviance exceeds its expected value by this fraction plus five standard errors
# (``√(2/N)`` for N counts) cannot explain the counts, and is retried with TV
_INADEQUATE = 0.1
# the vacuum correction is kept when the mean deviance rises by at most this fraction plus five standard errors:
# it moves the slowest modes, which the counts hardly see (+0.8 % and +1.5 % on the 512² vortex at 100 e/px, one
# and three images), and is refused where it moves modes they see (+12 % on a 64² disk)
_VACUUM_TOLERANCE = 0.02
_COHERENCE_SCALE = {"divergence": 1e-6, "defocus_spread": 10.0}  # [rad], [nm]: one unit of the fitted variable


def _as_series(images, defocus_nm, pixel_nm, beam_energy_ev) -> LTEMSeries:
    if isinstance(images, LTEMSeries):
        if defocus_nm is not None:
            images = LTEMSeries(images.images, defocus_nm, pixel_nm=images.pixel_nm,
                                beam_energy_ev=images.beam_energy_ev, cs_nm=images.cs_nm,
                                divergence_rad=images.divergence_rad, defocus_spread_nm=images.defocus_spread_nm,
                                provenance=images.provenance)  # fmt: skip
        return images
    if defocus_nm is None:
        raise ValueError("defocus_nm must be given with an image array (one defocus [nm] per image), got None")
    if pixel_nm is None:
        raise ValueError("pixel_nm must be given with an image array [nm], got None")
    return LTEMSeries(images, defocus_nm, pixel_nm=pixel_nm,
                      beam_energy_ev=300e3 if beam_energy_ev is None else beam_energy_ev)  # fmt: skip


def _start(series: LTEMSeries, initial) -> tuple[np.ndarray, np.ndarray, str]:
    """Starting phase and amplitude: the given ones, TIE for a series with an in-focus image, else
    single-image TIE of the image nearest focus."""
    if initial is not None:
        if isinstance(initial, PhaseRetrieval):
            return initial.phase, initial.amplitude, initial.method
        phase = np.asarray(initial, dtype=np.float64)
        if phase.shape != series.shape:
            raise ValueError(f"initial must be a PhaseRetrieval or a phase map of shape {series.shape}, "
                             f"got shape {phase.shape}")  # fmt: skip
        return phase, np.ones(series.shape), "given"
    from .tie import single_image_tie, tie

    if len(series) >= 3 and series.in_focus_index() is not None:
        start = tie(series)
    else:
        i = int(np.argmax(np.abs(series.defoci_nm)))  # the most phase contrast
        if series.defoci_nm[i] == 0:
            raise ValueError(f"defocus_nm must not be all zero (an in-focus image has no phase contrast), "
                             f"got {series.defoci_nm.tolist()}")  # fmt: skip
        start = single_image_tie(series.images[i], series.defoci_nm[i], pixel_nm=series.pixel_nm,
                                 beam_energy_ev=series.beam_energy_ev)  # fmt: skip
    return start.phase, start.amplitude, start.method


def _regulariser(kind: str):
    import jax.numpy as jnp

    def gradients(x):
        return jnp.roll(x, -1, 0) - x, jnp.roll(x, -1, 1) - x

    if kind == "tv":

        def reg(x):
            gy, gx = gradients(x)
            return jnp.mean(jnp.sqrt(gy**2 + gx**2 + _TV_EPS**2) - _TV_EPS)

    else:

        def reg(x):
            gy, gx = gradients(x)
            return jnp.mean(gy**2 + gx**2)

    return reg


def _regulariser_numpy(kind: str, x) -> float:
    """:func:`_regulariser` in NumPy, for the starting point."""
    x = np.asarray(x, dtype=np.float64)
    gy, gx = np.roll(x, -1, 0) - x, np.roll(x, -1, 1) - x
    if kind == "tv":
        return float(np.mean(np.sqrt(gy**2 + gx**2 + _TV_EPS**2) - _TV_EPS))
    return float(np.mean(gy**2 + gx**2))


def _model(series: LTEMSeries, fixed: dict, scales: dict):
    """The forward model of the free variables (a dict of arrays), in the units the optimiser sees."""
    import jax.numpy as jnp

    from .forward import fresnel_image

    def unpack(free):
        v = {**fixed, **free}
        return {
            "phase": v["phase"],
            "amplitude": jnp.exp(v["log_amplitude"]),
            "defocus_nm": jnp.asarray(series.defoci_nm) * (1.0 + v.get("defocus_scale", 0.0))
            + scales["defocus"] * v["defocus"],
            "cs_nm": jnp.abs(series.cs_nm + scales["cs"] * v["cs"]),
            "divergence_rad": jnp.abs(series.divergence_rad + scales["divergence"] * v["divergence"]),
            "defocus_spread_nm": jnp.abs(series.defocus_spread_nm + scales["defocus_spread"] * v["defocus_spread"]),
        }

    def images(free):
        p = unpack(free)
        return fresnel_image(p["phase"], p["amplitude"], pixel_nm=series.pixel_nm, defocus_nm=p["defocus_nm"],
                             beam_energy_ev=series.beam_energy_ev, cs_nm=p["cs_nm"], divergence_rad=p["divergence_rad"],
                             defocus_spread_nm=p["defocus_spread_nm"])  # fmt: skip

    return images, unpack


def _objective(series: LTEMSeries, dose, fixed: dict, scales: dict, regulariser: str):
    """(loss(free, weight), deviance(free), images(free)): the Poisson deviance per pixel
    (about 1 for a model that explains the counts to their noise) plus weight × regulariser."""
    import jax.numpy as jnp

    images, _ = _model(series, fixed, scales)
    reg = _regulariser(regulariser)
    counts = series.images
    d = np.asarray(dose)[:, None, None]
    # y log(μ/y) with 0 log 0 = 0, as a ratio: in float32, y log μ − y log y would lose the deviance
    # (about 1 per pixel) in the rounding of two terms of about y log y each
    safe = np.where(counts > 0, counts, 1.0)

    def deviance(free):
        mu = d * jnp.clip(images(free), 1e-6, None)
        return 2.0 * jnp.mean(mu - counts - counts * jnp.log(mu / safe))

    def loss(free, weight):
        v = {**fixed, **free}
        return deviance(free) + weight * (reg(v["phase"]) + reg(v["log_amplitude"]))

    return loss, deviance, images


def _spectral_objective(deviance, terms: dict, n_images: int):
    """(loss(params, aux), to_pixels(params, aux)) of the spectral prior.

    The phase and log-amplitude are ``base + F⁻¹[g(k) F[v]]`` with white variables v and ``g`` the
    linearised posterior standard deviation of each Fourier mode, ``√(S'/(S'P + 1))`` with ``S' = S +
    floor`` (P, S: :func:`~atomscount.ltem.spectral._spectral_terms`): every mode then has about unit
    curvature and L-BFGS needs few iterations; modes with ``S' = 0`` stay at the base. The loss per
    pixel is ``k × mean deviance + Σ |φ̂|²/S' / N + Σ |δ log Â|²/S_A / N``, k the number of images and
    S_A the log-amplitude's spectrum (its change from the start; no floor): twice the negative log
    posterior of the Poisson counts under the Gaussian spectral prior.
    ``aux`` holds ``floor`` and the bases ``phase`` and ``log_amplitude``.
    """
    import jax.numpy as jnp

    precision = jnp.asarray(terms["precision"])
    spectrum = jnp.asarray(terms["spectrum"])
    amp_precision = jnp.asarray(terms["amplitude_precision"])
    not_mean = jnp.asarray(np.arange(spectrum.size).reshape(spectrum.shape) != 0)
    n = spectrum.size

    def phase_scales(floor):
        s = jnp.where(not_mean, spectrum + floor, 0.0)
        inv = jnp.where(s > 0, 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
        return jnp.sqrt(s / (s * precision + 1.0)), inv

    s_amp = jnp.asarray(terms["amplitude_spectrum"])
    g_amp = jnp.sqrt(s_amp / (s_amp * amp_precision + 1.0))
    inv_amp = jnp.where(s_amp > 0, 1.0 / jnp.where(s_amp > 0, s_amp, 1.0), 0.0)

    def filt(v, g):
        return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(v, norm="ortho") * g, norm="ortho")).astype(v.dtype)

    def to_pixels(params, aux):
        out = dict(params)
        if "phase" in params:
            out["phase"] = aux["phase"] + filt(params["phase"], phase_scales(aux["floor"])[0])
        if "log_amplitude" in params:
            out["log_amplitude"] = aux["log_amplitude"] + filt(params["log_amplitude"], g_amp)
        return out

    def loss(params, aux):
        pix = to_pixels(params, aux)
        value = n_images * deviance(pix)
        if "phase" in params:
            inv = phase_scales(aux["floor"])[1]
            value = value + jnp.sum(jnp.abs(jnp.fft.fft2(pix["phase"], norm="ortho")) ** 2 * inv) / n
        if "log_amplitude" in params:
            delta = jnp.fft.fft2(pix["log_amplitude"] - aux["log_amplitude0"], norm="ortho")
            value = value + jnp.sum(jnp.abs(delta) ** 2 * inv_amp) / n
        return value

    return loss, to_pixels


def _fisher_uncertainty(images, free: dict, dose, key_seed: int) -> np.ndarray:
    """Standard deviation of each phase pixel from the diagonal of the Poisson Fisher information,
    ``F_ii = Σ_j (∂μ_j/∂φ_i)² / μ_j``, estimated with random ±1 probes: ``E[(Jᵀ(z/√μ))_i²] = F_ii``."""
    import jax
    import jax.numpy as jnp

    d = np.asarray(dose)[:, None, None]

    def counts_of_phase(phase):
        return d * images({**free, "phase": phase})

    @jax.jit
    def diagonal(phase, signs):
        mu, vjp = jax.vjp(counts_of_phase, phase)
        root = jnp.sqrt(jnp.clip(mu, 1e-6, None))
        (u,) = jax.vmap(vjp)(signs / root[None])
        return jnp.sum(u**2, axis=0)

    phase = free["phase"]
    shape = (_PROBES, len(dose), *phase.shape)
    signs = np.random.default_rng(key_seed).choice((-1.0, 1.0), size=shape).astype(phase.dtype)
    acc = diagonal(phase, signs)
    fisher = np.asarray(acc, dtype=np.float64) / _PROBES
    return 1.0 / np.sqrt(np.maximum(fisher, 1e-12))


def _expected_deviance(images, free: dict, dose, seed: int) -> float:
    """The mean Poisson deviance per pixel that counts drawn from the model's own mean counts
    ``μ = dose · I`` have against μ: what a fit that explains the counts to their noise reaches (about
    1, less where μ is small)."""
    d = np.asarray(dose, dtype=np.float64)[:, None, None]
    mu = d * np.clip(np.asarray(images(free), dtype=np.float64), 1e-6, None)
    y = np.random.default_rng(seed).poisson(mu).astype(np.float64)
    log_ratio = np.log(mu / np.where(y > 0, y, 1.0))
    return float(2.0 * np.mean(mu - y - np.where(y > 0, y * log_ratio, 0.0)))


def _scan_defocus(series: LTEMSeries, counts: np.ndarray, dose, phase, amplitude, *, common: bool) -> np.ndarray:
    """Factors of the series' defoci that minimise the Poisson deviance with the phase and amplitude held:
    one per image (``common=False``; the deviance of each image depends on its own defocus only) or one for
    all. A grid over 0.7 to 1.3 in steps of 0.05, then two finer grids (steps of 0.01 and 0.002) about the
    best, and a parabola through the best three points; in float64, since the deviance changes by about
    1e-5 per pixel over 5 % of defocus for a weak-contrast film, near float32's rounding of a mean over
    the pixels."""
    from .forward import _fresnel_numpy

    d = np.asarray(dose, dtype=np.float64)[:, None, None]
    safe = np.where(counts > 0, counts, 1.0)
    cache: dict[float, np.ndarray] = {}

    def per_image(f: float) -> np.ndarray:
        key = round(f, 6)
        if key not in cache:
            model = _fresnel_numpy(phase, amplitude, pixel_nm=series.pixel_nm, defoci_nm=series.defoci_nm * f,
                                   beam_energy_ev=series.beam_energy_ev, cs_nm=series.cs_nm,
                                   divergence_rad=series.divergence_rad,
                                   defocus_spread_nm=series.defocus_spread_nm)  # fmt: skip
            mu = d * np.clip(model, 1e-6, None)
            cache[key] = 2.0 * np.mean(mu - counts - counts * np.log(mu / safe), axis=(1, 2))
        return cache[key]

    def best(grid, j):
        values = [per_image(f).sum() if common else per_image(f)[j] for f in grid]
        i = int(np.argmin(values))
        return grid[i], values, i

    columns = [None] if common else range(len(series))
    out = np.ones(len(series))
    for j in columns:
        if j is not None and series.defoci_nm[j] == 0:
            continue
        f = 1.0
        for step, half in ((0.05, 6), (0.01, 4), (0.002, 4)):
            grid = [f + step * i for i in range(-half, half + 1) if 0.5 <= f + step * i <= 1.5]
            f, values, i = best(grid, j)
        if 0 < i < len(grid) - 1:  # the vertex of the parabola through the best point and its neighbours
            a, b, c = values[i - 1], values[i], values[i + 1]
            curvature = a - 2 * b + c
            if curvature > 0:
                f = f + 0.5 * step * (a - c) / curvature
        if common:
            out[:] = f
        else:
            out[j] = f
    return out


def _optimiser(kind: str, loss, n_iter: int):
    """(init, step): a jitted optax step ``(params, state, weight) -> (params, state, loss)``."""
    import jax
    import optax

    if kind == "lbfgs":
        opt = optax.lbfgs()

        @jax.jit
        def step(params, state, w):
            def value_fn(q):
                return loss(q, w)

            value, grad = optax.value_and_grad_from_state(value_fn)(params, state=state)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
            return optax.apply_updates(params, updates), state, value

    else:
        opt = optax.adam(optax.cosine_decay_schedule(_ADAM_STEP, max(n_iter, 1), alpha=0.1))

        @jax.jit
        def step(params, state, w):
            value, grad = jax.value_and_grad(loss)(params, w)
            updates, state = opt.update(grad, state, params)
            return optax.apply_updates(params, updates), state, value

    return opt.init, step


def _vacuum_corrected(result: PhaseRetrieval, counts: LTEMSeries, dose, precision, *,
                      model: str = "auto") -> PhaseRetrieval:  # fmt: skip
    """``result`` with its slowest modes set so that the vacuum round an island of material holds a constant
    plus, for ``model="stray"``, the stray field of the island's net moment, or, for ``"flat"``, the constant
    alone, or, for ``"auto"``, whichever of the two the vacuum's test of the stray-field terms picks
    (:func:`~atomscount.ltem.spectral._flatten_vacuum`), when an island is found and the counts allow it:
    the mean deviance (fitted amplitude and microscope parameters) may rise by at most ``_VACUUM_TOLERANCE``
    (relative) plus five standard errors. ``parameters["vacuum"]`` says what was done."""
    from .forward import _fresnel_numpy
    from .spectral import _flatten_vacuum, _mean_poisson_deviance

    if model == "none":
        result.parameters["vacuum"] = "not asked"
        return result
    found = _flatten_vacuum(result.phase, precision, model=model)
    if found is None:
        result.parameters["vacuum"] = "no island found"
        return result
    corrected, chosen = found
    p = result.parameters
    d = np.asarray(dose, dtype=np.float64)[:, None, None]
    y = np.asarray(counts.images, dtype=np.float64)

    def deviance(phase):
        images = _fresnel_numpy(phase, result.amplitude, pixel_nm=counts.pixel_nm, defoci_nm=p["defocus_nm"],
                                beam_energy_ev=counts.beam_energy_ev, cs_nm=p["cs_nm"],
                                divergence_rad=p["divergence_rad"],
                                defocus_spread_nm=p["defocus_spread_nm"])  # fmt: skip
        return _mean_poisson_deviance(d * np.clip(images, 1e-6, None), y)

    before, after = deviance(result.phase), deviance(corrected)
    change = float(np.sqrt(np.mean((corrected - result.phase - (corrected - result.phase).mean()) ** 2)))
    info = {"asked": model, **chosen, "deviance_before": before, "deviance_after": after, "rms_change_rad": change}
    if after > (1 + _VACUUM_TOLERANCE) * before + 5 * np.sqrt(2 / y.size):
        result.parameters["vacuum"] = {"applied": False, **info}
        return result
    parameters = {**p, "deviance": after, "path": p["path"] + " + vacuum flattened",
                  "vacuum": {"applied": True, **info}}  # fmt: skip
    return dataclasses.replace(result, phase=corrected - corrected.mean(), induction=None, parameters=parameters)


def retrieve_phase(images, defocus_nm=None, *, pixel_nm: float | None = None, beam_energy_ev: float | None = None,
                   fit=("phase", "amplitude", "defocus"), regulariser: str = "spectral", weight="auto",
                   dose_e_per_pixel: float | None = None, initial=None, n_iter: int = 200, optimiser: str = "lbfgs",
                   uncertainty: bool = True, vacuum: str = "auto",
                   rng=0, progress: bool = True) -> PhaseRetrieval:  # fmt: skip
    """Fit the phase (and amplitude and microscope parameters) to Lorentz TEM images by automatic
    differentiation of the forward model.

    The loss is the Poisson deviance per pixel, ``(2/N) Σ [μ − y − y log(μ/y)]`` with the model counts
    ``μ = dose · I(φ, A, Δf, Cs, α, Δ)`` (:func:`~atomscount.ltem.forward.fresnel_image`), plus a prior.
    The deviance is about 1 when the model explains the counts to their Poisson noise.

    The default regulariser, ``"spectral"``, is a Gaussian prior on the phase's Fourier modes with the
    variance that the images themselves show (:func:`~atomscount.ltem.spectral.ctf_wiener`: modes the
    images show above their noise keep their power, the others are held at 0); the log-amplitude gets the
    same from its own transfer ``2 cos χ``, and is held at the start for one image (which cannot tell
    amplitude from phase). The phase starts at that Wiener estimate, and the fit corrects what the weak-phase
    model leaves out (strong phases, wrong defocus, coherence). The variables are whitened, each Fourier
    mode scaled by its linearised posterior standard deviation, so L-BFGS converges in tens of iterations;
    it stops early when the loss stalls (relative change < 1e-6 over 5 iterations).

    The spectral prior holds at 0 the modes the images do not show above their noise, and a sharp edge
    (a disk's rim: a phase step of several rad within a pixel) needs them. So the fit is checked against
    the counts: when its mean deviance exceeds the deviance that counts drawn from the model's own mean
    counts have (about 1) by more than 10 % plus five standard errors (``5 √(2/N)``, N counts), the prior
    cannot explain the data and the retrieval is run again with ``"tv"`` (below) from TIE, and the one
    with the lower deviance is returned; ``parameters["path"]`` says which. When TV is returned and the
    edge encloses an island of material (the higher phase inside, 5-95 % of the field), its slowest modes
    (below 8 cycles per field), which the images hardly see and TV takes from TIE, are set so that the
    vacuum round it holds a constant plus the stray field of the island's net moment (``vacuum="stray"``:
    the phases of the island uniformly magnetised along x and y, with free amplitudes; the magnetic phase
    in vacuum is source-free) or the constant alone (``vacuum="flat"``), as far as the data precision
    of each mode allows, kept when the deviance rises by at most 2 % plus five standard errors
    (``parameters["vacuum"]``; the path ends in ``" + vacuum flattened"``). The default, ``"auto"``, keeps
    the stray-field terms only when the vacuum asks for them: when their χ² statistic (2 degrees of
    freedom, under the vacuum's noise and the modes' data precision) exceeds its 1 % level, 9.21; else the
    vacuum is taken as flat (an island whose flux closes, a vortex). Every stage of every
    fit ends at its lowest loss (the last iterate, or an earlier one if the line search wandered).

    With ``"tv"`` or ``"smooth"`` the prior is ``weight × (R(φ) + R(log A))``, R the mean total variation
    or the mean squared gradient per pixel, from the TIE solution (three or more images with one in focus)
    or the single-image TIE of the most defocused image; ``weight="auto"`` follows Morozov's discrepancy principle by
    continuation: it starts where the regulariser's gradient is as large as the data's at the starting
    point (TIE), and divides the weight by 4 (up to 4 stages, ``n_iter / 4`` iterations each, each
    warm-started from the last) until the deviance falls to that of Poisson noise (1 per pixel,
    ``+ 1/(6 dose) + 0.01``), i.e. until the model fits the counts to their noise and no closer.

    Parameters
    ----------
    images : LTEMSeries or array_like, shape (k, ny, nx) or (ny, nx)
        The registered images, in counts (electrons per pixel) or normalised to the beam.
    defocus_nm : sequence of float, optional
        Defocus of each image [nm] (1 µm = 1000 nm), positive overfocus; required with an array, and
        overrides the series' when given with a series.
    pixel_nm : float, optional
        Pixel size [nm]; required with an array.
    beam_energy_ev : float, optional
        Beam energy [eV] for an array (default 300e3).
    fit : sequence of str
        What to fit, from :data:`FIT_NAMES`: ``phase``, ``amplitude``, ``defocus`` (one value per image),
        ``defocus_scale`` (one factor multiplying every image's defocus: the steps' ratios held, as when
        only the lens calibration is uncertain; not with ``defocus``), ``cs`` (spherical aberration),
        ``divergence`` (beam divergence semi-angle), ``defocus_spread``. What is not fitted stays at the
        series' value (the start for phase and amplitude). When the phase is not fitted, defocus (or its
        factor) starts at the best of a scan of the deviance over 0.7 to 1.3 times the given defocus
        (refined to 0.2 %, in float64) with the phase held: the deviance is flat in defocus for weak
        contrast.
    regulariser : {"spectral", "tv", "smooth"}
        The data-driven spectral prior (above), total variation or squared gradient.
    weight : "auto" or float
        ``"spectral"``: a floor [rad² per Fourier mode] added to the estimated spectrum, which frees the
        modes it holds at 0 (``"auto"``: none). ``"tv"``, ``"smooth"``: the regularisation weight
        [dimensionless, per pixel], or ``"auto"`` (the discrepancy rule above).
    dose_e_per_pixel : float, optional
        Electrons per pixel of the beam, when the images are normalised; default: each image's mean for
        counts (integers); for other images the spectral prior measures it from their noise at the highest
        frequencies, ``"tv"`` and ``"smooth"`` take the mean.
    initial : PhaseRetrieval or array_like, optional
        Starting phase [rad] (and amplitude), instead of TIE.
    n_iter : int
        L-BFGS iterations in all.
    optimiser : {"lbfgs", "adam"}
        optax's L-BFGS with a zoom line search (accurate; about 4 s to compile), or Adam with a
        step of 0.05 (rad, or the fitted variable's unit) decaying to a tenth by a cosine (cheap steps; for
        many iterations or quick looks).
    uncertainty : bool
        Estimate the phase's standard uncertainty from the Fisher information of the Poisson counts.
    vacuum : {"auto", "stray", "flat", "none"}
        After the TV fall-back, the model of the vacuum round an island that sets its slowest modes:
        ``"stray"`` or ``"flat"`` as the test of the stray-field terms picks (default), a constant plus the
        stray field of a net moment (any island), a constant alone (assumes the island's flux closes: a
        vortex or a flux-closure state), or no correction.
    rng : int or numpy.random.Generator
        Seed of the random probes of the uncertainty.
    progress : bool
        A progress bar over iterations.

    Returns
    -------
    PhaseRetrieval
        ``method="ad"``; ``parameters`` holds the fitted or used ``defocus_nm`` (list), ``cs_nm``,
        ``divergence_rad``, ``defocus_spread_nm``, ``weight``, ``regulariser``, ``deviance`` (mean per count),
        ``expected_deviance`` (of counts drawn from the fitted model), ``start`` and ``path`` (``"spectral"``,
        ``"tv"``, ``"smooth"``, ``"tv (spectral prior inadequate)"`` with ``spectral_deviance``, that
        followed by ``" + vacuum flattened"``, or ``"spectral (tv tried, fitted worse)"``) and, after the
        TV fall-back, ``vacuum`` (``"no island found"``, ``"not asked"`` or a dict: ``asked``, ``model`` (the
        one used), ``applied``, ``deviance_before``, ``deviance_after``, ``rms_change_rad`` and, unless
        ``"flat"`` was asked, ``stray_statistic``, ``stray_threshold``, ``stray_amplitudes``); on the
        spectral path ``ray``, the coherent test of a straight feature (a domain wall) in the prior
        (``kept``, ``statistic``, ``threshold``, ``p_value`` and the ray's ``direction``, ``slope``, ``modes``);
        ``uncertainty`` [rad] is ``1/√F_ii``, the diagonal of the Fisher information estimated with 16
        random probes: the spread of one pixel with the others held, a lower bound on its marginal
        uncertainty (it leaves out the regulariser and the correlations between pixels).

    Raises
    ------
    ValueError
        Naming ``images``, ``defocus_nm``, ``pixel_nm``, ``fit``, ``regulariser``, ``vacuum``, ``weight``, ``n_iter``
        or ``initial`` and the bad value.

    Examples
    --------
    >>> from atomscount.ltem import retrieve_phase, simulate_series, vortex_disk
    >>> sample = vortex_disk(shape=(64, 64), radius_nm=45.0)
    >>> series = simulate_series(sample, [-2e4, 0.0, 2e4], dose_e_per_pixel=100, rng=0)  # defocus ±20 µm
    >>> result = retrieve_phase(series, n_iter=20, optimiser="adam", progress=False)
    >>> result.phase.shape
    (64, 64)
    """
    import jax
    from tqdm.auto import tqdm

    series = _as_series(images, defocus_nm, pixel_nm, beam_energy_ev)
    fit = (fit,) if isinstance(fit, str) else tuple(fit)
    for name in fit:
        check_choice(name, "fit", FIT_NAMES)
    if not fit:
        raise ValueError(f"fit must name at least one of {list(FIT_NAMES)}, got {fit!r}")
    if "defocus" in fit and "defocus_scale" in fit:
        raise ValueError(f"fit must not name both 'defocus' and 'defocus_scale' (one defocus per image, or one "
                         f"factor for all), got {fit!r}")  # fmt: skip
    check_choice(regulariser, "regulariser", _REGULARISERS)
    check_choice(vacuum, "vacuum", _VACUUM_MODELS)
    if isinstance(weight, str):
        check_choice(weight, "weight", ("auto",))
    elif isinstance(weight, bool) or not np.isfinite(float(weight)) or float(weight) < 0:
        raise ValueError(f"weight must be 'auto' or a number >= 0, got {weight!r}")
    n_iter = check_integer(n_iter, "n_iter", low=1)
    check_choice(optimiser, "optimiser", _OPTIMISERS)
    uncertainty = check_bool(uncertainty, "uncertainty")
    progress = check_bool(progress, "progress")
    seed = int(check_rng(rng).integers(2**31))
    means = series.images.mean(axis=(1, 2))
    if np.any(means <= 0):
        raise ValueError(f"images must have a positive mean, got means {means.tolist()}")
    if dose_e_per_pixel is not None:
        from .forward import _positive

        _positive(dose_e_per_pixel, "dose_e_per_pixel")
    from .spectral import _noise_dose, _spectral_terms

    spectral = regulariser == "spectral"
    if np.all(series.defoci_nm == 0):
        raise ValueError(f"defocus_nm must not be all zero (an in-focus image has no phase contrast), "
                         f"got {series.defoci_nm.tolist()}")  # fmt: skip
    # electrons per pixel: the given dose, the mean of counts, else (spectral) measured from the images' noise
    # or (tv, smooth) their mean
    dose = _noise_dose(series.images, dose_e_per_pixel) if spectral or dose_e_per_pixel is not None else means
    is_counts = bool(np.all(series.images == np.round(series.images)))
    noisy = spectral or is_counts or dose_e_per_pixel is not None
    counts = series
    if dose_e_per_pixel is not None or (spectral and not is_counts):
        counts = dataclasses.replace(series, images=series.images / means[:, None, None] * dose[:, None, None])
    terms = _spectral_terms(series, dose) if spectral else None
    if spectral and initial is None:
        phase0, amp0, start_method = terms["phase"], np.ones(series.shape), "wiener"
    else:
        phase0, amp0, start_method = _start(series, initial)
    # JAX's default float (float32 unless the user enabled x64); NumPy arrays, since each eager JAX
    # operation would be compiled on its own
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    amp0 = np.clip(amp0, 1e-3, None)
    variables = {"phase": phase0.astype(dtype), "log_amplitude": np.log(amp0).astype(dtype),
                 "defocus": np.zeros(len(series), dtype), "defocus_scale": np.zeros((), dtype),
                 "cs": np.zeros((), dtype),
                 "divergence": np.zeros((), dtype), "defocus_spread": np.zeros((), dtype)}  # fmt: skip
    scales = {"defocus": float(max(np.abs(series.defoci_nm).max(), 1e3)), "cs": float(max(series.cs_nm, 1e6)),
              **_COHERENCE_SCALE}  # fmt: skip
    # with the phase held, a coarse scan first (the deviance is flat in defocus); with the phase fitted too the
    # start phase would bias it (a weak Wiener phase asks for a larger defocus), so the fit starts at the given one
    if ("defocus" in fit or "defocus_scale" in fit) and "phase" not in fit:
        common = "defocus_scale" in fit
        factors = _scan_defocus(series, counts.images, dose, phase0, amp0, common=common)
        if common:
            variables["defocus_scale"] = np.asarray(factors[0] - 1.0, dtype)
        else:
            variables["defocus"] = (series.defoci_nm * (factors - 1.0) / scales["defocus"]).astype(dtype)
    key = {"amplitude": "log_amplitude"}
    free = {key.get(n, n): variables[key.get(n, n)] for n in fit}
    fixed = {k: v for k, v in variables.items() if k not in free}
    loss, deviance, model_images = _objective(counts, dose, fixed, scales, regulariser)
    deviance_jit = jax.jit(deviance)
    # the discrepancy rule: stop at the first weight (or floor) where the mean deviance is that of Poisson noise
    # (1 + 1/(6 dose) per pixel, + 1 %)
    target = 1.01 + 1.0 / (6.0 * float(np.min(dose)))
    if spectral:
        loss, to_pixels = _spectral_objective(deviance, terms, len(series))
        to_pixels_jit = jax.jit(to_pixels)
        # "auto": the spectrum as estimated (no floor); the prior has no free weight
        weights = [0.0] if weight == "auto" else [float(weight)]
        aux = {"floor": np.asarray(weights[0], dtype), "phase": variables["phase"],
               "log_amplitude": variables["log_amplitude"], "log_amplitude0": variables["log_amplitude"]}  # fmt: skip
        free = {k: (np.zeros_like(v) if k in ("phase", "log_amplitude") else v) for k, v in free.items()}
    elif weight == "auto":
        misfit = float(deviance_jit(free))
        start_reg = _regulariser_numpy(regulariser, phase0) + _regulariser_numpy(regulariser, np.log(amp0))
        # a flat start has no regulariser to compare with: then one unit of each
        w0 = misfit / start_reg if start_reg > 1e-12 else 1.0
        weights = [w0 / 4.0**j for j in range(_STAGES)]
    else:
        weights = [float(weight)]
    per_stage = [n_iter // len(weights) + (1 if j < n_iter % len(weights) else 0) for j in range(len(weights))]
    history = []
    params = free
    used = weights[0]
    init, step = _optimiser(optimiser, loss, max(per_stage))  # one compilation for every stage
    loss = jax.jit(loss)
    with tqdm(total=n_iter, desc="ltem retrieve", unit="iter", disable=not progress) as bar:
        for w, n in zip(weights, per_stage, strict=True):
            if n == 0:
                break
            used = w
            if spectral:  # rebase: the white variables restart at 0 on the last stage's maps
                pix = to_pixels_jit(params, aux)
                aux = {**aux, "floor": np.asarray(w, dtype), **{k: pix[k] for k in ("phase", "log_amplitude")
                                                                 if k in params}}  # fmt: skip
                params = {k: (jax.numpy.zeros_like(v) if k in ("phase", "log_amplitude") else v)
                          for k, v in params.items()}  # fmt: skip
                arg = aux
            else:
                arg = np.asarray(w, dtype)
            state = init(params)
            best = (np.inf, params)  # the lowest loss of the stage and the iterate it was taken at
            for _ in range(n):
                before = params
                params, state, value = step(params, state, arg)
                history.append(float(value))
                bar.update(1)
                if np.isfinite(history[-1]) and history[-1] < best[0]:
                    best = (history[-1], before)
                if optimiser == "lbfgs" and len(history) > _STALL:
                    if history[-_STALL - 1] - history[-1] < _STALL_TOL * abs(history[-1]):
                        break
            last = float(loss(params, arg))
            if not (np.isfinite(last) and last <= best[0]):  # never end a stage above its best iterate
                params = best[1]
            current = to_pixels_jit(params, aux) if spectral else params
            # the rule needs counts; normalised images without a dose are taken as noise-free (tv, smooth)
            if weight == "auto" and noisy and float(deviance_jit(current)) <= target:
                break
    if spectral:
        params = to_pixels_jit(params, aux)
    v = {k: np.asarray(x, dtype=np.float64) for k, x in {**fixed, **params}.items()}
    phase = v["phase"]
    amplitude = np.exp(v["log_amplitude"])
    p = {"defocus_nm": series.defoci_nm * (1.0 + v["defocus_scale"]) + scales["defocus"] * v["defocus"],
         **{f"{n}_{u}": abs(float(getattr(series, f"{n}_{u}")) + scales[n] * float(v[n]))
            for n, u in (("cs", "nm"), ("divergence", "rad"), ("defocus_spread", "nm"))}}  # fmt: skip
    final_deviance = float(deviance_jit(params))
    expected = _expected_deviance(jax.jit(model_images), {**fixed, **params}, dose, seed)
    parameters = {"defocus_nm": np.asarray(p["defocus_nm"], dtype=np.float64).tolist(),
                  "cs_nm": float(p["cs_nm"]), "divergence_rad": float(p["divergence_rad"]),
                  "defocus_spread_nm": float(p["defocus_spread_nm"]),
                  "defocus_scale": 1.0 + float(v["defocus_scale"]), "weight": float(used),
                  "regulariser": regulariser, "deviance": final_deviance, "expected_deviance": expected,
                  "start": start_method, "fit": list(fit)}  # fmt: skip
    provenance = {"n_images": len(series), "dose_e_per_pixel": np.asarray(dose, dtype=float).tolist(),
                  "weight_rule": "discrepancy" if weight == "auto" else "given"}  # fmt: skip
    parameters["path"] = regulariser
    if spectral:  # the coherent ray test of a straight feature (spectral._spectral_terms, _rays)
        parameters["ray"] = dict(terms["ray"])
    if (
        spectral
        and "phase" in fit
        and noisy
        and final_deviance > (1 + _INADEQUATE) * expected + 5 * np.sqrt(2 / series.images.size)
    ):
        # the spectral prior cannot explain the counts (a sharp edge needs the modes it holds at 0): TV from
        # TIE (or the given start), kept when it explains them better
        given = None if is_counts and dose_e_per_pixel is None else float(np.mean(dose))
        alt = retrieve_phase(counts, fit=fit, regulariser="tv", dose_e_per_pixel=given, initial=initial,
                             n_iter=n_iter, optimiser=optimiser, uncertainty=uncertainty, rng=seed,
                             progress=progress)  # fmt: skip
        if alt.parameters["deviance"] < final_deviance:
            alt.parameters.update(path="tv (spectral prior inadequate)", spectral_deviance=final_deviance)
            return _vacuum_corrected(alt, counts, dose, terms["precision"], model=vacuum)
        parameters["path"] = "spectral (tv tried, fitted worse)"
    sigma = None
    if uncertainty:
        sigma = _fisher_uncertainty(model_images, {**fixed, **params}, dose, seed)
    if "phase" in fit and np.ptp(phase) < 1e-9:  # an empty result is never silent
        warnings.warn(f"retrieve_phase: no spatial frequency of the images rises above their noise (dose "
                      f"{float(np.mean(dose)):.3g} e/px, {len(series)} image(s)), so the retrieved phase is zero "
                      "everywhere; more dose, more images at other defocus values, or a regulariser given by "
                      "hand (regulariser='tv', weight=...) would be needed", stacklevel=2)  # fmt: skip
    return PhaseRetrieval(phase=phase - phase.mean(), amplitude=amplitude, pixel_nm=series.pixel_nm,
                          parameters=parameters, loss_history=np.asarray(history), method="ad",
                          uncertainty=sigma, provenance=provenance)  # fmt: skip
