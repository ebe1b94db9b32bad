"""Candidate 3D sites of a particle and their grouping into columns for each view.

All sites live in one frame, the first view's: x and y as in its image, z along its
beam (the beam travels along +z, so the smallest z is the entrance surface). A second
view sees the same sites after a rotation; its columns are a different grouping of
the same site indices.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .._checks import check_positive

__all__ = ["Columns", "fcc_sites", "group_columns", "tilt_rotation", "zone_axis_rotation", "neighbour_pairs"]

#: Crystal directions (cubic frame) of the image x axis and the beam for each zone axis.
#: [001] and [110] share [1-10] as their image x axis, so one tilt about x links them.
_FRAMES = {"001": ((1.0, -1.0, 0.0), (0.0, 0.0, 1.0)), "110": ((1.0, -1.0, 0.0), (1.0, 1.0, 0.0)),
           "100": ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0))}  # fmt: skip


def zone_axis_rotation(zone_axis: str) -> np.ndarray:
    """Rotation (3, 3) from the cubic crystal frame to a view frame (rows: image x, image y, beam).

    Raises
    ------
    ValueError
        For a zone axis other than "001", "100" or "110".
    """
    key = "".join(str(v) for v in zone_axis) if not isinstance(zone_axis, str) else zone_axis.strip("[]")
    if key not in _FRAMES:
        raise ValueError(f"zone_axis must be one of {sorted(_FRAMES)}, got {zone_axis!r}")
    x, z = (np.array(v) / np.linalg.norm(v) for v in _FRAMES[key])
    return np.array([x, np.cross(z, x), z])


def tilt_rotation(from_axis: str, to_axis: str) -> np.ndarray:
    """Rotation (3, 3) taking coordinates in the ``from_axis`` view frame to the ``to_axis`` view frame."""
    return zone_axis_rotation(to_axis) @ zone_axis_rotation(from_axis).T


def fcc_sites(lattice_constant: float, half_extent: float, *, zone_axis: str = "001",
              half_height: float | None = None) -> np.ndarray:  # fmt: skip
    """fcc lattice sites (m, 3) [Å] within a box about the origin, in a view frame.

    The box has half-sides ``half_extent`` in x and y and ``half_height`` along the
    beam (z; default ``half_extent``: a cube). A site sits at the origin; the lattice
    is rotated so that the beam runs along ``zone_axis`` (see :func:`zone_axis_rotation`).
    Only the cubic cells that can reach the box are generated, so a tall, narrow box
    (a few long columns) costs what its sites do.
    """
    a = check_positive(lattice_constant, "lattice_constant")
    h = check_positive(half_extent, "half_extent")
    hz = h if half_height is None else check_positive(half_height, "half_height")
    rot = zone_axis_rotation(zone_axis)
    # the box's extent along each cubic axis (the view frame is rot @ cubic)
    reach = np.abs(rot).T @ np.array([h, h, hz])
    axes = [np.arange(-k, k + 1) for k in (np.ceil(2.0 * reach / a).astype(int) + 1)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    ijk = ijk[ijk.sum(axis=1) % 2 == 0]
    xyz = (ijk * (a / 2.0)) @ rot.T
    return xyz[np.all(np.abs(xyz) <= np.array([h, h, hz]) + 1e-9, axis=1)]


@dataclasses.dataclass(frozen=True, repr=False)
class Columns:
    """The sites of one view grouped into columns.

    Attributes
    ----------
    xy : ndarray (c, 2)
        Column positions [Å] in the view's image frame.
    start : ndarray (c + 1,) of int
        Column ``j`` holds ``order[start[j]:start[j + 1]]``.
    order : ndarray (m,) of int
        Site indices, column by column, each column sorted along the beam (entrance first).
    column_of_site : ndarray (m,) of int
    """

    xy: np.ndarray
    start: np.ndarray
    order: np.ndarray
    column_of_site: np.ndarray

    @property
    def n_columns(self) -> int:
        return len(self.xy)

    def sites(self, j: int) -> np.ndarray:
        return self.order[self.start[j] : self.start[j + 1]]

    def __repr__(self) -> str:
        return f"Columns({self.n_columns} columns, {len(self.order)} sites)"


def group_columns(positions, rotation=None, *, tolerance: float = 0.1) -> Columns:
    """Group 3D sites into the columns seen along a view's beam.

    Parameters
    ----------
    positions : array_like (m, 3)
        Sites [Å] in the first view's frame.
    rotation : array_like (3, 3), optional
        From the first view's frame to this view's (identity for the first view).
    tolerance : float
        Sites whose projections lie within this distance [Å] share a column.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (m, 3), got {pos.shape}")
    tol = check_positive(tolerance, "tolerance")
    view = pos if rotation is None else pos @ np.asarray(rotation, dtype=np.float64).T
    m = len(view)
    pairs = cKDTree(view[:, :2]).query_pairs(tol, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    n, label = connected_components(graph, directed=False)
    # columns in a stable order (by x, then y) so that a view's numbering does not depend on site order
    xy = np.zeros((n, 2))
    np.add.at(xy, label, view[:, :2])
    xy /= np.bincount(label, minlength=n)[:, None]
    rank = np.lexsort((np.round(xy[:, 1], 3), np.round(xy[:, 0], 3)))
    relabel = np.empty(n, dtype=np.int64)
    relabel[rank] = np.arange(n)
    col = relabel[label]
    order = np.lexsort((view[:, 2], col)).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=n))]).astype(np.int64)
    return Columns(xy[rank], start, order, col.astype(np.int64))


def neighbour_pairs(positions, lattice_constant: float) -> np.ndarray:
    """Nearest-neighbour pairs (p, 2) of fcc sites (distance a/√2)."""
    a = check_positive(lattice_constant, "lattice_constant")
    pos = np.asarray(positions, dtype=np.float64)
    return cKDTree(pos).query_pairs(a / np.sqrt(2.0) * 1.1, output_type="ndarray").astype(np.int64)
