"""fit_columns' position errors: the noise measured from the image, apart from the model's misfit."""

import warnings

import numpy as np

from atomscount.columns._noise import highpass_noise, local_intensity, position_variance_scale
from atomscount.columns.fit import fit_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice
from atomscount.image import HAADFImage

PIXEL = 0.1


def _lattice(shape=(64, 64)):
    pos = square_lattice(shape, PIXEL, 2.0)
    pos = pos + np.random.default_rng(3).normal(0, 0.02, pos.shape)
    heights = np.linspace(0.2, 0.4, len(pos))
    return ColumnModel(shape, PIXEL, pos, heights, 0.45, background=(0.02,))


def _repeats(clean, start, n, make_noise, **kw):
    pos, err, fits = [], [], []
    for seed in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a column may stop short of tol: not what this test is about
            fit = fit_columns(HAADFImage(make_noise(clean, seed), PIXEL), start, voronoi=False, **kw)
        pos.append(fit.positions)
        err.append(fit.positions_error)
        fits.append(fit)
    return np.array(pos), np.array(err), fits


def test_position_errors_are_calibrated_for_gaussian_columns_and_noise():
    """Exact model, known Gaussian noise: the z-scores of the position errors are N(0, 1)."""
    truth = _lattice()
    sigma = 0.01
    pos, err, _ = _repeats(truth.image(), truth.positions + 0.03, 16,
                           lambda img, s: img + np.random.default_rng(s).normal(0, sigma, img.shape))  # fmt: skip
    z = (pos - truth.positions) / err
    assert 0.8 < np.std(z) < 1.25
    assert abs(np.mean(z)) < 0.15


def _tailed_image(truth):
    """Gaussian columns with Lorentzian tails: a misfit the Gaussian model cannot take up."""
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]] * PIXEL
    img = truth.image()
    for (x0, y0), h in zip(truth.positions, truth.heights, strict=True):
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        img = img + 0.3 * h * 0.35**2 / (r2 + 0.35**2)
    return img


def test_position_errors_leave_out_the_misfit():
    """Non-Gaussian columns under weak noise: the errors match the scatter over noise
    realisations, where the chi-square-scaled ones would count the misfit as noise."""
    truth = _lattice()
    clean = _tailed_image(truth)
    pos, err, fits = _repeats(clean, truth.positions, 12,
                              lambda img, s: add_poisson_noise(img, dose_e_per_angstrom2=1e7, pixel_size_angstrom=PIXEL,
                                                               rng=s))  # fmt: skip
    scatter = pos.std(axis=0, ddof=1)
    ratio = np.median(err.mean(axis=0) / scatter)
    assert 0.75 < ratio < 1.33
    meta = fits[0].metadata
    assert meta["misfit_rms"] > 3 * meta["noise_rms"]
    assert ratio * np.sqrt(meta["chi2_over_noise"]) > 3  # what chi-square scaling would have claimed
    # the dose, from the noise model: var = b I with b = 1 / (dose pixel^2)
    a, b = meta["noise_variance_model"]
    assert abs(b * 1e7 * PIXEL**2 - 1) < 0.15


def test_highpass_noise_measures_counting_noise_under_a_misfit():
    truth = _lattice((96, 96))
    clean = _tailed_image(truth)
    valid = np.ones(clean.shape, dtype=bool)
    for dose in (1e5, 1e7):
        img = add_poisson_noise(clean, dose_e_per_angstrom2=dose, pixel_size_angstrom=PIXEL, rng=1)
        # the Gaussian model's residual: noise plus the tails
        a, b = highpass_noise(img - truth.image(), local_intensity(img, valid), valid)
        assert abs(b * dose * PIXEL**2 - 1) < 0.1
        assert a < 0.1 * b * clean.mean()


def test_position_variance_scale_is_the_noise_each_column_sees():
    shape = (60, 80)
    pos = np.array([[1.5, 3.0], [6.5, 3.0]])
    widths = np.array([0.45, 0.45])
    ones = np.ones(shape)
    # unweighted least squares: the variance under the column
    ramp = np.broadcast_to(np.where(np.arange(shape[1]) < 40, 1.0, 4.0), shape)
    np.testing.assert_allclose(position_variance_scale(ones, ramp, pos, widths, PIXEL), [1.0, 4.0])
    # Poisson weights 1 / m with counting noise m / k: 1 / k everywhere
    m = 0.02 + _lattice(shape).image()
    np.testing.assert_allclose(position_variance_scale(1 / m, m / 500.0, pos, widths, PIXEL), 1 / 500.0)
