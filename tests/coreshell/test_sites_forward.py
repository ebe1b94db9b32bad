"""Sites, column groupings and the cached forward model of the core-shell search."""

import numpy as np
import pytest

from atomscount.coreshell import _kernels
from atomscount.coreshell.forward import CORE, EMPTY, SHELL, ForwardModel, LensingTables, columns_scs_reference
from atomscount.coreshell.sites import fcc_sites, group_columns, neighbour_pairs, tilt_rotation
from atomscount.library import load_default_lensing


@pytest.fixture(scope="module")
def lensing():
    return load_default_lensing("Au", "Ag", "001")


def ball(radius=9.0):
    pos = fcc_sites(4.08, radius)
    return pos[np.linalg.norm(pos, axis=1) <= radius]


def test_fcc_sites_have_twelve_neighbours_at_a_over_root2():
    pos = fcc_sites(4.08, 8.0)
    pairs = neighbour_pairs(pos, 4.08)
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(d, 4.08 / np.sqrt(2), rtol=1e-9)
    inner = np.flatnonzero(np.all(np.abs(pos) < 5.0, axis=1))
    deg = np.bincount(pairs.ravel(), minlength=len(pos))
    assert np.all(deg[inner] == 12)


@pytest.mark.parametrize("axis", ["001", "100", "110"])
def test_fcc_sites_in_a_tall_box_are_the_cubes_sites_within_it(axis):
    tall = fcc_sites(4.08, 5.0, zone_axis=axis, half_height=12.0)
    cube = fcc_sites(4.08, 12.0, zone_axis=axis)
    cube = cube[np.all(np.abs(cube[:, :2]) <= 5.0 + 1e-9, axis=1)]
    key = lambda p: np.unique(np.round(p, 6), axis=0)  # noqa: E731
    assert len(tall) == len(cube) and np.array_equal(key(tall), key(cube))
    # a column 800 Å long costs what its sites do, not a cube 800 Å wide (2.6e8 lattice points)
    long = fcc_sites(4.08, 3.0, zone_axis=axis, half_height=400.0)
    assert np.all(np.abs(long[:, 2]) <= 400.0) and long[:, 2].max() > 398.0 and len(long) < 20000


def test_columns_of_both_views_partition_the_same_sites_along_the_beam():
    pos = ball()
    for rot, spacing in ((None, 4.08), (tilt_rotation("001", "110"), 4.08 / np.sqrt(2))):
        cols = group_columns(pos, rot)
        view = pos if rot is None else pos @ rot.T
        assert sorted(cols.order) == list(range(len(pos)))
        for j in range(cols.n_columns):
            s = cols.sites(j)
            np.testing.assert_allclose(view[s, :2], np.broadcast_to(cols.xy[j], (len(s), 2)), atol=1e-9)
            assert np.all(np.diff(view[s, 2]) > 0)  # entrance first
            np.testing.assert_allclose(np.diff(view[s, 2]), spacing, rtol=1e-9)  # no gaps in a convex ball
    assert group_columns(pos).n_columns != group_columns(pos, tilt_rotation("001", "110")).n_columns


def random_state(rng, n_sites=300):
    pos = ball()[:n_sites]
    codes = rng.integers(0, 3, len(pos))
    return pos, codes


def test_kernel_equals_numpy_reference_and_lensing_model(lensing):
    rng = np.random.default_rng(3)
    pos, codes = random_state(rng)
    cols = group_columns(pos, tilt_rotation("001", "110"))
    t = LensingTables(lensing, core="Au", shell="Ag")
    which = np.arange(cols.n_columns, dtype=np.int64)
    a, b = np.zeros(cols.n_columns), np.zeros(cols.n_columns)
    args = (which, cols.start, cols.order, codes, t.element_of_code, t.inc, t.curves, t.lam)
    _kernels.columns_scs(*args, a)
    columns_scs_reference(*args, b)
    seqs = [[t.symbols[k] for k in codes[cols.sites(j)] if k != EMPTY] for j in range(cols.n_columns)]
    expected = np.array([lensing.predict([s])[0] if s else 0.0 for s in seqs])
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a, expected, rtol=1e-10, atol=1e-12)


def test_incremental_chi2_equals_full_recomputation_after_random_changes(lensing):
    rng = np.random.default_rng(4)
    pos, codes = random_state(rng)
    t = LensingTables(lensing, core="Au", shell="Ag")
    views = [group_columns(pos), group_columns(pos, tilt_rotation("001", "110"))]
    meas = [rng.uniform(0, 40, c.n_columns) for c in views]
    sig = [rng.uniform(0.5, 2, c.n_columns) for c in views]
    fm = ForwardModel(codes, views, [t, t], meas, sig, offset=[3.0, 0.0])
    total = fm.chi2()
    for _ in range(300):
        i, j = rng.integers(len(pos), size=2)
        total += fm.change([i, j], [fm.codes[j], fm.codes[i]]) if rng.random() < 0.5 else fm.change(i, CORE)
    incremental = fm.chi2_per_view()
    fresh = ForwardModel(fm.codes, views, [t, t], meas, sig, offset=[3.0, 0.0])
    np.testing.assert_allclose(incremental, fresh.chi2_per_view(), rtol=1e-9)
    assert total == pytest.approx(fresh.chi2(), rel=1e-9)
    assert SHELL in fm.codes


def test_lensing_model_for_the_wrong_pair_is_refused(lensing):
    with pytest.raises(ValueError, match="'Pt'"):
        LensingTables(lensing, core="Pt", shell="Ag")
