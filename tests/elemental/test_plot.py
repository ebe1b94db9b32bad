"""Figures of the elemental stage, checked from the figure objects against the volumes drawn."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from atomscount.elemental import plot as eplot  # noqa: E402
from atomscount.elemental.result import ElementalVolumes  # noqa: E402
from atomscount.style import element_color  # noqa: E402


def _result(n=16, objective=(5.0, 2.0, 1.0), converged=True):
    """A cube: Au in the lower half along x, Ag in the upper half, inside a centred box mask."""
    conc = np.zeros((2, n, n, n))
    conc[0, :, :, : n // 2] = 1.0
    conc[1, :, :, n // 2 :] = 1.0
    mask = np.zeros((n, n, n), bool)
    mask[2:-2, 2:-2, 2:-2] = True
    conc *= mask
    return ElementalVolumes(("Au", "Ag"), conc, np.full(conc.shape, 0.1), None, mask, np.zeros((n, n, n), np.uint8),
                            0.5, "test", objective=np.asarray(objective), converged=converged)  # fmt: skip


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_orthoslices_share_one_colour_scale_from_zero_to_one():
    fig = eplot.plot_orthoslices(_result())
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 6  # 2 elements x 3 slices
    assert all((im.norm.vmin, im.norm.vmax) == (0.0, 1.0) for im in images)
    np.testing.assert_array_equal(images[0].get_array(), _result().concentration[0, 8])  # z slice through the centre


def test_rgb_composite_gives_each_pure_element_its_colour():
    res = _result()
    fig = eplot.plot_rgb_composite(res, axis="z", index=8)
    rgb = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(rgb[8, 4], to_rgb(element_color("Au")))  # x index 4: Au
    np.testing.assert_allclose(rgb[8, 12], to_rgb(element_color("Ag")))
    np.testing.assert_allclose(rgb[0, 0], 0.0)  # outside the particle: black
    labels = sorted(ax.get_ylabel() for ax in fig.axes[1:])
    assert labels == ["Ag (atomic fraction)", "Au (atomic fraction)"]


def test_line_profile_follows_the_volume_and_its_band_is_one_sigma():
    res = _result()
    px = res.voxel_size_angstrom
    fig = eplot.plot_line_profile(res, start=(-3.75, 0.25, 0.25), end=(3.75, 0.25, 0.25), n_points=16,
                                  truth={"Au": res.concentration[0]})  # fmt: skip
    ax = fig.axes[0]
    au = next(line for line in ax.lines if line.get_label() == "Au")
    true = next(line for line in ax.lines if line.get_label() == "Au (true)")
    np.testing.assert_allclose(au.get_xdata(), np.linspace(0, 7.5, 16))
    # the voxels x = -3.75..3.75 Å are indices 0..15 (the line runs through voxel centres)
    np.testing.assert_allclose(au.get_ydata(), res.concentration[0, 8, 8], atol=1e-12)
    np.testing.assert_allclose(true.get_ydata(), au.get_ydata())
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(1.1) and band[:, 1].min() == pytest.approx(-0.1)
    assert px == 0.5


def test_composition_histogram_counts_the_particle_voxels():
    res = _result()
    fig = eplot.plot_composition_histogram(res, bins=10)
    bars = fig.axes[0].containers
    assert len(bars) == 2
    assert all(sum(p.get_height() for p in c) == res.mask.sum() for c in bars)
    assert fig.axes[0].get_ylabel() == f"voxels (of {int(res.mask.sum())})"


def test_convergence_says_when_it_did_not_converge():
    fig = eplot.plot_convergence(_result(objective=np.linspace(3, 2, 7), converged=False))
    ax = fig.axes[0]
    assert "not converged after 7 iterations" in ax.get_title()
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.linspace(3, 2, 7))


def test_save_writes_every_figure_and_leaves_out_an_empty_objective(tmp_path):
    paths = eplot.save_elemental_figures(_result(), tmp_path / "a", fmt="svg", dpi=50)
    assert set(paths) == {"orthoslices", "rgb_composite", "line_profile", "composition_histogram", "convergence"}
    assert all(p.is_file() and p.suffix == ".svg" for p in paths.values())
    paths = eplot.save_elemental_figures(_result(objective=()), tmp_path / "b")
    assert "convergence" not in paths


@pytest.mark.parametrize("call, match", [
    (lambda r: eplot.plot_rgb_composite(r, axis="w"), "axis"),
    (lambda r: eplot.plot_rgb_composite(r, index=16), "index"),
    (lambda r: eplot.plot_orthoslices(r, centre=(1, 2)), "centre"),
    (lambda r: eplot.plot_line_profile(r, start=(0, 0, 0), end=(0, 0, 0)), "start and end"),
    (lambda r: eplot.plot_line_profile(r, start=(0, 0), end=(1, 0, 0)), "start"),
    (lambda r: eplot.plot_line_profile(r, truth={"Au": np.zeros((4, 4, 4))}), "truth"),
    (lambda r: eplot.plot_composition_histogram(r, bins=1), "bins"),
])  # fmt: skip
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_result())
