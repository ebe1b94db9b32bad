"""Issue 11: hostile inputs to detection and fitting, one test per reported failure.

Setup S of the issue: a 64x64 image at 0.1 Å/px with 9 columns on a 1.6 Å square
lattice, heights 0.3, widths 0.4 Å, background 0.02 (true SCS 0.302 Å²).
"""

import warnings

import numpy as np
import pytest

import atomscount._checks
from atomscount import HAADFImage, find_columns, fit_columns
from atomscount.columns.fit import WEAK
from atomscount.columns.model import ColumnModel

TRUE_SCS = 2 * np.pi * 0.3 * 0.4**2


@pytest.fixture
def setup_s():
    xs = np.arange(3) * 1.6 + 1.6
    pos = np.array([(x, y) for y in xs for x in xs])
    m = ColumnModel((64, 64), 0.1, pos, heights=np.full(9, 0.3), widths=np.full(9, 0.4), background=(0.02,))
    return HAADFImage(m.image(), 0.1), pos


def quiet_fit(image, positions, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_columns(image, positions, progress=False, **kw)


def test_negated_image_keeps_widths_bounded_and_flags_every_column(setup_s):
    img, pos = setup_s
    fit = quiet_fit(HAADFImage(-img.data, 0.1), pos)
    assert np.all(fit.widths <= 2 * 1.6 + 1e-9)  # at most twice the spacing
    assert not fit.converged.any()


def test_kernel_memory_is_estimated_and_refused_over_the_limit(setup_s, monkeypatch):
    img, pos = setup_s
    monkeypatch.setattr(atomscount._checks, "memory_limit_bytes", lambda: 10_000)
    with pytest.raises(ValueError, match=r"would need .* GiB, over the limit"):
        quiet_fit(img, pos)


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"min_distance_angstrom": 1e9}, "min_distance_angstrom"),
     ({"threshold": 0.1, "smoothing_angstrom": 1e6}, "smoothing_angstrom"),
     ({"exclude_border_angstrom": 1e6}, "exclude_border_angstrom")],
)  # fmt: skip
def test_find_columns_refuses_lengths_beyond_the_image(setup_s, kw, name):
    img, _ = setup_s
    with pytest.raises(ValueError, match=f"{name} must be smaller than the image"):
        find_columns(img, **kw)


@pytest.mark.parametrize("w", [-1.0, 1e-6, 1e6])
def test_width_init_outside_the_physical_range_is_refused(setup_s, w):
    img, pos = setup_s
    with pytest.raises(ValueError, match="width_init_angstrom"):
        quiet_fit(img, pos, width_init_angstrom=w)


def test_sub_pixel_duplicates_are_merged_with_a_warning(setup_s):
    img, pos = setup_s
    with pytest.warns(UserWarning, match="merged 9 duplicate columns"):
        fit = fit_columns(img, np.vstack([pos, pos + 0.01]), progress=False)
    assert fit.n_columns == 9
    np.testing.assert_array_equal(fit.input_index, np.arange(9))
    np.testing.assert_allclose(fit.scs, TRUE_SCS, rtol=1e-6)
    assert fit.converged.all()
    assert fit.metadata["n_merged_duplicates"] == 9


def test_one_duplicated_column_gets_the_whole_scs(setup_s):
    img, pos = setup_s
    fit = quiet_fit(img, np.vstack([pos, pos[:1]]))
    assert fit.n_columns == 9
    np.testing.assert_allclose(fit.scs, TRUE_SCS, rtol=1e-6)


def test_two_identical_positions_alone_fit_as_one_column(setup_s):
    img, pos = setup_s
    fit = quiet_fit(img, np.vstack([pos[4], pos[4]]))
    assert fit.n_columns == 1
    assert np.isfinite(fit.scs_error[0])


def test_more_parameters_than_pixels_is_an_error_before_any_iteration(setup_s):
    img, _ = setup_s
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="parameters, but the image has only 4096 valid pixels"):
        quiet_fit(img, rng.uniform(0.5, 6.0, (20_000, 2)))
    with pytest.raises(ValueError, match="parameters, but the image has only 1 valid pixels"):
        quiet_fit(HAADFImage(np.ones((1, 1)), 0.1), [[0.05, 0.05]])


def test_a_width_driven_below_the_pixel_is_never_reported_converged(setup_s):
    _, pos = setup_s
    m = ColumnModel((64, 64), 0.1, pos + 0.003, heights=np.full(9, 0.3), widths=np.full(9, 0.01), background=(0.02,))
    fit = quiet_fit(HAADFImage(m.image(), 0.1), pos, width_init_angstrom=0.1)
    assert not fit.converged.any()


def test_a_column_whose_scs_is_not_significant_is_flagged(setup_s):
    _, pos = setup_s
    present = np.arange(9) != 4  # the centre site is empty: its SCS is noise
    m = ColumnModel((64, 64), 0.1, pos[present], heights=np.full(8, 0.3), widths=np.full(8, 0.4), background=(0.02,))
    noisy = m.image() + np.random.default_rng(0).normal(0, 0.02, m.shape)
    fit = quiet_fit(HAADFImage(noisy, 0.1), pos, max_shift_angstrom=10.0)
    # the empty site's column drifts onto its neighbour (5), and the pair shares one peak
    assert fit.converged[[0, 1, 2, 3, 6, 7, 8]].all()
    assert not fit.converged[4]
    assert 4 in fit.metadata["flagged_columns"][WEAK]


@pytest.mark.parametrize("bad", ["5", 1.5, float("nan"), True])
def test_max_iter_must_be_an_integer(setup_s, bad):
    img, pos = setup_s
    with pytest.raises(TypeError, match="max_iter must be an integer >= 1"):
        quiet_fit(img, pos, max_iter=bad)


def test_threshold_must_be_a_number(setup_s):
    img, _ = setup_s
    with pytest.raises(TypeError, match="threshold must be a real number, got '0.2'"):
        find_columns(img, threshold="0.2")


def test_a_type_left_without_columns_is_dropped_with_a_warning(setup_s):
    img, pos = setup_s
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_columns(img, np.vstack([pos, [[-5.0, -5.0]]]), types=["a"] * 9 + ["b"], progress=False)
    assert any("types ['b'] have no columns left" in str(w.message) for w in caught)
    assert fit.type_names == ("a",)
    np.testing.assert_allclose(fit.scs, TRUE_SCS, rtol=1e-6)


def test_poisson_noise_names_nan_pixels_and_overflowing_doses():
    from atomscount import add_poisson_noise

    with pytest.raises(ValueError, match="image must be finite for Poisson noise, got 16 NaN/inf pixels"):
        add_poisson_noise(np.full((4, 4), np.nan), dose_e_per_angstrom2=1e4, pixel_size_angstrom=0.1)
    with pytest.raises(ValueError, match="dose_e_per_angstrom2 = 1e\\+300"):
        add_poisson_noise(np.ones((4, 4)), dose_e_per_angstrom2=1e300, pixel_size_angstrom=0.1)


# ---------------------------------------------------------------- issue 26


@pytest.mark.parametrize("bad", [float("nan"), -1.0, 0.0, float("inf")])
def test_max_shift_must_be_a_finite_positive_length(setup_s, bad):
    img, pos = setup_s
    with pytest.raises(ValueError, match="max_shift_angstrom must be"):
        quiet_fit(img, pos + 0.5, max_shift_angstrom=bad)


@pytest.mark.parametrize("name", ["mask_invalid", "voronoi", "keep_residual"])
def test_a_string_is_not_taken_for_a_flag(setup_s, name):
    img, pos = setup_s
    with pytest.raises(TypeError, match=f"{name} must be True or False, got 'no' \\(str\\)"):
        quiet_fit(img, pos, **{name: "no"})


@pytest.mark.parametrize("bad", [None, float("nan")])
def test_types_must_be_labels(setup_s, bad):
    img, pos = setup_s
    with pytest.raises(TypeError, match=r"types must hold labels \(str or int\), got .* at types\[0\]"):
        quiet_fit(img, pos, types=[bad] * 9)
    fit = quiet_fit(img, pos, types=np.array(["a", "b"] * 4 + ["a"]))  # labels of one kind still work
    assert fit.type_names == ("a", "b")


def test_a_million_start_positions_are_refused_before_the_neighbour_search(setup_s, monkeypatch):
    import time

    import atomscount.columns._geometry as geometry  # the fit's neighbour searches

    def no_tree(*a, **k):
        raise AssertionError("the neighbour search ran")

    monkeypatch.setattr(geometry, "cKDTree", no_tree)
    img, _ = setup_s
    positions = np.random.default_rng(0).uniform(0.0, 6.4, (1_000_000, 2))
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"\d{6} columns inside the image .* only 4096 valid pixels"):
        quiet_fit(img, positions)
    assert time.perf_counter() - t < 5


def test_a_grid_of_guesses_finer_than_any_column_spacing_is_refused_quickly():
    """25 columns 2 Å apart; 1,089 start positions on a 0.3 Å grid invent columns between them."""
    import time

    xs = np.arange(5) * 2.0 + 1.0
    pos = np.array([(x, y) for y in xs for x in xs])
    img = HAADFImage(ColumnModel((100, 100), 0.1, pos, np.full(25, 0.3), 0.4, background=(0.02,)).image(), 0.1)
    g = np.arange(33) * 0.3 + 0.15
    grid = np.array([(x, y) for y in g for x in g])
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"positions: 1089 of 1089 columns lie closer than 0.5 Å to another"):
        quiet_fit(img, grid)
    assert time.perf_counter() - t < 5
    fit = quiet_fit(img, pos + 0.05)  # the columns themselves, of course, fit
    assert fit.converged.all()


def test_find_columns_warns_on_an_inverted_image(setup_s):
    img, pos = setup_s
    with pytest.warns(UserWarning, match="image looks inverted"):
        found = find_columns(HAADFImage(-img.data, 0.1), threshold=0.3)
    assert len(found) > 9  # the gaps: what the warning is for
    found = find_columns(img, threshold=0.3)  # the image itself: no warning (warnings are errors here)
    assert len(found) == 9


def test_a_plane_background_on_a_one_pixel_wide_image_is_refused_by_name():
    m = ColumnModel((43, 1), 1.0, [[0.0, 20.0]], heights=[0.3], widths=[1.2], background=(0.02,))
    with pytest.raises(ValueError, match=r"background='plane' needs an image at least 2 pixels .* \(43, 1\)"):
        quiet_fit(HAADFImage(m.image(), 1.0), [[0.0, 20.0]], background="plane")
    assert quiet_fit(HAADFImage(m.image(), 1.0), [[0.0, 20.0]]).n_columns == 1  # a constant one is determined
