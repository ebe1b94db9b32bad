"""Figures of a CoreShellModel: axis labels, aspect and legends, not pixels."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from atomscount.coreshell.forward import CORE, ForwardModel, LensingTables  # noqa: E402
from atomscount.coreshell.plot import (  # noqa: E402
    plot_core_count_map,
    plot_scs_agreement,
    plot_slice,
    save_coreshell_figures,
    view_scs,
)
from atomscount.coreshell.search import core_codes, search_core_shell  # noqa: E402
from atomscount.coreshell.sites import fcc_sites, group_columns, tilt_rotation  # noqa: E402
from atomscount.library import load_default_lensing  # noqa: E402


@pytest.fixture(scope="module")
def searched():
    lensing = load_default_lensing("Au", "Ag", "001")
    pos = fcc_sites(4.08, 8.0)
    pos = pos[np.linalg.norm(pos, axis=1) <= 7.5]
    truth = core_codes(pos, [0.5, 0.0, 0.0], [4.0, 4.0, 4.0])
    t = LensingTables(lensing, core="Au", shell="Ag")
    rng = np.random.default_rng(3)
    views, counts = [], []
    for v, axis in enumerate(["001", "110"]):
        cols = group_columns(pos, None if v == 0 else tilt_rotation("001", axis))
        scs = ForwardModel(truth, [cols], [t], [np.zeros(cols.n_columns)], [np.ones(cols.n_columns)]).predicted[0]
        err = 0.02 * scs + 2e-4  # about the Cramér-Rao bound at 1e5 e/Å² (bench_coreshell.py)
        views.append((cols.xy, scs + rng.normal(0, err), err, axis))
        counts.append(np.diff(cols.start))
    lens = {"001": lensing, "110": lensing}
    model = search_core_shell(views, lens, "Au", counts=counts[0], rng=0, n_anneal=5000, n_sample=2000, de_maxiter=5)
    yield model, views, lens
    plt.close("all")


def test_scs_agreement_pairs_every_column_and_labels_units(searched):
    model, views, lens = searched
    per_view = view_scs(model)
    assert len(per_view) == 2
    # the SCS the search stored equal a recomputation from the views and the lensing model
    bare = dataclasses.replace(model, measured_scs=(), predicted_scs=(), scs_error=())
    with pytest.raises(ValueError, match="views and lensing"):
        view_scs(bare)
    recomputed = view_scs(bare, views, lens)
    for v, ((m1, _, p1), (m2, _, p2)) in enumerate(zip(per_view, recomputed, strict=True)):
        order = np.argsort(m1)
        np.testing.assert_allclose(np.sort(m1), np.sort(m2))
        # stored: the lensing model's SCS times the view's fitted scale
        np.testing.assert_allclose(p1[order], model.info["scs_scale"][v] * p2[np.argsort(m2)], rtol=1e-9)
    for (meas, err, pred), (_, scs, _, _) in zip(per_view, views, strict=True):
        assert meas.shape == err.shape == pred.shape == scs.shape
        assert np.all(pred > 0)
    fig = plot_scs_agreement(*per_view[0])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted SCS (Å²)"
    assert ax.get_ylabel() == "measured SCS (Å²)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "1:1" in labels and any(t.startswith(f"columns ({len(views[0][1])})") for t in labels)
    plt.close(fig)


def test_slice_by_element_has_equal_aspect_axes_in_angstrom_and_a_legend(searched):
    model, _, _ = searched
    fig = plot_slice(model, axis="z")
    ax = fig.axes[0]
    assert ax.get_aspect() == 1.0
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (Å)", "y (Å)")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("Ag shell (") and labels[1].startswith("Au core (")
    n_drawn = sum(int(t.split("(")[-1].rstrip(")")) for t in labels[:2])
    z = model.atoms.positions[:, 2]
    assert 0 < n_drawn < len(model.atoms)
    assert n_drawn == np.sum(np.isclose(z, z[np.argmin(np.abs(z - model.core["centroid"][2]))], atol=0.25))
    plt.close(fig)
    fig = plot_slice(model, axis="x")
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("y (Å)", "z (Å)")
    plt.close(fig)


def test_slice_by_probability_has_a_labelled_colour_bar(searched):
    model, _, _ = searched
    fig = plot_slice(model, axis="y", color_by="probability")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "P(Au) per site"
    assert fig.axes[0].get_aspect() == 1.0
    plt.close(fig)
    with pytest.raises(ValueError, match="color_by"):
        plot_slice(model, color_by="chi2")
    with pytest.raises(ValueError, match="axis"):
        plot_slice(model, axis="w")


def test_core_count_map_sums_to_the_core_atoms_in_each_view(searched):
    model, _, _ = searched
    for v in range(2):
        fig = plot_core_count_map(model, v)
        ax, cbar = fig.axes
        assert cbar.get_ylabel() == "Au per column (atoms)"
        assert ax.get_aspect() == 1.0 and ax.get_xlabel() == "x (Å)"
        assert ax.get_title().startswith(f"[{model.zone_axes[v]}]: {int(model.is_core.sum())} Au")
        assert ax.collections[0].get_array().sum() == model.is_core.sum()
        plt.close(fig)
    with pytest.raises(ValueError, match="view"):
        plot_core_count_map(model, 2)


def test_save_coreshell_figures_writes_every_png_and_nothing_else(searched, tmp_path):
    model, views, lens = searched
    paths = save_coreshell_figures(model, tmp_path, views=views, lensing=lens)
    assert set(paths) == {"slice_elements", "slice_probability", "slices_z", "core_counts_0_001",
                          "core_counts_1_110", "scs_0_001", "scs_1_110"}  # fmt: skip
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    carried = save_coreshell_figures(model, tmp_path)  # the model carries its SCS: no views needed
    assert "scs_1_110" in carried
    bare = dataclasses.replace(model, measured_scs=(), predicted_scs=(), scs_error=())
    only = save_coreshell_figures(bare, tmp_path)
    assert "scs_0_001" not in only
    assert not plt.get_fignums()


def test_a_model_built_directly_plots_too():
    from ase import Atoms

    from atomscount.coreshell.model import CoreShellModel

    pos = fcc_sites(4.08, 5.0)
    core = core_codes(pos, [0.0, 0.0, 0.0], [2.5, 2.5, 2.5]) == CORE
    atoms = Atoms(["Au" if c else "Ag" for c in core], positions=pos)
    cols = group_columns(pos)
    model = CoreShellModel(atoms, core.astype(float), {"shape": "sphere", "centre": [0, 0, 0], "radii": [2.5] * 3,
                                                       "centroid": [0.0, 0.0, 0.0]}, [1.0], [cols.n_columns],
                           [np.zeros(cols.n_columns)], [np.zeros(cols.n_columns)], "Au", "Ag", ("001",))  # fmt: skip
    fig = plot_slice(model)
    assert fig.axes[0].get_legend() is not None
    plt.close(fig)
