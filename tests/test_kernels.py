"""Each numba kernel against its NumPy reference, on random inputs."""

import numba
import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount.columns import _kernels, _solver
from atomscount.columns.model import (
    CUTOFF_SIGMAS,
    ColumnIndex,
    dense_jacobian,
    render,
    render_dense,
)


def random_columns(rng, n, shape, pixel):
    pos = rng.uniform(0, np.array([shape[1], shape[0]]) * pixel, size=(n, 2))
    return pos, rng.uniform(0.1, 1.0, n), rng.uniform(0.3, 0.6, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_render_matches_dense(seed):
    rng = np.random.default_rng(seed)
    shape, pixel = (40, 52), 0.1
    pos, h, w = random_columns(rng, 12, shape, pixel)
    bg = (0.03, 0.002, -0.001)
    fast = render(shape, pixel, pos, h, w, bg)
    ref = render_dense(shape, pixel, pos, h, w, bg)
    # the kernel cuts Gaussians at 1e-7 of their height
    np.testing.assert_allclose(fast, ref, atol=1e-7 * h.max() * 4, rtol=0)


@pytest.mark.parametrize("free_width", [False, True])
@pytest.mark.parametrize("n_bg", [1, 3])
def test_normal_equations_match_dense_jacobian(free_width, n_bg):
    rng = np.random.default_rng(3)
    shape, pixel = (30, 34), 0.1
    pos, h, w = random_columns(rng, 7, shape, pixel)
    types = rng.integers(0, 2, 7)
    types[:2] = [0, 1]
    if not free_width:
        w = np.array([0.4, 0.5])[types]
    data = rng.normal(0.5, 0.1, shape)
    weights = rng.uniform(0.5, 2.0, shape)
    bg = np.array([0.05, 0.01, -0.02]) if n_bg == 3 else np.array([0.05, 0.0, 0.0])
    prob = _solver.Problem(data, weights, pixel, types.astype(np.int64), 2, free_width, n_bg)
    rho = w.copy() if free_width else np.array([0.4, 0.5])
    st = _solver.State(pos[:, 0].copy(), pos[:, 1].copy(), h.copy(), rho, bg)
    neq = _solver.assemble(prob, st)
    J = dense_jacobian(shape, pixel, pos, h, w, types=types, free_width=free_width, n_bg=n_bg)
    model = render_dense(shape, pixel, pos, h, w, bg[:n_bg])
    W = weights.ravel()
    H = J.T @ (W[:, None] * J)
    g = J.T @ (W * (data - model).ravel())
    n, b = 7, prob.b
    A = _solver._bsr(neq).toarray()
    scale = np.abs(H).max()
    np.testing.assert_allclose(A, H[: n * b, : n * b], atol=1e-6 * scale)
    np.testing.assert_allclose(neq.cross.reshape(n * b, -1), H[: n * b, n * b :], atol=1e-6 * scale)
    np.testing.assert_allclose(neq.glob, H[n * b :, n * b :], atol=1e-6 * scale, rtol=1e-9)
    np.testing.assert_allclose(neq.grad_local.ravel(), g[: n * b], atol=1e-6 * np.abs(g).max())
    np.testing.assert_allclose(neq.grad_global, g[n * b :], atol=1e-6 * np.abs(g).max())
    np.testing.assert_allclose(neq.chi2, np.sum(W * (data - model).ravel() ** 2), rtol=1e-6)


def test_local_inverse_blocks_match_dense_inverse():
    rng = np.random.default_rng(4)
    shape, pixel = (60, 60), 0.1
    pos = np.array([[x, y] for x in np.arange(0.8, 5.6, 1.4) for y in np.arange(0.8, 5.6, 1.4)])
    pos += rng.normal(0, 0.05, pos.shape)
    h = rng.uniform(0.2, 1.0, len(pos))
    prob = _solver.Problem(np.zeros(shape), np.ones(shape), pixel, np.zeros(len(pos), np.int64), 1, True, 1)
    st = _solver.State(pos[:, 0].copy(), pos[:, 1].copy(), h, np.full(len(pos), 0.45), np.zeros(3))
    neq = _solver.assemble(prob, st)
    A = _solver._bsr(neq).toarray()
    Ainv = np.linalg.inv(A)
    loc = _kernels.local_inverse_blocks(neq.indptr, neq.indices, neq.blocks, neq.diag_loc)
    b = 4
    for i in range(len(pos)):
        ref = Ainv[i * b : (i + 1) * b, i * b : (i + 1) * b]
        np.testing.assert_allclose(np.diag(loc[i]), np.diag(ref), rtol=2e-3)


def test_poisson_merit_and_chi2_match_numpy():
    rng = np.random.default_rng(5)
    data = rng.normal(1.0, 0.3, (17, 23))
    model = rng.uniform(0.0, 2.0, (17, 23))
    mask = (rng.uniform(size=data.shape) > 0.1).astype(float)
    m = np.maximum(model, 0.05)
    np.testing.assert_allclose(_kernels.poisson_merit(data, mask, model, 0.05), np.sum(mask * (m - data * np.log(m))))
    np.testing.assert_allclose(_kernels.weighted_chi2(data, mask, model), np.sum(mask * (data - model) ** 2))


def test_nearest_labels_and_sums_match_kdtree():
    rng = np.random.default_rng(6)
    shape, pixel = (45, 38), 0.1
    pos = rng.uniform(0, 3.8, (15, 2))
    r = 0.9
    index = ColumnIndex(shape, pixel, pos[:, 0].copy(), pos[:, 1].copy(), np.array([r]))
    lab = _kernels.nearest_labels(45, 38, pixel, pos[:, 0].copy(), pos[:, 1].copy(), r * r, *index.args())
    yy, xx = np.mgrid[:45, :38] * pixel
    d, idx = cKDTree(pos).query(np.column_stack([xx.ravel(), yy.ravel()]))
    ref = np.where(d < r, idx, -1).reshape(shape)
    np.testing.assert_array_equal(lab, ref)
    vals = rng.normal(size=shape)
    sums, counts = _kernels.voronoi_sums(lab, vals, 15, numba.get_num_threads())
    np.testing.assert_allclose(sums, [vals[ref == k].sum() for k in range(15)], atol=1e-12)
    np.testing.assert_array_equal(counts, [(ref == k).sum() for k in range(15)])


def test_cutoff_keeps_gaussians_to_1e7():
    assert np.exp(-0.5 * CUTOFF_SIGMAS**2) == pytest.approx(1e-7)
