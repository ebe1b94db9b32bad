"""Structure of atomic models: pair distribution, bond-orientational order, lattice detection, random packing."""

import numpy as np
import pytest

from atomscount.tomo.structure import (
    bond_orientational_order,
    detect_lattice,
    lattice_order,
    nearest_neighbour_distance,
    pair_distribution,
    random_packing,
)

A = 3.85  # fcc lattice constant [Å]


def fcc_cluster(radius, a=A):
    cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    n = int(np.ceil(radius / a)) + 1
    grid = np.mgrid[-n : n + 1, -n : n + 1, -n : n + 1].reshape(3, -1).T
    pos = ((grid[:, None] + cell[None]) * a).reshape(-1, 3)
    return pos[np.linalg.norm(pos, axis=1) <= radius]


def test_fcc_pair_distribution_peaks_at_the_neighbour_distances():
    pos = fcc_cluster(12.0)
    pdf = pair_distribution(pos, r_max_angstrom=6.0, bin_angstrom=0.05)
    nn = nearest_neighbour_distance(pos)
    assert nn["peak"] == pytest.approx(A / np.sqrt(2), abs=0.05)
    assert A / np.sqrt(2) < nn["minimum"] < A  # between the first and the second shell
    # the second shell at a, nothing between the shells
    gap = (pdf["r"] > 2.9) & (pdf["r"] < 3.7)
    assert np.all(pdf["g"][gap] == 0)
    assert pdf["g"][np.argmin(np.abs(pdf["r"] - A))] > 0


def test_partial_pair_distributions_split_the_total():
    pos = fcc_cluster(10.0)
    el = np.where(np.arange(len(pos)) % 2 == 0, "Fe", "Pt")
    pdf = pair_distribution(pos, el, r_max_angstrom=6.0, partial=True)
    assert set(pdf["partials"]) == {"Fe-Fe", "Fe-Pt", "Pt-Pt"}
    n = len(pos)
    frac = {e: np.mean(el == e) for e in ("Fe", "Pt")}
    # g = Σ_ab c_a c_b g_ab (each unordered mixed pair twice)
    total = (frac["Fe"] ** 2 * pdf["partials"]["Fe-Fe"] + frac["Pt"] ** 2 * pdf["partials"]["Pt-Pt"]
             + 2 * frac["Fe"] * frac["Pt"] * pdf["partials"]["Fe-Pt"])  # fmt: skip
    np.testing.assert_allclose(total, pdf["g"], rtol=1e-9, atol=1e-12)
    assert n > 100
    with pytest.raises(ValueError, match="needs the elements"):
        pair_distribution(pos, partial=True)


def test_steinhardt_order_of_perfect_fcc():
    pos = fcc_cluster(9.0)
    q = bond_orientational_order(pos)
    inner = q["n_neighbours"] == 12
    assert inner.sum() > 20
    np.testing.assert_allclose(q["Q4"][inner], 0.191, atol=1e-3)
    np.testing.assert_allclose(q["Q6"][inner], 0.575, atol=1e-3)
    assert A / np.sqrt(2) < q["cutoff_angstrom"] < A


def test_lattice_detection_tells_crystal_from_amorphous():
    rng = np.random.default_rng(0)
    fcc = fcc_cluster(7.0)
    fcc = fcc + rng.normal(0.0, 0.1, fcc.shape)  # traced positions are not exact
    amorphous = random_packing(150, rng=0).positions
    assert lattice_order(fcc) > 0.5
    assert lattice_order(amorphous) < 0.15
    assert detect_lattice(fcc) == "crystal"
    assert detect_lattice(amorphous) == "none"


def test_random_packing_keeps_the_pair_distances():
    atoms = random_packing(200, fractions=(0.5, 0.3, 0.2), density_per_angstrom3=0.05, rng=3)
    sym = np.array(atoms.get_chemical_symbols())
    assert [int(np.sum(sym == e)) for e in ("Si", "Ge", "Sn")] == [100, 60, 40]
    radius = {"Si": 1.15, "Ge": 1.22, "Sn": 1.40}
    r = np.array([radius[s] for s in sym])
    d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert np.all(d >= r[:, None] + r[None, :] - 1e-9)
    np.testing.assert_allclose(atoms.positions.mean(axis=0), 0.0, atol=1e-9)
    again = random_packing(200, fractions=(0.5, 0.3, 0.2), density_per_angstrom3=0.05, rng=3)
    np.testing.assert_array_equal(again.positions, atoms.positions)
    with pytest.raises(ValueError, match="density_per_angstrom3"):
        random_packing(200, density_per_angstrom3=0.2, n_sweeps=20, rng=0)
    with pytest.raises(ValueError, match="radii_angstrom has 2 entries"):
        random_packing(10, radii_angstrom=(1.0, 1.2))
