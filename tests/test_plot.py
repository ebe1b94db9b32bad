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
