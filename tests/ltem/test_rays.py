"""The coherent ray test of a straight feature in the spectral prior (atomscount.ltem._rays): its pieces on
known cases, its false-alarm rate on pure noise, a low-dose domain wall that one image now retrieves better
than single-image TIE, and a skyrmion lattice it leaves alone."""

import numpy as np
import pytest

import atomscount.ltem.spectral as spectral
from atomscount.ltem import ctf_wiener, domain_wall, single_image_tie
from atomscount.ltem._rays import _RAY_LEVEL, _power_law_fit, _profile_max, _ray_spectrum, _rice_tail
from atomscount.ltem.forward import fresnel_image
from atomscount.ltem.result import LTEMSeries, PhaseRetrieval
from atomscount.ltem.samples import skyrmion_lattice
from atomscount.ltem.spectral import _transfer_stack

DEFOCUS = 2e4  # [nm]


def _rmse(a, b):
    d = a - b
    d -= d.mean()
    return float(np.sqrt(np.mean(d**2)))


def _one_image(truth, dose, seed):
    image = np.asarray(fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array([DEFOCUS]), beam_energy_ev=300e3))
    counts = np.random.default_rng(seed).poisson(dose * np.clip(image, 0, None)).astype(float)
    return LTEMSeries(counts, [DEFOCUS], pixel_nm=2.0)


def test_profile_max_finds_a_line():
    # X(u) = Re Σ e^{-i m u0} e^{i m u} peaks at u = u0 with the number of modes (u0 on the grid)
    m = np.arange(1, 11)
    assert _profile_max(np.exp(-1j * m * 2 * np.pi * 5 / 80)) == pytest.approx(10.0)


def test_rice_tail_bounds_a_single_position():
    # the bound is at least the one-position χ²₁ tail and falls with the level
    from scipy.stats import chi2

    assert _rice_tail(9.0, [0.0]) == pytest.approx(chi2.sf(9.0, 1))
    assert _rice_tail(9.0, [100.0]) > _rice_tail(16.0, [100.0]) > chi2.sf(16.0, 1)


def test_power_law_fit_recovers_a_noise_free_spectrum():
    radius = np.arange(1.0, 33.0)
    p = 1e-3 * radius**4
    truth = 1e4 * radius**-4.0  # A |k|^-2g with g = 2, on the fit's grid
    s = _power_law_fit(1.0 + truth * p, p, radius)
    assert np.allclose(s, truth, rtol=0.1)


def test_pure_noise_keeps_no_ray_at_the_level():
    # per-mode data y/√P complex normal with unit variance (noise alone) with the +20 µm transfer of a 128²
    # field: the Rice bound caps the false-alarm rate at _RAY_LEVEL (binomial margin for 200 draws)
    t, _, _ = _transfer_stack((128, 128), 2.0, [DEFOCUS], beam_energy_ev=300e3, cs_nm=0.0, divergence_rad=0.0,
                              defocus_spread_nm=0.0)  # fmt: skip
    p = 10.0 * t[0] ** 2
    tested = p > 0
    tested[0, 0] = False
    rng = np.random.default_rng(7)
    kept = 0
    for _ in range(200):
        z = (rng.standard_normal(p.shape) + 1j * rng.standard_normal(p.shape)) / np.sqrt(2)
        spectrum, info = _ray_spectrum(z * np.sqrt(p), p, tested)
        kept += info["kept"]
        assert info["kept"] == bool(spectrum.any())
    assert kept <= 200 * _RAY_LEVEL + 3 * np.sqrt(200 * _RAY_LEVEL)


def test_pure_noise_series_keeps_no_ray():
    # flat phase, counts at 10 e/px, one image and three: no ray is kept, so the Wiener phase keeps nothing
    for seed in range(4):
        series = _one_image(np.zeros((128, 128)), 10, seed)
        result = ctf_wiener(series)
        assert result.parameters["ray"]["kept"] is False
        assert result.parameters["ray"]["statistic"] < result.parameters["ray"]["threshold"]


def test_low_dose_wall_beats_single_image_tie(tmp_path):
    # a 256² field of 2 nm pixels with two 180° walls, one image at 10 e/px: each mode of the walls is below
    # the per-mode threshold (a zero phase without the ray), the ray of modes along x is found
    truth = domain_wall(shape=(256, 256), pixel_nm=2.0).phase(beam_energy_ev=300e3)
    series = _one_image(truth, 10, 9)
    result = ctf_wiener(series)
    ray = result.parameters["ray"]
    assert ray["kept"] and ray["direction"] == [1, 0] and ray["statistic"] > ray["threshold"]
    sitie = single_image_tie(series.images[0], DEFOCUS, pixel_nm=2.0, beam_energy_ev=300e3).phase
    ours = _rmse(result.phase, truth)
    assert ours < 0.5 * _rmse(sitie, truth)
    assert ours < 0.5 * _rmse(0 * truth, truth)
    assert PhaseRetrieval.from_hdf5(result.to_hdf5(tmp_path / "r.h5")).parameters["ray"] == ray


def test_lattice_left_alone(monkeypatch):
    # a Néel skyrmion lattice at 10 e/px, one image: no ray, and the Wiener phase is the one without the test
    truth = skyrmion_lattice("neel", shape=(128, 128)).phase(beam_energy_ev=300e3)
    series = _one_image(truth, 10, 3)
    with_test = ctf_wiener(series)
    assert with_test.parameters["ray"]["kept"] is False
    monkeypatch.setattr(spectral, "_ray_spectrum", lambda y, p, tested: (np.zeros(y.shape), {"kept": False}))
    np.testing.assert_array_equal(ctf_wiener(series).phase, with_test.phase)
