"""Structure of a traced atomic model: pair distribution, bond-orientational order and lattice detection.

- :func:`pair_distribution`: the radial distribution g(r) of a finite particle, total
  or partial (one per element pair), normalised by the mean number density so that
  g -> 1 at distances where pairs are uncorrelated (the finite size makes it fall
  beyond that, as in the experimental PDFs of atomic electron tomography);
- :func:`bond_orientational_order`: the Steinhardt Q4 and Q6 of every atom
  (Steinhardt, Nelson & Ronchetti, Phys. Rev. B 28, 784 (1983),
  https://doi.org/10.1103/PhysRevB.28.784), from its neighbours within the first
  minimum of g(r) (as in Yang et al., Nature 592, 60 (2021),
  https://doi.org/10.1038/s41586-021-03354-0);
- :func:`lattice_order` and :func:`detect_lattice`: whether a centrosymmetric
  lattice explains the positions. In a crystal the mirror of an atom's neighbour
  through the atom (``2 x_i - x_j``) is itself an atom (fcc, bcc and the simple
  lattices for every neighbour; hcp and diamond for their in-plane and second
  neighbours); in an amorphous solid it seldom is;
- :func:`nearest_neighbour_distance`: the first peak of g(r) and the distance where
  that peak begins, the data's own minimum distance between atoms;
- :func:`random_packing`: an amorphous particle of several elements, each pair kept
  apart by its own distance, to test all of these against a known truth.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from .._checks import check_integer, check_positive, check_rng

__all__ = ["bond_orientational_order", "detect_lattice", "lattice_order", "nearest_neighbour_distance",
           "pair_distribution", "random_packing"]  # fmt: skip

#: ``lattice_order`` above this is a crystal (fcc clusters give 0.6 to 0.9, random packings under 0.1).
CRYSTAL_THRESHOLD = 0.35


def _positions(positions, name="positions", min_atoms=2):
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or not np.all(np.isfinite(pos)):
        raise ValueError(f"{name} must be finite (n, 3) positions [Å], got shape {pos.shape}")
    if len(pos) < min_atoms:
        raise ValueError(f"{name} needs at least {min_atoms} atoms, got {len(pos)}")
    return pos


def _number_density(pos):
    """Atoms per Å³ of a compact particle: n over the volume of a sphere with its radius of gyration
    (a uniform ball of radius R has R_g² = 3 R² / 5)."""
    rg2 = float(np.mean(np.sum((pos - pos.mean(axis=0)) ** 2, axis=1)))
    radius = math.sqrt(5.0 * rg2 / 3.0) if rg2 > 0 else 1.0
    return len(pos) / (4.0 / 3.0 * math.pi * radius**3)


def pair_distribution(positions, elements=None, *, r_max_angstrom: float = 10.0, bin_angstrom: float = 0.05,
                      partial: bool = False) -> dict:  # fmt: skip
    """Radial distribution function g(r) of an atomic model.

    ``g(r) = n(r) / (4 π r² dr ρ N)``: the mean number of neighbours at distance r in a
    shell of width dr, over the number a uniform density ρ would put there, ρ the
    particle's mean number density (from its radius of gyration). A finite particle
    has fewer neighbours at large r than a bulk solid, so g falls below 1 there.

    Parameters
    ----------
    positions : array_like (n, 3)
        [Å].
    elements : sequence of str, optional
        One per atom; needed for ``partial``.
    r_max_angstrom : float
        Largest distance [Å].
    bin_angstrom : float
        Width of a bin [Å].
    partial : bool
        Also the partial g_ab(r) of every element pair a <= b (alphabetical), each
        normalised by the density of b around atoms of a.

    Returns
    -------
    dict
        ``r`` (bin centres [Å]), ``g`` (total), ``density`` [Å⁻³], and with ``partial``
        ``partials``: {"a-b": g_ab}.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.mgrid[-4:5, -4:5, -4:5].reshape(3, -1).T * 3.0
    >>> pdf = pair_distribution(grid, r_max_angstrom=5.0)
    >>> round(float(pdf["r"][np.argmax(pdf["g"])]), 1)  # the cubic grid's spacing
    3.0
    """
    pos = _positions(positions)
    r_max = check_positive(r_max_angstrom, "r_max_angstrom")
    dr = check_positive(bin_angstrom, "bin_angstrom")
    edges = np.arange(0.0, r_max + 0.5 * dr, dr)
    r = 0.5 * (edges[1:] + edges[:-1])
    shell = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    rho = _number_density(pos)
    i, j = cKDTree(pos).query_pairs(edges[-1], output_type="ndarray").T
    d = np.linalg.norm(pos[i] - pos[j], axis=1)
    counts = 2.0 * np.histogram(d, bins=edges)[0]  # each pair is a neighbour of both
    out = {"r": r, "g": counts / (shell * rho * len(pos)), "density": rho}
    if partial:
        if elements is None:
            raise ValueError("partial=True needs the elements of the atoms")
        el = np.asarray(elements).astype(str)
        if len(el) != len(pos):
            raise ValueError(f"elements has {len(el)} entries for {len(pos)} atoms")
        names = sorted(set(el.tolist()))
        out["partials"] = {}
        for ia, a in enumerate(names):
            for b in names[ia:]:
                na, nb = np.sum(el == a), np.sum(el == b)
                pairs = ((el[i] == a) & (el[j] == b)) | ((el[i] == b) & (el[j] == a))
                c = np.histogram(d[pairs], bins=edges)[0] * (2.0 if a == b else 1.0)
                # neighbours of type b around atoms of type a, over what b's mean density would give
                out["partials"][f"{a}-{b}"] = c / (shell * rho * (nb / len(pos)) * na)
    return out


def nearest_neighbour_distance(positions, *, r_max_angstrom: float = 5.0, bin_angstrom: float = 0.05) -> dict:
    """The first peak of g(r) and where it begins and ends.

    Returns
    -------
    dict
        ``peak`` (the first maximum [Å]), ``onset`` (where g first reaches a fifth of that
        maximum on its way up [Å]: no two atoms of the model are much closer) and ``minimum``
        (the first minimum after the peak [Å]: the neighbour shell's outer edge).
    """
    pdf = pair_distribution(positions, r_max_angstrom=r_max_angstrom, bin_angstrom=bin_angstrom)
    r, g = pdf["r"], pdf["g"]
    # smooth over three bins: a few hundred atoms give a noisy histogram
    gs = np.convolve(g, np.ones(3) / 3.0, mode="same")
    if not np.any(gs > 0):
        raise ValueError(f"positions have no pair closer than r_max_angstrom = {r_max_angstrom:g}")
    # the first peak: the first local maximum that reaches half of the highest one
    top = gs.max()
    is_max = np.r_[False, (gs[1:-1] >= gs[:-2]) & (gs[1:-1] >= gs[2:]), False] & (gs >= 0.5 * top)
    ip = int(np.flatnonzero(is_max)[0]) if is_max.any() else int(np.argmax(gs))
    below = np.flatnonzero(gs[:ip] < 0.2 * gs[ip])
    onset = r[below[-1] + 1] if len(below) else r[0]
    # the first minimum: the lowest g within 1.7 peak distances (the middle of it where g is flat, as in
    # the empty gap between the shells of a crystal)
    window = np.flatnonzero((r > r[ip]) & (r <= 1.7 * r[ip]))
    if len(window):
        low = window[gs[window] <= gs[window].min() + 0.02 * gs[ip]]
        run = low[: int(np.argmax(np.diff(low) > 1)) + 1] if np.any(np.diff(low) > 1) else low
        after = int(run[len(run) // 2])
    else:
        after = ip
    return {"peak": float(r[ip]), "onset": float(onset), "minimum": float(r[after])}


def _ylm_sums(vectors, owner, n, degree):
    """Σ_j Y_lm(r_ij) per atom, m = -l..l, for the bond vectors ``vectors`` (owned by atom ``owner``)."""
    from scipy.special import sph_harm_y

    d = np.linalg.norm(vectors, axis=1)
    theta = np.arccos(np.clip(vectors[:, 2] / np.maximum(d, 1e-300), -1.0, 1.0))
    phi = np.arctan2(vectors[:, 1], vectors[:, 0])
    out = np.zeros((n, 2 * degree + 1), dtype=np.complex128)
    for k, m in enumerate(range(-degree, degree + 1)):
        y = sph_harm_y(degree, m, theta, phi)
        out[:, k] = np.bincount(owner, weights=y.real, minlength=n) + 1j * np.bincount(owner, weights=y.imag,
                                                                                      minlength=n)  # fmt: skip
    return out


def bond_orientational_order(positions, *, cutoff_angstrom: float | None = None, degrees=(4, 6)) -> dict:
    """Steinhardt bond-orientational order Q_l of every atom.

    ``Q_l(i) = sqrt(4π / (2l + 1) Σ_m |q_lm(i)|²)`` with ``q_lm(i)`` the mean of
    ``Y_lm`` over the bonds from atom i to its neighbours within ``cutoff_angstrom``.
    A perfect fcc crystal (12 neighbours) has Q4 = 0.191 and Q6 = 0.575, hcp 0.097 and
    0.485, an icosahedron 0 and 0.663; disordered neighbourhoods fall lower.

    Parameters
    ----------
    positions : array_like (n, 3)
        [Å].
    cutoff_angstrom : float, optional
        Neighbours are the atoms within this distance [Å] (default: the first minimum
        of g(r), :func:`nearest_neighbour_distance`).
    degrees : sequence of int
        The l of each Q_l (default 4 and 6).

    Returns
    -------
    dict
        ``Q4``, ``Q6``, ... (n,) (NaN for an atom without neighbours), ``n_neighbours`` (n,)
        and ``cutoff_angstrom``.

    Examples
    --------
    >>> import numpy as np
    >>> cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    >>> grid = np.mgrid[-2:3, -2:3, -2:3].reshape(3, -1).T
    >>> fcc = ((grid[:, None] + cell[None]) * 4.0).reshape(-1, 3)
    >>> q = bond_orientational_order(fcc, cutoff_angstrom=3.3)
    >>> centre = np.argmin(np.linalg.norm(fcc, axis=1))
    >>> round(float(q["Q4"][centre]), 3), round(float(q["Q6"][centre]), 3)
    (0.191, 0.575)
    """
    pos = _positions(positions)
    if cutoff_angstrom is None:
        cutoff_angstrom = nearest_neighbour_distance(pos)["minimum"]
    cutoff = check_positive(cutoff_angstrom, "cutoff_angstrom")
    degrees = [check_integer(lv, "degrees", low=1, high=12) for lv in degrees]
    i, j = cKDTree(pos).query_pairs(cutoff, output_type="ndarray").T
    owner = np.concatenate([i, j])
    vectors = np.concatenate([pos[j] - pos[i], pos[i] - pos[j]])
    nb = np.bincount(owner, minlength=len(pos))
    out = {"n_neighbours": nb, "cutoff_angstrom": cutoff}
    with np.errstate(invalid="ignore", divide="ignore"):
        for lv in degrees:
            q = _ylm_sums(vectors, owner, len(pos), lv) / nb[:, None]
            out[f"Q{lv}"] = np.sqrt(4.0 * math.pi / (2 * lv + 1) * np.sum(np.abs(q) ** 2, axis=1))
    return out


def lattice_order(positions, *, shell_angstrom: float | None = None, tolerance_angstrom: float | None = None) -> float:
    """The fraction of neighbour pairs whose mirror site holds an atom: how well a lattice explains the positions.

    For each pair (i, j) closer than ``shell_angstrom`` the site ``2 x_i - x_j`` (j
    mirrored through i) is looked up; it counts when an atom is within
    ``tolerance_angstrom`` of it. Mirrors that fall outside the particle (beyond its
    surface) are left out. A crystal scores high (inside an fcc particle every mirror
    is an atom), an amorphous solid low (only the chance that an atom sits there).

    Parameters
    ----------
    positions : array_like (n, 3)
        [Å].
    shell_angstrom : float, optional
        Default 1.7 times the first peak of g(r): the first two neighbour shells of
        fcc and bcc, the first three of diamond.
    tolerance_angstrom : float, optional
        Default 0.3 times the first peak of g(r).

    Returns
    -------
    float
        In [0, 1].
    """
    pos = _positions(positions, min_atoms=4)
    if shell_angstrom is None or tolerance_angstrom is None:
        if len(cKDTree(pos).query_pairs(5.0, output_type="ndarray")) == 0:
            return 0.0  # no neighbours at all: nothing a lattice could explain
        peak = nearest_neighbour_distance(pos)["peak"]
        shell_angstrom = 1.7 * peak if shell_angstrom is None else shell_angstrom
        tolerance_angstrom = 0.3 * peak if tolerance_angstrom is None else tolerance_angstrom
    shell = check_positive(shell_angstrom, "shell_angstrom")
    tol = check_positive(tolerance_angstrom, "tolerance_angstrom")
    tree = cKDTree(pos)
    i, j = tree.query_pairs(shell, output_type="ndarray").T
    if len(i) == 0:
        return 0.0
    mirrors = np.concatenate([2.0 * pos[i] - pos[j], 2.0 * pos[j] - pos[i]])
    # a mirror beyond the surface cannot hold an atom of the particle: only those with atoms all round count
    inside = tree.query_ball_point(mirrors, shell, return_length=True) >= 4
    if not inside.any():
        return 0.0
    d, _ = tree.query(mirrors[inside])
    return float(np.mean(d <= tol))


def detect_lattice(positions, *, threshold: float = CRYSTAL_THRESHOLD) -> str:
    """Whether a lattice explains the positions: "crystal" (:func:`lattice_order` above ``threshold``) or "none"."""
    check_positive(threshold, "threshold")
    pos = _positions(positions, min_atoms=1)
    if len(pos) < 8:
        return "none"
    return "crystal" if lattice_order(pos) > threshold else "none"


def random_packing(n_atoms: int, *, elements=("Si", "Ge", "Sn"), fractions=None, radii_angstrom=None,
                   density_per_angstrom3: float = 0.05, n_sweeps: int = 200, rng=None):  # fmt: skip
    """An amorphous spherical particle: atoms placed at random and pushed apart until no pair is too close.

    Every pair (a, b) is kept at least ``radii[a] + radii[b]`` apart. The atoms start
    uniform in a ball of the size the density asks for; each sweep moves every pair
    that is too close apart along its bond (each atom half the overlap, plus a little)
    and pulls atoms outside the ball back to its surface, until no overlap is left
    (a relaxation of soft spheres: a dense random packing, with no lattice).

    Parameters
    ----------
    n_atoms : int
    elements : sequence of str
        The elements, e.g. Si, Ge and Sn.
    fractions : sequence of float, optional
        Fraction of the atoms of each element (default equal).
    radii_angstrom : sequence of float, optional
        Half of each element's smallest distance to its own kind [Å] (default 1.15,
        1.22 and 1.40 Å: Si-Si 2.30, Ge-Ge 2.44, Sn-Sn 2.80 Å, close to the bond lengths).
    density_per_angstrom3 : float
        Atoms per Å³ (0.05 is amorphous silicon's).
    n_sweeps : int
        Largest number of relaxation sweeps.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    ase.Atoms
        Centred on the origin.

    Raises
    ------
    ValueError
        When the atoms cannot be pushed apart in ``n_sweeps`` (too high a density).

    Examples
    --------
    >>> atoms = random_packing(100, rng=0)
    >>> len(atoms), sorted(set(atoms.get_chemical_symbols()))
    (100, ['Ge', 'Si', 'Sn'])
    """
    from ase import Atoms

    n = check_integer(n_atoms, "n_atoms", low=1)
    elements = [str(e) for e in elements]
    if not elements:
        raise ValueError("elements must name at least one element")
    if radii_angstrom is None:
        table = {"Si": 1.15, "Ge": 1.22, "Sn": 1.40}
        radii_angstrom = [table.get(e, 1.25) for e in elements]
    radii = np.array([check_positive(r, "radii_angstrom") for r in radii_angstrom], dtype=np.float64)
    if len(radii) != len(elements):
        raise ValueError(f"radii_angstrom has {len(radii)} entries for {len(elements)} elements")
    frac = np.full(len(elements), 1.0 / len(elements)) if fractions is None else np.asarray(fractions, float)
    if len(frac) != len(elements) or np.any(frac < 0) or frac.sum() <= 0:
        raise ValueError(f"fractions must be {len(elements)} non-negative numbers, got {fractions!r}")
    rho = check_positive(density_per_angstrom3, "density_per_angstrom3")
    n_sweeps = check_integer(n_sweeps, "n_sweeps", low=1)
    gen = check_rng(rng)
    counts = np.floor(frac / frac.sum() * n).astype(int)
    counts[np.argsort(-(frac / frac.sum() * n - counts))[: n - counts.sum()]] += 1
    kind = gen.permutation(np.repeat(np.arange(len(elements)), counts))
    radius = (3.0 * n / (4.0 * math.pi * rho)) ** (1.0 / 3.0)
    u = gen.normal(size=(n, 3))
    pos = u / np.linalg.norm(u, axis=1, keepdims=True) * radius * gen.uniform(0, 1, (n, 1)) ** (1.0 / 3.0)
    r_atom = radii[kind]
    reach = 2.0 * radii.max()
    for _ in range(n_sweeps):
        i, j = cKDTree(pos).query_pairs(reach, output_type="ndarray").T
        v = pos[j] - pos[i]
        d = np.linalg.norm(v, axis=1)
        overlap = r_atom[i] + r_atom[j] - d
        bad = overlap > 0
        if not bad.any():
            break
        i, j, v, d, overlap = i[bad], j[bad], v[bad], d[bad], overlap[bad]
        unit = v / np.maximum(d, 1e-9)[:, None]
        # coincident atoms part in a random direction
        same = d < 1e-9
        if same.any():
            w = gen.normal(size=(int(same.sum()), 3))
            unit[same] = w / np.linalg.norm(w, axis=1, keepdims=True)
        push = (0.5 * overlap + 0.01)[:, None] * unit
        move = np.zeros_like(pos)
        np.add.at(move, i, -push)
        np.add.at(move, j, push)
        pos += move
        out = np.linalg.norm(pos, axis=1)
        far = out > radius
        pos[far] *= (radius / out[far])[:, None]
    else:
        raise ValueError(f"the atoms are still too close after n_sweeps = {n_sweeps}: lower "
                         f"density_per_angstrom3 = {rho:g}")  # fmt: skip
    pos -= pos.mean(axis=0)
    return Atoms(symbols=[elements[k] for k in kind], positions=pos)
