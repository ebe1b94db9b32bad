"""Transport-of-intensity (TIE) phase retrieval with a Tikhonov filter, and single-image TIE."""

from __future__ import annotations

import numpy as np

from .forward import wavelength_nm
from .result import LTEMSeries, PhaseRetrieval, _stack_images

__all__ = ["single_image_tie", "tie"]


class _Spectral:
    """Derivatives and the Tikhonov-filtered inverse Laplacian on a (mirror-extended) grid, by real FFTs."""

    def __init__(self, shape, pixel_nm: float, q_per_nm: float):
        ny, nx = shape
        self.shape = (ny, nx)
        self.ky, self.kx = np.meshgrid(np.fft.fftfreq(ny, pixel_nm), np.fft.rfftfreq(nx, pixel_nm), indexing="ij")
        k2 = self.kx**2 + self.ky**2
        k2[0, 0] = 1.0
        # -1/(4π²k²) with the Tikhonov filter k²/(k² + q²)²: the same at k >> q, 0 at k = 0
        self.inv_lap = -k2 / (4 * np.pi**2 * (k2 + q_per_nm**2) ** 2)
        self.inv_lap[0, 0] = 0.0

    def forward(self, f):
        from scipy import fft

        return fft.rfft2(f)

    def back(self, fk):
        from scipy import fft

        return fft.irfft2(fk, s=self.shape)

    def solve(self, f):
        """Filtered ∇⁻² f."""
        return self.back(self.forward(f) * self.inv_lap)

    def grad_of_solution(self, f):
        """∇ of the filtered ∇⁻² f."""
        fk = self.forward(f) * self.inv_lap
        return self.back(2j * np.pi * self.kx * fk), self.back(2j * np.pi * self.ky * fk)

    def solve_divergence(self, vx, vy):
        """Filtered ∇⁻² ∇·(vx, vy)."""
        div = 2j * np.pi * (self.kx * self.forward(vx) + self.ky * self.forward(vy))
        return self.back(div * self.inv_lap)


def _mirror(a, on: bool):
    """The map mirrored into a 2x larger periodic one (no edge jumps for the FFT), or itself."""
    if not on:
        return a
    top = np.concatenate([a, a[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


def _default_q(shape, pixel_nm: float, tikhonov) -> float:
    if tikhonov is None:
        return 0.05 / (max(shape) * pixel_nm)
    q = float(tikhonov)
    if not (np.isfinite(q) and q >= 0):
        raise ValueError(f"tikhonov must be a finite frequency >= 0 [1/nm], got {tikhonov!r}")
    return q


def tie(series: LTEMSeries, *, tikhonov: float | None = None, symmetrise: bool = False) -> PhaseRetrieval:
    """Phase from a through-focus series by the transport-of-intensity equation.

    ``∇·(I₀∇φ) = −(2π/λ) ∂I/∂z``, solved in two Poisson steps (``∇ψ = I₀∇φ``)
    with the in-focus image as I₀; ∂I/∂z is the least-squares slope of the
    images (each normalised to its mean) against defocus. The inverse Laplacian
    ``−1/(4π²k²)`` is replaced by ``−k²/(4π²(k² + q²)²)`` (Tikhonov), which keeps
    frequencies above q and suppresses the slow ones TIE's noise lives in. Small
    defocus only: the finite difference loses frequencies where ``πλΔf k²`` is not small.

    Parameters
    ----------
    series : LTEMSeries
        At least two distinct defoci, one of them 0 (the in-focus image).
    tikhonov : float, optional
        The filter frequency q [1/nm]; default 0.05 cycles over the field of view
        (almost no filtering; raise it for noisy images).
    symmetrise : bool
        Mirror the maps into a 2x larger periodic field first, so that the
        edges of a real image do not wrap; this imposes a zero phase gradient
        across the edges (default False: the images are taken as periodic).

    Returns
    -------
    PhaseRetrieval
        Phase [rad] (mean 0), amplitude √I₀, method ``"tie"``.

    Raises
    ------
    ValueError
        If the defoci are all equal or there is no in-focus image.
    """
    if not isinstance(series, LTEMSeries):
        raise TypeError(f"series must be an LTEMSeries, got {type(series).__name__}")
    df = series.defoci_nm
    if np.ptp(df) <= 0:
        raise ValueError(f"series.defoci_nm must hold at least two different defoci for TIE, got {df.tolist()}")
    i0 = series.in_focus_index()
    if i0 is None:
        raise ValueError(f"series.defoci_nm has no in-focus image (defocus 0), which TIE needs as I0; got "
                         f"{df.tolist()} nm (use single_image_tie for one defocused image)")  # fmt: skip
    images = series.images / series.images.mean(axis=(1, 2), keepdims=True)
    d = df - df.mean()
    didz = np.tensordot(d, images - images.mean(axis=0), axes=1) / np.sum(d**2)  # [1/nm]
    intensity0 = np.clip(images[i0], 1e-3, None)
    q = _default_q(series.shape, series.pixel_nm, tikhonov)
    lam = wavelength_nm(series.beam_energy_ev)
    ny, nx = series.shape
    rhs = _mirror(-(2 * np.pi / lam) * didz, symmetrise)
    i0m = _mirror(intensity0, symmetrise)
    sp = _Spectral(rhs.shape, series.pixel_nm, q)
    gx, gy = sp.grad_of_solution(rhs)
    phase = sp.solve_divergence(gx / i0m, gy / i0m)[:ny, :nx]
    return PhaseRetrieval(phase - phase.mean(), np.sqrt(intensity0), series.pixel_nm, method="tie",
                          parameters={"defoci_nm": df.tolist(), "tikhonov_per_nm": q,
                                      "beam_energy_ev": series.beam_energy_ev},
                          provenance={"symmetrise": bool(symmetrise), **series.provenance})  # fmt: skip


def single_image_tie(image, defocus_nm: float | None = None, *, pixel_nm: float | None = None,
                     beam_energy_ev: float = 300e3, tikhonov: float | None = None,
                     symmetrise: bool = False) -> PhaseRetrieval:  # fmt: skip
    """Phase from one defocused image of a uniform film (single-image TIE, Chess et al. 2017).

    For a film of uniform thickness and amplitude the in-focus image is flat,
    so ``∂I/∂z ≈ (I/⟨I⟩ − 1)/Δf`` and ``φ = ∇⁻²[−(2π/λ) ∂I/∂z]`` with the
    Tikhonov filter of :func:`tie`. Thickness changes and edges show up as
    false magnetic phase.

    Parameters
    ----------
    image : array_like, shape (ny, nx), or LTEMSeries of one image
        The defocused image (any scale).
    defocus_nm : float
        Its defocus [nm] (1 µm = 1000 nm), not 0; taken from the series when one is given.
    pixel_nm : float
        Pixel size [nm]; taken from the series when one is given.
    beam_energy_ev : float
        Beam energy [eV].
    tikhonov : float, optional
        The filter frequency q [1/nm]; default 0.05 cycles over the field of view
        (almost no filtering; raise it for noisy images).
    symmetrise : bool
        Mirror the image into a 2x larger periodic field first (zero phase
        gradient across the edges; default False: periodic).

    Returns
    -------
    PhaseRetrieval
        Phase [rad] (mean 0), amplitude 1, method ``"sitie"``.
    """
    if isinstance(image, LTEMSeries):
        if len(image) != 1:
            raise ValueError(f"image must be one image; the series holds {len(image)} (use tie for a series)")
        defocus_nm = image.defoci_nm[0] if defocus_nm is None else defocus_nm
        pixel_nm = image.pixel_nm if pixel_nm is None else pixel_nm
        beam_energy_ev = image.beam_energy_ev
        image = image.images[0]
    img = _stack_images(np.asarray(image, dtype=np.float64))[0] if np.ndim(image) == 2 else None
    if img is None:
        raise ValueError(f"image must be one 2D image, got shape {np.shape(image)}")
    if defocus_nm is None or not np.isfinite(float(defocus_nm)) or float(defocus_nm) == 0:
        raise ValueError(f"defocus_nm must be a finite, non-zero defocus [nm] for single-image TIE, got {defocus_nm!r}")
    if pixel_nm is None or not (np.isfinite(float(pixel_nm)) and float(pixel_nm) > 0):
        raise ValueError(f"pixel_nm must be a finite number > 0, got {pixel_nm!r}")
    mean = img.mean()
    if not mean > 0:
        raise ValueError(f"image must have a positive mean intensity, got {mean!r}")
    px, df = float(pixel_nm), float(defocus_nm)
    q = _default_q(img.shape, px, tikhonov)
    lam = wavelength_nm(beam_energy_ev)
    rhs = _mirror(-(2 * np.pi / lam) * (img / mean - 1) / df, symmetrise)
    phase = _Spectral(rhs.shape, px, q).solve(rhs)[: img.shape[0], : img.shape[1]]
    return PhaseRetrieval(phase - phase.mean(), np.ones_like(phase), px, method="sitie",
                          parameters={"defocus_nm": df, "tikhonov_per_nm": q, "beam_energy_ev": float(beam_energy_ev)},
                          provenance={"symmetrise": bool(symmetrise)})  # fmt: skip
