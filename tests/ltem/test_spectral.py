"""The contrast-transfer Wiener filter against TIE tuned to the truth on a noisy skyrmion lattice, the
spectral retrieval from it, and the Fourier ring correlation on known cases."""

import numpy as np
import pytest

from atomscount.ltem import ctf_wiener, fourier_ring_correlation, retrieve_phase, tie
from atomscount.ltem.forward import fresnel_image
from atomscount.ltem.result import LTEMSeries
from atomscount.ltem.samples import skyrmion_lattice

DEFOCI = [-2e4, 0.0, 2e4]  # [nm]


def _rmse(a, b):
    d = a - b
    d -= d.mean()
    return float(np.sqrt(np.mean(d**2)))


@pytest.fixture(scope="module")
def lattice():
    """A 128² Bloch skyrmion lattice of 2 nm pixels at ±20 µm and in focus, 100 electrons per pixel."""
    truth = skyrmion_lattice("bloch", shape=(128, 128)).phase(beam_energy_ev=300e3)
    images = np.asarray(fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3))
    counts = np.random.default_rng(0).poisson(100 * np.clip(images, 0, None)).astype(float)
    return truth, LTEMSeries(counts, DEFOCI, pixel_nm=2.0)


def _tie_tuned(series, truth):
    return min(_rmse(tie(series, tikhonov=q).phase, truth) for q in (0.002, 0.005, 0.01, 0.02, 0.05))


def test_wiener_beats_tie_tuned_to_the_truth(lattice):
    truth, series = lattice
    result = ctf_wiener(series)
    assert result.method == "wiener" and result.parameters["kept_modes"] > 0
    assert _rmse(result.phase, truth) < 0.5 * _tie_tuned(series, truth)
    one = LTEMSeries(series.images[2:], DEFOCI[2:], pixel_nm=2.0)  # one image, no in-focus one needed
    assert _rmse(ctf_wiener(one).phase, truth) < 0.5 * _tie_tuned(series, truth)


def test_spectral_retrieval_starts_at_the_wiener_estimate_and_keeps_its_gain(lattice):
    truth, series = lattice
    result = retrieve_phase(series, fit=("phase", "amplitude"), n_iter=20, uncertainty=False, progress=False)
    assert result.parameters["start"] == "wiener" and result.parameters["regulariser"] == "spectral"
    assert result.loss_history[-1] <= result.loss_history[0]
    assert _rmse(result.phase, truth) < 0.5 * _tie_tuned(series, truth)
    assert abs(result.parameters["deviance"] - 1.0) < 0.05  # fits the counts to their Poisson noise
    # the coherent ray test is recorded (a lattice keeps no ray: tests/ltem/test_rays.py)
    assert result.parameters["ray"]["kept"] is False and result.parameters["ray"]["p_value"] > 0.01


def test_fourier_ring_correlation_of_known_cases():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 64))
    same = fourier_ring_correlation(a, a, pixel_nm=2.0)
    np.testing.assert_allclose(same["frc"], 1.0)
    assert same["resolution_nm"] == 4.0  # Nyquist: 2 pixels
    # a map against itself low-passed at 1/16 cycles per nm: the FRC drops above that frequency
    ky, kx = np.meshgrid(np.fft.fftfreq(64, 2.0), np.fft.fftfreq(64, 2.0), indexing="ij")
    low = np.fft.ifft2(np.fft.fft2(a) * (np.hypot(kx, ky) < 1 / 16)).real
    got = fourier_ring_correlation(low, a, pixel_nm=2.0)
    assert got["resolution_nm"] == pytest.approx(16.0, rel=0.15)  # rings one step (1/128 per nm) wide
    assert got["frequency_per_nm"][0] == pytest.approx(1 / 128)
    noise = fourier_ring_correlation(a, rng.normal(size=(64, 64)), pixel_nm=2.0)
    assert abs(np.mean(noise["frc"])) < 0.1


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [(np.zeros((8, 8)), np.zeros((8, 6)), {}, "a and b must be 2D maps of one shape"),
     (np.full((8, 8), np.nan), np.zeros((8, 8)), {}, "a and b must be finite"),
     (np.zeros((8, 8)), np.zeros((8, 8)), {"threshold": 1.5}, "threshold must be in \\(0, 1\\), got 1.5"),
     (np.zeros((8, 8)), np.zeros((8, 8)), {"pixel_nm": -1.0}, "pixel_nm")],
)  # fmt: skip
def test_fourier_ring_correlation_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fourier_ring_correlation(a, b, **{"pixel_nm": 2.0, **kwargs})


def test_wiener_bad_input():
    with pytest.raises(TypeError, match="series must be an LTEMSeries"):
        ctf_wiener(np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="series.defoci_nm must hold a non-zero defocus"):
        ctf_wiener(LTEMSeries(np.ones((1, 8, 8)), [0.0], pixel_nm=2.0))


def test_vacuum_flattening_mends_the_slow_modes_round_an_island():
    # a vortex disk in vacuum with the error that the images leave in the slowest modes (drawn with the
    # variance 1/P of each mode of a 10 e/px series, up to 3 cycles per field): the correction that flattens
    # the vacuum, weighed by that precision, removes most of it
    from atomscount.ltem.samples import domain_wall, vortex_disk
    from atomscount.ltem.spectral import _flatten_vacuum, _spectral_terms

    truth = vortex_disk(shape=(128, 128), radius_nm=90.0).phase(beam_energy_ev=300e3)
    images = fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3)
    rng = np.random.default_rng(0)
    counts = rng.poisson(10 * np.clip(np.asarray(images), 0, None)).astype(float)
    precision = _spectral_terms(LTEMSeries(counts, DEFOCI, pixel_nm=2.0))["precision"]
    f = np.fft.fftfreq(128) * 128
    slow = (np.hypot(*np.meshgrid(f, f, indexing="ij")) <= 3) & (precision > 0)
    noise = (rng.normal(size=(128, 128)) + 1j * rng.normal(size=(128, 128))) / np.sqrt(2 * np.where(slow, precision, 1))
    error = np.fft.ifft2(np.where(slow, noise, 0), norm="ortho").real
    assert _rmse(error, 0) > 0.5  # rad: the slow modes the images leave free
    # the vortex's flux closes, so its vacuum is flat: the flat model removes most of the error, the stray-field
    # model, which lets the vacuum hold an island's stray field too, still about half, and the default's test
    # finds no stray field (its χ² with 2 degrees of freedom below the 1 % level) and takes the flat model
    flat, info = _flatten_vacuum(truth + error, precision, model="flat")
    assert _rmse(flat, truth) < 0.5 * _rmse(error, 0) and info == {"model": "flat"}
    assert _rmse(_flatten_vacuum(truth + error, precision, model="stray")[0], truth) < 0.6 * _rmse(error, 0)
    auto, info = _flatten_vacuum(truth + error, precision)
    assert info["model"] == "flat" and info["stray_statistic"] < info["stray_threshold"]
    assert info["stray_threshold"] == pytest.approx(9.21, abs=0.01)  # χ²(2 dof) exceeds it with probability 1 %
    np.testing.assert_array_equal(auto, flat)
    # no island: a continuous film (a domain wall), and a hole in a film (the enclosed side has the lower phase)
    wall = domain_wall(shape=(128, 128)).phase(beam_energy_ev=300e3)
    assert _flatten_vacuum(wall + error, precision) is None
    assert _flatten_vacuum(-truth + error, precision) is None


def test_vacuum_correction_keeps_the_stray_field_of_a_uniformly_magnetised_island():
    # a disk magnetised along x (256², 100 e/px precision): its vacuum holds the stray field, which the default's
    # test finds, and the stray-field model (a constant plus the phases of the island magnetised along x and y)
    # explains, so the exact phase is left as it is; a flat vacuum would take the stray field for an error and
    # change the phase by ~1 rad
    from atomscount.ltem.samples import MagneticSample, vortex_disk
    from atomscount.ltem.spectral import _flatten_vacuum, _spectral_terms

    disk = vortex_disk(shape=(256, 256), radius_nm=179.2)
    m = (disk.thickness_nm > 0.5 * disk.thickness_nm.max()).astype(float)
    uniform = MagneticSample(m, 0 * m, 0 * m, disk.thickness_nm, 2.0, disk.ms_a_per_m, disk.mean_inner_potential_v,
                             "uniform disk")  # fmt: skip
    truth = uniform.phase(beam_energy_ev=300e3)
    images = fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3)
    counts = np.random.default_rng(0).poisson(100 * np.clip(np.asarray(images), 0, None)).astype(float)
    precision = _spectral_terms(LTEMSeries(counts, DEFOCI, pixel_nm=2.0))["precision"]
    auto, info = _flatten_vacuum(truth, precision)
    assert info["model"] == "stray" and info["stray_statistic"] > info["stray_threshold"]
    assert _rmse(auto, truth) < 0.02  # rad
    assert _rmse(_flatten_vacuum(truth, precision, model="flat")[0], truth) > 0.5


def test_mean_poisson_deviance():
    # 0 for counts equal to their means; about 1 + 1/(6 μ) for Poisson counts drawn from them
    from atomscount.ltem.spectral import _mean_poisson_deviance

    mu = np.full((2, 200, 200), 50.0)
    assert _mean_poisson_deviance(mu, mu) == pytest.approx(0.0, abs=1e-12)
    y = np.random.default_rng(0).poisson(mu).astype(float)
    assert _mean_poisson_deviance(mu, y) == pytest.approx(1.0 + 1.0 / 300.0, abs=0.02)
    assert _mean_poisson_deviance([2.0], [0.0]) == pytest.approx(4.0)  # 2 μ where y = 0
