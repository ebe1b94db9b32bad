import numpy as np
import pytest
from scipy.stats import norm

from atomscount.counting import MixtureScan, fit_mixtures, local_minima, select_components


def _three_components(n=600, seed=3):
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 3, n)
    return np.array([1.0, 2.0, 3.0])[k] + rng.normal(0, 0.1, n), k


def test_em_recovers_a_known_mixture_and_icl_picks_three():
    x, _ = _three_components()
    scan = fit_mixtures(x, max_components=6, rng=0)
    assert int(np.argmin(scan.icl)) + 1 == 3
    np.testing.assert_allclose(scan.means[2], [1.0, 2.0, 3.0], atol=0.02)
    assert abs(scan.width[2] - 0.1) < 0.01
    np.testing.assert_allclose(scan.weights[2].sum(), 1.0)


def test_reported_likelihood_and_entropy_match_a_direct_computation():
    x, _ = _three_components()
    scan = fit_mixtures(x, max_components=4, rng=1)
    for g in range(1, 5):
        i = g - 1
        dens = scan.weights[i] * norm.pdf(x[:, None], scan.means[i], scan.width[i])
        ll = np.log(dens.sum(axis=1)).sum()
        tau = dens / dens.sum(axis=1, keepdims=True)
        ent = -np.sum(tau * np.log(np.maximum(tau, 1e-300)))
        assert scan.loglik[i] == pytest.approx(ll, rel=1e-9, abs=1e-6)
        assert scan.entropy[i] == pytest.approx(ent, rel=1e-5, abs=1e-4)
        assert scan.icl[i] == pytest.approx(-2 * ll + 2 * ent + 2 * g * np.log(x.size), rel=1e-6)
        assert scan.bic[i] == pytest.approx(-2 * ll + 2 * g * np.log(x.size), rel=1e-9)
        assert scan.aic[i] == pytest.approx(-2 * ll + 4 * g, rel=1e-9)


def test_likelihood_does_not_fall_as_components_are_added():
    x, _ = _three_components(seed=5)
    scan = fit_mixtures(x, max_components=8, rng=0)
    assert np.all(np.diff(scan.loglik) > -1e-6 * abs(scan.loglik[0]))


def test_dose_dependent_widths_recover_the_shared_part():
    rng = np.random.default_rng(11)
    means = np.array([1.0, 2.0, 3.0, 4.0])
    k = rng.integers(0, 4, 4000)
    dose = 200.0
    x = means[k] + rng.normal(0, 1, k.size) * np.sqrt(0.05**2 + means[k] / dose)
    scan = fit_mixtures(x, max_components=5, dose=dose, rng=0)
    assert int(np.argmin(scan.icl)) + 1 == 4
    assert scan.width[3] == pytest.approx(0.05, rel=0.2)
    np.testing.assert_allclose(scan.component_sd(4), np.sqrt(scan.width[3] ** 2 + scan.means[3] / dose), rtol=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="scs must not be empty"):
        fit_mixtures([])
    with pytest.raises(ValueError, match="max_components"):
        fit_mixtures([1.0, 2.0], max_components=0)
    with pytest.raises(ValueError, match="n_starts"):
        fit_mixtures([1.0, 2.0], n_starts=1)


@pytest.mark.parametrize(("keyword", "value", "error", "message"), [
    ("dose", 0, ValueError, "dose must be > 0, got 0.0"),
    ("burn_in", -1, ValueError, "burn_in must be an integer >= 0, got -1"),
    ("max_iter", 0, ValueError, "max_iter must be an integer >= 1, got 0"),
    ("max_iter", "100", TypeError, "max_iter must be an integer >= 1, got '100' (str)"),
    ("tol", float("nan"), ValueError, "tol must be finite, got nan"),
    ("n_finish", 0, ValueError, "n_finish must be an integer >= 1, got 0"),
    ("max_components", 2.0, TypeError, "max_components must be an integer >= 1, got 2.0 (float)"),
    ("bins", 10.5, TypeError, "bins must be 'auto', None or an integer >= 10, got 10.5"),
    ("sample_weights", np.zeros(600), ValueError, "sample_weights must be finite, >= 0 and not all zero"),
    ("sample_weights", np.full(600, np.nan), ValueError, "sample_weights must be finite, >= 0 and not all zero"),
])  # fmt: skip
def test_every_numeric_argument_of_fit_mixtures_is_checked_by_name(keyword, value, error, message):
    import re

    x, _ = _three_components()
    with pytest.raises(error, match=re.escape(message)):
        fit_mixtures(x, **{"max_components": 3, "rng": 0, keyword: value})
    scan = fit_mixtures(x, max_components=3, rng=0)
    with pytest.raises(ValueError, match=re.escape("g must be an integer within 1..3, got 4")):
        scan.posterior(x, 4)


def test_local_minima_include_ends_and_interior():
    np.testing.assert_array_equal(local_minima([3, 2, 4, 1, 5, 0]), [1, 3, 5])
    np.testing.assert_array_equal(local_minima([1, 2, 3]), [0])


def _scan_with(icl_values, means, widths, n):
    g = np.arange(1, len(icl_values) + 1)
    icl = np.asarray(icl_values, dtype=float)
    # choose loglik so that the ICL comes out as given (entropy zero)
    loglik = -(icl - 2 * g * np.log(n)) / 2
    weights = [np.full(len(m), 1 / len(m)) for m in means]
    return MixtureScan(g, loglik, np.zeros(len(g)), [np.asarray(m, float) for m in means], weights,
                       np.asarray(widths, float), n, None, 6, np.ones(len(g), int))  # fmt: skip


def test_selection_prefers_the_physical_local_minimum_over_a_misleading_global_one():
    # library: SCS of 1..12 atoms, increment ~0.05; the true answer is counts 3..8 (G = 6)
    lib = 0.05 * np.arange(1, 13) ** 0.95
    true_means = lib[2:8]
    merged = 0.5 * (true_means[0::2] + true_means[1::2])  # G = 3: pairs merged, too wide
    means = [[true_means.mean()], [true_means[:3].mean(), true_means[3:].mean()], merged,
             [0.1, 0.2, 0.3, 0.35], [0.1, 0.15, 0.2, 0.25, 0.3], true_means]  # fmt: skip
    err = 0.008
    widths = [0.09, 0.05, np.hypot(err, 0.025), 0.02, 0.02, err]
    icl = [100.0, 90.0, 80.0, 95.0, 96.0, 85.0]  # global minimum at G = 3, local at 6
    scan = _scan_with(icl, means, widths, 150)
    chosen, ranked, notes = select_components(scan, library_scs=lib, scs_errors=np.full(150, err))
    assert chosen.n_components == 6
    assert chosen.first_count == 3
    assert ranked[0].n_components == 6 and ranked[0].consistent and not ranked[-1].consistent
    assert not next(c for c in ranked if c.n_components == 3).consistent  # merged pairs: misaligned
    assert any("over the global ICL minimum G = 3" in n for n in notes)
    # without a library, the width against the SCS errors still decides
    chosen, _, _ = select_components(scan, scs_errors=np.full(150, err))
    assert chosen.n_components == 6
    # the user can override, and the flat-curve statement appears for a flat curve
    chosen, _, notes = select_components(_scan_with([5, 4, 3, 4, 5, 4.5], means, widths, 150), override=4)
    assert chosen.n_components == 4
    assert any("flat" in n for n in notes)


def test_the_binned_fast_path_agrees_with_the_exact_one():
    rng = np.random.default_rng(21)
    truth = rng.integers(1, 9, 6000)
    x = 0.05 * truth**0.95 + rng.normal(0, 0.006, truth.size)
    fast = fit_mixtures(x, max_components=10, rng=0)  # "auto": 2,000 bins above 4,000 values
    exact = fit_mixtures(x, max_components=10, rng=0, bins=None)
    assert int(np.argmin(fast.icl)) == int(np.argmin(exact.icl)) == 7
    # the same optimum up to the physical G: ICL within a fraction of a unit, means within 1e-4 of a step
    np.testing.assert_allclose(fast.icl[:8], exact.icl[:8], atol=0.5)
    np.testing.assert_allclose(fast.means[7], exact.means[7], atol=5e-6)
    assert fast.n == exact.n == 6000
    assert select_components(fast)[0].n_components == select_components(exact)[0].n_components == 8
    with pytest.raises(ValueError, match="bins must be 'auto', None or an integer >= 10, got 3"):
        fit_mixtures(x, bins=3)


def test_em_with_fixed_means_matches_a_numpy_reference():
    from atomscount.counting._em import run_em

    rng = np.random.default_rng(5)
    x = np.sort(np.concatenate([rng.normal(1.0, 0.2, 300), rng.normal(2.1, 0.2, 500), rng.normal(2.9, 0.2, 200)]))
    w = rng.uniform(0.5, 1.5, x.size)
    means = np.array([1.0, 2.0, 3.0])  # a lattice slightly off the data: only weights and width move
    m, wt = means.copy(), np.full(3, 1 / 3)
    ll, _, var, _ = run_em(x, w, m, wt, 0.1, 0.0, 2000, 1e-12, 1e-12, True)
    np.testing.assert_array_equal(m, means)
    # plain EM in NumPy, weights and variance only
    pi, v = np.full(3, 1 / 3), 0.1
    for _ in range(5000):
        dens = pi * norm.pdf(x[:, None], means, np.sqrt(v))
        tau = dens / dens.sum(axis=1, keepdims=True)
        pi = (w[:, None] * tau).sum(axis=0) / w.sum()
        v = float(np.sum(w[:, None] * tau * (x[:, None] - means) ** 2) / w.sum())
    ref_ll = float(np.sum(w * np.log((pi * norm.pdf(x[:, None], means, np.sqrt(v))).sum(axis=1))))
    np.testing.assert_allclose(wt, pi, atol=1e-6)
    assert var == pytest.approx(v, rel=1e-6)
    assert ll == pytest.approx(ref_ll, rel=1e-9)


def test_the_noise_of_each_icl_step_matches_a_direct_computation():
    x, _ = _three_components(n=400, seed=5)
    scan = fit_mixtures(x, max_components=4, rng=0, bins=None)

    def terms(g):
        p = scan.weights[g - 1] * norm.pdf(x[:, None], scan.means[g - 1], scan.width[g - 1])
        tau = p / p.sum(axis=1, keepdims=True)
        return -2 * np.log(p.sum(axis=1)) - 2 * np.sum(tau * np.log(np.maximum(tau, 1e-300)), axis=1)

    assert np.isnan(scan.icl_step_sd[0])
    for g in (2, 3, 4):
        d = terms(g) - terms(g - 1)
        # (the steps are estimated on the SCS rounded to 20 bits, see round_scs)
        assert scan.icl_step_sd[g - 1] == pytest.approx(np.sqrt(x.size) * d.std(), rel=1e-4)
        # the per-point terms add up to the ICL step (the parameter count aside)
        assert d.sum() + 2 * np.log(x.size) == pytest.approx(scan.icl[g - 1] - scan.icl[g - 2], abs=1e-6)
