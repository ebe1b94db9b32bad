"""Processed (non-count) elemental maps: detection, the noise estimate, and the least-squares path."""

import numpy as np
import pytest

from atomscount.elemental import NonCountDataWarning, estimate_map_noise, is_counts, reconstruct_maps
from atomscount.elemental.phantoms import core_shell_rod
from atomscount.elemental.reconstruct import reconstruct_elemental
from atomscount.tomo import TiltSeries
from atomscount.tomo.operators import project_volume

ANGLES = np.arange(-60.0, 61.0, 10.0)


def _fraction_maps(noise, rng):
    """The Au@Ag rod's projections divided by one common factor (the largest total: maps in [0, ~1]), plus
    Gaussian noise of deviation ``noise`` (in that unit): processed maps, not counts."""
    d = core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=1.5, interface_width_angstrom=3.0)
    proj = {e: project_volume(v, ANGLES, 1.5) for e, v in d.items()}
    top = max(p.max() for p in proj.values())
    maps = {e: TiltSeries(p / top + rng.normal(0.0, noise, p.shape), ANGLES, 1.5) for e, p in proj.items()}
    return d, maps


def _truth_error(result, d):
    truth = np.stack([d[e] for e in result.elements])
    total = truth.sum(axis=0)
    inside = total > 0.5 * total.max()
    conc = truth / np.where(total > 0, total, 1.0)
    return float(np.sqrt(np.mean((result.concentration[:, inside] - conc[:, inside]) ** 2)))


def test_counts_are_told_from_processed_maps():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (2, 5, 6)).astype(float)
    assert is_counts(counts) and is_counts(TiltSeries(counts, [0.0, 10.0], 1.0))
    assert not is_counts(counts / counts.max())  # normalised
    assert not is_counts(counts - 1.0)  # background-subtracted: negative
    expected = TiltSeries(counts + 0.3, [0.0, 10.0], 1.0, {"noise": False})  # a simulation's expectations
    assert is_counts(expected)


def test_noise_estimate_recovers_white_noise_on_a_smooth_map():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96] / 96.0
    smooth = 0.5 + 0.3 * np.sin(3 * xx) * np.cos(2 * yy) + 0.2 * xx
    for sd in (0.01, 0.05):
        est = estimate_map_noise(smooth + rng.normal(0, sd, smooth.shape))
        assert est == pytest.approx(sd, rel=0.08)
    sparse = np.zeros((3, 64, 64))
    sparse[:, 20:40, 20:40] = 1.0 + rng.normal(0, 0.05, (3, 20, 20))  # an empty background does not pull σ to 0
    assert estimate_map_noise(sparse) == pytest.approx(0.05, rel=0.25)
    with pytest.raises(ValueError, match="all zero"):
        estimate_map_noise(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="shape"):
        estimate_map_noise(np.ones(8))


def test_fraction_maps_go_the_least_squares_way_by_default_and_recover_the_rod():
    d, maps = _fraction_maps(0.02, np.random.default_rng(2))
    with pytest.warns(NonCountDataWarning, match="processed maps.*Gaussian \\(least-squares\\) likelihood"):
        res = reconstruct_elemental(None, maps, n_iter=80, tol=1e-3, progress=False)
    reg = res.regularisation
    assert res.method == "maps-tnv" and reg["likelihood"] == "gaussian" and res.provenance["likelihood"] == "gaussian"
    assert reg["auto"] and "discrepancy" in reg["rule"] and reg["mu"] > 0
    assert reg["final_deviance"] == pytest.approx(reg["target_deviance"], rel=0.15)
    for e in ("Au", "Ag"):  # the rod's edges fill much of these 16-pixel maps and raise the estimate a little
        assert 0.019 < res.provenance["map_noise_sigma"][e] < 0.03
    assert not res.provenance["density_absolute"]
    assert _truth_error(res, d) < 0.12
    unregularised = reconstruct_maps(None, maps, weights=0.0, n_iter=80, tol=1e-3, progress=False)
    assert _truth_error(res, d) < 0.9 * _truth_error(unregularised, d)
    assert np.all(np.isfinite(res.sigma)) and np.all(res.sigma[:, res.mask] > 0)


def test_haadf_with_maps_and_a_two_dimensional_map():
    rng = np.random.default_rng(3)
    d, maps = _fraction_maps(0.02, rng)
    h = sum(w * project_volume(d[e], ANGLES, 1.5) for e, w in (("Au", 2.0), ("Ag", 1.0)))
    haadf = TiltSeries(h + rng.normal(0, 0.01 * h.max(), h.shape), ANGLES, 1.5)
    res = reconstruct_maps(haadf, maps, n_iter=80, tol=1e-3, progress=False)
    assert res.gamma == pytest.approx(1.0, abs=0.15)
    assert res.haadf_weights["Au"] / res.haadf_weights["Ag"] == pytest.approx(2.0, rel=0.2)
    assert res.provenance["haadf_noise_sigma"] == pytest.approx(0.01 * h.max(), rel=0.35)
    assert _truth_error(res, d) < 0.12
    # one projection at 0°: a 2D map, on a slab one voxel thick
    au = np.zeros((40, 40))
    au[10:30, 10:20] = 1.0
    ag = np.zeros((40, 40))
    ag[10:30, 20:30] = 1.0
    two = {e: TiltSeries((m + rng.normal(0, 0.05, m.shape))[None], [0.0], 1.0) for e, m in (("Au", au), ("Ag", ag))}
    res2 = reconstruct_maps(None, two, n_iter=60, tol=1e-3, progress=False)
    assert res2.shape == (1, 40, 40) and res2.provenance["two_dimensional"]
    inside = (au + ag) > 0
    assert np.sqrt(np.mean((res2.concentration[0, 0][inside] - au[inside]) ** 2)) < 0.1


def test_bad_maps_are_refused_by_name():
    _, maps = _fraction_maps(0.02, np.random.default_rng(4))
    au = maps["Au"]
    cases = [
        (dict(edxs={**maps, "Ag": TiltSeries(np.zeros_like(au.images), ANGLES, 1.5)}), "edxs\\['Ag'\\] is all zeros"),
        (dict(edxs={**maps, "Ag": TiltSeries(au.images[:-1], ANGLES[:-1], 1.5)}), "edxs\\['Ag'\\]"),
        (dict(edxs=maps, haadf_weights={"Au": 1.0, "Ag": 1.0}), "haadf_weights"),
        (dict(edxs=maps, sum_to_one=True), "sum_to_one"),
        (dict(edxs=maps, weights="best"), "weights"),
        (dict(edxs=[au]), "edxs"),
    ]
    for kwargs, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            reconstruct_maps(kwargs.pop("haadf", None), progress=False, **kwargs)
