"""Registration of the views on one 3D lattice.

Each view's columns are registered on the projected lattice of its zone axis: an
in-plane rotation and a translation, fitted by a grid over the angle and then a
rigid least-squares fit (2D Kabsch) of every column to its lattice column. The
first view's registration places the 3D sites; a later view's gives its image
frame up to the symmetry of the crystal, so the rotation between the two views is
one of the few cubic symmetry operations that keep the angle between the beams
(:func:`view_rotations`). The search tries each and keeps the one that explains
the SCS best.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .sites import fcc_sites, group_columns, zone_axis_rotation

__all__ = ["register_view", "particle_sites", "view_rotations", "cubic_rotations", "column_period"]


def _rz(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axis_vector(zone_axis: str) -> np.ndarray:
    return zone_axis_rotation(zone_axis)[2]


def _projected_columns(a: float, half: float, zone_axis: str) -> np.ndarray:
    xyz = fcc_sites(a, half, zone_axis=zone_axis)
    return group_columns(xyz).xy


def register_view(positions, a: float, zone_axis: str, *, tol: float | None = None) -> dict:
    """In-plane rotation and translation of a view's columns on its projected fcc lattice.

    Returns a dict with ``frame`` (3, 3): the rotation from cubic crystal coordinates to
    this view's image frame (rows: image x, image y, beam), ``theta`` [rad], ``shift``
    (2,) [Å] (image = rotated lattice + shift), ``lattice_xy`` (n, 2) the registered
    lattice column under each measured column, and ``rms`` [Å].

    Raises
    ------
    ValueError
        If fewer than 70 % of the columns sit within ``tol`` (default 0.12 a) of the
        registered lattice.
    """
    pos = np.asarray(positions, dtype=np.float64)
    tol = 0.12 * a if tol is None else tol
    ref = pos[np.argmin(np.linalg.norm(pos - pos.mean(axis=0), axis=1))]
    d = pos - ref
    half = float(np.max(np.abs(d))) + 2.0 * a
    lattice = _projected_columns(a, half + a, zone_axis)
    lattice = lattice - lattice[np.argmin(np.linalg.norm(lattice, axis=1))]
    tree = cKDTree(lattice)

    def misfit(theta):
        c, s = np.cos(theta), np.sin(theta)
        u = d @ np.array([[c, -s], [s, c]])  # rotate by -theta into the lattice frame
        dist, _ = tree.query(u)
        return float(np.sum(np.minimum(dist, tol) ** 2))

    grid = np.deg2rad(np.arange(0.0, 180.0, 0.25))
    theta = grid[int(np.argmin([misfit(t) for t in grid]))]
    # rigid least squares on the assignment, twice (the assignment can change once)
    shift = ref.copy()
    for _ in range(3):
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, -s], [s, c]])
        dist, idx = tree.query((pos - shift) @ rot)
        near = dist < tol
        if np.sum(near) < max(3, 0.7 * len(pos)):
            raise ValueError(f"only {int(np.sum(near))} of {len(pos)} columns sit on the projected [{zone_axis}] "
                             f"lattice (a = {a:.3f} Å): is the zone axis right?")  # fmt: skip
        p, q = pos[near], lattice[idx[near]]
        pc, qc = p.mean(axis=0), q.mean(axis=0)
        h = (q - qc).T @ (p - pc)
        theta = float(np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1]))
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, -s], [s, c]])
        shift = pc - qc @ rot.T
    lattice_xy = lattice[idx] @ rot.T + shift
    rms = float(np.sqrt(np.mean(np.sum((pos[near] - lattice_xy[near]) ** 2, axis=1))))
    return {"frame": _rz(theta) @ zone_axis_rotation(zone_axis), "theta": theta, "shift": shift,
            "lattice_xy": lattice_xy, "on_lattice": near, "rms": rms}  # fmt: skip


def column_period(a: float, zone_axis: str) -> float:
    """Distance [Å] between neighbouring sites of one column along ``zone_axis``."""
    xyz = fcc_sites(a, 2.0 * a, zone_axis=zone_axis)
    cols = group_columns(xyz)
    s = cols.sites(int(np.argmax(np.diff(cols.start))))
    return float(np.min(np.diff(xyz[s, 2])))


def particle_sites(positions, counts, a: float, zone_axis: str, *, margin: int = 0, registration=None):
    """3D sites of the first view: each column filled with its count, centred on one mid-plane.

    Parameters
    ----------
    positions : (n, 2) column positions [Å]; counts : (n,) atoms per column.
    margin : int
        Extra empty sites at either end of every column (for fitting the shape).

    Returns
    -------
    xyz : (m, 3) sites [Å] in the view's frame (image x, y; z along the beam, mid-plane at 0),
    empty : (m,) bool, the margin sites; column : (m,) the measured column of each site;
    registration : dict of :func:`register_view`.
    """
    pos = np.asarray(positions, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    reg = register_view(pos, a, zone_axis) if registration is None else registration
    period = column_period(a, zone_axis)
    n_max = int(counts.max(initial=0)) + 2 * margin
    half_z = 0.5 * n_max * period + 2.0 * a
    half_xy = float(np.max(np.abs(pos - reg["shift"]))) + 2.0 * a
    # in-plane, the box must cover the columns after the rotation by theta
    lattice = fcc_sites(a, np.sqrt(2.0) * half_xy, zone_axis=zone_axis, half_height=half_z) @ _rz(reg["theta"]).T
    lattice[:, :2] += reg["shift"]
    cols = group_columns(lattice)
    tree = cKDTree(cols.xy)
    dist, which = tree.query(pos)
    xyz, empty, column = [], [], []
    for j in np.flatnonzero(counts > 0):
        if dist[j] > 0.25 * a:
            continue
        sites = cols.sites(which[j])
        z = lattice[sites, 2]
        n = int(counts[j]) + 2 * margin
        if n > len(z):
            raise ValueError(f"counts[{j}] = {counts[j]} is more than the lattice column holds here ({len(z)})")
        # the n consecutive sites whose middle is nearest the mid-plane z = 0
        mids = np.array([z[k : k + n].mean() for k in range(len(z) - n + 1)])
        k = int(np.argmin(np.abs(mids)))
        chosen = sites[k : k + n]
        xyz.append(lattice[chosen])
        e = np.zeros(n, dtype=bool)
        if margin:
            e[:margin] = True
            e[-margin:] = True
        empty.append(e)
        column.append(np.full(n, j))
    if not xyz:
        raise ValueError("no column with a count above 0 sits on the registered lattice")
    xyz, empty, column = np.concatenate(xyz), np.concatenate(empty), np.concatenate(column)
    xyz[:, 2] -= xyz[~empty, 2].mean()
    return xyz, empty, column, reg


def cubic_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube (signed permutation matrices of determinant +1)."""
    import itertools

    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.array(out)


def view_rotations(frame0: np.ndarray, frame1: np.ndarray, axis0: str, axis1: str) -> list[np.ndarray]:
    """Candidate rotations from the first view's frame to a later view's, one per distinct relation.

    ``frame0`` and ``frame1`` are the views' registered frames (cubic to image, from
    :func:`register_view`). The crystal's symmetry leaves the relation between them
    open up to a cubic rotation S; only those keeping the nominal angle between the
    two zone axes are kept, and equal matrices once.
    """
    v0, v1 = _axis_vector(axis0), _axis_vector(axis1)
    nominal = abs(float(v0 @ v1))
    out = []
    for s in cubic_rotations():
        r = frame1 @ s @ frame0.T
        if abs(abs(r[2, 2]) - nominal) > 1e-6:
            continue
        if not any(np.allclose(r, q, atol=1e-9) for q in out):
            out.append(r)
    return out
