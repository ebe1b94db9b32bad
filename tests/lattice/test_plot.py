"""The lattice stage's figures: diverging maps centred on zero, arrows over the image, files written."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from atomscount._figures import text_off_canvas
from atomscount.columns.model import ColumnModel
from atomscount.image import HAADFImage
from atomscount.lattice.plot import (
    plot_displacement_map,
    plot_polarisation_map,
    plot_strain_map,
    plot_strain_maps,
    save_strain_figures,
)
from atomscount.lattice.polarisation import polarisation_map
from atomscount.lattice.strain import strain_map

PIXEL = 0.25


@pytest.fixture(scope="module")
def perovskite():
    ij = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2) * 4.0 + 2.0
    a_pos = ij + np.column_stack([0.004 * (ij[:, 0] - 16) ** 2 * 0.1, np.zeros(len(ij))])
    b_pos = ij + 2.0 + np.where(ij[:, :1] > 16, [0.1, 0.0], [-0.1, 0.0])
    pos = np.vstack([a_pos, b_pos])
    types = ["Sr"] * len(ij) + ["Ti"] * len(ij)
    img = ColumnModel((136, 136), PIXEL, pos, heights=np.r_[np.ones(len(ij)), 0.6 * np.ones(len(ij))], widths=0.5,
                      background=(0.01,)).image()  # fmt: skip
    err = np.full(pos.shape, 0.01)
    return (strain_map(pos, types=types, positions_error=err), polarisation_map(pos, "Sr", "Ti", types=types),
            HAADFImage(img, PIXEL))  # fmt: skip


def test_the_strain_map_is_centred_on_zero_with_a_labelled_colour_bar(perovskite):
    strain, _, image = perovskite
    fig = plot_strain_map(strain, "eps_xx", image=image)
    try:
        scatter = [c for c in fig.axes[0].collections if c.get_array() is not None][0]
        lo, hi = scatter.get_clim()
        assert lo == -hi and hi > 0
        assert scatter.get_cmap().name == "RdBu_r"
        assert fig.axes[1].get_ylabel() == "ε_xx (%)"
        assert text_off_canvas(fig) == 0
    finally:
        plt.close(fig)
    fig = plot_strain_maps(strain)
    try:
        labels = sorted(ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>")
        assert labels == ["ε_xx (%)", "ε_xy (%)", "ε_yy (%)", "ω_xy (°)"]
    finally:
        plt.close(fig)


def test_vector_maps_draw_every_arrow_with_a_key_in_pm(perovskite):
    strain, pol, image = perovskite
    fig = plot_displacement_map(strain, image=image)
    try:
        quiver = [c for c in fig.axes[0].collections if type(c).__name__ == "Quiver"][0]
        assert len(quiver.get_offsets()) == int((strain.sublattice >= 0).sum())
        assert text_off_canvas(fig) == 0
    finally:
        plt.close(fig)
    fig = plot_polarisation_map(pol, image=image)
    try:
        quiver = [c for c in fig.axes[0].collections if type(c).__name__ == "Quiver"][0]
        assert len(quiver.get_offsets()) == int(pol.valid.sum())
        keys = [t.get_text() for t in fig.axes[0].texts] + [c.text.get_text() for c in fig.axes[0].artists
                                                               if hasattr(c, "text")]  # fmt: skip
        assert any(k.endswith(" pm") for k in keys)
    finally:
        plt.close(fig)


def test_save_strain_figures_writes_every_map(perovskite, tmp_path):
    strain, pol, image = perovskite
    paths = save_strain_figures(strain, tmp_path, image=image, polarisation=pol)
    assert sorted(paths) == ["displacements", "polarisation", "strain_eps_xx", "strain_eps_xy", "strain_eps_yy",
                             "strain_omega_xy"]  # fmt: skip
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    with pytest.raises(ValueError, match="sublattice must be one of"):
        plot_displacement_map(strain, sublattice="O")
