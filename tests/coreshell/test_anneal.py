"""The numba annealing loop and the search's constraints: energy bookkeeping, composition,
mirror symmetry, shape fitting, orientation and non-convergence."""

import warnings

import numpy as np
import pytest

from atomscount.coreshell import _anneal
from atomscount.coreshell.forward import CORE, EMPTY, SHELL, ForwardModel, LensingTables
from atomscount.coreshell.search import SearchWarning, _adjacency, search_core_shell
from atomscount.coreshell.shapes import CoreShape
from atomscount.coreshell.sites import fcc_sites, group_columns, neighbour_pairs, tilt_rotation
from atomscount.library import load_default_lensing

A = 4.08


@pytest.fixture(scope="module")
def lensing():
    return load_default_lensing("Au", "Ag", "001")


def ball(radius):
    pos = fcc_sites(A, radius + 1.0)
    return pos[np.linalg.norm(pos, axis=1) <= radius]


def views_of(pos, codes, lensing, seed, rel=0.01):
    """Two views' (xy, scs, err, axis) of a state, with Gaussian noise of ``rel`` SCS + 2e-4 Å²."""
    t = LensingTables(lensing, core="Au", shell="Ag")
    rng = np.random.default_rng(seed)
    out, counts = [], []
    for v, axis in enumerate(["001", "110"]):
        cols = group_columns(pos, None if v == 0 else tilt_rotation("001", axis))
        keep = np.bincount(cols.column_of_site, weights=codes != EMPTY, minlength=cols.n_columns) > 0
        scs = ForwardModel(codes, [cols], [t], [np.zeros(cols.n_columns)], [np.ones(cols.n_columns)]).predicted[0]
        err = rel * scs + 2e-4
        out.append((cols.xy[keep], (scs + rng.normal(0, err))[keep], err[keep], axis))
        counts.append(np.bincount(cols.column_of_site, weights=codes != EMPTY, minlength=cols.n_columns)[keep])
    return out, [c.astype(int) for c in counts]


def test_kernel_energy_matches_a_recomputation_from_scratch(lensing):
    rng = np.random.default_rng(0)
    pos = ball(9.0)
    codes = rng.choice([EMPTY, SHELL, CORE], size=len(pos), p=[0.1, 0.6, 0.3]).astype(np.int64)
    t = LensingTables(lensing, core="Au", shell="Ag")
    cols = [group_columns(pos), group_columns(pos, tilt_rotation("001", "110"))]
    measured = [rng.uniform(1, 20, c.n_columns) for c in cols]
    sigma = [rng.uniform(0.2, 1.0, c.n_columns) for c in cols]
    pairs = neighbour_pairs(pos, A)
    start, nbr = _adjacency(pairs, len(pos))
    packed = _anneal.pack(cols, [t, t], measured, sigma)
    core_ref = _anneal.compact_reference(pos, [1.0, 0.0, 0.0], start, nbr)
    occ_ref = _anneal.compact_reference(pos, [0.0, 0.0, 0.0], start, nbr)
    for moves in ([1, 1, 1, 1], [1, 0, 0, 0]):
        c = codes.copy()
        n_core0 = int(np.sum(c == CORE))
        out = _anneal.anneal(c, np.zeros(len(pos), dtype=np.bool_), np.full(len(pos), -1), start, nbr,
                             packed["col_of_site"], packed["gstart"], packed["gorder"], packed["view_of_col"],
                             packed["eoc"], packed["inc"], packed["nlen"], packed["curves"], packed["lam"],
                             packed["measured"], packed["weight"], 0.7, 0.3, 0.4, core_ref, occ_ref,
                             np.array(moves, dtype=float), 3000, 1000, 5.0, 10, 7)  # fmt: skip
        final_energy = out[2]
        fm = ForwardModel(c, cols, [t, t], measured, sigma)
        expected = _anneal.energy_reference(c, pairs, np.diff(start), np.concatenate(fm.predicted),
                                            np.concatenate(measured), np.concatenate([1 / s**2 for s in sigma]),
                                            0.7, 0.3, 0.4)  # fmt: skip
        expected -= 0.7 * core_ref[np.sum(c == CORE)] + 0.3 * occ_ref[np.sum(c != EMPTY)]
        assert final_energy == pytest.approx(expected, rel=1e-9, abs=1e-6)
        best = out[0]
        assert ForwardModel(best, cols, [t, t], measured, sigma).chi2() == pytest.approx(out[1], rel=1e-9)
        if moves[1] == 0:  # swaps only: the composition is kept
            assert np.sum(c == CORE) == n_core0 and np.sum(best == CORE) == n_core0
        assert np.all((out[4] >= 0) & (out[4] <= 1))


def test_compact_reference_of_a_single_site_and_a_pair():
    pos = fcc_sites(A, 6.0)
    start, nbr = _adjacency(neighbour_pairs(pos, A), len(pos))
    ref = _anneal.compact_reference(pos, [0.0, 0.0, 0.0], start, nbr)
    assert ref[0] == 0 and ref[1] == 12 and ref[2] == 22  # two neighbours share one bond
    assert np.all(np.diff(ref[:50]) <= 12)


@pytest.fixture(scope="module")
def offcentre(lensing):
    pos = ball(11.0)
    codes = np.where(np.linalg.norm((pos - [2.0, -1.5, 1.0]) / [7.0, 5.5, 5.0], axis=1) <= 1, CORE, SHELL)
    views, counts = views_of(pos, codes, lensing, seed=4)
    return pos, codes, views, counts


def test_known_composition_is_kept_exactly(lensing, offcentre):
    pos, codes, views, counts = offcentre
    n_true = int(np.sum(codes == CORE))
    model = search_core_shell(views, lensing, "Au", counts=counts[0], n_core=n_true, rng=0)
    assert int(model.is_core.sum()) == n_true
    assert model.core["n_core_parametric"] == n_true
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchWarning)  # five Au too few cannot fit to within noise
        fewer = search_core_shell(views, lensing, "Au", counts=counts[0], n_core=n_true - 5, rng=0)
    assert int(fewer.is_core.sum()) == n_true - 5
    with pytest.raises(ValueError, match="n_core"):
        search_core_shell(views, lensing, "Au", counts=counts[0], n_core=len(pos) + 1)


def test_free_composition_finds_the_core_size(lensing, offcentre):
    pos, codes, views, counts = offcentre
    model = search_core_shell(views, lensing, "Au", counts=counts[0], rng=1)
    n_true = int(np.sum(codes == CORE))
    # measured: 117 found for 117 true; the bond prior is judged against the most compact
    # core of the same size, so it no longer shrinks the core
    assert abs(int(model.is_core.sum()) - n_true) <= 0.05 * n_true
    assert model.converged, model.info["convergence"]


def test_mirror_symmetry_keeps_the_model_symmetric(lensing):
    pos = ball(11.0)
    codes = np.where(np.linalg.norm((pos - [2.0, -1.5, 0.0]) / [7.0, 5.5, 5.0], axis=1) <= 1, CORE, SHELL)
    views, counts = views_of(pos, codes, lensing, seed=5)
    model = search_core_shell(views, lensing, "Au", counts=counts[0], symmetric=True, rng=2)
    xyz = model.atoms.positions
    plane = model.info["mirror_plane_z"]
    img = xyz * [1, 1, -1] + [0, 0, 2 * plane]
    d = np.linalg.norm(img[:, None, :] - xyz[None, :, :], axis=2)
    partner = d.argmin(axis=1)
    paired = d.min(axis=1) < 0.1
    assert paired.mean() > 0.9
    np.testing.assert_array_equal(model.is_core[paired], model.is_core[partner[paired]])
    assert abs(model.core["centre"][2] - plane) < 1e-12
    truth = codes[np.argmin(np.linalg.norm(pos[:, None] - (xyz - xyz.mean(0) + pos.mean(0))[None], axis=2), axis=0)]
    assert np.mean(model.is_core == (truth == CORE)) > 0.9


def test_shape_is_fitted_without_counts(lensing):
    pos = ball(10.0)
    # a flattened particle: the top layers missing from some columns
    pos = pos[pos[:, 2] < 7.5]
    codes = np.where(np.linalg.norm(pos - [0.5, 0.0, 0.0], axis=1) <= 5.5, CORE, SHELL)
    views, counts = views_of(pos, codes, lensing, seed=6, rel=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchWarning)  # judged on the counts below, not on convergence
        # the SCS come from the lensing model itself: it has no model error here
        model = search_core_shell(views, lensing, "Au", counts=None, rng=3, model_error=0.0)
    assert model.info["fit_shape"]
    # measured: the pure-shell start is off by 0.64 atoms per column; the fit ends about 0.2
    # off in each view, with 223 atoms for 236 (56 Au for 44: an Au atom scatters like about
    # two Ag, so without counts the total and the composition trade against each other)
    for v in range(2):
        assert np.mean(np.abs(model.atom_counts[v] - counts[v])) < 0.4, v
    assert abs(len(model.atoms) - len(pos)) <= 0.08 * len(pos)
    assert np.all((model.occupancy >= 0) & (model.occupancy <= 1))


def test_rotated_ellipsoid_is_found_with_its_orientation(lensing):
    pos = ball(12.0)
    rot = np.array([[np.cos(0.6), -np.sin(0.6), 0], [np.sin(0.6), np.cos(0.6), 0], [0, 0, 1]])
    u = (pos @ rot) / [9.0, 4.5, 5.0]
    codes = np.where(np.linalg.norm(u, axis=1) <= 1, CORE, SHELL)
    views, counts = views_of(pos, codes, lensing, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchWarning)  # the parametric stage alone leaves chi2 high
        free = search_core_shell(views, lensing, "Au", counts=counts[0], rng=0, n_anneal=0, n_sample=0)
        sphere = search_core_shell(views, lensing, "Au", counts=counts[0], core="sphere", rng=0, n_anneal=0,
                                   n_sample=0)  # fmt: skip
    shape = CoreShape("ellipsoid", pos, A)
    assert len(shape.bounds()) == 9
    # the parametric stage alone: an oriented ellipsoid explains the SCS far better than a sphere
    assert free.core["chi2_parametric"] < 0.5 * sphere.core["chi2_parametric"]
    long_axis = np.array([np.cos(0.6), np.sin(0.6), 0.0])
    radii = np.array(free.core["radii"])
    from scipy.spatial.transform import Rotation

    axes = Rotation.from_euler("zyz", free.core["euler_zyz"]).as_matrix()
    assert abs(axes[:, np.argmax(radii)] @ long_axis) > 0.9


def test_star_core_fits_an_irregular_core_better_than_a_sphere(lensing):
    pos = ball(12.0)
    # two overlapping balls (a peanut): not a sphere, and not an ellipsoid either
    lobes = np.linalg.norm(pos - [-3.0, -1.5, 0.5], axis=1) <= 4.5
    lobes |= np.linalg.norm(pos - [3.0, 1.5, 0.0], axis=1) <= 4.0
    codes = np.where(lobes, CORE, SHELL)
    views, counts = views_of(pos, codes, lensing, seed=8)
    kw = {"counts": counts[0], "rng": 0, "n_anneal": 0, "n_sample": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchWarning)  # the parametric stage alone leaves chi2 high
        star = search_core_shell(views, lensing, "Au", core="star", **kw)
        sphere = search_core_shell(views, lensing, "Au", core="sphere", **kw)
    assert star.core["chi2_parametric"] < sphere.core["chi2_parametric"]
    assert star.core["shape"] == "star" and "x" in star.core["harmonics"]


def test_search_that_cannot_explain_the_data_reports_its_best_chi2(lensing, offcentre):
    pos, codes, views, counts = offcentre
    scaled = [(xy, 1.6 * scs, err, axis) for xy, scs, err, axis in views]  # SCS from another microscope
    with pytest.warns(SearchWarning, match=r"did not converge \(best chi2 [0-9.]+ over"):
        model = search_core_shell(scaled, lensing, "Au", counts=counts[0], rng=0, n_anneal=2000, n_sample=500)
    assert not model.converged
    assert "times the lensing model's" in model.info["convergence"]
    with pytest.warns(SearchWarning, match=r"chi2 per column"):  # a scale held at 1 cannot explain them
        fixed = search_core_shell(scaled, lensing, "Au", counts=counts[0], rng=0, scs_scale=1.0, n_anneal=2000,
                                  n_sample=500)  # fmt: skip
    assert not fixed.converged
    assert model.summary()["convergence"] == model.info["convergence"]
