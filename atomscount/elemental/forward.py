"""Forward models of the elemental stage: the HAADF and EDXS tilt series of per-element densities.

Both start from per-element number densities [atoms/Å³] on a voxel grid and project
them with :func:`atomscount.tomo.operators.project_volume` (line integrals, so a
projected density is in atoms/Å²).

**HAADF** (:func:`haadf_model`, shared with the multimodal reconstruction): a pixel's
signal, as a fraction of the incident beam, is ``Σᵢ wᵢ · pᵢ^γ``, with ``pᵢ`` element
i's projected density [atoms/Å²] and ``wᵢ`` its per-atom cross-section [Å²] (for
γ = 1; in general [Å^(2γ)]). The power applies to the *projected* density, so that
γ = 1 is the linear model of Zhong et al. (2017) and γ < 1 the sub-linear growth of
the fused model of Schwartz et al. (2022), whose power acts on the projected maps.
The default weights follow ``0.0188 Å² (Z / 79)^1.7``, the Z-power law of
:func:`atomscount.tomo.element_strengths`.

**EDXS** (:func:`simulate_edxs`): the expected counts per pixel of element i's line are
``dose [e/Å²] × pixel area [Å²] × pᵢ [atoms/Å²] × σᵢ [Å²] × Ω / (4π)``, with σᵢ the
X-ray production cross-section of the line (:func:`xray_line`) and Ω the detector's
collection solid angle [sr], then Poisson noise. Absorption in the particle is neglected.

**Cross-sections** (:func:`xray_line`). X-ray production cross-section =
ionisation cross-section of the line's shell × fluorescence yield × the line's share of
the radiative transitions. The atomic data (edge and line energies, fluorescence
yields, radiative rates, Coster–Kronig probabilities) come from ``xraylib``
(Schoonjans et al., Spectrochim. Acta B 66, 776 (2011), doi:10.1016/j.sab.2011.09.011).
``xraylib`` has no electron-impact ionisation, so that comes from the relativistic
modified Bethe formula (Williams & Carter, *Transmission Electron Microscopy*, ch. 35;
Zaluzec 1984)::

    σ_s = 6.51e-20 cm² keV² · n_s b_s / (E_c T) · [ln(c_s T / E_c) − ln(1 − β²) − β²]

with ``T = m₀v²/2`` [keV] of the beam electron, ``E_c`` the subshell's edge [keV],
``n_s`` its electrons, ``b_s = 0.35`` (K) or ``0.25`` (L, M) and ``c_s = 1``. An L line
adds the vacancies that Coster–Kronig transitions bring from L1 and L2 to L3. Absolute
values are good to about 20–30 %; ratios between elements matter more for
reconstruction, and the multimodal fit does not depend on them being exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._checks import check_positive, check_real, check_rng

__all__ = ["XRayLine", "haadf_model", "default_haadf_weights", "simulate_edxs", "simulate_haadf", "xray_line"]

#: Line energies an EDXS detector records well [keV]: above the window's cut-off and below
#: where a silicon drift detector's efficiency falls.
LINE_RANGE_KEV = (0.2, 25.0)
#: Above this energy [keV] ``line="auto"`` takes the L line instead of K (Ag Kα 22.2 keV → Ag Lα).
AUTO_K_MAX_KEV = 20.0
#: Above this energy [keV] ``line="auto"`` takes the M line instead of L (for the actinides).
AUTO_L_MAX_KEV = 20.0

_ELECTRON_REST_KEV = 510.99895
_PI_E4_CM2_KEV2 = 6.51e-20
_CM2_TO_BARN = 1e24
_BARN_TO_A2 = 1e-8


@dataclasses.dataclass(frozen=True)
class XRayLine:
    """One characteristic X-ray line of an element, at one beam energy.

    Attributes
    ----------
    element : str
    line : str
        E.g. ``"Au_La"``, ``"Ag_La"``, ``"Si_Ka"``.
    energy_kev : float
        The line's energy [keV] (the strongest component's).
    cross_section_barn : float
        X-ray production cross-section [barn = 1e-8 Å²] per atom and beam electron:
        ionisation × fluorescence yield × the line's share of the shell's radiative
        transitions.
    beam_energy_ev : float
    """

    element: str
    line: str
    energy_kev: float
    cross_section_barn: float
    beam_energy_ev: float

    @property
    def cross_section_angstrom2(self) -> float:
        """The cross-section [Å²]."""
        return self.cross_section_barn * _BARN_TO_A2


def _bethe_barn(edge_kev: float, n_electrons: float, b: float, beam_energy_ev: float) -> float:
    """Relativistic modified Bethe ionisation cross-section [barn] of one subshell (c_s = 1)."""
    e0 = beam_energy_ev / 1e3
    if edge_kev <= 0 or edge_kev >= e0:
        return 0.0
    gamma = 1.0 + e0 / _ELECTRON_REST_KEV
    beta2 = 1.0 - 1.0 / gamma**2
    t = 0.5 * _ELECTRON_REST_KEV * beta2  # m0 v^2 / 2
    bracket = np.log(t / edge_kev) - np.log(1.0 - beta2) - beta2
    sigma_cm2 = _PI_E4_CM2_KEV2 * n_electrons * b / (edge_kev * t) * max(bracket, 0.0)
    return float(sigma_cm2 * _CM2_TO_BARN)


def _z(element) -> int:
    import xraylib

    if not isinstance(element, str):
        raise TypeError(f"element must be a chemical symbol (str), got {element!r}")
    try:
        z = int(xraylib.SymbolToAtomicNumber(element))
    except ValueError:
        z = 0
    if z <= 0:
        raise ValueError(f"element must be a chemical symbol such as 'Au', got {element!r}")
    return z


def _line_data(z: int, family: str, beam_energy_ev: float):
    """(energy [keV], cross-section [barn]) of the K, L or M alpha line of element z; (None, 0) if it has none."""
    import xraylib as xl

    if family == "Ka":
        lines, shell, n, b = (xl.KL3_LINE, xl.KL2_LINE), xl.K_SHELL, 2, 0.35
    elif family == "La":
        lines, shell, n, b = (xl.L3M5_LINE, xl.L3M4_LINE), xl.L3_SHELL, 4, 0.25
    else:
        lines, shell, n, b = (xl.M5N7_LINE, xl.M5N6_LINE), xl.M5_SHELL, 6, 0.25
    try:
        energy = float(xl.LineEnergy(z, lines[0]))
        rate = sum(float(xl.RadRate(z, ln)) for ln in lines)
        omega = float(xl.FluorYield(z, shell))
        edge = float(xl.EdgeEnergy(z, shell))
    except ValueError:  # xraylib has no data: the element has no such line
        return None, 0.0
    if energy <= 0 or rate <= 0 or omega <= 0:
        return None, 0.0
    vacancies = _bethe_barn(edge, n, b, beam_energy_ev)
    if family == "La":  # Coster-Kronig transfers L1 -> L3, L2 -> L3 (and L1 -> L2 -> L3)
        try:
            s1 = _bethe_barn(float(xl.EdgeEnergy(z, xl.L1_SHELL)), 2, b, beam_energy_ev)
            s2 = _bethe_barn(float(xl.EdgeEnergy(z, xl.L2_SHELL)), 2, b, beam_energy_ev)
            f12, f13, f23 = (float(xl.CosKronTransProb(z, t)) for t in (xl.FL12_TRANS, xl.FL13_TRANS, xl.FL23_TRANS))
            vacancies += s2 * f23 + s1 * (f13 + f12 * f23)
        except ValueError:
            pass
    return energy, vacancies * omega * rate


def xray_line(element: str, *, beam_energy_ev: float = 200e3, line: str = "auto") -> XRayLine:
    """The characteristic line an EDXS map of ``element`` records, and its cross-section.

    Parameters
    ----------
    element : str
        Chemical symbol.
    beam_energy_ev : float
        Beam energy [eV].
    line : {"auto", "Ka", "La", "Ma"}
        The line family: Kα (KL3 + KL2), Lα (L3M5 + L3M4) or Mα (M5N7 + M5N6). "auto"
        takes Kα when it lies below 20 keV, else Lα below 20 keV, else Mα.

    Returns
    -------
    XRayLine

    Raises
    ------
    ValueError
        For an unknown element or line, or a line outside 0.2–25 keV or not excited by
        the beam ("element ... has no X-ray line in range").

    Examples
    --------
    >>> au = xray_line("Au")
    >>> au.line, round(au.energy_kev, 2)
    ('Au_La', 9.71)
    """
    beam = check_positive(beam_energy_ev, "beam_energy_ev")
    if line not in ("auto", "Ka", "La", "Ma"):
        raise ValueError(f"line must be 'auto', 'Ka', 'La' or 'Ma', got {line!r}")
    z = _z(element)
    lo, hi = LINE_RANGE_KEV
    families = ("Ka", "La", "Ma") if line == "auto" else (line,)
    found = []
    for fam in families:
        energy, sigma = _line_data(z, fam, beam)
        if energy is None or not (lo <= energy <= hi) or sigma <= 0:
            continue
        found.append((fam, energy, sigma))
        if line != "auto" or energy <= (AUTO_K_MAX_KEV if fam == "Ka" else AUTO_L_MAX_KEV):
            break
    if line == "auto" and found:  # the first family below its limit, else the lowest-energy one in range
        fam, energy, sigma = next((f for f in found if f[1] <= AUTO_K_MAX_KEV), found[-1])
    elif found:
        fam, energy, sigma = found[0]
    else:
        which = "no K, L or M line" if line == "auto" else f"no {line} line"
        raise ValueError(f"element {element!r} has {which} in range ({lo:g}–{hi:g} keV, excited by a "
                         f"{beam / 1e3:g} keV beam)")  # fmt: skip
    return XRayLine(element, f"{element}_{fam}", energy, sigma, beam)


def default_haadf_weights(elements) -> dict[str, float]:
    """Per-atom HAADF cross-sections [Å²] of ``elements``: ``0.0188 Å² (Z / 79)^1.7``."""
    from ..tomo.simulate import element_strengths

    elements = [str(e) for e in elements]
    for e in elements:
        _z(e)
    return dict(zip(elements, (float(w) for w in element_strengths(elements)), strict=True))


def haadf_model(projected_densities, weights, gamma: float = 1.0) -> np.ndarray:
    """The HAADF signal of projected densities: ``Σᵢ wᵢ · pᵢ^γ`` [fraction of the beam].

    Parameters
    ----------
    projected_densities : array_like (n_el, ...)
        Each element's projected density ``pᵢ`` [atoms/Å²] (negative values count as 0).
    weights : array_like (n_el,)
        Per-atom cross-sections ``wᵢ`` [Å²] (for γ = 1).
    gamma : float
        The power, in (0, 2]; 1 is the linear (Zhong et al.) model.

    Returns
    -------
    ndarray (...)

    Examples
    --------
    >>> haadf_model([[2.0], [1.0]], [0.02, 0.01], 1.0)
    array([0.05])
    """
    p = np.asarray(projected_densities, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.ndim < 1 or w.shape != (p.shape[0],):
        raise ValueError(f"weights must hold one value per element ({p.shape[0] if p.ndim else 0}), "
                         f"got shape {w.shape}")  # fmt: skip
    gamma = check_real(gamma, "gamma", low=0.0, high=2.0, open_low=True)
    p = np.maximum(p, 0.0)
    if gamma != 1.0:
        p = p**gamma
    return np.tensordot(w, p, axes=1)


def _densities(densities, name="densities"):
    if not isinstance(densities, dict) or not densities:
        raise TypeError(f"{name} must be a non-empty dict of element -> (nz, ny, nx) density [atoms/Å³], "
                        f"got {type(densities).__name__}")  # fmt: skip
    elements = tuple(str(e) for e in densities)
    arrays = []
    for e, v in densities.items():
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{e!r}] must hold real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if a.ndim != 3:
            raise ValueError(f"{name}[{e!r}] must be a (nz, ny, nx) volume, got shape {a.shape}")
        if not np.all(np.isfinite(a)) or (a < 0).any():
            raise ValueError(f"{name}[{e!r}] must be finite and >= 0 [atoms/Å³], got minimum {np.nanmin(a):.3g}")
        arrays.append(a)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{name} volumes must share one shape, got {[a.shape for a in arrays]}")
    return elements, np.stack(arrays)


def simulate_haadf(densities, voxel_size_angstrom: float, angles_degrees, *, weights=None, gamma: float = 1.0,
                   dose_e_per_angstrom2=None, rng=None):  # fmt: skip
    """A HAADF tilt series of per-element densities, by :func:`haadf_model`.

    Parameters
    ----------
    densities : dict of str to ndarray (nz, ny, nx)
        Number density of each element [atoms/Å³].
    voxel_size_angstrom : float
        Voxel side [Å]; also the pixel size of the images.
    angles_degrees : array_like (k,)
        Single-axis tilts [degrees].
    weights : dict of str to float, optional
        Per-atom cross-sections [Å²]; default :func:`default_haadf_weights`.
    gamma : float
        The power of :func:`haadf_model`.
    dose_e_per_angstrom2 : float, optional
        Electron dose per projection [e/Å²]: Poisson noise on the detected electrons
        (none when omitted).
    rng : numpy.random.Generator, int or None

    Returns
    -------
    TiltSeries
        Images (k, ny, nx) in fractions of the incident beam per pixel.
    """
    from ..tomo.geometry import TiltSeries
    from ..tomo.operators import project_volume

    elements, stack = _densities(densities)
    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    w = default_haadf_weights(elements) if weights is None else dict(weights)
    missing = [e for e in elements if e not in w]
    if missing:
        raise ValueError(f"weights has no value for {missing} (it has {sorted(w)})")
    wv = np.array([check_positive(w[e], f"weights[{e!r}]") for e in elements])
    proj = project_volume(stack, angles_degrees, voxel)
    images = haadf_model(proj, wv, gamma)
    prov = {"source": "elemental.simulate_haadf", "elements": list(elements), "weights": dict(zip(elements, wv.tolist(),
            strict=True)), "gamma": float(gamma), "dose_e_per_angstrom2": dose_e_per_angstrom2}  # fmt: skip
    if dose_e_per_angstrom2 is not None:
        dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
        n = dose * voxel**2
        images = check_rng(rng).poisson(np.clip(images, 0.0, None) * n) / n
    return TiltSeries(images, angles_degrees, voxel, prov)


def simulate_edxs(densities, voxel_size_angstrom: float, angles_degrees, *, dose_e_per_angstrom2: float,
                  solid_angle_sr: float = 0.7, beam_energy_ev: float = 200e3, rng=None,
                  noise: bool = True):  # fmt: skip
    """EDXS tilt series of per-element densities: X-ray counts per pixel, one series per element.

    Parameters
    ----------
    densities : dict of str to ndarray (nz, ny, nx)
        Number density of each element [atoms/Å³].
    voxel_size_angstrom : float
        Voxel side [Å]; also the pixel size.
    angles_degrees : array_like (k,)
        Single-axis tilts [degrees].
    dose_e_per_angstrom2 : float
        Electron dose per projection [e/Å²].
    solid_angle_sr : float
        The detector's collection solid angle [sr] (0.7: a four-quadrant detector).
    beam_energy_ev : float
        [eV], for the cross-sections (:func:`xray_line`).
    rng : numpy.random.Generator, int or None
    noise : bool
        Poisson counts (True) or their expectation (False).

    Returns
    -------
    dict of str to TiltSeries
        Counts per pixel of each element's line; the line and its cross-section in
        each series' ``provenance``.

    Raises
    ------
    ValueError
        For an element with no X-ray line in range, or bad doses and angles.
    """
    from ..tomo.geometry import TiltSeries
    from ..tomo.operators import project_volume

    elements, stack = _densities(densities)
    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
    omega = check_real(solid_angle_sr, "solid_angle_sr", low=0.0, high=4 * np.pi, open_low=True)
    if not isinstance(noise, bool | np.bool_):
        raise TypeError(f"noise must be True or False, got {noise!r}")
    lines = {e: xray_line(e, beam_energy_ev=beam_energy_ev) for e in elements}
    gen = check_rng(rng)
    proj = project_volume(stack, angles_degrees, voxel)
    out = {}
    for i, e in enumerate(elements):
        per_atom = dose * voxel**2 * lines[e].cross_section_angstrom2 * omega / (4 * np.pi)  # counts per atom/Å²
        expected = np.clip(proj[i], 0.0, None) * per_atom
        images = gen.poisson(expected).astype(np.float64) if noise else expected
        prov = {"source": "elemental.simulate_edxs", "element": e, "line": lines[e].line,
                "line_energy_kev": lines[e].energy_kev, "cross_section_barn": lines[e].cross_section_barn,
                "dose_e_per_angstrom2": dose, "solid_angle_sr": omega, "beam_energy_ev": float(beam_energy_ev),
                "noise": bool(noise), "counts": True}  # fmt: skip
        out[e] = TiltSeries(images, angles_degrees, voxel, prov)
    return out
