"""strain_map and polarisation_map against known displacement fields."""

import numpy as np
import pytest

from atomscount.columns.fit import ColumnFit
from atomscount.lattice.basis import LatticeBasis
from atomscount.lattice.polarisation import PolarisationMap, polarisation_map
from atomscount.lattice.strain import StrainMap, reference_mask, strain_map

A = 3.9  # lattice spacing [Å]


def _grid(n=20, spacing=A):
    ij = np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2).astype(float)
    return ij * spacing + 2.0


# a homogeneous strain and rotation: eps_xx 1 %, eps_yy -0.5 %, eps_xy 0.4 %, omega_xy -0.3 %
G0 = np.array([[0.010, 0.001], [0.007, -0.005]])
TRUTH = {"eps_xx": 0.010, "eps_yy": -0.005, "eps_xy": 0.004, "omega_xy": -0.003}
KINK = 40.0  # [Å]: unstrained left of it (the reference region), strained right of it


def _strained(ref, rng=None, sigma=0.0):
    right = ref[:, 0] > KINK
    pos = ref.copy()
    pos[right] += (ref[right] - [KINK, 0.0]) @ G0.T
    if rng is not None:
        pos += rng.normal(0.0, sigma, pos.shape)
    return pos


def test_a_homogeneous_strain_and_rotation_is_recovered_within_errors():
    ref = _grid()
    rng = np.random.default_rng(1)
    sigma = 0.01
    pos = _strained(ref, rng, sigma)
    m = strain_map(pos, reference_region=(0, KINK - 2 * A, -1, 100), positions_error=np.full(pos.shape, sigma))
    inside = (ref[:, 0] > KINK + 1.6 * A) & (ref[:, 0] < ref[:, 0].max() - 1) & (ref[:, 1] > 3) & (ref[:, 1] < 75)
    assert inside.sum() > 100
    for name, true in TRUTH.items():
        value, error = m.component(name)
        z = (value[inside] - true) / error[inside]
        assert np.all(np.abs(z) < 5), name
        assert abs(np.mean(value[inside]) - true) < 4 * np.median(error[inside]) / np.sqrt(inside.sum()) + 3e-4, name
    # left of the kink: no strain
    left = ref[:, 0] < KINK - 1.6 * A
    assert np.all(np.abs(m.eps_xx[left & m.valid]) < 5 * m.eps_xx_error[left & m.valid])
    # the rotation: clockwise on the screen (y down) by phi gives omega_xy = -phi
    phi = 0.002
    turn = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    m2 = strain_map(ref, reference=LatticeBasis(a=(A, 0), b=(0, A), origin=(0, 0)))
    turned = strain_map(ref @ turn.T, reference=LatticeBasis(a=(A, 0), b=(0, A), origin=(0, 0)))
    np.testing.assert_allclose(turned.omega_xy[turned.valid], -np.sin(phi), atol=1e-9)
    np.testing.assert_allclose(m2.omega_xy[m2.valid], 0.0, atol=1e-12)


def test_a_known_displacement_field_is_recovered_exactly():
    """A quadratic field: the symmetric neighbour fit is exact at every column with all eight neighbours."""
    ref = _grid(12)
    alpha, beta = 2e-4, -3e-4
    x, y = ref.T
    u = np.column_stack([alpha * x * y, beta * x**2])
    basis = LatticeBasis(a=(A, 0.0), b=(0.0, A), origin=(2.0, 2.0))
    m = strain_map(ref + u, reference=basis)
    np.testing.assert_allclose(m.displacements, u - u.mean(axis=0), atol=1e-10)
    full = m.n_neighbours == 8
    assert full.sum() == 100
    np.testing.assert_allclose(m.eps_xx[full], alpha * y[full], atol=1e-12)
    np.testing.assert_allclose(m.eps_yy[full], 0.0, atol=1e-12)
    np.testing.assert_allclose(m.eps_xy[full], 0.5 * (alpha * x[full] + 2 * beta * x[full]), atol=1e-12)
    np.testing.assert_allclose(m.omega_xy[full], 0.5 * (alpha * x[full] - 2 * beta * x[full]), atol=1e-12)
    # with a fitted reference and a large strain, indices still follow the lattice (no jump of a cell)
    big = ref + np.column_stack([0.08 * np.maximum(x - 14.0, 0.0), np.zeros_like(x)])  # 8 %: 2.3 Å over the image
    mb = strain_map(big, reference_region=(0, 12, 0, 100))
    far = x > 14.0 + 1.6 * A
    np.testing.assert_allclose(mb.eps_xx[far], 0.08, atol=1e-9)
    assert np.all(np.diff(np.unique(mb.indices[:, 0])) == 1)


def test_propagated_errors_match_the_scatter_over_noise_repeats():
    ref = _grid(14)
    sigma = np.where(ref[:, :1] > 30, 0.02, 0.008) * np.ones((1, 2))  # errors differ between columns
    z = {name: [] for name in TRUTH}
    for seed in range(25):
        rng = np.random.default_rng(seed)
        pos = ref + rng.normal(0.0, 1.0, ref.shape) * sigma
        m = strain_map(pos, positions_error=sigma)
        ok = m.valid
        for name in TRUTH:
            value, error = m.component(name)
            # the reference fitted to the whole noisy image moves all columns alike: compare deviations from it
            z[name].append((value[ok] - np.mean(value[ok])) / error[ok])
    for name in TRUTH:
        spread = float(np.std(np.concatenate(z[name])))
        assert 0.7 < spread < 1.3, (name, spread)


def test_sublattices_each_get_their_own_origin_and_fixed_angle_and_statstem_neighbours():
    ref = _grid(10)
    pos = np.vstack([ref, ref + [A / 2 + 0.05, A / 2]])  # B columns all shifted by 0.05 Å: no strain
    types = ["A"] * len(ref) + ["B"] * len(ref)
    m = strain_map(pos, types=types, angle_degrees=90.0, neighbour_radius=1.1)
    assert m.sublattice_names == ("A", "B")
    np.testing.assert_allclose(m.displacements, 0.0, atol=1e-9)
    np.testing.assert_allclose(m.eps_xx[m.valid], 0.0, atol=1e-12)
    assert m.n_neighbours.max() == 4
    assert abs(m.summary()["reference_angle_degrees"] - 90.0) < 1e-9
    only_b = strain_map(pos, types=types, sublattice="B")
    assert np.all(only_b.sublattice[: len(ref)] == -1) and np.all(np.isnan(only_b.eps_xx[: len(ref)]))


def test_files_round_trip(tmp_path):
    ref = _grid(8)
    rng = np.random.default_rng(3)
    m = strain_map(ref + rng.normal(0, 0.01, ref.shape), positions_error=np.full(ref.shape, 0.01))
    m.to_hdf5(tmp_path / "strain.h5")
    back = StrainMap.from_hdf5(tmp_path / "strain.h5")
    for name in StrainMap._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    assert back.summary() == m.summary()
    m.to_csv(tmp_path / "strain.csv")
    rows = (tmp_path / "strain.csv").read_text().splitlines()
    assert len(rows) == 1 + len(ref) and rows[0].startswith("index,sublattice,x_angstrom")
    assert "StrainMap" in m.report()


def test_a_column_fit_is_taken_with_its_errors_and_convergence():
    ref = _grid(8)
    n = len(ref)
    ones = np.ones(n)
    conv = ones.astype(bool)
    conv[5] = False
    fit = ColumnFit(positions=ref, positions_error=np.full((n, 2), 0.01), types=np.zeros(n, int), type_names=("Sr",),
                    heights=ones, heights_error=ones, widths=ones, widths_error=ones, scs=ones, scs_error=ones,
                    voronoi_scs=ones, background=np.zeros(3), background_error=np.zeros(3), converged=conv,
                    input_index=np.arange(n), reduced_chi2=1.0, n_iterations=1, image_shape=(160, 160),
                    pixel_size_angstrom=0.2)  # fmt: skip
    m = strain_map(fit)
    assert np.isnan(m.eps_xx[5]) and m.sublattice[5] == -1
    assert m.pixel_size_angstrom == 0.2 and m.image_shape == (160, 160)
    np.testing.assert_allclose(m.eps_xx[m.valid], 0.0, atol=1e-12)
    assert np.all(m.eps_xx_error[m.valid] > 0)


def test_polarisation_is_the_b_shift_from_the_a_cell_centre(tmp_path):
    ref = _grid(8)
    b = ref + A / 2
    shift = np.where(b[:, :1] > 15, [0.12, 0.0], [-0.12, 0.05])  # two domains
    pos = np.vstack([ref, b + shift])
    types = ["Pb"] * len(ref) + ["Ti"] * len(ref)
    err = np.full(pos.shape, 0.01)
    p = polarisation_map(pos, "Pb", "Ti", types=types, positions_error=err)
    inner = np.all((b > ref.min(axis=0)) & (b < ref.max(axis=0)), axis=1)
    np.testing.assert_allclose(p.vectors[inner], shift[inner], atol=1e-12)
    assert np.all(np.isnan(p.vectors[~inner]))
    np.testing.assert_allclose(p.vectors_error[inner], 0.01 * np.sqrt(1 + 4 / 16))
    p.to_hdf5(tmp_path / "p.h5")
    back = PolarisationMap.from_hdf5(tmp_path / "p.h5")
    np.testing.assert_array_equal(back.vectors, p.vectors)
    assert back.summary() == p.summary()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference_region": (5, 1, 0, 1)}, "reference_region must be"),
        ({"reference_region": (1000, 1001, 0, 1)}, "reference_region holds none"),
        ({"sublattice": "Ti"}, "sublattice must name"),
        ({"neighbour_radius": 0.5}, "neighbour_radius must"),
        ({"angle_degrees": 200}, "angle_degrees must"),
    ],
)
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        strain_map(_grid(6), **kwargs)


def test_a_chosen_sublattice_without_usable_columns_is_named():
    ref = _grid(6)
    n = len(ref)
    ones = np.ones(n)
    conv = np.arange(n) >= 3  # the three columns of type 1 did not converge
    err = np.full((n, 2), np.nan)  # no errors (a StatSTEM file): strain without errors
    fit = ColumnFit(positions=ref, positions_error=err, types=(~conv).astype(int), type_names=("A", "B"),
                    heights=ones, heights_error=ones, widths=ones, widths_error=ones, scs=ones, scs_error=ones,
                    voronoi_scs=ones, background=np.zeros(3), background_error=np.zeros(3), converged=conv,
                    input_index=np.arange(n), reduced_chi2=1.0, n_iterations=1, image_shape=(100, 100),
                    pixel_size_angstrom=0.2)  # fmt: skip
    with pytest.raises(ValueError, match="sublattice 'B' has no converged column"):
        strain_map(fit, sublattice="B")
    m = strain_map(fit)
    assert m.sublattice_names == ("A",) and m.valid.sum() == n - 3 and np.all(np.isnan(m.eps_xx_error))


def test_reference_mask_takes_a_mask():
    pos = _grid(3)
    mask = np.zeros(len(pos), bool)
    mask[:4] = True
    assert reference_mask(pos, mask).tolist() == mask.tolist()
    with pytest.raises(ValueError, match="one entry per column"):
        reference_mask(pos, mask[:3])


def test_sublattices_from_find_sublattices_are_mapped_each_on_its_own():
    from atomscount.lattice import find_sublattices

    ref = _grid(10)
    pos = np.vstack([ref, ref + A / 2 + [0.1, 0.0]])
    sub = find_sublattices(pos, intensities=np.r_[np.full(len(ref), 2.0), np.full(len(ref), 1.0)])
    m = strain_map(sub)
    assert len(m.sublattice_names) == 2 and m.valid.all()
    np.testing.assert_allclose(m.eps_xx, 0.0, atol=1e-12)
    p = polarisation_map(sub, 0, 1)
    np.testing.assert_allclose(p.vectors[p.valid], [[0.1, 0.0]] * int(p.valid.sum()), atol=1e-12)
    assert p.summary()["median_error_angstrom"] is None  # positions without errors
