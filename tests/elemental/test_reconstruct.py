"""Multimodal elemental reconstruction: its objective's gradient, its solver, recovery and bad input."""

import numpy as np
import pytest

from atomscount.elemental import _kernels, _objective, _solver
from atomscount.elemental.forward import simulate_edxs, simulate_haadf
from atomscount.elemental.phantoms import core_shell_rod, three_element_particle
from atomscount.elemental.reconstruct import _fit_haadf_counts, _Problem, reconstruct_elemental, reconstruct_separate
from atomscount.tomo import TiltSeries

ANGLES = np.arange(-60.0, 61.0, 15.0)


@pytest.fixture(scope="module")
def rod():
    d = core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=1.5, interface_width_angstrom=3.0)
    edxs = simulate_edxs(d, 1.5, ANGLES, dose_e_per_angstrom2=1e9, noise=False)
    haadf = simulate_haadf(d, 1.5, ANGLES)
    return d, edxs, haadf


def _truth_error(result, d):
    truth = np.stack([d[e] for e in result.elements])
    total = truth.sum(axis=0)
    inside = total > 0.5 * total.max()
    conc = truth / np.where(total > 0, total, 1.0)
    return np.sqrt(np.mean((result.concentration[:, inside] - conc[:, inside]) ** 2))


@pytest.mark.parametrize("reg", ["tv", "tnv", "tgv"])
def test_objective_gradient_matches_finite_differences(reg):
    rng = np.random.default_rng(0)
    shape, angles, voxel = (6, 5, 6), np.array([-40.0, 0.0, 35.0]), 1.2
    counts = rng.poisson(3.0, (2, 3, 5, 6)).astype(float)
    prob = _Problem(counts, np.array([0.7, 1.3]), rng.random((3, 5, 6)), angles, voxel, shape, reg, 0.3, 0.05)
    prob.w, prob.c, prob.gamma, prob.sigma_h = np.array([0.8, 0.3]), 0.05, 0.8, 0.5
    prob.sum_target, prob.sum_mask, prob.sum_weight = 1.0, (rng.random(shape) > 0.5).astype(float), 2.0
    n = prob.n_u * (4 if reg == "tgv" else 1)
    z = np.r_[rng.uniform(0.2, 1.5, prob.n_u), rng.normal(0, 0.3, n - prob.n_u)]
    f, g = prob(z)
    for i in rng.choice(n, 12, replace=False):
        h = 1e-6
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        fd = (prob(zp)[0] - prob(zm)[0]) / (2 * h)
        assert abs(fd - g[i]) <= 1e-5 * max(1.0, abs(g[i])), (i, fd, g[i])
    assert np.isfinite(f)


def test_tnv_kernel_matches_an_eigendecomposition():
    rng = np.random.default_rng(1)
    for n_el in (1, 2, 3):
        jac = rng.normal(size=(n_el, 3, 200))
        jac[:, :, :20] = 0.0  # flat voxels: the smoothing alone
        grad = np.empty_like(jac)
        value = _kernels.tnv_value_grad(jac, 0.1, grad)
        m = np.einsum("iav,jav->vij", jac, jac) + 0.01 * np.eye(n_el)
        lam, vec = np.linalg.eigh(m)
        assert value == pytest.approx(np.sum(np.sqrt(lam)) - 200 * n_el * 0.1, rel=1e-12)
        inv_sqrt = np.einsum("vik,vk,vjk->vij", vec, 1 / np.sqrt(lam), vec)
        np.testing.assert_allclose(grad, np.einsum("vij,jav->iav", inv_sqrt, jac), atol=1e-10)


def test_fused_regularisers_match_the_difference_operators():
    rng = np.random.default_rng(5)
    u = rng.random((3, 6, 7, 8))
    u[:, :2] = 0.4  # flat voxels
    val, du, _ = _objective.regulariser("tv", u, None, 0.05)
    ref, d = _objective._smooth_norm(_objective.grad3(u), 0.05, axis=-4)
    assert val == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(du, _objective.grad3_adjoint(d), atol=1e-12)
    jac = _objective.grad3(u)
    d = np.empty((3, 3, u[0].size))
    ref = _kernels.tnv_value_grad(np.ascontiguousarray(jac.reshape(3, 3, -1)), 0.05, d)
    val, du, _ = _objective.regulariser("tnv", u, None, 0.05)
    assert val == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(du, _objective.grad3_adjoint(d.reshape(jac.shape)), atol=1e-12)


def test_compact_quasi_newton_direction_equals_the_two_loop_recursion():
    rng = np.random.default_rng(6)
    n, n_bounded = 60, 40
    mem = _solver._Memory(n, 4)
    p = rng.uniform(0.5, 2.0, n)
    mem.set_weights(p)
    pairs = []
    for _ in range(6):  # more pairs than the memory: the oldest are dropped
        z, step, g = rng.normal(size=n), 0.1 * rng.normal(size=n), rng.normal(size=n)
        gn = g + rng.uniform(1.0, 3.0, n) * step
        mem.add(z, z + step, g, gn)
        pairs.append((step.astype(np.float32).astype(float), (gn - g).astype(np.float32).astype(float)))
    pairs = pairs[-4:]
    z, g = rng.normal(size=n), rng.normal(size=n)
    d = np.empty(n)
    gd, _ = mem.direction(z, g, n_bounded, d)
    free = np.ones(n, bool)
    free[:n_bounded] = (z[:n_bounded] > 0) | (g[:n_bounded] < 0)
    q, alphas = np.where(free, g, 0.0), []
    for s, y in reversed(pairs):
        alphas.append((s @ q) / (s @ y))
        q -= alphas[-1] * y
    s, y = pairs[-1]
    q *= p * (s @ y) / (y @ (p * y))
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        q += s * (a - (y @ q) / (s @ y))
    ref = -np.where(free, q, 0.0)
    np.testing.assert_allclose(d, ref, atol=1e-6 * np.abs(ref).max())
    assert gd == pytest.approx(g @ ref, rel=1e-6)


def test_coarse_grid_upsampling_keeps_a_linear_field():
    from atomscount.elemental.reconstruct import _bin2, _upsampled

    prob = _Problem(np.ones((1, 2, 4, 4)), np.ones(1), None, np.zeros(2), 2.0, (4, 4, 4), "tv", 0.0, 0.05)
    z, y, x = np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij")
    fine = _upsampled(prob, (1.0 + z + 2 * y + 3 * x).ravel(), (8, 8, 8)).reshape(8, 8, 8)
    zz, yy, xx = np.meshgrid(*[(np.arange(8.0) - 0.5) / 2] * 3, indexing="ij")  # fine centres in coarse voxels
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(fine[inner], (1.0 + zz + 2 * yy + 3 * xx)[inner], atol=1e-12)
    img = np.arange(2 * 4 * 6, dtype=float).reshape(2, 4, 6)
    assert _bin2(img, True).sum() == img.sum() and _bin2(img, False).mean() == pytest.approx(img.mean())


def test_difference_operators_and_their_adjoints():
    rng = np.random.default_rng(2)
    x, g = rng.random((2, 5, 6, 7)), rng.random((2, 3, 5, 6, 7))
    assert np.sum(_objective.grad3(x) * g) == pytest.approx(np.sum(x * _objective.grad3_adjoint(g)), rel=1e-12)
    w, s = rng.random((2, 3, 5, 6, 7)), rng.random((2, 6, 5, 6, 7))
    assert np.sum(_objective.sym_grad(w) * s) == pytest.approx(np.sum(w * _objective.sym_grad_adjoint(s)), rel=1e-12)


def test_expected_deviance_of_poisson_counts():
    rng = np.random.default_rng(3)
    assert _objective.expected_deviance(500.0) == pytest.approx(1.0, abs=0.01)
    b = rng.poisson(2.0, 400_000).astype(float)
    dev, _ = _objective.poisson_deviance_terms(np.full(b.shape, 2.0), b)
    assert _objective.expected_deviance(2.0) == pytest.approx(2 * dev.mean(), rel=0.01)


def test_solver_finds_a_bounded_quadratic_minimum():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 30))
    target = rng.normal(size=30)
    fun = lambda z: (0.5 * np.sum((a @ (z - target)) ** 2), a.T @ (a @ (z - target)))  # noqa: E731
    z, _, converged = _solver.minimise(fun, np.zeros(30), 30, max_iter=500, ftol=1e-14)
    from scipy.optimize import lsq_linear

    ref = lsq_linear(a, a @ target, bounds=(0, np.inf), tol=1e-12).x
    np.testing.assert_allclose(z, ref, atol=1e-5)
    assert converged


def test_noise_free_rod_is_recovered(rod):
    d, edxs, haadf = rod
    # expectations, not counts: the discrepancy principle does not apply, so a small fixed weight
    res = reconstruct_elemental(haadf, edxs, weights=0.01, n_iter=80, tol=1e-3, progress=False)
    assert res.elements == ("Au", "Ag") and res.method == "multimodal-tnv"
    assert _truth_error(res, d) < 0.02
    assert _truth_error(reconstruct_separate(edxs, n_iter=30), d) > 0.05
    assert res.haadf_weights["Au"] == pytest.approx(0.0188, rel=0.1)
    assert res.gamma == pytest.approx(1.0, abs=0.05)
    truth_total = d["Au"] + d["Ag"]
    assert res.density[res.mask].mean() == pytest.approx(truth_total[res.mask].mean(), rel=0.1)


def test_discrepancy_weight_is_chosen_by_the_deviance_and_reported(rod):
    d, _, haadf = rod
    edxs = simulate_edxs(d, 1.5, ANGLES, dose_e_per_angstrom2=2e8, rng=0)  # about 15 counts per pixel in the rod
    res = reconstruct_elemental(haadf, edxs, weights="discrepancy", n_iter=60, tol=1e-3, progress=False)
    reg = res.regularisation
    assert reg["name"] == "tnv" and reg["auto"] and reg["mu"] > 0 and len(reg["rounds"]) == 4
    assert reg["rule"].startswith("discrepancy") and reg["cross_validation"] is None
    assert reg["final_deviance"] == pytest.approx(reg["target_deviance"], rel=0.15)
    assert _truth_error(res, d) < 0.8 * _truth_error(reconstruct_separate(edxs, n_iter=30), d)
    assert np.all(res.sigma[:, res.mask] > 0) and np.all(np.isfinite(res.sigma))
    assert len(res.objective) > 0


def _three_element_counts(dose, rng):
    d = three_element_particle(shape=(16, 16, 16), voxel_size_angstrom=4.5)
    angles = np.arange(-70.0, 71.0, 10.0)
    edxs = simulate_edxs(d, 4.5, angles, dose_e_per_angstrom2=dose, rng=rng)
    return d, edxs, simulate_haadf(d, 4.5, angles, dose_e_per_angstrom2=dose, rng=rng + 1)


def _element_nrmse(result, d):
    rho = np.stack([d[e] for e in result.elements])
    total = rho.sum(axis=0)
    inside = total >= 0.5 * np.percentile(total[total > 0], 90)
    conc = rho / np.where(total > 0, total, 1.0)
    c = result.concentration
    return np.linalg.norm(c[:, inside] - conc[:, inside], axis=1) / np.linalg.norm(conc[:, inside], axis=1)


def test_cross_validated_weight_recovers_a_thin_surface_alloy_better_than_the_discrepancy_rule():
    # a Pd core, a Pt shell and a thin Au surface alloy at about 25 counts per pixel: the discrepancy rule,
    # dominated by the bright elements, over-smooths the thin layer; the held-out counts choose about a
    # third of its weight, near the weight that is best against the truth (about 3 here)
    d, edxs, haadf = _three_element_counts(3e7, 1)
    cv = reconstruct_elemental(haadf, edxs, n_iter=400, progress=False)
    dp = reconstruct_elemental(haadf, edxs, weights="discrepancy", n_iter=400, progress=False)
    reg = cv.regularisation
    assert reg["auto"] and reg["rule"].startswith("Poisson-thinning")
    ladder = sorted(reg["cross_validation"])
    held_out = [dev for _, dev in ladder]
    assert 0 < int(np.argmin(held_out)) < len(ladder) - 1  # a minimum inside the ladder
    assert 0.2 * dp.regularisation["mu"] < reg["mu"] < 0.6 * dp.regularisation["mu"]
    err_cv, err_dp = _element_nrmse(cv, d), _element_nrmse(dp, d)
    assert cv.elements[2] == "Au" and err_cv[2] < 0.85 * err_dp[2]
    assert np.all(err_cv < err_dp)


def test_expected_counts_take_the_discrepancy_rule(rod):
    _, edxs, haadf = rod  # noise=False: thinning expectations would choose no smoothing at all
    res = reconstruct_elemental(haadf, edxs, n_iter=40, tol=1e-2, progress=False)
    assert res.regularisation["rule"].startswith("discrepancy") and res.regularisation["cross_validation"] is None


def test_edxs_alone_with_a_fixed_weight(rod):
    d, edxs, _ = rod
    for reg in ("tv", "tgv"):
        res = reconstruct_elemental(None, edxs, regulariser=reg, weights=0.01, n_iter=60, progress=False, tol=1e-2)
        assert res.regularisation["mu"] == 0.01 and not res.regularisation["auto"]
        assert res.haadf_weights is None and res.gamma is None
        assert _truth_error(res, d) < 0.03, reg


def _bad(edxs, **changes):
    out = dict(edxs)
    for e, images in changes.items():
        s = edxs[e]
        out[e] = TiltSeries(images, s.angles, s.pixel_size_angstrom, {**s.provenance, "noise": True})
    return out


def test_bad_input_is_refused_by_name(rod):
    _, edxs, haadf = rod
    au = edxs["Au"].images
    cases = [
        (dict(haadf=TiltSeries(haadf.images, ANGLES + 1.0, 1.5), edxs=edxs), "haadf has other tilt angles"),
        (dict(haadf=TiltSeries(haadf.images[:, :, 1:], ANGLES, 1.5), edxs=edxs), "haadf has"),
        (
            dict(haadf=haadf, edxs={**edxs, "Ag": TiltSeries(edxs["Ag"].images[:-1], ANGLES[:-1], 1.5)}),
            "edxs\\['Ag'\\]",
        ),
        (dict(haadf=None, edxs=_bad(edxs, Au=-np.round(au))), "edxs\\['Au'\\].*negative"),
        (dict(haadf=None, edxs=_bad(edxs, Au=au + 0.3)), "edxs\\['Au'\\].*whole"),
        (dict(haadf=None, edxs=_bad(edxs, Ag=np.zeros_like(au))), "edxs\\['Ag'\\] is all zeros"),
        (dict(haadf=None, edxs=[edxs["Au"]]), "edxs"),
        (dict(haadf=None, edxs=edxs, elements=("Au", "Pt")), "elements"),
        (dict(haadf=None, edxs=edxs, regulariser="l1"), "regulariser"),
        (dict(haadf=None, edxs=edxs, weights="best"), "weights must be one of \\['auto', 'cv', 'discrepancy'\\]"),
        (dict(haadf=None, edxs=edxs, weights=-1.0), "weights"),
        (dict(haadf=None, edxs=edxs, weights="cv"), "weights='cv' thins Poisson counts, but edxs\\['Au'\\]"),
        (dict(haadf=None, edxs=edxs, weights=None), "weights"),
        (dict(haadf=None, edxs=edxs, gamma=3.0), "gamma"),
        (dict(haadf=haadf, edxs=edxs, haadf_weights={"Au": 1.0}), "haadf_weights"),
    ]
    for kwargs, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            reconstruct_elemental(progress=False, **kwargs)


def test_non_convergence_is_reported_with_the_objective(rod):
    _, edxs, haadf = rod
    with pytest.warns(RuntimeWarning, match="did not converge in 2 iterations: objective"):
        res = reconstruct_elemental(haadf, edxs, n_iter=2, progress=False)
    assert not res.converged and len(res.objective) == 2


def test_sum_to_one_holds_the_total_density_of_a_dense_alloy(rod):
    d, edxs, haadf = rod
    res = reconstruct_elemental(haadf, edxs, weights=0.01, sum_to_one=True, progress=False)
    assert res.converged
    assert res.provenance["sum_to_one"]
    inner = res.mask & (res.flags == 0)
    total = res.density[inner]
    assert np.std(total) / np.mean(total) < 0.05
    assert _truth_error(res, d) < 0.03


@pytest.mark.parametrize("noise", [True, False])
def test_haadf_weights_from_the_counts_are_unbiased(noise):
    # weights far from the Z^1.7 prior: the counts, not the prior, must set them
    d = three_element_particle(shape=(24, 24, 24), voxel_size_angstrom=3.0)
    weights = {"Pd": 0.010, "Pt": 0.015, "Au": 0.020}
    angles = np.arange(-70.0, 71.0, 5.0)
    edxs = simulate_edxs(d, 3.0, angles, dose_e_per_angstrom2=2e7, rng=1, noise=noise)  # ~10 counts per pixel
    haadf = simulate_haadf(d, 3.0, angles, weights=weights, dose_e_per_angstrom2=2e7 if noise else None, rng=2)
    counts = np.stack([edxs[e].images for e in d])
    s = np.array([edxs[e].provenance["cross_section_barn"] * 1e-8 for e in d]) * 2e7 * 9.0 * 0.7 / (4 * np.pi)
    prior = np.array([0.0075, 0.0184, 0.0188])
    w, c, gamma = _fit_haadf_counts(counts, s, haadf.images, 1.0, True, prior, poisson=noise)
    np.testing.assert_allclose(w, [0.010, 0.015, 0.020], rtol=0.04)
    assert gamma == pytest.approx(1.0, abs=0.03) and abs(c) < 0.01 * haadf.images.max()


def test_defaults_converge_and_say_so(rod):
    d, _, haadf = rod
    edxs = simulate_edxs(d, 1.5, ANGLES, dose_e_per_angstrom2=2e8, rng=3)
    res = reconstruct_elemental(haadf, edxs, progress=False)
    rounds = res.regularisation["rounds"]
    assert res.converged and rounds[-1]["converged"]
    cv = res.regularisation["cross_validation_iterations"]
    assert cv > 0 and sum(r["iterations"] for r in rounds) + cv == len(res.objective) < 1000
