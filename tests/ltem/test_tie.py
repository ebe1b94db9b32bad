"""TIE and single-image TIE on a known phase, and their bad inputs."""

import numpy as np
import pytest

from atomscount.ltem import LTEMSeries, simulate_series, single_image_tie, skyrmion_lattice, tie

N = 64


def _rel_rmse(estimate, truth):
    e, t = estimate - estimate.mean(), truth - truth.mean()
    return float(np.sqrt(np.mean((e - t) ** 2)) / np.std(t))


@pytest.fixture(scope="module")
def lattice():
    return skyrmion_lattice("bloch", shape=(N, N), pixel_nm=2.0)


def test_tie_recovers_a_known_phase_from_a_noise_free_series(lattice):
    series = simulate_series(lattice, [-2e3, 0, 2e3])
    result = tie(series)
    assert result.method == "tie"
    assert _rel_rmse(result.phase, lattice.phase()) < 0.01
    np.testing.assert_allclose(result.amplitude, 1.0, atol=1e-3)  # a pure phase object


def test_tie_with_an_unequal_series_and_a_scaled_dose(lattice):
    series = simulate_series(lattice, [-4e3, -1e3, 0, 3e3])
    counts = LTEMSeries(series.images * 500.0, series.defoci_nm, pixel_nm=series.pixel_nm)
    assert _rel_rmse(tie(counts).phase, lattice.phase()) < 0.02


def test_single_image_tie_recovers_a_uniform_film_phase_from_either_side_of_focus(lattice):
    for df in (2e3, -2e3):
        image = simulate_series(lattice, [df]).images[0] * 37.0
        result = single_image_tie(image, df, pixel_nm=2.0)
        assert result.method == "sitie"
        assert _rel_rmse(result.phase, lattice.phase()) < 0.01
    one = simulate_series(lattice, [2e3])
    assert _rel_rmse(single_image_tie(one).phase, lattice.phase()) < 0.01


def test_the_tikhonov_filter_trades_the_slowest_frequencies_for_noise(lattice):
    series = simulate_series(lattice, [-2e4, 0, 2e4], dose_e_per_pixel=100, rng=1)
    loose, tight = tie(series, tikhonov=0.0), tie(series, tikhonov=0.01)
    truth = lattice.phase()
    assert _rel_rmse(tight.phase, truth) < _rel_rmse(loose.phase, truth)
    assert tight.parameters["tikhonov_per_nm"] == 0.01


def test_symmetrise_keeps_the_phase_of_a_texture_with_no_gradient_across_the_edges():
    y, x = np.mgrid[0:N, 0:N] * 2.0
    c = (N - 1) * 2.0 / 2  # the centre [nm]
    phase = 0.5 * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * 15.0**2))  # flat at the edges
    from atomscount.ltem import fresnel_image

    images = np.asarray(fresnel_image(phase, pixel_nm=2.0, defocus_nm=np.array([-2e3, 0, 2e3]), beam_energy_ev=3e5))
    result = tie(LTEMSeries(images, [-2e3, 0, 2e3], pixel_nm=2.0), symmetrise=True)
    assert _rel_rmse(result.phase, phase) < 0.02


def test_bad_tie_inputs_name_the_argument(lattice):
    with pytest.raises(ValueError, match="at least two different defoci"):
        tie(LTEMSeries(np.ones((2, 8, 8)), [1e3, 1e3], pixel_nm=1.0))
    with pytest.raises(ValueError, match="no in-focus image"):
        tie(LTEMSeries(np.ones((2, 8, 8)), [-1e3, 1e3], pixel_nm=1.0))
    with pytest.raises(TypeError, match="series must be an LTEMSeries"):
        tie(np.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="tikhonov"):
        tie(LTEMSeries(np.ones((2, 8, 8)), [0, 1e3], pixel_nm=1.0), tikhonov=-1)
    with pytest.raises(ValueError, match="defocus_nm"):
        single_image_tie(np.ones((8, 8)), 0.0, pixel_nm=1.0)
    with pytest.raises(ValueError, match="pixel_nm"):
        single_image_tie(np.ones((8, 8)), 1e3)
    with pytest.raises(ValueError, match="the series holds 2"):
        single_image_tie(LTEMSeries(np.ones((2, 8, 8)), [0, 1e3], pixel_nm=1.0))
    bad = np.ones((8, 8))
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        single_image_tie(bad, 1e3, pixel_nm=1.0)
