"""Simulated magnetic samples for Lorentz TEM: skyrmion lattices, a vortex in a disk and a 180° domain wall.

Lengths in nm, magnetisation in A/m, mean inner potential in V, beam energy in eV.
Every map is taken as periodic by the forward model, so each sample wraps around.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .result import _positive

__all__ = ["MagneticSample", "domain_wall", "skyrmion_lattice", "vortex_disk"]


@dataclasses.dataclass(frozen=True, repr=False)
class MagneticSample:
    """A magnetic film: unit magnetisation, thickness map and material constants.

    Attributes
    ----------
    mx, my, mz : ndarray, shape (ny, nx)
        Unit magnetisation in the image frame (x right, y down the rows, z along the
        beam), as seen by the beam (after any tilt); 0 outside the film.
    thickness_nm : ndarray, shape (ny, nx)
        Thickness along the beam [nm]; 0 outside the film.
    pixel_nm : float
        Pixel size [nm].
    ms_a_per_m : float
        Saturation magnetisation [A/m].
    mean_inner_potential_v : float
        Mean inner potential V₀ [V].
    name : str
        What it is.
    """

    mx: np.ndarray
    my: np.ndarray
    mz: np.ndarray
    thickness_nm: np.ndarray
    pixel_nm: float
    ms_a_per_m: float
    mean_inner_potential_v: float
    name: str = "sample"

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return tuple(np.shape(self.mx))

    @property
    def magnetic_region(self) -> np.ndarray:
        """Pixels where the film is magnetised in plane (``|m⊥| > 0.1`` and thickness > 0)."""
        return (np.hypot(self.mx, self.my) > 0.1) & (np.asarray(self.thickness_nm) > 0)

    def magnetic_phase(self) -> np.ndarray:
        """Magnetic phase [rad] (:func:`atomscount.ltem.forward.magnetic_phase`)."""
        from .forward import magnetic_phase

        return magnetic_phase(self.mx, self.my, pixel_nm=self.pixel_nm, thickness_nm=self.thickness_nm,
                              ms_a_per_m=self.ms_a_per_m)  # fmt: skip

    def phase(self, *, beam_energy_ev: float = 300e3) -> np.ndarray:
        """Total phase [rad]: magnetic plus electrostatic at the beam energy [eV]."""
        from .forward import electrostatic_phase

        return self.magnetic_phase() + electrostatic_phase(
            self.thickness_nm, mean_inner_potential_v=self.mean_inner_potential_v, beam_energy_ev=beam_energy_ev
        )

    def __repr__(self) -> str:
        ny, nx = self.shape
        return (f"MagneticSample({self.name!r}, {ny}x{nx} px of {self.pixel_nm:g} nm, Ms {self.ms_a_per_m:.3g} A/m, "
                f"V0 {self.mean_inner_potential_v:g} V)")  # fmt: skip


def _check_grid(shape, pixel_nm) -> tuple[tuple[int, int], float]:
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx), got {shape!r}") from None
    if min(ny, nx) < 8:
        raise ValueError(f"shape must be at least (8, 8), got {shape!r}")
    px = float(pixel_nm)
    if not (np.isfinite(px) and px > 0):
        raise ValueError(f"pixel_nm must be a finite number > 0, got {pixel_nm!r}")
    return (ny, nx), px


def _film(shape, pixel_nm, thickness_nm, ms_a_per_m, mean_inner_potential_v):
    """The set-up every sample shares: the checked grid ``(ny, nx)``, pixel [nm] and thickness [nm], and a
    maker ``make(mx, my, mz, thickness_map, name)`` of the :class:`MagneticSample` with these materials (a
    thickness map of one number fills the grid)."""
    (ny, nx), px = _check_grid(shape, pixel_nm)
    t = _positive(thickness_nm, "thickness_nm")
    ms = _positive(ms_a_per_m, "ms_a_per_m")
    v0 = float(mean_inner_potential_v)
    if not np.isfinite(v0):
        raise ValueError(f"mean_inner_potential_v must be finite, got {mean_inner_potential_v!r}")

    def make(mx, my, mz, thickness_map, name: str) -> MagneticSample:
        thick = np.broadcast_to(np.asarray(thickness_map, dtype=np.float64), (ny, nx)).copy()
        full = np.ones((ny, nx))
        return MagneticSample(full * mx, full * my, full * mz, thick, px, ms, v0, name=name)

    return (ny, nx), px, t, make


def _tilt(mx, my, mz, thickness, tilt_deg: float):
    """Magnetisation and thickness seen along the beam after tilting the film by ``tilt_deg`` about x.

    First-order projection: m turns about x and the path through the film grows
    to t / cos β; the foreshortening along y and the sideways smear t·tan β of
    the projection are neglected.
    """
    b = np.deg2rad(float(tilt_deg))
    if not (np.isfinite(b) and abs(b) < np.deg2rad(60)):
        raise ValueError(f"tilt_deg must be within ±60°, got {tilt_deg!r}")
    c, s = np.cos(b), np.sin(b)
    return mx, my * c - mz * s, my * s + mz * c, thickness / c


def skyrmion_lattice(kind: str = "bloch", *, shape=(128, 128), pixel_nm: float = 2.0, period_nm: float = 64.0,
                     radius_nm: float = 16.0, wall_width_nm: float = 8.0, thickness_nm: float = 50.0,
                     ms_a_per_m: float = 3.8e5, mean_inner_potential_v: float = 17.0,
                     tilt_deg: float | None = None) -> MagneticSample:  # fmt: skip
    """A hexagonal lattice of Bloch or Néel skyrmions in a film magnetised along +z.

    Each skyrmion's polar angle runs ``θ(r) = 2 arctan(sinh(R/w) / sinh(r/w))``
    (π at the centre, 0 far away); its in-plane part turns about the centre
    (Bloch: m⊥ = sin θ (−sin ψ, cos ψ)) or points outwards (Néel:
    m⊥ = sin θ (cos ψ, sin ψ)), ψ the azimuth. A Néel texture is curl-free and
    gives no magnetic phase at normal incidence, so it is seen tilted (default 20°).

    Parameters
    ----------
    kind : {"bloch", "neel"}
    shape : (int, int)
        (ny, nx) pixels.
    pixel_nm : float
        Pixel size [nm].
    period_nm : float
        Distance between neighbouring skyrmions [nm]; stretched a little (to a
        whole number of columns and an even number of rows) so that the lattice wraps.
    radius_nm, wall_width_nm : float
        Skyrmion radius R (where m_z = 0) and wall width w [nm].
    thickness_nm : float
        Film thickness [nm].
    ms_a_per_m : float
        Saturation magnetisation [A/m] (FeGe 3.8e5).
    mean_inner_potential_v : float
        Mean inner potential [V].
    tilt_deg : float, optional
        Tilt of the film about x [°]; default 0 for Bloch, 20 for Néel.

    Returns
    -------
    MagneticSample
    """
    from scipy.spatial import cKDTree

    if kind not in ("bloch", "neel"):
        raise ValueError(f"kind must be 'bloch' or 'neel', got {kind!r}")
    (ny, nx), px, t, make = _film(shape, pixel_nm, thickness_nm, ms_a_per_m, mean_inner_potential_v)
    a = _positive(period_nm, "period_nm")
    r0 = _positive(radius_nm, "radius_nm")
    w = _positive(wall_width_nm, "wall_width_nm")
    ly, lx = ny * px, nx * px
    n_cols = max(1, round(lx / a))
    n_rows = max(2, 2 * round(ly / (a * np.sqrt(3))))  # even, so that the staggered rows wrap
    ax, ay = lx / n_cols, ly / n_rows
    jj, ii = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    centres = np.stack([((ii + 0.5 * (jj % 2) + 0.25) * ax) % lx, ((jj + 0.5) * ay) % ly], axis=-1).reshape(-1, 2)
    y, x = np.mgrid[0:ny, 0:nx] * px
    points = np.stack([x.ravel(), y.ravel()], axis=-1)
    _, idx = cKDTree(centres, boxsize=[lx, ly]).query(points)
    d = points - centres[idx]
    d -= np.round(d / [lx, ly]) * [lx, ly]  # the nearest periodic image
    r = np.hypot(d[:, 0], d[:, 1]).reshape(ny, nx)
    psi = np.arctan2(d[:, 1], d[:, 0]).reshape(ny, nx)
    theta = 2 * np.arctan2(np.sinh(r0 / w), np.sinh(np.maximum(r, 1e-9) / w))
    s = np.sin(theta)
    mx, my = (-s * np.sin(psi), s * np.cos(psi)) if kind == "bloch" else (s * np.cos(psi), s * np.sin(psi))
    mz = np.cos(theta)
    tilt = (0.0 if kind == "bloch" else 20.0) if tilt_deg is None else tilt_deg
    mx, my, mz, thick = _tilt(mx, my, mz, np.full((ny, nx), t), tilt)
    return make(mx, my, mz, thick, f"{kind} skyrmion lattice")


def vortex_disk(*, shape=(128, 128), pixel_nm: float = 2.0, radius_nm: float = 100.0, core_radius_nm: float = 8.0,
                thickness_nm: float = 30.0, edge_width_nm: float = 2.0, chirality: int = 1, polarity: int = 1,
                ms_a_per_m: float = 8e5, mean_inner_potential_v: float = 26.0) -> MagneticSample:  # fmt: skip
    """A magnetic vortex in a disk (permalloy-like), with the disk's electrostatic edge.

    The magnetisation circulates about the centre, ``m⊥ ∝ c (−sin ψ, cos ψ)`` with
    ψ the azimuth from +x towards +y and c the ``chirality``, and rises out of
    plane in the core, ``m_z = p exp(−(r/r_c)²)``. The thickness falls from ``thickness_nm`` to 0 at
    the rim over ``edge_width_nm`` (a tanh), which gives the electrostatic phase step.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) pixels; the disk sits in the middle.
    pixel_nm : float
        Pixel size [nm].
    radius_nm, core_radius_nm, edge_width_nm : float
        Disk radius, vortex core radius r_c and width of the rim [nm].
    thickness_nm : float
        Film thickness [nm].
    chirality, polarity : {1, -1}
        Sense of circulation and of the core's m_z.
    ms_a_per_m : float
        Saturation magnetisation [A/m] (permalloy 8e5).
    mean_inner_potential_v : float
        Mean inner potential [V].

    Returns
    -------
    MagneticSample
    """
    (ny, nx), px, t, make = _film(shape, pixel_nm, thickness_nm, ms_a_per_m, mean_inner_potential_v)
    rad = _positive(radius_nm, "radius_nm")
    if 2 * rad > min(ny, nx) * px:
        raise ValueError(f"radius_nm {radius_nm!r} does not fit in the field of view "
                         f"({min(ny, nx) * px:g} nm across)")  # fmt: skip
    for name, v in (("chirality", chirality), ("polarity", polarity)):
        if v not in (1, -1):
            raise ValueError(f"{name} must be 1 or -1, got {v!r}")
    rc = _positive(core_radius_nm, "core_radius_nm")
    ew = _positive(edge_width_nm, "edge_width_nm")
    y, x = (np.mgrid[0:ny, 0:nx] - np.array([ny / 2, nx / 2])[:, None, None]) * px
    r = np.hypot(x, y)
    psi = np.arctan2(y, x)
    thick = t * 0.5 * (1 - np.tanh((r - rad) / ew))
    thick[thick < 1e-6 * t] = 0.0
    inside = thick / t
    mz = polarity * np.exp(-((r / rc) ** 2)) * (inside > 0)
    s = np.sqrt(np.clip(1 - mz**2, 0, 1)) * (inside > 0)
    mx, my = -chirality * s * np.sin(psi), chirality * s * np.cos(psi)
    return make(mx, my, mz, thick, "vortex disk")


def domain_wall(*, shape=(128, 128), pixel_nm: float = 2.0, wall_width_nm: float = 20.0, kind: str = "bloch",
                thickness_nm: float = 40.0, ms_a_per_m: float = 8e5,
                mean_inner_potential_v: float = 26.0) -> MagneticSample:  # fmt: skip
    """180° domain walls in a film magnetised in plane along ±y.

    The domain along +y fills the middle half of the width, the −y domain the
    rest, so the map wraps (the periodic model needs it): the 180° wall of interest
    sits at a quarter of the width, its partner at three quarters.
    ``m_y = ±tanh(u/w)`` across each wall (u the distance from it); the moment turns
    out of plane (``kind="bloch"``, m_z = sech(u/w)) or in plane (``"neel"``, m_x).

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) pixels.
    pixel_nm : float
        Pixel size [nm].
    wall_width_nm : float
        Wall width w [nm].
    kind : {"bloch", "neel"}
    thickness_nm : float
        Film thickness [nm].
    ms_a_per_m : float
        Saturation magnetisation [A/m].
    mean_inner_potential_v : float
        Mean inner potential [V].

    Returns
    -------
    MagneticSample
    """
    if kind not in ("bloch", "neel"):
        raise ValueError(f"kind must be 'bloch' or 'neel', got {kind!r}")
    (ny, nx), px, t, make = _film(shape, pixel_nm, thickness_nm, ms_a_per_m, mean_inner_potential_v)
    w = _positive(wall_width_nm, "wall_width_nm")
    x = (np.arange(nx) + 0.5) * px
    lx = nx * px
    u1 = (x - lx / 4 + lx / 2) % lx - lx / 2  # signed distance to each wall, wrapped
    u2 = (x - 3 * lx / 4 + lx / 2) % lx - lx / 2
    my1 = np.tanh(u1 / w) * np.where(np.abs(u1) < np.abs(u2), 1, 0)
    my2 = -np.tanh(u2 / w) * np.where(np.abs(u1) < np.abs(u2), 0, 1)
    my_row = my1 + my2
    across = np.sqrt(np.clip(1 - my_row**2, 0, 1))
    mx_row, mz_row = (np.zeros(nx), across) if kind == "bloch" else (across, np.zeros(nx))
    return make(mx_row, my_row, mz_row, t, f"180° {kind} domain wall")
