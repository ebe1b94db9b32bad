import warnings

import numpy as np
import pytest
from scipy.optimize import least_squares

from atomscount import ColumnFit, HAADFImage, crlb, fit_columns
from atomscount.columns.fit import WEAK
from atomscount.columns.model import ColumnModel, add_poisson_noise, dense_jacobian, render_dense, square_lattice


def dense_fit(data, pixel, pos, h, w0, types, free_width, n_bg):
    """Reference: scipy's dense joint least squares on the uncut NumPy model."""
    n = len(h)
    n_types = types.max() + 1

    def unpack(p):
        b = 4 if free_width else 3
        loc = p[: n * b].reshape(n, b)
        bg = p[n * b : n * b + n_bg]
        rho = loc[:, 3] if free_width else p[n * b + n_bg :][types]
        return loc[:, :2], loc[:, 2], rho, bg

    def resid(p):
        xy, eta, rho, bg = unpack(p)
        return (render_dense(data.shape, pixel, xy, eta, rho, bg) - data).ravel()

    def jac(p):
        xy, eta, rho, bg = unpack(p)
        return dense_jacobian(data.shape, pixel, xy, eta, rho, types=types, free_width=free_width, n_bg=n_bg)

    cols = [pos[:, 0], pos[:, 1], h] + ([np.full(n, w0)] if free_width else [])
    p0 = np.concatenate([np.column_stack(cols).ravel(), [np.percentile(data, 2)], np.zeros(n_bg - 1)])
    if not free_width:
        p0 = np.concatenate([p0, np.full(n_types, w0)])
    sol = least_squares(resid, p0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
    xy, eta, rho, bg = unpack(sol.x)
    J = sol.jac
    s2 = np.sum(sol.fun**2) / (data.size - len(sol.x))
    cov = s2 * np.linalg.inv(J.T @ J)
    return xy, eta, rho, bg, cov


@pytest.mark.parametrize("width,background", [("shared", "constant"), ("free", "plane"), ("shared", "plane")])
def test_sparse_fit_equals_dense_joint_least_squares(small_model, width, background):
    rng = np.random.default_rng(11)
    img = small_model.image_dense() + rng.normal(0, 0.01, small_model.shape)
    start = small_model.positions + rng.normal(0, 0.05, small_model.positions.shape)
    # converged far below the noise (tol), to compare the minimum itself
    fit = fit_columns(
        HAADFImage(img, 0.1), start, types=small_model.types, width=width, background=background, tol=1e-3
    )
    n_bg = 1 if background == "constant" else 3
    xy, eta, rho, bg, cov = dense_fit(
        img, 0.1, start, fit.heights * 0 + 0.4, 0.45, small_model.types, width == "free", n_bg
    )
    scs = 2 * np.pi * eta * rho**2
    assert fit.converged.all()
    np.testing.assert_allclose(fit.scs, scs, rtol=1e-3)
    np.testing.assert_allclose(fit.positions, xy, atol=1e-3)
    np.testing.assert_allclose(fit.widths, rho, rtol=1e-4)
    np.testing.assert_allclose(fit.background[:n_bg], bg, atol=1e-5)
    # standard errors from the Jacobian agree with the dense covariance, scaled by the reduced
    # chi-square (SCS) or by the noise measured from the image (positions: the same here,
    # where the model is exact, within the estimate's scatter on 3,360 pixels)
    b = 4 if width == "free" else 3
    dense_sx = np.sqrt(np.diag(cov)[0 : 5 * b : b])
    ratio = fit.positions_error[:, 0] / dense_sx
    np.testing.assert_allclose(ratio, np.mean(ratio), rtol=0.02)
    assert 0.85 < np.mean(ratio) < 1.15
    np.testing.assert_allclose(fit.heights_error, np.sqrt(np.diag(cov)[2 : 5 * b : b]), rtol=0.02)


def test_fit_recovers_truth_on_noise_free_image(small_model):
    fit = fit_columns(HAADFImage(small_model.image(), 0.1), small_model.positions + 0.04, types=small_model.types,
                      background="plane")  # fmt: skip
    np.testing.assert_allclose(fit.scs, small_model.scs, rtol=1e-6)
    np.testing.assert_allclose(fit.positions, small_model.positions, atol=1e-6)
    assert fit.type_names == ("0", "1")


def test_errors_and_precision_match_crlb_for_poisson_noise():
    """On a seeded noisy lattice, the ML fit reaches the CRLB and its errors say so."""
    shape, pixel = (200, 200), 0.1
    pos = square_lattice(shape, pixel, 2.0)
    rng = np.random.default_rng(12)
    n_atoms = rng.integers(1, 30, len(pos))
    scs = 0.035 * n_atoms**0.9
    truth = ColumnModel(shape, pixel, pos, scs / (2 * np.pi * 0.45**2), 0.45, background=(0.02,))
    bound = crlb(truth, dose_e_per_angstrom2=5e4)
    z_scs, z_x = [], []
    for seed in range(3):
        img = add_poisson_noise(truth.image(), dose_e_per_angstrom2=5e4, pixel_size_angstrom=pixel, rng=seed)
        fit = fit_columns(HAADFImage(img, pixel), pos, noise="poisson")
        assert fit.converged.all()
        z_scs.append((fit.scs - scs) / bound.scs)
        z_x.append((fit.positions[:, 0] - pos[:, 0]) / bound.x)
        np.testing.assert_allclose(fit.scs_error, bound.scs, rtol=0.1)
        assert fit.metadata["dose_estimate_e_per_angstrom2"] == pytest.approx(5e4, rel=0.05)
    z_scs = np.concatenate(z_scs)
    z_x = np.concatenate(z_x)
    assert abs(z_scs.mean()) < 0.25
    assert 0.8 < z_scs.std() < 1.2
    assert 0.8 < z_x.std() < 1.2


def test_crlb_matches_dense_fisher_information(small_model):
    dose = 2e4
    b = crlb(small_model, dose_e_per_angstrom2=dose)
    img = small_model.image_dense()
    k = dose * 0.01
    J = dense_jacobian(small_model.shape, 0.1, small_model.positions, small_model.heights, small_model.widths,
                       types=small_model.types, free_width=False, n_bg=3)  # fmt: skip
    F = J.T @ ((k / img.ravel())[:, None] * J)
    cov = np.linalg.inv(F)
    np.testing.assert_allclose(b.x, np.sqrt(np.diag(cov)[0:15:3]), rtol=1e-3)
    np.testing.assert_allclose(b.heights, np.sqrt(np.diag(cov)[2:15:3]), rtol=1e-3)


def test_result_round_trips_through_hdf5_and_csv(small_model, tmp_path):
    fit = fit_columns(HAADFImage(small_model.image(), 0.1), small_model.positions, types=["Au", "Au", "Ag", "Au", "Ag"],
                      keep_residual=True)  # fmt: skip
    fit.to_hdf5(tmp_path / "fit.h5")
    back = ColumnFit.from_hdf5(tmp_path / "fit.h5")
    for name in ColumnFit._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(fit, name))
    assert back.type_names == ("Ag", "Au")
    assert back.summary() == fit.summary()
    assert back.metadata == fit.metadata
    fit.to_csv(tmp_path / "c.csv")
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith("index,input_index,type")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_nan_pixels_raise_naming_argument_or_are_masked(small_model):
    img = small_model.image()
    img[10, 12] = np.nan
    with pytest.raises(ValueError, match=r"image.data has 1 NaN/inf pixels \(first at row 10, col 12\)"):
        fit_columns(HAADFImage(img, 0.1), small_model.positions)
    fit = fit_columns(
        HAADFImage(img, 0.1), small_model.positions, types=small_model.types, mask_invalid=True, background="plane"
    )
    np.testing.assert_allclose(fit.scs, small_model.scs, rtol=1e-4)


def test_empty_positions_give_empty_result_with_warning(small_model):
    with pytest.warns(UserWarning, match="no columns to fit"):
        fit = fit_columns(HAADFImage(small_model.image(), 0.1), np.zeros((0, 2)))
    assert fit.n_columns == 0 and fit.scs.shape == (0,)


def test_columns_outside_image_are_dropped_with_warning(small_model):
    pos = np.vstack([small_model.positions, [[-3.0, 1.0], [2.0, 99.0]]])
    types = np.concatenate([small_model.types, [0, 0]])
    with pytest.warns(UserWarning, match="dropped 2 columns centred more than .* outside the image"):
        fit = fit_columns(HAADFImage(small_model.image(), 0.1), pos, types=types)
    assert fit.n_columns == 5
    np.testing.assert_array_equal(fit.input_index, np.arange(5))


def test_spurious_column_in_vacuum_is_flagged_as_not_significant(small_model):
    # a column is converged only where it is significant: a start in vacuum fits a height
    # within noise, and is flagged for it while the real columns converge
    pos = np.vstack([small_model.positions, [[5.5, 0.5]]])
    img = add_poisson_noise(small_model.image(), dose_e_per_angstrom2=1e4, pixel_size_angstrom=0.1, rng=1)
    with pytest.warns(UserWarning, match=r"1 of 6 columns did not converge \(1 SCS under 3 errors"):
        fit = fit_columns(HAADFImage(img, 0.1), pos, types=np.r_[small_model.types, 0], max_iter=30)
    assert fit.converged[:5].all() and not fit.converged[-1] and fit.metadata["lm_converged"]
    assert fit.metadata["flagged_columns"][WEAK] == [5]
    z = fit.heights / fit.heights_error
    assert z[-1] < 5 and np.all(z[:5] > 40)


def test_pure_noise_converges_nowhere():
    rng = np.random.default_rng(0)
    img = HAADFImage(rng.normal(1.0, 0.1, (80, 80)), 0.1)
    pos = square_lattice((80, 80), 0.1, 1.6)
    with pytest.warns(UserWarning, match="did not converge"):
        fit = fit_columns(img, pos)
    assert fit.n_columns == len(pos) and not fit.converged.any()


def test_real_failures_are_flagged_with_their_reason(small_model):
    # a column started on empty background far from any peak wanders off: flagged as moved too far
    pos = np.vstack([small_model.positions, [[0.3, 5.2]]])
    img = add_poisson_noise(small_model.image(), dose_e_per_angstrom2=1e4, pixel_size_angstrom=0.1, rng=3)
    with pytest.warns(UserWarning, match="did not converge"):
        fit = fit_columns(HAADFImage(img, 0.1), pos, types=np.r_[small_model.types, 0], max_shift_angstrom=0.05)
    assert fit.converged[:5].all() and not fit.converged[-1]
    assert sum(fit.metadata["flagged"].values()) >= 1


def test_column_centred_on_the_edge_is_fitted_with_the_pixels_that_exist():
    pos = np.array([[0.0, 1.5], [2.0, 1.5], [2.0, 2.95]])  # the first on the left edge, the last on the top edge
    truth = ColumnModel((30, 40), 0.1, pos, heights=[0.4, 0.4, 0.4], widths=0.4, background=(0.01,))
    img = add_poisson_noise(truth.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=0)
    fit = fit_columns(HAADFImage(img, 0.1), pos + 0.05)
    assert fit.n_columns == 3 and fit.converged.all()
    np.testing.assert_allclose(fit.scs, truth.scs, rtol=0.05)
    assert np.all(np.abs(fit.scs - truth.scs) < 4 * fit.scs_error)


def test_fit_of_non_gaussian_columns_stops_early_and_flags_nothing():
    # Gaussian plus Lorentzian tails: the model cannot fit exactly, so a step criterion far
    # below the noise is never met; the fit must still stop and flag no column
    rng = np.random.default_rng(5)
    pos = square_lattice((96, 96), 0.3, 2.0)
    yy, xx = np.mgrid[:96, :96] * 0.3
    img = np.full((96, 96), 2.0e4)
    for x0, y0 in pos:
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        img += 6e3 * np.exp(-r2 / (2 * 0.45**2)) + 3e3 * 0.3**2 / (r2 + 0.3**2)
    img = rng.poisson(img).astype(float)
    fit = fit_columns(HAADFImage(img, 0.3), pos + 0.05)
    assert fit.converged.all() and fit.metadata["lm_converged"]
    assert fit.n_iterations < 30
    long = fit_columns(HAADFImage(img, 0.3), pos + 0.05, max_iter=300)
    assert np.median(np.abs(fit.scs / long.scs - 1)) < 2e-3


@pytest.mark.parametrize(
    "kwargs,match",
    [({"width": "per-column"}, "width must be one of"), ({"background": "poly"}, "background must be one of"),
     ({"noise": "white"}, "noise must be one of"), ({"max_iter": 0}, "max_iter must be an integer >= 1, got 0")],
)  # fmt: skip
def test_bad_options_are_named(small_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_columns(HAADFImage(small_model.image(), 0.1), small_model.positions, **kwargs)


def test_bad_positions_and_types_are_named(small_model):
    img = HAADFImage(small_model.image(), 0.1)
    with pytest.raises(ValueError, match=r"positions must have shape \(n, 2\)"):
        fit_columns(img, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="types must have one entry per column"):
        fit_columns(img, small_model.positions, types=[0, 1])
    with pytest.raises(TypeError, match="image must be a HAADFImage"):
        fit_columns(img.data, small_model.positions)


@pytest.mark.parametrize("value,match", [(-1.0, "width_init_angstrom must be > 0, got -1.0"),
                                         (1e-6, "width_init_angstrom must lie between"),
                                         (1e6, "width_init_angstrom must lie between")])  # fmt: skip
def test_absurd_starting_widths_are_refused(small_model, value, match):
    with pytest.raises(ValueError, match=match):
        fit_columns(HAADFImage(small_model.image(), 0.1), small_model.positions, width_init_angstrom=value)


def test_widths_stay_bounded_on_a_negated_image(small_model):
    # columns as dips: nothing to fit, but the widths must not run away (they once asked for GBs)
    img = HAADFImage(1.0 - small_model.image(), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_columns(img, small_model.positions, types=small_model.types, width="free", max_iter=30)
    assert np.all(fit.widths < 0.5 * max(img.shape) * 0.1)
