import dataclasses
import warnings

import numpy as np
import pytest

from atomscount.counting import (
    ColumnCounts,
    count_atoms,
    count_by_library,
    count_hybrid,
    count_time_series,
    fit_mixtures,
)
from atomscount.library import load_default


@pytest.fixture(scope="module")
def au():
    return load_default("Au", "001")


def _columns(lib, lo, hi, n, noise_fraction, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(lo, hi + 1, n)
    sd = noise_fraction * np.mean(np.diff(lib.scs))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), np.full(n, sd)


def test_library_counting_is_exact_at_low_noise_and_posteriors_are_normalised(au):
    truth, scs, err = _columns(au, 1, 40, 500, 0.08, 0)
    r = count_by_library(scs, au, scs_errors=err)
    assert np.mean(r.counts == truth) == 1.0
    np.testing.assert_allclose(r.posterior.sum(axis=1), 1.0)
    # increments shrink with thickness: thin columns are sure, thick ones less so
    assert np.all(r.probability[truth <= 10] > 0.99)
    assert np.mean(r.probability[truth > 30]) < np.mean(r.probability[truth <= 10])
    assert r.total_atoms == truth.sum()


def test_library_counting_warns_when_the_normalisation_is_off(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    with pytest.warns(UserWarning, match="about 1.200 times the library"):
        count_by_library(1.2 * scs, au, scs_errors=1.2 * err)


def test_hybrid_absorbs_a_normalisation_error_and_reports_the_scale(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(1.15 * scs, au, scs_errors=1.15 * err)
    assert r.library_scale == pytest.approx(1.15, rel=0.01)
    assert np.mean(r.counts == truth) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = count_by_library(1.15 * scs, au, scs_errors=1.15 * err)
    assert np.mean(plain.counts == truth) < 0.5  # the plain comparison is thrown off


def test_icl_counting_with_a_library_aligns_the_counts(au):
    truth, scs, err = _columns(au, 4, 15, 600, 0.12, 2)
    r = count_atoms(scs, method="icl", library=au, scs_errors=err, max_components=20, rng=0)
    assert r.n_components == 12
    assert np.mean(r.counts == truth) > 0.97
    assert r.icl.shape == (20,) and r.aic.shape == (20,) and r.bic.shape == (20,)
    assert r.candidates and r.candidates[0]["n_components"] == 12


def test_masked_scs_are_not_counted_and_small_samples_limit_g(au):
    truth, scs, err = _columns(au, 1, 5, 30, 0.05, 3)
    scs[4] = np.nan
    with pytest.raises(ValueError, match=r"scs must be finite, got 1 NaN/inf of 30 counted values \(scs\[4\] = nan\)"):
        count_atoms(scs, max_components=50, scs_errors=err, rng=0)
    mask = np.isfinite(scs)
    with pytest.warns(UserWarning, match="max_components limited to 9"):
        r = count_atoms(scs, max_components=50, scs_errors=err, mask=mask, rng=0)
    assert r.counts[4] == -1 and r.icl.shape == (9,)
    with pytest.raises(ValueError, match="scs must not be empty"):
        count_atoms([])
    with pytest.raises(ValueError, match="method"):
        count_atoms(scs, method="magic")
    with pytest.raises(ValueError, match="needs a library"):
        count_atoms(scs, method="library")
    with pytest.raises(ValueError, match="max_components must be an integer within 1..150, got 151"):
        count_atoms(scs, max_components=151)


def test_time_series_coupling_fixes_isolated_errors(au):
    rng = np.random.default_rng(4)
    n_frames, n_cols = 12, 200
    base = rng.integers(3, 12, n_cols)
    truth = np.repeat(base[None], n_frames, axis=0)
    truth[6:, :20] -= 1  # 20 columns lose an atom half-way
    sd = 0.3 * np.mean(np.diff(au.scs))
    scs = au.scs_at(truth) + rng.normal(0, sd, truth.shape)
    r = count_time_series(scs, library=au, scs_errors=np.full(truth.shape, sd), max_components=15, rng=0)
    independent = np.array(r.metadata["independent_counts"])
    assert r.counts.shape == truth.shape
    # the coupling removes most of the independent per-frame errors
    assert 1 - np.mean(r.counts == truth) < (1 - np.mean(independent == truth)) / 3
    np.testing.assert_array_equal(r.total_atoms.shape, (n_frames,))


def test_round_trips(tmp_path, au):
    truth, scs, err = _columns(au, 1, 8, 120, 0.1, 5)
    r = count_atoms(scs, library=au, scs_errors=err, max_components=12, rng=0)
    r.to_hdf5(tmp_path / "c.h5")
    back = ColumnCounts.from_hdf5(tmp_path / "c.h5")
    for name in ColumnCounts._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.candidates == r.candidates and back.notes == r.notes and back.n_components == r.n_components
    r.to_csv(tmp_path / "c.csv")
    table = ColumnCounts.read_csv(tmp_path / "c.csv")
    np.testing.assert_array_equal(table["counts"], r.counts)
    np.testing.assert_allclose(table["scs"], r.scs, rtol=1e-7)


def test_icl_with_a_library_handles_counts_absent_from_the_particle(au):
    rng = np.random.default_rng(8)
    present = np.array([2, 6, 8, 9, 10, 13])
    truth = rng.choice(present, 600)
    sd = 0.1 * np.mean(np.diff(au.scs))
    scs = au.scs_at(truth) + rng.normal(0, sd, truth.size)
    r = count_atoms(scs, library=au, scs_errors=np.full(truth.size, sd), max_components=15, rng=0)
    np.testing.assert_array_equal(r.count_values, present)
    assert np.mean(r.counts == truth) > 0.99
    assert "absent" in next(n for n in r.notes if n.startswith("chose"))


def test_hybrid_keeps_the_scale_at_one_unless_the_data_say_otherwise(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(scs, au, scs_errors=err)
    assert r.library_scale == pytest.approx(1.0, abs=1e-9) and any("held at 1" in n for n in r.notes)
    assert np.mean(r.counts == truth) == 1.0


def test_a_library_for_other_microscope_settings_is_flagged(au):
    from atomscount.counting import check_library_settings

    truth, scs, err = _columns(au, 2, 10, 100, 0.05, 1)
    assert check_library_settings(au, {"energy_ev": 300e3, "outer_angle_mrad": 200.0}) == []
    msgs = check_library_settings(au, {"energy_ev": 200e3, "inner_angle_mrad": 90.0})
    assert len(msgs) == 2 and "energy_ev = 300000 but the image has 200000" in msgs[0]
    with pytest.warns(UserWarning, match="other microscope settings"):
        r = count_atoms(scs, method="library", library=au, scs_errors=err, microscope={"energy_ev": 200e3})
    assert any("other microscope settings" in n for n in r.notes)


def test_hybrid_fits_the_scale_of_unnormalised_scs_freely(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(1e4 * scs, au, scs_errors=1e4 * err)  # detector counts, not a fraction of the beam
    assert np.mean(r.counts == truth) == 1.0
    assert r.library_scale == pytest.approx(1e4, rel=0.01)
    assert r.metadata["free_scale"]
    note = next(n for n in r.notes if "found by a scan" in n)
    assert "times the library's largest SCS" in note and "HAADFImage.normalise(detector_vacuum=" in note
    # the same through count_atoms, and far below the library as well
    assert np.mean(count_atoms(1e-3 * scs, method="hybrid", library=au, scs_errors=1e-3 * err).counts == truth) == 1.0


def test_unnormalised_scs_that_fix_no_scale_stop_with_the_ratio(au):
    rng = np.random.default_rng(9)
    one_count = 1e4 * (au.scs_at(np.full(200, 5)) + rng.normal(0, 0.002, 200))  # one thickness: no step to see
    said = r"is 1,4\d\d times the library's largest SCS.*no scale can be fitted.*HAADFImage.normalise\("
    with pytest.raises(ValueError, match=said):
        count_hybrid(one_count, au)
    truth, scs, err = _columns(au, 3, 12, 300, 1.0, 2)  # a whole step of noise: counts not resolved
    with pytest.raises(ValueError, match="single counts are not resolved well enough to fix the scale"):
        count_hybrid(1e4 * scs, au, scs_errors=1e4 * err)


def test_library_counting_refuses_unnormalised_scs_instead_of_capping(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    said = r"median SCS .* is 3,3\d\d times the library's largest SCS \(0.63\d+ Å² at 40 atoms\).*HAADFImage.normalise"
    for method in ("library", "icl"):
        with pytest.raises(ValueError, match=said):
            count_atoms(1e4 * scs, method=method, library=au, scs_errors=1e4 * err, max_components=5)
    with pytest.raises(ValueError, match="method='hybrid'"):
        count_by_library(1e4 * scs, au)


def test_first_count_must_be_a_positive_integer(au):
    truth, scs, err = _columns(au, 1, 4, 120, 0.05, 6)
    for bad, error in ((-5, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match=f"first_count must be an integer >= 1 .* got {bad!r}"):
            count_atoms(scs, first_count=bad, max_components=6)
    r = count_atoms(scs, first_count=3, scs_errors=err, max_components=6, rng=0)
    np.testing.assert_array_equal(r.count_values, [3, 4, 5, 6])
    np.testing.assert_array_equal(r.counts, truth + 2)


def _seeded_scs(lib, seed=11, n=300):
    rng = np.random.default_rng(seed)
    truth = rng.integers(2, 12, n)
    sd = 0.08 * np.mean(np.diff(lib.scs))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), np.full(n, sd)


# (function, keyword, bad value, error, message naming the argument and the value)
BAD_ARGUMENTS = [
    ("count_atoms", "dose", -1, ValueError, "dose must be > 0, got -1.0"),
    ("count_atoms", "dose", float("nan"), ValueError, "dose must be finite, got nan"),
    ("count_atoms", "dose", "1", TypeError, "dose must be a real number, got '1'"),
    ("count_atoms", "max_components", 1.5, TypeError, "max_components must be an integer within 1..150, got 1.5"),
    ("count_atoms", "max_components", True, TypeError, "max_components must be an integer within 1..150, got True"),
    ("count_atoms", "max_components", 0, ValueError, "max_components must be an integer within 1..150, got 0"),
    ("count_atoms", "n_starts", "3", TypeError, "n_starts must be an integer >= 2, got '3' (str)"),
    ("count_atoms", "n_starts", 1, ValueError, "n_starts must be an integer >= 2, got 1"),
    ("count_atoms", "n_components", 2.0, TypeError, "n_components must be an integer within 1..50, got 2.0"),
    ("count_atoms", "n_components", 0, ValueError, "n_components must be an integer within 1..50, got 0"),
    ("count_atoms", "first_count", "1", TypeError, "first_count must be an integer >= 1"),
    ("count_atoms", "microscope", {"energy_ev": "300kV"}, TypeError, "microscope['energy_ev'] must be a real number"),
    ("count_hybrid", "scale_prior_sd", 0, ValueError, "scale_prior_sd must be > 0, got 0.0"),
    ("count_hybrid", "scale_prior_sd", float("inf"), ValueError, "scale_prior_sd must be finite, got inf"),
    ("count_hybrid", "max_iter", 0, ValueError, "max_iter must be an integer >= 1, got 0"),
    ("count_hybrid", "max_iter", 10.0, TypeError, "max_iter must be an integer >= 1, got 10.0 (float)"),
    ("count_hybrid", "tol", -1e-9, ValueError, "tol must be >= 0, got -1e-09"),
    ("count_hybrid", "fit_offset", 2, ValueError, "fit_offset must be one of [False, True], got 2"),
    ("count_by_library", "max_count", 0, ValueError, "max_count must be an integer >= 1, got 0"),
    ("count_by_library", "max_count", 2.5, TypeError, "max_count must be an integer >= 1, got 2.5 (float)"),
    ("count_time_series", "stay_probability", 1, ValueError, "stay_probability must lie in (0, 1), got 1.0"),
    ("count_time_series", "stay_probability", "high", TypeError, "stay_probability must be a real number, got 'high'"),
    ("count_time_series", "max_components", 2.5, TypeError, "max_components must be an integer within 1..150, got 2.5"),
]


@pytest.mark.parametrize(("function", "keyword", "value", "error", "message"), BAD_ARGUMENTS)
def test_every_numeric_argument_is_checked_by_name(au, function, keyword, value, error, message):
    import re

    import atomscount.counting as counting

    truth, scs, err = _seeded_scs(au, n=60)
    args = {"count_atoms": (scs,), "count_time_series": (scs[None],)}.get(function, (scs, au))
    extra = {"library": au} if keyword == "microscope" else {}  # the microscope is compared with a library
    with pytest.raises(error, match=re.escape(message)):
        getattr(counting, function)(*args, **extra, **{keyword: value})


def test_negative_scs_errors_are_refused_by_index(au):
    truth, scs, err = _seeded_scs(au, n=60)
    err[3] = -0.1
    for method in ("icl", "library", "hybrid"):
        said = r"scs_errors must be >= 0 \(NaN where unknown\), got scs_errors\[3\] = -0\.1"
        with pytest.raises(ValueError, match=said):
            count_atoms(scs, method=method, library=au, scs_errors=err, max_components=5)


def test_scs_outside_the_float64_safe_range_are_refused_and_extremes_within_it_count(au):
    import re

    truth, scs, err = _seeded_scs(au)
    top = f"{1e300 * scs.max():.3g}"  # 2.16e+299
    beyond = r"scs must lie within ±1e\+12 \[Å², or detector counts × Å²\] .* got a value of magnitude "
    beyond += re.escape(top)
    for call in (lambda: count_atoms(1e300 * scs, max_components=5), lambda: count_hybrid(1e300 * scs, au),
                 lambda: count_atoms(1e300 * scs, method="library", library=au),
                 lambda: fit_mixtures(1e300 * scs, max_components=3)):  # fmt: skip
        with pytest.raises(ValueError, match=beyond) as info:
            call()
        assert len(str(info.value)) < 300  # no 300-digit numbers
    with pytest.raises(ValueError, match=r"scs must reach a magnitude of at least 1e-12 .* got at most "
                       + re.escape(f"{1e-300 * scs.max():.3g}")):  # fmt: skip
        count_hybrid(1e-300 * scs, au)
    with pytest.raises(ValueError, match=r"library must lie within ±1e\+12 .* magnitude 6\.37e\+299"):
        count_by_library(scs, 1e300 * au.scs)
    # far beyond the library but within range: the ratio reads in three digits, not a string of them
    with pytest.raises(ValueError, match=r"median SCS 1\.\d+e\+07 Å² is 1\.8e\+07 times the library's largest") as info:
        count_atoms(1e8 * scs, method="library", library=au)
    assert not re.search(r"\d{4}", str(info.value).split("times")[0])
    # at both ends of the range the counts are right and every probability is finite
    for factor in (1e11, 3e-11):
        hybrid = count_hybrid(factor * scs, au)
        icl = count_atoms(factor * scs, max_components=15, rng=0)
        assert np.mean(hybrid.counts == truth) == 1.0 and np.all(np.isfinite(hybrid.posterior))
        assert np.all(icl.counts - icl.counts.min() == truth - truth.min()) and np.all(np.isfinite(icl.posterior))


def test_library_arrays_must_be_finite_and_strictly_increasing(au):
    truth, scs, err = _seeded_scs(au, n=60)
    flat = au.scs.copy()
    flat[4] = flat[3]
    said = r"library must increase strictly, got library\[4\] = 0\.0\d+ after library\[3\]"
    with pytest.raises(ValueError, match=said):
        count_by_library(scs, flat)
    holed = au.scs.copy()
    holed[7] = np.nan
    for method in ("icl", "library", "hybrid"):
        with pytest.raises(ValueError, match=r"library must be finite, got 1 NaN/inf \(first library\[7\] = nan\)"):
            count_atoms(scs, method=method, library=holed, max_components=5)
    with pytest.raises(TypeError, match="library must hold real numbers, got dtype <U"):
        count_by_library(scs, ["0.1", "0.2"])
    # an ScsLibrary built or edited in memory is checked as well
    bad = dataclasses.replace(au, scs=np.where(np.arange(au.max_atoms) == 9, np.nan, au.scs))
    said = r"library\.scs must be finite, got 1 NaN/inf \(first library\.scs\[9\] = nan\)"
    with pytest.raises(ValueError, match=said):
        count_hybrid(scs, bad)


def test_empty_nan_single_and_infinite_scs(au):
    for method in ("icl", "library", "hybrid"):
        with pytest.raises(ValueError, match="scs must not be empty"):
            count_atoms([], method=method, library=au)
        said = (r"scs must be finite, got 3 NaN/inf of 3 counted values "
                r"\(scs\[0\] = nan, scs\[1\] = inf, scs\[2\] = -inf\)")  # fmt: skip
        with pytest.raises(ValueError, match=said):
            count_atoms([np.nan, np.inf, -np.inf], method=method, library=au)
        with pytest.raises(ValueError, match=r"mask leaves no column to count \(all 3 are False\)"):
            count_atoms([np.nan, np.inf, -np.inf], method=method, library=au, mask=np.zeros(3, bool))
        with pytest.raises(ValueError, match=r"scs must be a 1D array, got shape \(1, 2\)"):
            count_atoms([[0.1, 0.2]], method=method, library=au)
        with pytest.raises(TypeError, match="scs must hold real numbers, got dtype object"):
            count_atoms([0.1, None], method=method, library=au)
    # one column: one component (with a warning that G_max was limited), or its library count
    with pytest.warns(UserWarning, match="max_components limited to 1"):
        single = count_atoms([float(au.scs[4])])
    assert single.counts.tolist() == [1] and single.probability.tolist() == [1.0]
    for method in ("library", "hybrid"):
        assert count_atoms([float(au.scs[4])], method=method, library=au).counts.tolist() == [5]
    # NaN and inf are refused unless masked out; masked columns are counted -1 with probability 0
    truth, scs, err = _seeded_scs(au, n=60)
    scs[[0, 1, 2]] = [np.inf, -np.inf, np.nan]
    for method in ("icl", "library", "hybrid"):
        with pytest.raises(ValueError, match=r"got 3 NaN/inf of 60 counted values"):
            count_atoms(scs, method=method, library=au, max_components=12, rng=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = count_atoms(scs, method=method, library=au, max_components=12, mask=np.isfinite(scs), rng=0)
        assert r.counts[:3].tolist() == [-1, -1, -1] and r.probability[:3].tolist() == [0.0, 0.0, 0.0]
        assert np.all(r.counts[3:] == truth[3:]) and np.all(np.isfinite(r.posterior))
    with pytest.raises(ValueError, match=r"scs_frames must not be empty, got shape \(0, 4\)"):
        count_time_series(np.zeros((0, 4)))
