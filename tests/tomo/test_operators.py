"""The single-axis volume projector and its adjoint (atomscount.tomo.operators)."""

import numpy as np
import pytest

from atomscount.tomo import TiltSeries, _kernels, reconstruct, rotation_matrices, simulate_tilt_series
from atomscount.tomo.operators import backproject_volume, project_volume

ANGLES = np.linspace(-70.0, 70.0, 15)


def test_projector_and_backprojector_are_adjoint_to_rounding():
    rng = np.random.default_rng(0)
    x = rng.random((14, 9, 16))
    y = rng.random((len(ANGLES), 9, 16))
    lhs = np.sum(project_volume(x, ANGLES, 0.7) * y)
    rhs = np.sum(x * backproject_volume(y, ANGLES, 0.7, x.shape))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_channels_are_projected_each_on_its_own():
    rng = np.random.default_rng(1)
    x = rng.random((3, 10, 6, 12))
    p = project_volume(x, ANGLES, 0.5)
    assert p.shape == (3, len(ANGLES), 6, 12)
    for c in range(3):
        np.testing.assert_allclose(p[c], project_volume(x[c], ANGLES, 0.5), rtol=0, atol=1e-13)
    y = rng.random(p.shape)
    b = backproject_volume(y, ANGLES, 0.5, (10, 6, 12))
    assert b.shape == x.shape
    assert abs(np.sum(p * y) - np.sum(x * b)) <= 1e-10 * np.sum(p * y)


def test_projection_equals_the_3d_kernel_and_integrates_along_the_path():
    rng = np.random.default_rng(2)
    x = rng.random((12, 7, 12))
    p = project_volume(x, ANGLES, 0.8)
    ref = np.zeros_like(p)
    _kernels.project(x, rotation_matrices(ANGLES), 0.8, ref)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)
    # at zero tilt a column's projection is its sum times the voxel side [Å]
    zero = project_volume(x, [0.0], 0.8)[0]
    np.testing.assert_allclose(zero, x.sum(axis=0) * 0.8, rtol=1e-12)


def test_a_volume_mostly_zero_projects_like_the_dense_reference_and_stays_adjoint():
    # the multi-channel kernels skip voxels that are zero in every channel of a block of rows; empty blocks,
    # empty voxel rows, scattered zeros and a number of rows that is not a multiple of the block's all match
    # the 3D kernel, which skips nothing of this kind
    rng = np.random.default_rng(3)
    x = rng.random((3, 13, 21, 11)) - 0.3
    x[:, :, :17] = 0.0  # whole blocks of rows
    x[:, :4] = 0.0  # voxel rows
    x[:, :, :, :5] = 0.0
    x[rng.random(x.shape) < 0.4] = 0.0
    x[1, 8, 19] = 0.0  # one channel of an occupied row
    assert np.count_nonzero(x) > 100
    p = project_volume(x, ANGLES, 0.6)
    for c in range(3):
        ref = np.zeros(p.shape[1:])
        _kernels.project(x[c], rotation_matrices(ANGLES), 0.6, ref)
        np.testing.assert_allclose(p[c], ref, rtol=1e-10, atol=1e-12)
    assert np.all(p[:, :, :17] == 0.0)
    y = rng.random(p.shape)
    b = backproject_volume(y, ANGLES, 0.6, x.shape[1:])
    assert np.all(b[:, :, :17] != 0.0)  # the adjoint is dense: the solver needs the gradient everywhere
    assert abs(np.sum(p * y) - np.sum(x * b)) <= 1e-10 * abs(np.sum(p * y))


def test_orientation_agrees_with_simulate_tilt_series_and_reconstruct():
    # one off-centre atom: its projections from simulate_tilt_series and from a voxelised blob agree in place,
    # and SIRT of project_volume's series puts the blob back where it was
    pixel, n = 1.0, 24
    centre = np.array([4.5, -2.5, 2.5])  # on a voxel centre of the 24³ grid  # x, y, z [Å]
    grid = (np.arange(n) - (n - 1) / 2) * pixel
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / (2 * 1.2**2))
    proj = project_volume(blob, ANGLES, pixel)
    sim = simulate_tilt_series(centre[None], ANGLES, pixel_size_angstrom=pixel, shape=(n, n), symbols=["Au"],
                               b_factor=8 * np.pi**2 * 1.2**2).images  # fmt: skip
    for k in range(len(ANGLES)):
        a = np.unravel_index(np.argmax(proj[k]), proj[k].shape)
        b = np.unravel_index(np.argmax(sim[k]), sim[k].shape)
        assert np.abs(np.subtract(a, b)).max() <= 1, (ANGLES[k], a, b)
    rec = reconstruct(TiltSeries(proj, ANGLES, pixel), n_iter=40, progress=False).data
    assert np.unravel_index(np.argmax(rec), rec.shape) == np.unravel_index(np.argmax(blob), blob.shape)
    centroid = [np.sum(rec * g) / rec.sum() for g in (x, y, z)]
    np.testing.assert_allclose(centroid, centre, atol=0.2)
    assert np.abs(rec - blob).max() < 0.2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: project_volume(np.ones((4, 4)), ANGLES, 1.0), "volume"),
        (lambda: project_volume(np.full((4, 4, 4), np.nan), ANGLES, 1.0), "volume"),
        (lambda: project_volume(np.ones((4, 4, 4)), ANGLES, 0.0), "voxel_size_angstrom"),
        (lambda: project_volume(np.ones((4, 4, 4)), [[10.0, 20.0, 0.0]], 1.0), "angles_degrees"),
        (lambda: project_volume(np.ones((4, 4, 4)), [], 1.0), "angles_degrees"),
        (lambda: backproject_volume(np.ones((3, 4, 4)), ANGLES, 1.0, (4, 4, 4)), "angles_degrees"),
        (lambda: backproject_volume(np.ones((15, 4, 4)), ANGLES, 1.0, (4, 5, 4)), "shape"),
        (lambda: backproject_volume(np.ones((15, 4, 4)), ANGLES, 1.0, (4, 4)), "shape"),
        (lambda: backproject_volume(np.ones((15, 4)), ANGLES, 1.0, (4, 4, 4)), "images"),
    ],
)
def test_bad_input_is_refused_by_name(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
