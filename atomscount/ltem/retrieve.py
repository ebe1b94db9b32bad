"""Differentiable phase retrieval: the exit-wave phase (and amplitude, and microscope parameters) fitted to
one or more Lorentz TEM images through the forward model :func:`~atomscount.ltem.forward.fresnel_image`.

The objective is the Poisson deviance of the counts plus a regulariser (total variation or smoothness of
the phase and of the log-amplitude), minimised with optax's L-BFGS from the TIE solution (Zhou, Cherukara
and Phatak, npj Comput. Mater. 7, 141 (2021), https://doi.org/10.1038/s41524-021-00600-x).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._checks import check_bool, check_choice, check_integer, check_rng
from .result import LTEMSeries, PhaseRetrieval

__all__ = ["retrieve_phase", "FIT_NAMES"]

#: What :func:`retrieve_phase` can fit.
FIT_NAMES = ("phase", "amplitude", "defocus", "cs", "divergence", "defocus_spread")
_REGULARISERS = ("tv", "smooth")
_TV_EPS = 1e-3  # [rad per pixel]: below this a phase step is treated as smooth (keeps TV differentiable)
_STAGES = 4  # weights tried by the discrepancy rule, each a quarter of the one before
_PROBES = 16  # random probes of the Fisher information's diagonal
_OPTIMISERS = ("lbfgs", "adam")
_ADAM_STEP = 0.05
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
            "defocus_nm": jnp.asarray(series.defoci_nm) + scales["defocus"] * v["defocus"],
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
    # y log y, with 0 log 0 = 0: the constant that makes the deviance zero for a perfect model (in NumPy:
    # eager JAX would compile each operation)
    ylogy = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0)

    def deviance(free):
        mu = d * jnp.clip(images(free), 1e-6, None)
        return 2.0 * jnp.mean(mu - counts - counts * jnp.log(mu) + ylogy)

    def loss(free, weight):
        v = {**fixed, **free}
        return deviance(free) + weight * (reg(v["phase"]) + reg(v["log_amplitude"]))

    return loss, deviance, images


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


def retrieve_phase(images, defocus_nm=None, *, pixel_nm: float | None = None, beam_energy_ev: float | None = None,
                   fit=("phase", "amplitude", "defocus"), regulariser: str = "tv", weight="auto",
                   dose_e_per_pixel: float | None = None, initial=None, n_iter: int = 200, optimiser: str = "lbfgs",
                   uncertainty: bool = True,
                   rng=0, progress: bool = True) -> PhaseRetrieval:  # fmt: skip
    """Fit the phase (and amplitude and microscope parameters) to Lorentz TEM images by automatic
    differentiation of the forward model.

    The loss is the Poisson deviance per pixel, ``(2/N) Σ [μ − y − y log(μ/y)]`` with the model counts
    ``μ = dose · I(φ, A, Δf, Cs, α, Δ)`` (:func:`~atomscount.ltem.forward.fresnel_image`), plus ``weight ×
    (R(φ) + R(log A))`` where R is the mean total variation (``"tv"``) or the mean squared gradient
    (``"smooth"``) per pixel. The deviance is about 1 when the model explains the counts to their Poisson
    noise. It is minimised by L-BFGS (optax) from the TIE solution (three or more images with one in focus)
    or the single-image TIE of the most defocused image.

    ``weight="auto"`` follows Morozov's discrepancy principle by continuation: it starts where the
    regulariser's gradient is as large as the data's at the starting point, and divides the weight by 4
    (up to 4 stages, ``n_iter / 4`` iterations each, each warm-started from the last) until the deviance
    falls to 1, i.e. until the model fits the counts to their noise and no closer.

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
        ``cs`` (spherical aberration), ``divergence`` (beam divergence semi-angle), ``defocus_spread``.
        What is not fitted stays at the series' value (the start for phase and amplitude).
    regulariser : {"tv", "smooth"}
        Total variation (keeps domain walls sharp) or squared gradient.
    weight : "auto" or float
        Regularisation weight [dimensionless, per pixel], or ``"auto"`` (the discrepancy rule above).
    dose_e_per_pixel : float, optional
        Electrons per pixel of the beam, when the images are normalised; default: each image's mean
        (right for images in counts).
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
    rng : int or numpy.random.Generator
        Seed of the random probes of the uncertainty.
    progress : bool
        A progress bar over iterations.

    Returns
    -------
    PhaseRetrieval
        ``method="ad"``; ``parameters`` holds the fitted or used ``defocus_nm`` (list), ``cs_nm``,
        ``divergence_rad``, ``defocus_spread_nm``, ``weight``, ``regulariser``, ``deviance`` and ``start``;
        ``uncertainty`` [rad] is ``1/√F_ii``, the diagonal of the Fisher information estimated with 16
        random probes: the spread of one pixel with the others held, a lower bound on its marginal
        uncertainty (it leaves out the regulariser and the correlations between pixels).

    Raises
    ------
    ValueError
        Naming ``images``, ``defocus_nm``, ``pixel_nm``, ``fit``, ``regulariser``, ``weight``, ``n_iter``
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
    check_choice(regulariser, "regulariser", _REGULARISERS)
    if isinstance(weight, str):
        check_choice(weight, "weight", ("auto",))
    elif isinstance(weight, bool) or not np.isfinite(float(weight)) or float(weight) < 0:
        raise ValueError(f"weight must be 'auto' or a number >= 0, got {weight!r}")
    n_iter = check_integer(n_iter, "n_iter", low=1)
    check_choice(optimiser, "optimiser", _OPTIMISERS)
    uncertainty = check_bool(uncertainty, "uncertainty")
    progress = check_bool(progress, "progress")
    seed = int(check_rng(rng).integers(2**31))
    if dose_e_per_pixel is None:
        dose = series.images.mean(axis=(1, 2))
        if np.any(dose <= 0):
            raise ValueError(f"images must have a positive mean (counts), got means {dose.tolist()}")
        counts = series
        is_counts = bool(np.all(series.images == np.round(series.images)))
    else:
        from .forward import _positive

        dose = np.full(len(series), _positive(dose_e_per_pixel, "dose_e_per_pixel"))
        counts = dataclasses.replace(series, images=series.images * dose[:, None, None])
        is_counts = True

    phase0, amp0, start_method = _start(series, initial)
    # JAX's default float (float32 unless the user enabled x64); NumPy arrays, since each eager JAX
    # operation would be compiled on its own
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    amp0 = np.clip(amp0, 1e-3, None)
    variables = {"phase": phase0.astype(dtype), "log_amplitude": np.log(amp0).astype(dtype),
                 "defocus": np.zeros(len(series), dtype), "cs": np.zeros((), dtype),
                 "divergence": np.zeros((), dtype), "defocus_spread": np.zeros((), dtype)}  # fmt: skip
    key = {"amplitude": "log_amplitude"}
    free = {key.get(n, n): variables[key.get(n, n)] for n in fit}
    fixed = {k: v for k, v in variables.items() if k not in free}
    scales = {"defocus": float(max(np.abs(series.defoci_nm).max(), 1e3)), "cs": float(max(series.cs_nm, 1e6)),
              **_COHERENCE_SCALE}  # fmt: skip
    loss, deviance, model_images = _objective(counts, dose, fixed, scales, regulariser)

    deviance_jit = jax.jit(deviance)
    if weight == "auto":
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
    with tqdm(total=n_iter, desc="ltem retrieve", unit="iter", disable=not progress) as bar:
        for w, n in zip(weights, per_stage, strict=True):
            if n == 0:
                break
            used = w
            state = init(params)
            wj = np.asarray(w, dtype)
            for _ in range(n):
                params, state, value = step(params, state, wj)
                history.append(float(value))
                bar.update(1)
            # the discrepancy rule needs counts; normalised images without a dose are taken as noise-free
            if weight == "auto" and is_counts and float(deviance_jit(params)) <= 1.0:
                break
    v = {k: np.asarray(x, dtype=np.float64) for k, x in {**fixed, **params}.items()}
    phase = v["phase"]
    amplitude = np.exp(v["log_amplitude"])
    p = {"defocus_nm": series.defoci_nm + scales["defocus"] * v["defocus"],
         **{f"{n}_{u}": abs(float(getattr(series, f"{n}_{u}")) + scales[n] * float(v[n]))
            for n, u in (("cs", "nm"), ("divergence", "rad"), ("defocus_spread", "nm"))}}  # fmt: skip
    sigma = None
    if uncertainty:
        sigma = _fisher_uncertainty(model_images, {**fixed, **params}, dose, seed)
    parameters = {"defocus_nm": np.asarray(p["defocus_nm"], dtype=np.float64).tolist(),
                  "cs_nm": float(p["cs_nm"]), "divergence_rad": float(p["divergence_rad"]),
                  "defocus_spread_nm": float(p["defocus_spread_nm"]), "weight": float(used),
                  "regulariser": regulariser, "deviance": float(deviance_jit(params)), "start": start_method,
                  "fit": list(fit)}  # fmt: skip
    provenance = {"n_images": len(series), "dose_e_per_pixel": np.asarray(dose, dtype=float).tolist(),
                  "weight_rule": "discrepancy" if weight == "auto" else "given"}  # fmt: skip
    return PhaseRetrieval(phase=phase - phase.mean(), amplitude=amplitude, pixel_nm=series.pixel_nm,
                          parameters=parameters, loss_history=np.asarray(history), method="ad",
                          uncertainty=sigma, provenance=provenance)  # fmt: skip
