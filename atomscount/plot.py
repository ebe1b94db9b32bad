"""The figures of the 2D stages, under their old path.

They live with their stages: :mod:`atomscount.columns.plot`,
:mod:`atomscount.library.plot` and :mod:`atomscount.counting.plot`; the helpers
every stage's figures share are in ``atomscount._figures``, the style (one colour per element, the
style file) in :mod:`atomscount.style`.
"""

from ._figures import COLOUR_PERCENTILES, FIGURE_FORMATS, legends_over_data, text_off_canvas, write_figures
from .columns.plot import (
    BINS_PER_COMPONENT,
    MAX_BINS,
    plot_columns,
    plot_detection,
    plot_model_residual,
    plot_scs_histogram,
    plot_scs_map,
    residual_summary,
    save_detection_figure,
    save_fit_figures,
    scs_bin_edges,
)
from .counting.plot import (
    plot_count_histogram,
    plot_count_map,
    plot_count_probability_map,
    plot_icl,
    plot_model_3d,
    save_count_figures,
)
from .library.plot import plot_mixed_predictions, plot_scs_library

__all__ = [
    "plot_columns",
    "plot_model_residual",
    "plot_scs_map",
    "plot_scs_histogram",
    "plot_scs_library",
    "save_fit_figures",
    "plot_count_histogram",
    "plot_icl",
    "plot_count_map",
    "plot_count_probability_map",
    "plot_model_3d",
    "save_count_figures",
    "plot_mixed_predictions",
    "residual_summary",
    "scs_bin_edges",
    "save_detection_figure",
    "plot_detection",
    "write_figures",
    "text_off_canvas",
    "legends_over_data",
    "FIGURE_FORMATS",
    "COLOUR_PERCENTILES",
    "BINS_PER_COMPONENT",
    "MAX_BINS",
]
