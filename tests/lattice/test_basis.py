"""find_basis, fractional and lattice_points against lattices made with known vectors."""

import numpy as np
import pytest

from atomscount.lattice import LatticeBasis, find_basis, fractional, lattice_points


def _rotation(degrees):
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _perovskite(n=12, a=3.905, degrees=0.0, shift=(5.0, 5.0)):
    """A and B columns of a perovskite along [001]: A on the cell's corners, B at (½, ½)."""
    g = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2).astype(float)
    rot = _rotation(degrees)
    return (g * a) @ rot.T + shift, ((g + 0.5) * a) @ rot.T + shift


def _same_lattice(basis, a, b):
    """The basis spans the lattice of a and b: each vector is an integer combination of the other pair."""
    m = np.linalg.solve(np.column_stack([a, b]), basis.matrix)
    return np.allclose(m, np.rint(m), atol=0.01) and abs(abs(np.linalg.det(np.rint(m))) - 1) < 1e-9


def test_an_oblique_lattice_is_found_with_its_reduced_vectors_and_an_origin_on_a_column():
    rng = np.random.default_rng(0)
    a, b = np.array([3.2, 0.4]), np.array([1.1, 4.0])
    g = np.stack(np.meshgrid(np.arange(10), np.arange(9), indexing="ij"), -1).reshape(-1, 2)
    pos = 3.0 + g @ np.column_stack([a, b]).T + rng.normal(0, 0.02, (len(g), 2))
    basis = find_basis(pos)
    assert _same_lattice(basis, a, b)
    assert np.linalg.norm(basis.a) <= np.linalg.norm(basis.b)
    assert 60 <= basis.angle_degrees <= 120
    assert basis.supercell == 1
    f = fractional(pos, basis)
    assert np.abs(f - np.rint(f)).max() < 0.03  # every column on a lattice point
    assert basis.rms_angstrom == pytest.approx(0.02 * np.sqrt(2), rel=0.2)


def test_missing_and_spurious_columns_do_not_move_the_lattice():
    rng = np.random.default_rng(1)
    a_col, b_col = _perovskite(degrees=7.0)
    pos = np.vstack([a_col, b_col])
    keep = rng.permutation(len(pos))[25:]  # 25 columns missed
    extra = rng.uniform(5, 45, (8, 2))  # 8 spurious detections
    basis = find_basis(np.vstack([pos[keep], extra]))
    prim_a, prim_b = _rotation(7.0) @ [3.905 / 2, 3.905 / 2], _rotation(7.0) @ [-3.905 / 2, 3.905 / 2]
    assert _same_lattice(basis, prim_a, prim_b)  # positions alone: the A+B lattice, √2 smaller and turned 45°
    assert np.linalg.norm(basis.a) == pytest.approx(3.905 / np.sqrt(2), abs=1e-3)


@pytest.mark.parametrize("by", ["intensities", "types"])
def test_alternating_columns_double_the_cell_to_the_a_a_cell_with_b_at_the_centre(by):
    rng = np.random.default_rng(2)
    a_col, b_col = _perovskite(degrees=-12.0)
    pos = np.vstack([a_col, b_col]) + rng.normal(0, 0.03, (2 * len(a_col), 2))
    kind = np.r_[np.zeros(len(a_col), int), np.ones(len(b_col), int)]
    # a thickness wedge across the image: the slow trend must not hide the alternation
    wedge = 1.0 + 0.02 * pos[:, 0]
    scs = np.where(kind == 0, 10.0, 6.0) * wedge * (1 + 0.05 * rng.normal(size=len(pos)))
    basis = find_basis(pos, **({"intensities": scs} if by == "intensities" else {"types": kind}))
    assert basis.supercell == 2
    rot = _rotation(-12.0)
    assert _same_lattice(basis, rot @ [3.905, 0.0], rot @ [0.0, 3.905])
    fa, fb = fractional(a_col, basis), fractional(b_col, basis)
    assert np.abs(fa - np.rint(fa)).max() < 0.05  # A (brighter, type 0) on the lattice points
    assert np.abs(fb - np.rint(fb) - 0.5).max() < 0.05 or np.abs((fb % 1) - 0.5).max() < 0.05  # B at (½, ½)
    assert np.linalg.norm(basis.a) == pytest.approx(3.905, abs=0.01)


def test_uniform_intensities_keep_the_simple_lattice():
    rng = np.random.default_rng(3)
    a_col, b_col = _perovskite()
    pos = np.vstack([a_col, b_col])
    basis = find_basis(pos, intensities=8.0 * (1 + 0.05 * rng.normal(size=len(pos))))
    assert basis.supercell == 1
    assert np.linalg.norm(basis.a) == pytest.approx(3.905 / np.sqrt(2), abs=1e-3)


def test_lattice_points_fill_the_region_site_by_site():
    basis = LatticeBasis(a=(2.0, 0.0), b=(0.0, 3.0), origin=(1.0, 1.0))
    pts = lattice_points(basis, (0.0, 10.0, 0.0, 7.0), sites=[(0, 0), (0.5, 0.5)])  # (x0, x1, y0, y1)
    corners = {(x, y) for x in (1.0, 3.0, 5.0, 7.0, 9.0) for y in (1.0, 4.0, 7.0)}
    centres = {(x, y) for x in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0) for y in (2.5, 5.5)}
    assert {tuple(p) for p in np.round(pts, 9)} == corners | centres
    assert np.allclose(fractional(pts[: len(corners)], basis) % 1, 0)


def test_the_basis_round_trips_through_hdf5(tmp_path):
    basis = LatticeBasis(a=(3.9, 0.1), b=(-0.2, 4.0), origin=(7.0, 8.0), rms_angstrom=0.05, n_fitted=40, supercell=2)
    basis.to_hdf5(tmp_path / "b.h5")
    back = LatticeBasis.from_hdf5(tmp_path / "b.h5")
    assert back.summary() == basis.summary()


def test_bad_input_is_refused_with_its_name_and_value():
    with pytest.raises(ValueError, match="at least 5 columns"):
        find_basis(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="tolerance"):
        find_basis(np.random.default_rng(0).uniform(0, 10, (20, 2)), tolerance=0.7)
    with pytest.raises(ValueError, match="intensities must have length 144"):
        find_basis(_perovskite()[0], intensities=np.ones(3))
    with pytest.raises(ValueError, match="independent"):
        LatticeBasis(a=(1.0, 0.0), b=(2.0, 0.0), origin=(0.0, 0.0))
    with pytest.raises(ValueError, match="region"):
        lattice_points(LatticeBasis(a=(1.0, 0.0), b=(0.0, 1.0), origin=(0.0, 0.0)), (5.0, 1.0, 0.0, 1.0))


def test_twenty_thousand_columns_are_handled_in_bounded_memory():
    # the neighbour vectors of a lattice of n columns cluster by n: they are binned, never paired with each other
    rng = np.random.default_rng(4)
    a_col, b_col = _perovskite(n=100)
    pos = np.vstack([a_col, b_col]) + rng.normal(0, 0.03, (20000, 2))
    scs = np.r_[np.full(10000, 10.0), np.full(10000, 5.0)] * (1 + 0.05 * rng.normal(size=20000))
    basis = find_basis(pos, intensities=scs)
    assert basis.supercell == 2 and np.linalg.norm(basis.a) == pytest.approx(3.905, abs=1e-3)


def test_a_honeycomb_is_a_lattice_with_two_sites_not_its_bonds():
    # graphene-like: the bonds (1.42 Å) are not translations; the lattice vectors are √3 longer
    d = 1.42
    a1, a2 = np.array([np.sqrt(3) * d, 0.0]), np.array([np.sqrt(3) * d / 2, 1.5 * d])
    g = np.stack(np.meshgrid(np.arange(14), np.arange(12), indexing="ij"), -1).reshape(-1, 2)
    first = 3.0 + g @ np.column_stack([a1, a2]).T
    pos = np.vstack([first, first + [0.0, d]])
    basis = find_basis(pos)
    assert _same_lattice(basis, a1, a2)
    from atomscount.lattice import find_sublattices

    sub = find_sublattices(pos)
    assert len(sub.names) == 2 and np.bincount(sub.labels).tolist() == [len(first), len(first)]
    assert np.array_equal(sub.labels[: len(first)], np.full(len(first), sub.labels[0]))
