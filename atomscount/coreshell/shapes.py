"""Parametric core shapes of the search's first stage.

Each shape maps a parameter vector to a *normalised radius* per site, ρ ≥ 0, with
the core where ρ ≤ 1. With a known composition, the core is instead the ``n_core``
sites of smallest ρ, so that every parameter vector has the right number of core
atoms and the search is over the shape's form and place only.

- ``sphere``: centre (3), radius (1);
- ``ellipsoid``: centre (3), radii (3) and orientation (3 angles, z-y-z Euler; with
  a mirror plane only the angle about z is free, so that one principal axis stays
  along the beam);
- ``star``: a star-shaped region about a centre (3) whose radius along the unit
  direction u is r0 (1 + Σ c_k Y_k(u)) with the eight real harmonics of degree 1 and
  2 (x, y, z, xy, yz, xz, x² - y², 3z² - 1); with a mirror plane the three odd in z
  are dropped.

With a mirror plane (``symmetric``), the centre's z is fixed at the plane.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["CoreShape", "FacetedShape", "SHAPES", "FACET_FAMILIES"]

SHAPES = ("sphere", "ellipsoid", "star")

_HARMONICS = ("x", "y", "z", "xy", "yz", "xz", "x2-y2", "3z2-1")
_ODD_IN_Z = {"z", "yz", "xz"}


def _harmonic(name, u):
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    return {"x": x, "y": y, "z": z, "xy": 2.0 * x * y, "yz": 2.0 * y * z, "xz": 2.0 * x * z,
            "x2-y2": x * x - y * y, "3z2-1": 1.5 * z * z - 0.5}[name]  # fmt: skip


@dataclasses.dataclass
class CoreShape:
    """A family of core shapes over a site set, with its parameter bounds.

    Parameters
    ----------
    kind : {"sphere", "ellipsoid", "star"}
    positions : ndarray (m, 3)
        Sites [Å].
    lattice_constant : float
    symmetric : bool
        Centre on the mirror plane ``z = plane`` and shapes symmetric about it.
    plane : float
        z of the mirror plane [Å].
    """

    kind: str
    positions: np.ndarray
    lattice_constant: float
    symmetric: bool = False
    plane: float = 0.0

    def __post_init__(self):
        if self.kind not in SHAPES:
            raise ValueError(f"core must be one of {list(SHAPES)}, got {self.kind!r}")
        self.harmonics = [h for h in _HARMONICS if not (self.symmetric and h in _ODD_IN_Z)]

    # parameters -------------------------------------------------------------------
    def bounds(self) -> list[tuple[float, float]]:
        lo, hi = self.positions.min(axis=0), self.positions.max(axis=0)
        r_min, r_max = self.lattice_constant / 2.0, float(np.max(hi - lo)) / 2.0
        b = [(lo[0], hi[0]), (lo[1], hi[1])] + ([] if self.symmetric else [(lo[2], hi[2])])
        if self.kind == "sphere":
            return b + [(r_min, r_max)]
        if self.kind == "ellipsoid":
            angles = [(0.0, np.pi)] if self.symmetric else [(0.0, np.pi), (0.0, np.pi), (0.0, np.pi)]
            return b + [(r_min, r_max)] * 3 + angles
        return b + [(r_min, r_max)] + [(-0.5, 0.5)] * len(self.harmonics)

    def unpack(self, p) -> dict:
        """The parameters as a dict: centre, radii (or radius and harmonics), orientation."""
        p = np.asarray(p, dtype=np.float64)
        if self.symmetric:
            centre, rest = np.array([p[0], p[1], self.plane]), p[2:]
        else:
            centre, rest = p[:3].copy(), p[3:]
        if self.kind == "sphere":
            return {"shape": "sphere", "centre": centre, "radii": np.full(3, rest[0])}
        if self.kind == "ellipsoid":
            angles = np.array([rest[3], 0.0, 0.0]) if self.symmetric else rest[3:6]
            return {"shape": "ellipsoid", "centre": centre, "radii": rest[:3].copy(), "euler_zyz": angles}
        return {"shape": "star", "centre": centre, "radius": float(rest[0]),
                "harmonics": dict(zip(self.harmonics, rest[1:].tolist(), strict=True))}  # fmt: skip

    def from_sphere(self, p_sphere) -> np.ndarray:
        """This family's parameters for the sphere ``p_sphere`` (of a sphere CoreShape with the same symmetry)."""
        p_sphere = np.asarray(p_sphere, dtype=np.float64)
        centre, r = p_sphere[:-1], p_sphere[-1]
        if self.kind == "sphere":
            return p_sphere.copy()
        if self.kind == "ellipsoid":
            return np.concatenate([centre, [r, r, r], np.zeros(1 if self.symmetric else 3)])
        return np.concatenate([centre, [r], np.zeros(len(self.harmonics))])

    # the core -----------------------------------------------------------------------
    def rho(self, p) -> np.ndarray:
        """Normalised radius of every site for parameters ``p`` (the core is ρ ≤ 1)."""
        return normalised_radius(self.positions, self.unpack(p))

    def codes(self, p, n_core: int | None = None) -> np.ndarray:
        """True for the core sites: ρ ≤ 1, or the ``n_core`` sites of smallest ρ."""
        rho = self.rho(p)
        if n_core is None:
            return rho <= 1.0
        core = np.zeros(len(rho), dtype=bool)
        if n_core > 0:
            core[np.argpartition(rho, n_core - 1)[:n_core]] = True
        return core


def normalised_radius(positions, shape: dict) -> np.ndarray:
    """ρ of each site for a shape dict as :meth:`CoreShape.unpack` gives (the core is ρ ≤ 1)."""
    d = np.asarray(positions, dtype=np.float64) - np.asarray(shape["centre"], dtype=np.float64)
    kind = shape["shape"]
    if kind == "sphere":
        return np.linalg.norm(d, axis=1) / float(np.asarray(shape["radii"])[0])
    if kind == "ellipsoid":
        rot = Rotation.from_euler("zyz", shape["euler_zyz"]).as_matrix()
        u = (d @ rot) / np.asarray(shape["radii"], dtype=np.float64)
        return np.linalg.norm(u, axis=1)
    if kind == "star":
        r = np.linalg.norm(d, axis=1)
        unit = d / np.maximum(r, 1e-12)[:, None]
        factor = np.ones(len(d))
        for name, c in shape["harmonics"].items():
            factor += c * _harmonic(name, unit)
        return r / (shape["radius"] * np.maximum(factor, 0.05))
    raise ValueError(f"unknown core shape {kind!r}")


#: Facet families of the particle's outer shape (cubic directions) and their interplanar spacings / a.
FACET_FAMILIES = {
    "100": (np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float), 0.5),
    "110": (
        np.array(
            [
                [s1 * u[0], s2 * u[1], s2 * u[2]]
                for u in ([1, 1, 0], [1, 0, 1], [0, 1, 1])
                for s1 in (1, -1)
                for s2 in (1, -1)
            ],
            dtype=float,
        )
        / np.sqrt(2.0),
        0.25 * np.sqrt(2.0),
    ),
    "111": (
        np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=float) / np.sqrt(3.0),
        1.0 / np.sqrt(3.0),
    ),
    # {311}: the vicinal facets that round off the edges of real (and spherical) particles
    "311": (
        np.array(
            [np.roll([3 * sx, sy, sz], k) for k in range(3) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)],
            dtype=float,
        )
        / np.sqrt(11.0),
        1.0 / np.sqrt(11.0),
    ),
}


@dataclasses.dataclass
class FacetedShape:
    """The particle's outer shape: a convex polyhedron of {100}, {110}, {111} and {311} facets.

    Nanocrystals are bounded by low-index facets (a Wulff-like shape), so the
    particle is parametrised by the distance of each of its 50 facet planes from a
    fixed centre; a site is inside when it lies on the inner side of every plane.
    Different distances make any truncated octahedron, cuboctahedron, cube or
    rhombicuboctahedron, off-centre and elongated ones included; the {311} facets
    round off edges and approximate a sphere.

    Parameters
    ----------
    positions : ndarray (m, 3)
        Candidate sites [Å] in the first view's frame.
    frame : ndarray (3, 3)
        Rotation from cubic crystal coordinates to that frame (rows: image x, image
        y, beam), as :func:`atomscount.coreshell.register.register_view` gives it.
    lattice_constant : float
    families : tuple of str
        Facet families used (default all three).
    """

    positions: np.ndarray
    frame: np.ndarray
    lattice_constant: float
    families: tuple = ("100", "110", "111", "311")

    def __post_init__(self):
        normals = np.concatenate([FACET_FAMILIES[f][0] for f in self.families])
        self.spacing = np.concatenate([np.full(len(FACET_FAMILIES[f][0]), FACET_FAMILIES[f][1])
                                       for f in self.families]) * self.lattice_constant  # fmt: skip
        self.normals = normals @ np.asarray(self.frame, dtype=np.float64).T  # each row: the normal in the view frame
        pos = np.asarray(self.positions, dtype=np.float64)
        # a site as the centre, so that every facet plane can sit half a layer outside a lattice plane
        self.centre = pos[int(np.argmin(np.linalg.norm(pos - pos.mean(axis=0), axis=1)))]
        self.projection = (pos - self.centre) @ self.normals.T
        self.n_facets = len(normals)

    def max_layers(self) -> np.ndarray:
        """For each facet, the lattice planes from the centre out to the outermost site."""
        return np.floor(self.projection.max(axis=0) / self.spacing + 1e-6).astype(np.int64)

    def distances(self, layers) -> np.ndarray:
        """Facet distances [Å] half a layer outside lattice plane ``layers`` (an integer per facet)."""
        return (np.asarray(layers, dtype=np.float64) + 0.5) * self.spacing

    def depth(self, d) -> np.ndarray:
        """How many layers inside the polyhedron of facet distances ``d`` each site lies (negative outside)."""
        return np.min((np.asarray(d)[None, :] - self.projection) / self.spacing[None, :], axis=1)

    def inside(self, d) -> np.ndarray:
        """True for the sites inside the polyhedron of facet distances ``d`` [Å]."""
        return np.all(self.projection <= np.asarray(d)[None, :], axis=1)

    def unpack(self, d) -> dict:
        """The facet distances per family (cubic normals) and the centre [Å]."""
        d = np.asarray(d, dtype=np.float64)
        out, k = {"shape": "faceted", "centre": self.centre.tolist()}, 0
        for f in self.families:
            n = len(FACET_FAMILIES[f][0])
            out[f"{{{f}}}"] = d[k : k + n].tolist()
            k += n
        return out
