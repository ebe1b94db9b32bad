"""The |m| = Ms constraint: a retrieval whose slowest modes are too weak (the directions right) is mended on a
vortex and a domain wall, the true phase is kept, and each bad input names its argument."""

import numpy as np
import pytest

from atomscount.ltem.constrained import constrain_magnetisation
from atomscount.ltem.result import PhaseRetrieval
from atomscount.ltem.samples import domain_wall, vortex_disk


def _rmse(a, b):
    """RMSE after removing a constant and a plane (as the benchmark scores)."""
    d = a - b
    y, x = np.mgrid[: d.shape[0], : d.shape[1]]
    a_ = np.column_stack([np.ones(d.size), x.ravel(), y.ravel()])
    coef, *_ = np.linalg.lstsq(a_, d.ravel(), rcond=None)
    return float(np.sqrt(np.mean((d.ravel() - a_ @ coef) ** 2)))


def _weak_slow_modes(truth, pixel_nm=2.0, seed=0):
    """The truth with its slowest modes damped by up to 60 % and white noise of 0.05 rad: what a
    retrieval at low dose gives (the directions of the induction right, the slow modes' magnitude not)."""
    ny, nx = truth.shape
    ky, kx = np.meshgrid(np.fft.fftfreq(ny, pixel_nm), np.fft.fftfreq(nx, pixel_nm), indexing="ij")
    damp = 1 - 0.6 * np.exp(-(kx**2 + ky**2) / (2 * 0.006**2))
    noise = np.random.default_rng(seed).normal(0.0, 0.05, truth.shape)
    return np.fft.ifft2(np.fft.fft2(truth) * damp).real + noise


def test_vortex_slow_modes_mended_with_known_ms():
    sample = vortex_disk(shape=(128, 128), radius_nm=89.6)  # Ms 8e5 A/m, 30 nm, V0 26 V
    truth = sample.phase(beam_energy_ev=300e3)
    weak = PhaseRetrieval(phase=_weak_slow_modes(truth), amplitude=np.ones(truth.shape), pixel_nm=2.0, method="ad")
    out = constrain_magnetisation(weak, ms_a_per_m=8e5, thickness_nm=30.0, mean_inner_potential_v=26.0)
    before, after = _rmse(weak.phase, truth), _rmse(out.phase, truth)
    assert after < 0.5 * before, (before, after)
    info = out.parameters["magnetisation"]
    assert info["mask"] == "edge" and abs(info["film_fraction"] - np.pi * 44.8**2 / 128**2) < 0.05
    assert out.method == "ad+ms"


def test_wall_slow_modes_mended_without_a_mask():
    sample = domain_wall(shape=(128, 128))  # Ms 8e5 A/m, 40 nm, a continuous film
    truth = sample.phase(beam_energy_ev=300e3)
    weak = _weak_slow_modes(truth)
    out = constrain_magnetisation(weak, pixel_nm=2.0, ms_a_per_m=8e5, thickness_nm=40.0)
    assert out.parameters["magnetisation"]["mask"] == "whole field"
    assert _rmse(out.phase, truth) < 0.3 * _rmse(weak, truth)


def test_true_phase_is_kept():
    sample = vortex_disk(shape=(64, 64), radius_nm=45.0)
    truth = sample.phase(beam_energy_ev=300e3)
    out = constrain_magnetisation(truth, pixel_nm=2.0, ms_a_per_m=8e5, thickness_nm=30.0)
    assert _rmse(out.phase, truth) < 0.15  # of a cone about 7 rad high and a 5 rad edge step


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ms_a_per_m": 0.0}, "ms_a_per_m"),
        ({"ms_a_per_m": -8e5}, "ms_a_per_m"),
        ({"thickness_nm": 0.0}, "thickness_nm"),
        ({"thickness_nm": float("nan")}, "thickness_nm"),
        ({"mask": np.ones((8, 8), bool)}, "mask"),
        ({"mask": np.ones((32, 32))}, "mask"),
        ({"mask": np.zeros((32, 32), bool)}, "mask"),
        ({"cutoff_per_nm": 0.0}, "cutoff_per_nm"),
        ({"smoothing_nm": -1.0}, "smoothing_nm"),
        ({"n_iter": 0}, "n_iter"),
        ({"pixel_nm": None}, "pixel_nm"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"pixel_nm": 2.0, "ms_a_per_m": 8e5, "thickness_nm": 30.0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        constrain_magnetisation(np.zeros((32, 32)), **args)


def test_pixel_of_a_retrieval_must_agree():
    r = PhaseRetrieval(phase=np.zeros((16, 16)), amplitude=np.ones((16, 16)), pixel_nm=2.0)
    with pytest.raises(ValueError, match="pixel_nm"):
        constrain_magnetisation(r, pixel_nm=3.0, ms_a_per_m=8e5, thickness_nm=30.0)


def test_flat_retrieval_is_returned_unchanged_with_a_warning():
    flat = np.random.default_rng(1).normal(0.0, 1e-4, (32, 32))
    with pytest.warns(UserWarning, match="no directions"):
        out = constrain_magnetisation(flat, pixel_nm=2.0, ms_a_per_m=8e5, thickness_nm=30.0)
    assert out.parameters["magnetisation"]["applied"] is False
    np.testing.assert_array_equal(out.phase, flat)
