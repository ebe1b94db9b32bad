import matplotlib.pyplot as plt
import numpy as np

from atomscount import HAADFImage, fit_columns
from atomscount.plot import plot_columns, plot_model_residual, plot_scs_histogram, plot_scs_map, save_fit_figures


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
    from atomscount.counting import count_atoms, model_from_counts
    from atomscount.plot import plot_count_histogram, plot_icl, save_count_figures

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
