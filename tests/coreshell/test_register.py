"""Registration of the views on one lattice, and the search on views rotated in their planes."""

import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount.coreshell.forward import CORE, SHELL, ForwardModel, LensingTables
from atomscount.coreshell.register import (
    column_period,
    cubic_rotations,
    particle_sites,
    register_view,
    view_rotations,
)
from atomscount.coreshell.search import SearchWarning, search_core_shell
from atomscount.coreshell.sites import fcc_sites, group_columns, tilt_rotation
from atomscount.library import load_default_lensing

A = 4.08


def rz(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def ball(radius):
    pos = fcc_sites(A, radius + 1.0)
    return pos[np.linalg.norm(pos, axis=1) <= radius]


def test_cubic_rotations_are_the_24_proper_ones_and_periods_are_right():
    rots = cubic_rotations()
    assert len(rots) == 24
    np.testing.assert_allclose([np.linalg.det(r) for r in rots], 1.0)
    assert len({tuple(np.round(r, 6).ravel()) for r in rots}) == 24
    assert column_period(A, "001") == pytest.approx(A)
    assert column_period(A, "110") == pytest.approx(A / np.sqrt(2))


@pytest.mark.parametrize("axis", ["001", "110"])
def test_register_view_recovers_a_rotation_and_shift_exactly(axis):
    pos = ball(10.0)
    cols = group_columns(pos, None if axis == "001" else tilt_rotation("001", axis))
    theta, shift = 0.7, np.array([5.0, -3.0])
    xy = cols.xy @ rz(theta)[:2, :2].T + shift
    reg = register_view(xy, A, axis)
    assert reg["rms"] < 1e-9
    assert np.all(reg["on_lattice"])
    # the angle is known up to the projected lattice's own symmetry (90° for [001], 180° for [110])
    period = np.pi / 2 if axis == "001" else np.pi
    assert min(abs((reg["theta"] - theta) % period), period - abs((reg["theta"] - theta) % period)) < 1e-9
    scattered = np.random.default_rng(0).uniform(-15, 15, (len(xy), 2))  # no lattice at all
    with pytest.raises(ValueError, match=r"zone axis right"):
        register_view(scattered, A, axis)


def test_particle_sites_rebuild_the_true_sites_of_a_rotated_view():
    pos = ball(11.0)
    cols = group_columns(pos)
    xy = cols.xy @ rz(0.3)[:2, :2].T + [3.0, -2.0]
    xyz, empty, column, _ = particle_sites(xy, np.diff(cols.start), A, "001", margin=1)
    truth = (pos - [0.0, 0.0, pos[:, 2].mean()]) @ rz(0.3).T + [3.0, -2.0, 0.0]
    d, _ = cKDTree(truth).query(xyz[~empty])
    assert d.max() < 1e-9 and (~empty).sum() == len(pos)
    assert empty.sum() == 2 * cols.n_columns  # one empty site at either end of every column
    np.testing.assert_array_equal(np.bincount(column[~empty], minlength=cols.n_columns), np.diff(cols.start))


def test_view_rotations_hold_the_true_relation_among_eight():
    pos = ball(10.0)
    th0, th1 = 0.3, -1.1
    xy0 = group_columns(pos).xy @ rz(th0)[:2, :2].T
    xy1 = group_columns(pos, tilt_rotation("001", "110")).xy @ rz(th1)[:2, :2].T
    r0, r1 = register_view(xy0, A, "001"), register_view(xy1, A, "110")
    cands = view_rotations(r0["frame"], r1["frame"], "001", "110")
    truth = rz(th1) @ tilt_rotation("001", "110") @ rz(th0).T
    assert len(cands) == 8
    assert sum(np.allclose(c, truth, atol=1e-9) for c in cands) == 1


def test_search_on_views_rotated_in_their_planes_finds_the_core():
    lensing = load_default_lensing("Au", "Ag", "001")
    t = LensingTables(lensing, core="Au", shell="Ag")
    pos = ball(11.0)
    codes = np.where(np.linalg.norm((pos - [2.0, -1.5, 1.0]) / [7.0, 5.5, 5.0], axis=1) <= 1, CORE, SHELL)
    rng = np.random.default_rng(11)
    th = {"001": 0.4, "110": 2.0}
    views, counts = [], []
    for v, axis in enumerate(["001", "110"]):
        cols = group_columns(pos, None if v == 0 else tilt_rotation("001", axis))
        scs = ForwardModel(codes, [cols], [t], [np.zeros(cols.n_columns)], [np.ones(cols.n_columns)]).predicted[0]
        err = 0.02 * scs + 2e-4
        views.append((cols.xy @ rz(th[axis])[:2, :2].T, scs + rng.normal(0, err), err, axis))
        counts.append(np.diff(cols.start))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SearchWarning)
        model = search_core_shell(views, lensing, "Au", counts=counts[0], rng=0)
    truth_xyz = (pos - [0.0, 0.0, pos[:, 2].mean()]) @ rz(th["001"]).T
    d, idx = cKDTree(truth_xyz).query(model.atoms.positions)
    assert d.max() < 1e-6
    # measured: 0.997 of the sites right
    assert np.mean(model.is_core == (codes[idx] == CORE)) > 0.95
    expected = rz(th["110"]) @ tilt_rotation("001", "110") @ rz(th["001"]).T
    np.testing.assert_allclose(model.rotations[1], expected, atol=1e-9)
    assert sum(c["chosen"] for c in model.info["orientation_candidates"][0]) == 1
