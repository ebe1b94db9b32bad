"""The cross-validated weight of reconstruct_elemental: its choice on the ladder and the standard errors reported."""

import numpy as np
import pytest

from atomscount.elemental._cv import _CV_DOSE_FACTOR, ladder_choice
from atomscount.elemental.forward import simulate_edxs, simulate_haadf
from atomscount.elemental.phantoms import core_shell_rod
from atomscount.elemental.reconstruct import reconstruct_elemental


def _ladder(means, noise, n=20000, seed=0):
    """Per-pixel held-out terms whose sums differ by ``means`` and whose paired differences have the given
    per-pixel spread, on log μ 0, 1, 2, ..."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.5, n)
    terms = [base + m / n + s * rng.standard_normal(n) for m, s in zip(means, noise, strict=True)]
    return np.arange(len(means), dtype=float), terms


def test_standard_errors_are_those_of_the_paired_differences():
    x, terms = _ladder([50.0, 0.0, 10.0, 400.0], [0.3, 0.0, 0.2, 0.1])
    _, i_min, se = ladder_choice(x, terms)
    assert i_min == 1 and se[1] == 0.0
    for j in (0, 2, 3):
        d = terms[j] - terms[1]
        assert se[j] == pytest.approx(np.sqrt(d.size) * np.std(d), rel=1e-12)
    # the sum of n independent differences of spread s has the standard error sqrt(n) s
    np.testing.assert_allclose(se[[0, 2, 3]], np.sqrt(20000) * np.array([0.3, 0.2, 0.1]), rtol=0.02)


def test_the_choice_is_the_vertex_of_the_parabola_through_the_minimum_either_side():
    # the vertex of the parabola through (1, 40), (2, 0), (3, 100) lies below the minimum's log μ, through
    # (1, 100), (2, 0), (3, 40) above it; the ladder's order does not matter
    for means, offset in (
        ([300.0, 40.0, 0.0, 100.0, 500.0], -0.5 * 60 / 140),
        ([300.0, 100.0, 0.0, 40.0, 500.0], 0.5 * 60 / 140),
    ):
        x, terms = _ladder(means, [0.01] * 5)
        chosen, i_min, _ = ladder_choice(x[::-1], terms[::-1])
        assert x[::-1][i_min] == 2.0 and chosen == pytest.approx(2.0 + offset, abs=0.02)


def test_a_minimum_at_the_end_of_the_ladder_is_taken_as_it_is():
    x, terms = _ladder([0.0, 30.0, 200.0], [0.01] * 3)
    chosen, i_min, se = ladder_choice(x, terms)
    assert i_min == 0 and chosen == 0.0 and se[0] == 0.0


def test_the_reconstruction_reports_the_ladder_with_its_standard_errors():
    # a noisy rod (about 4 counts per pixel): the full series' μ is √2 times the vertex of the held-out
    # deviance's parabola; each ladder point has its standard error against the minimum and its iterations
    d = core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=1.5, interface_width_angstrom=3.0)
    angles = np.arange(-60.0, 61.0, 15.0)
    edxs = simulate_edxs(d, 1.5, angles, dose_e_per_angstrom2=3e8, rng=4)
    haadf = simulate_haadf(d, 1.5, angles, dose_e_per_angstrom2=3e8, rng=5)
    reg = reconstruct_elemental(haadf, edxs, n_iter=300, progress=False).regularisation
    ladder, se = np.array(reg["cross_validation"]), np.array(reg["cross_validation_se"])
    assert len(se) == len(ladder) >= 3 and len(reg["cross_validation_fit_iterations"]) == len(ladder)
    assert sum(reg["cross_validation_fit_iterations"]) == reg["cross_validation_iterations"]
    i_min = int(np.argmin(ladder[:, 1]))
    assert se[i_min] == 0.0 and np.all(np.delete(se, i_min) > 0)
    order = np.argsort(ladder[:, 0])
    k = int(np.flatnonzero(order == i_min)[0])
    assert 0 < k < len(ladder) - 1  # a minimum inside the ladder
    x, y = np.log(ladder[order[k - 1 : k + 2], 0]), ladder[order[k - 1 : k + 2], 1]
    a, b, _ = np.polyfit(x, y, 2)
    assert reg["mu"] / _CV_DOSE_FACTOR == pytest.approx(np.exp(-b / (2 * a)), rel=1e-9)


def test_the_ladder_comes_on_top_of_the_reconstructions_iterations():
    # n_iter bounds the rounds at the chosen μ; the ladder takes at most n_iter / 2 more
    d = core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=1.5, interface_width_angstrom=3.0)
    angles = np.arange(-60.0, 61.0, 15.0)
    edxs = simulate_edxs(d, 1.5, angles, dose_e_per_angstrom2=3e8, rng=4)
    with pytest.warns(RuntimeWarning, match="did not converge in 24 iterations"):
        res = reconstruct_elemental(None, edxs, n_iter=24, progress=False)
    reg = res.regularisation
    assert 0 < reg["cross_validation_iterations"] <= 12
    assert sum(r["iterations"] for r in reg["rounds"]) == 24
    assert len(res.objective) == 24 + reg["cross_validation_iterations"]
