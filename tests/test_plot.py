import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colorbar import Colorbar

from atomscount import HAADFImage, fit_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.counting import count_atoms
from atomscount.plot import (
    plot_columns,
    plot_count_histogram,
    plot_count_map,
    plot_count_probability_map,
    plot_icl,
    plot_model_residual,
    plot_scs_histogram,
    plot_scs_map,
    residual_summary,
    save_fit_figures,
    scs_bin_edges,
)


def test_figures_show_every_column(small_model, tmp_path):
    img = HAADFImage(small_model.image(), 0.1)
    fit = fit_columns(img, small_model.positions, types=small_model.types, background="plane")
    fig = plot_columns(img, fit)
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), fit.positions)
    fig = plot_scs_histogram(fit)
    bars = [p for p in fig.axes[0].patches if hasattr(p, "get_height")]
    assert sum(p.get_height() for p in bars) == fit.n_columns
    assert len(plot_model_residual(img, fit).axes) >= 3
    assert plot_scs_map(fit).axes[0].collections[0].get_array().size == fit.n_columns
    plt.close("all")
    paths = save_fit_figures(img, fit, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths.values())


def test_counting_figures(tmp_path):
    from atomscount.counting import model_from_counts
    from atomscount.plot import save_count_figures

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 100)
    scs = 0.05 * truth + rng.normal(0, 0.004, truth.size)
    pos = np.array(np.meshgrid(np.arange(10), np.arange(10))).reshape(2, -1).T * 2.04 + 5
    counts = count_atoms(scs, max_components=8, scs_errors=np.full(100, 0.004), rng=0)
    fig = plot_count_histogram(counts)
    assert len(fig.axes[0].lines) == counts.n_components + 1  # one curve per component, plus the sum
    fig = plot_icl(counts)
    assert any(f"chosen G = {counts.n_components}" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    model = model_from_counts(pos, counts, "Au", "001")
    paths = save_count_figures(pos, counts, tmp_path, model=model)
    assert set(paths) == {"count_histogram", "count_map", "count_probability", "icl", "model_3d"}
    assert all(p.stat().st_size > 5000 for p in paths.values())


# ------------------------------------------------------------------ figures a microscopist accepts

PIXEL = 0.2
SPACING = 2.0


def _lattice_fit(n_rows, n_cols, *, normalised=True, dose=None, seed=0):
    """A fitted lattice of columns with 1-3 atoms (SCS steps of 2 pi 0.05 0.45²), image n_rows x n_cols spacings."""
    rng = np.random.default_rng(seed)
    pos = np.array([(1.0 + SPACING * i, 1.0 + SPACING * j) for j in range(n_rows) for i in range(n_cols)])
    atoms = rng.integers(1, 4, len(pos))
    shape = (round(n_rows * SPACING / PIXEL), round(n_cols * SPACING / PIXEL))
    truth = ColumnModel(shape, PIXEL, pos, heights=0.05 * atoms, widths=np.full(len(pos), 0.45), background=(0.01,))
    data = truth.image()
    if dose is not None:
        data = add_poisson_noise(data, dose_e_per_angstrom2=dose, pixel_size_angstrom=PIXEL, rng=seed)
    img = HAADFImage(data, PIXEL, {"normalised": normalised})
    return img, fit_columns(img, pos)


def _counts(fit):
    return count_atoms(fit.scs, max_components=max(1, min(4, fit.n_columns // 3)), rng=0)


def _colorbars(fig):
    return [ax._colorbar for ax in fig.axes if isinstance(getattr(ax, "_colorbar", None), Colorbar)]


def _figure_ratio(fig):
    w, h = fig.get_size_inches()
    return w / h


@pytest.mark.parametrize("n_rows, n_cols", [(1, 6), (6, 1)])
def test_maps_keep_the_image_proportions(n_rows, n_cols):
    img, fit = _lattice_fit(n_rows * 2, n_cols * 2)
    image_ratio = n_cols / n_rows
    counts = _counts(fit)
    figs = [plot_columns(img, fit), plot_scs_map(fit, image=img), plot_scs_map(fit), plot_count_map(fit, counts),
            plot_count_probability_map(fit, counts, image=img)]  # fmt: skip
    for fig in figs:
        ax = fig.axes[0]
        assert ax.get_aspect() == 1.0  # equal in Å
        assert image_ratio / 2 < _figure_ratio(fig) < image_ratio * 2
    fig = plot_model_residual(img, fit)  # three panels, side by side or stacked
    fig.canvas.draw()
    for ax in fig.axes[:3]:
        box = ax.get_window_extent()
        assert box.width / box.height == pytest.approx(image_ratio, rel=0.05)
    plt.close("all")


@pytest.mark.parametrize("normalised, unit", [(True, "Å²"), (False, "counts·Å²")])
def test_every_axis_and_colour_bar_names_its_unit(normalised, unit):
    img, fit = _lattice_fit(2, 2, normalised=normalised)
    assert fit.scs_unit == unit
    (cb,) = _colorbars(plot_scs_map(fit, image=img))
    assert cb.ax.get_ylabel() == f"SCS ({unit})"
    assert plot_scs_histogram(fit).axes[0].get_xlabel() == f"SCS ({unit})"
    counts = _counts(fit)
    assert plot_count_histogram(counts, scs_unit=fit.scs_unit).axes[0].get_xlabel() == f"SCS ({unit})"
    labels = [cb.ax.get_ylabel().replace("\n", " ") for cb in _colorbars(plot_model_residual(img, fit))]
    intensity = "fraction of beam" if normalised else "counts"
    assert labels == [f"intensity ({intensity})", f"data − model ({intensity})"]
    for fig in (plot_count_map(fit, counts), plot_count_probability_map(fit, counts)):
        assert all(cb.ax.get_ylabel() for cb in _colorbars(fig))
    plt.close("all")


def test_an_unconverged_outlier_does_not_set_the_colour_scale():
    img, fit = _lattice_fit(3, 3)
    scs = fit.scs.copy()
    scs[4] *= 100
    converged = fit.converged.copy()
    converged[4] = False
    bad = dataclasses.replace(fit, scs=scs, converged=converged)
    (cb,) = _colorbars(plot_scs_map(bad, image=img))
    good = fit.scs[np.arange(fit.n_columns) != 4]
    assert good.min() <= cb.vmin < cb.vmax <= good.max()
    assert cb.extend in ("max", "both")  # the outlier is shown as off the scale
    plt.close("all")


def _bar_count(fig):
    return sum(1 for p in fig.axes[0].patches if hasattr(p, "get_height"))


def test_histogram_bins_follow_the_components():
    rng = np.random.default_rng(3)
    n_bins = {}
    for g in (3, 6):
        scs = 0.05 * rng.integers(1, g + 1, 120) + rng.normal(0, 0.003, 120)
        counts = count_atoms(scs, max_components=8, rng=0)
        assert counts.n_components == g
        n_bins[g] = _bar_count(plot_count_histogram(counts))
        assert 3 * (g - 1) <= n_bins[g] <= 3 * (g + 1)  # about 3 bins per atom
    assert n_bins[6] > n_bins[3]
    # without components: Freedman-Diaconis, refined by the SCS errors, never coarser
    x = rng.normal(size=200)
    np.testing.assert_allclose(scs_bin_edges(x), np.histogram_bin_edges(x, bins="fd"))
    assert len(scs_bin_edges(x, errors=np.full(200, 0.01))) > len(np.histogram_bin_edges(x, bins="fd"))
    plt.close("all")


def test_icl_plot_has_integer_ticks_and_a_legend_for_every_marker():
    rng = np.random.default_rng(0)
    scs = 0.05 * rng.integers(1, 6, 100) + rng.normal(0, 0.004, 100)
    counts = count_atoms(scs, max_components=8, scs_errors=np.full(100, 0.004), rng=0)
    ax = plot_icl(counts).axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    markers = [line for line in ax.lines if line.get_marker() not in ("None", None, "")]
    assert len(markers) >= 2  # the candidates and the chosen G
    assert all(line.get_label() in legend for line in markers)
    assert any(t.startswith("ICL local minima") for t in legend)
    plt.close("all")


def test_count_maps_are_drawn_over_an_image():
    img, fit = _lattice_fit(2, 3)
    counts = _counts(fit)
    ax = plot_count_map(fit, counts).axes[0]
    assert len(ax.images) == 1 and ax.get_title().endswith("over the fitted model")
    np.testing.assert_allclose(ax.images[0].get_array(), fit.model().image())
    ax = plot_count_probability_map(fit, counts, image=img).axes[0]
    assert len(ax.images) == 1 and ax.get_title().endswith("over the image")
    assert not plot_count_map(fit.positions, counts).axes[0].images  # positions alone: nothing to draw under
    plt.close("all")


def test_residual_summary_is_relative_to_the_expected_noise():
    img, fit = _lattice_fit(3, 3, dose=2e4)
    s = residual_summary(fit, img, dose_e_per_angstrom2=2e4)
    assert 0.85 < s["rms_over_noise"] < 1.15  # the model explains the image down to counting noise
    assert s["text"].startswith("residual RMS = ") and "× expected noise" in s["text"]
    assert "reduced χ²" not in plot_model_residual(img, fit, dose_e_per_angstrom2=2e4).axes[2].get_title()
    missing = fit_columns(img, fit.positions[1:])  # one column left out: structure in the residual
    assert residual_summary(missing, img, dose_e_per_angstrom2=2e4)["rms_over_noise"] > 2
    s = residual_summary(fit, img)  # no dose: image units and the peaks
    assert s["rms_over_noise"] is None
    assert s["residual_rms"] == pytest.approx(np.sqrt(np.mean(fit.residual_image(img) ** 2)))
    assert s["rms_over_peak"] == pytest.approx(s["residual_rms"] / np.mean(fit.heights))
    assert "% of the mean peak height" in s["text"]
    with pytest.raises(ValueError, match="keep_residual"):
        residual_summary(fit)
    with pytest.raises(ValueError, match="normalised"):
        residual_summary(dataclasses.replace(fit, normalised=False), img, dose_e_per_angstrom2=2e4)
    with pytest.raises(ValueError, match="dose_e_per_angstrom2 must be > 0"):
        residual_summary(fit, img, dose_e_per_angstrom2=0.0)
    plt.close("all")
