"""Forward model of Lorentz TEM: the phase of a magnetic film and its Fresnel images.

Lengths in nm, magnetisation in A/m, beam energy in eV, potentials in V, phases
in rad. The imaging functions are written with ``jax.numpy``, so that they can
be differentiated with respect to the phase, amplitude, defocus, Cs and the
coherence parameters; they run in JAX's precision (float32 unless
``jax_enable_x64`` is set).
"""

from __future__ import annotations

import functools

import numpy as np

from .induction import _check_map_pair
from .result import LTEMSeries, _non_negative, _positive

__all__ = ["electrostatic_phase", "fresnel_image", "interaction_constant", "magnetic_phase", "simulate_series",
           "transfer_function", "wavelength_nm"]  # fmt: skip

_H = 6.62607015e-34  # Planck constant [J s]
_E = 1.602176634e-19  # elementary charge [C]
_M0 = 9.1093837015e-31  # electron rest mass [kg]
_C = 299792458.0  # speed of light [m/s]
_MU0 = 1.25663706212e-6  # vacuum permeability [T m / A]
_PHI0_T_NM2 = _H / (2 * _E) * 1e18  # flux quantum h/2e [T nm²]


def wavelength_nm(beam_energy_ev: float) -> float:
    """Relativistic electron wavelength [nm] for a beam energy [eV] (300e3 eV: 1.969e-3 nm)."""
    e = _positive(beam_energy_ev, "beam_energy_ev") * _E
    return _H / np.sqrt(2 * _M0 * e * (1 + e / (2 * _M0 * _C**2))) * 1e9


def interaction_constant(beam_energy_ev: float) -> float:
    """Interaction constant σ [rad / (V nm)] for a beam energy [eV] (300e3 eV: 6.526e-3).

    ``σ = (2π / λV) (m₀c² + eV) / (2m₀c² + eV)``, so that a film of mean inner
    potential V₀ [V] and thickness t [nm] shifts the phase by σ V₀ t.
    """
    v = _positive(beam_energy_ev, "beam_energy_ev")
    rest = _M0 * _C**2 / _E  # rest energy [eV]
    return 2 * np.pi / (wavelength_nm(v) * v) * (rest + v) / (2 * rest + v)


def _frequencies(shape, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return np.meshgrid(np.fft.fftfreq(ny, pixel_nm), np.fft.fftfreq(nx, pixel_nm), indexing="ij")


def magnetic_phase(mx, my, *, pixel_nm: float, thickness_nm, ms_a_per_m: float) -> np.ndarray:
    """Magnetic (Aharonov–Bohm) phase of a film with in-plane magnetisation, in Fourier space (Mansuripur 1991).

    For a film of thickness t magnetised in its plane (uniformly through t, beam
    along z), ``φ̂(k) = i (μ₀ Ms t / 2Φ₀) (k_y m̂_x − k_x m̂_y) / |k|²`` with
    Φ₀ = h/2e and k in cycles per nm; the k = 0 term (a constant) is zero. Only
    the divergence-free part of m gives a phase; m_z gives none at normal incidence.
    The map is taken as periodic: leave a margin of empty film (m = 0) around a
    finite object.

    Parameters
    ----------
    mx, my : array_like, shape (ny, nx)
        In-plane components of the unit magnetisation (``|m| <= 1``; 0 outside the film).
    pixel_nm : float
        Pixel size [nm].
    thickness_nm : float or array_like, shape (ny, nx)
        Film thickness [nm]; a map weights m by the local thickness.
    ms_a_per_m : float
        Saturation magnetisation [A/m] (e.g. 1.7e6 for Fe, 8e5 for permalloy).

    Returns
    -------
    ndarray, shape (ny, nx)
        Phase [rad]. :func:`~atomscount.ltem.induction.induction_map` inverts it: for a
        divergence-free m it gives back ``μ₀ Ms t m`` [T·nm].
    """
    mx, my = _check_map_pair(mx, my, ("mx", "my"))
    px = _positive(pixel_nm, "pixel_nm")
    t = np.asarray(thickness_nm, dtype=np.float64)
    if t.ndim not in (0, 2) or (t.ndim == 2 and t.shape != mx.shape):
        raise ValueError(f"thickness_nm must be a number or a map of shape {mx.shape}, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("thickness_nm must be finite and >= 0")
    ms = _non_negative(ms_a_per_m, "ms_a_per_m")
    ky, kx = _frequencies(mx.shape, px)
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    pre = _MU0 * ms / (2 * _PHI0_T_NM2)  # [1/nm per nm of thickness]: μ₀Ms in T, Φ₀ in T nm²
    fx, fy = np.fft.fft2(mx * t), np.fft.fft2(my * t)
    phi_k = 1j * pre * (ky * fx - kx * fy) / k2
    phi_k[0, 0] = 0.0
    return np.fft.ifft2(phi_k).real


def electrostatic_phase(thickness_map_nm, *, mean_inner_potential_v: float, beam_energy_ev: float) -> np.ndarray:
    """Electrostatic phase σ V₀ t [rad] of a film of thickness t [nm], mean inner potential V₀ [V], beam energy [eV]."""
    t = np.asarray(thickness_map_nm, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("thickness_map_nm must be finite and >= 0")
    v0 = float(mean_inner_potential_v)
    if not np.isfinite(v0):
        raise ValueError(f"mean_inner_potential_v must be finite, got {mean_inner_potential_v!r}")
    return interaction_constant(beam_energy_ev) * v0 * t


def _chi_and_envelope(k2, xp, wavelength, defocus_nm, cs_nm, divergence_rad, defocus_spread_nm):
    """Aberration phase χ(k) and the quasi-coherent envelope, in the array module ``xp``."""
    lam = wavelength
    chi = np.pi * lam * defocus_nm * k2 + 0.5 * np.pi * cs_nm * lam**3 * k2**2
    # spatial coherence (Gaussian divergence, semi-angle α): exp(-(πα/λ)² |∇_k χ / 2π|²)
    grad = lam * defocus_nm * xp.sqrt(k2) + cs_nm * lam**3 * k2 * xp.sqrt(k2)
    e_s = xp.exp(-((np.pi * divergence_rad / lam) ** 2) * grad**2)
    # temporal coherence (Gaussian defocus spread Δ, standard deviation): exp(-½ (πλΔ k²)²)
    e_t = xp.exp(-0.5 * (np.pi * lam * defocus_spread_nm * k2) ** 2)
    return chi, e_s * e_t


def transfer_function(shape, pixel_nm: float, *, defocus_nm: float, cs_nm: float = 0.0, beam_energy_ev: float,
                      divergence_rad: float = 0.0, defocus_spread_nm: float = 0.0) -> np.ndarray:  # fmt: skip
    """The microscope's transfer function ``exp(-iχ(k)) E_s(k) E_t(k)`` on the FFT grid.

    ``χ(k) = πλΔf k² + ½πC_sλ³k⁴`` (k in cycles per nm), ``E_s = exp(-(πα/λ)² (λΔf k + C_sλ³k³)²)``
    for a Gaussian beam divergence of semi-angle α, ``E_t = exp(-½(πλΔ k²)²)`` for a
    defocus spread Δ. A weak phase object φ gives the image contrast ``2 sin χ(k) φ̂(k)``
    (times the envelope): positive defocus (overfocus) makes a phase maximum bright,
    negative (underfocus) dark.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the images.
    pixel_nm : float
        Pixel size [nm].
    defocus_nm : float
        Defocus Δf [nm] (1 µm = 1000 nm); positive is overfocus.
    cs_nm : float
        Spherical aberration [nm] (1 mm = 1e6 nm).
    beam_energy_ev : float
        Beam energy [eV].
    divergence_rad : float
        Beam divergence semi-angle α [rad].
    defocus_spread_nm : float
        Defocus spread Δ [nm].

    Returns
    -------
    ndarray of complex, shape (ny, nx)
        In FFT order (zero frequency at [0, 0]).
    """
    ny, nx = (int(s) for s in shape)
    px = _positive(pixel_nm, "pixel_nm")
    ky, kx = _frequencies((ny, nx), px)
    chi, env = _chi_and_envelope(kx**2 + ky**2, np, wavelength_nm(beam_energy_ev), float(defocus_nm),
                                 _non_negative(cs_nm, "cs_nm"), _non_negative(divergence_rad, "divergence_rad"),
                                 _non_negative(defocus_spread_nm, "defocus_spread_nm"))  # fmt: skip
    return np.exp(-1j * chi) * env


@functools.cache
def _image_kernel():
    """The jitted image stack ``|F⁻¹[F[A e^{iφ}] e^{-iχ} E]|²`` (one compilation per shape, not one per operation)."""
    import jax
    import jax.numpy as jnp

    def kernel(phase, amp, k2, df, cs, alpha, delta, lam):
        chi, env = _chi_and_envelope(k2[None], jnp, lam, df[:, None, None], cs, alpha, delta)
        wave_k = jnp.fft.fft2(amp * jnp.exp(1j * phase))
        image_wave = jnp.fft.ifft2(wave_k[None] * jnp.exp(-1j * chi) * env)
        return jnp.real(image_wave) ** 2 + jnp.imag(image_wave) ** 2

    return jax.jit(kernel)


def fresnel_image(phase, amplitude=None, *, pixel_nm: float, defocus_nm, beam_energy_ev: float, cs_nm=0.0,
                  divergence_rad=0.0, defocus_spread_nm=0.0):  # fmt: skip
    """Fresnel (Lorentz TEM) image of an exit wave ``amplitude · exp(i phase)`` at a defocus.

    Written with ``jax.numpy``: differentiable (``jax.grad``) with respect to
    ``phase``, ``amplitude``, ``defocus_nm``, ``cs_nm``, ``divergence_rad`` and
    ``defocus_spread_nm``, and usable inside ``jax.jit`` (``pixel_nm`` and
    ``beam_energy_ev`` are plain numbers). The wave is taken as periodic.

    Parameters
    ----------
    phase : array_like, shape (ny, nx)
        Exit-wave phase [rad].
    amplitude : array_like, shape (ny, nx), optional
        Exit-wave amplitude (default 1).
    pixel_nm : float
        Pixel size [nm].
    defocus_nm : float or array_like, shape (k,)
        Defocus [nm] (1 µm = 1000 nm), positive overfocus; several give a stack.
    beam_energy_ev : float
        Beam energy [eV].
    cs_nm : float
        Spherical aberration [nm] (1 mm = 1e6 nm).
    divergence_rad : float
        Beam divergence semi-angle [rad].
    defocus_spread_nm : float
        Defocus spread [nm].

    Returns
    -------
    jax.Array, shape (ny, nx) or (k, ny, nx)
        Intensity relative to the incident beam (1 for vacuum); ``np.asarray`` turns it into numpy.
    """
    import jax.numpy as jnp

    phase = jnp.asarray(phase)
    if phase.ndim != 2:
        raise ValueError(f"phase must be a 2D map, got shape {phase.shape}")
    amp = jnp.ones_like(phase) if amplitude is None else jnp.asarray(amplitude)
    if amp.shape != phase.shape:
        raise ValueError(f"amplitude must have the phase's shape {phase.shape}, got {amp.shape}")
    px = _positive(pixel_nm, "pixel_nm")
    lam = wavelength_nm(beam_energy_ev)
    ky, kx = _frequencies(phase.shape, px)
    k2 = jnp.asarray(kx**2 + ky**2, dtype=phase.dtype if jnp.issubdtype(phase.dtype, jnp.floating) else None)
    df = jnp.asarray(defocus_nm)
    stack = df.ndim == 1
    intensity = _image_kernel()(phase, amp, k2, jnp.atleast_1d(df), cs_nm, divergence_rad, defocus_spread_nm, lam)
    return intensity if stack else intensity[0]


def _fresnel_numpy(phase, amplitude, *, pixel_nm, defoci_nm, beam_energy_ev, cs_nm=0.0, divergence_rad=0.0,
                   defocus_spread_nm=0.0) -> np.ndarray:  # fmt: skip
    """:func:`fresnel_image` in NumPy (float64), a stack of shape (k, ny, nx) for k defoci."""
    phase = np.asarray(phase, dtype=np.float64)
    amp = 1.0 if amplitude is None else np.asarray(amplitude, dtype=np.float64)
    wave = np.fft.fft2(amp * np.exp(1j * phase))
    out = []
    for df in np.atleast_1d(defoci_nm):
        h = transfer_function(phase.shape, pixel_nm, defocus_nm=float(df), cs_nm=cs_nm, beam_energy_ev=beam_energy_ev,
                              divergence_rad=divergence_rad, defocus_spread_nm=defocus_spread_nm)  # fmt: skip
        out.append(np.abs(np.fft.ifft2(wave * h)) ** 2)
    return np.stack(out)


def simulate_series(sample, defoci_nm, *, beam_energy_ev: float = 300e3, cs_nm: float = 0.0,
                    divergence_rad: float = 0.0, defocus_spread_nm: float = 0.0, dose_e_per_pixel: float | None = None,
                    rng=None) -> LTEMSeries:  # fmt: skip
    """Simulate a Lorentz TEM through-focus series of a magnetic sample.

    The phase is the magnetic phase (:func:`magnetic_phase`) plus the electrostatic
    phase (:func:`electrostatic_phase`) of the sample's thickness map; the
    amplitude is 1. Images are :func:`fresnel_image` at each defocus, with Poisson
    noise at ``dose_e_per_pixel`` electrons per pixel when given (then in counts).

    Parameters
    ----------
    sample : MagneticSample
        From :mod:`atomscount.ltem.samples` (mx, my, thickness map [nm], pixel [nm], Ms [A/m], V₀ [V]).
    defoci_nm : float or sequence of float
        Defocus of each image [nm] (1 µm = 1000 nm).
    beam_energy_ev, cs_nm, divergence_rad, defocus_spread_nm : float
        Microscope: beam energy [eV], spherical aberration [nm], divergence semi-angle [rad], defocus spread [nm].
    dose_e_per_pixel : float, optional
        Mean electrons per pixel; None for noise-free images relative to the beam (mean ≈ 1).
    rng : int or numpy.random.Generator, optional
        Seed or generator for the noise.

    Returns
    -------
    LTEMSeries
        The images and microscope; the true phase is ``sample.phase(beam_energy_ev=...)``.
    """
    from .._checks import check_rng

    defoci = np.atleast_1d(np.asarray(defoci_nm, dtype=np.float64))
    phase = sample.phase(beam_energy_ev=beam_energy_ev)
    # NumPy, float64: a simulation needs no gradient, and JAX would compile the model first
    images = _fresnel_numpy(phase, None, pixel_nm=sample.pixel_nm, defoci_nm=defoci, beam_energy_ev=beam_energy_ev,
                            cs_nm=cs_nm, divergence_rad=divergence_rad,
                            defocus_spread_nm=defocus_spread_nm)  # fmt: skip
    provenance = {"sample": sample.name, "dose_e_per_pixel": dose_e_per_pixel}
    if dose_e_per_pixel is not None:
        dose = _positive(dose_e_per_pixel, "dose_e_per_pixel")
        images = check_rng(rng).poisson(np.clip(images, 0, None) * dose).astype(np.float64)
    return LTEMSeries(images, defoci, pixel_nm=sample.pixel_nm, beam_energy_ev=beam_energy_ev, cs_nm=cs_nm,
                      divergence_rad=divergence_rad, defocus_spread_nm=defocus_spread_nm,
                      provenance=provenance)  # fmt: skip
