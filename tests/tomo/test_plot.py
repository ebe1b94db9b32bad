"""Figures of the traced model's structure: pair distribution functions and the Q4-Q6 map."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atomscount.style import element_color  # noqa: E402
from atomscount.tomo import random_packing  # noqa: E402
from atomscount.tomo.plot import plot_bond_order, plot_pair_distribution, save_tomo_figures  # noqa: E402
from atomscount.tomo.trace import TracedAtoms  # noqa: E402

NAMES = ("non-atom", "Si", "Ge", "Sn")


def classified_packing():
    atoms = random_packing(200, rng=1)
    sym = np.array(atoms.get_chemical_symbols())
    pos = np.vstack([atoms.positions, [[30.0, 0, 0], [0, 30.0, 0]]])  # two non-atoms, left out of the figures
    labels = np.concatenate([[NAMES.index(s) for s in sym], [0, 0]])
    n = len(pos)
    return TracedAtoms(pos, np.ones(n), np.ones(n), np.ones(n), np.ones((n, 27)), 0.4, labels=labels,
                       class_names=NAMES)  # fmt: skip


def test_pair_distribution_figure_draws_the_total_and_every_pair():
    fig = plot_pair_distribution(classified_packing())
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels[0] == "total" and len(labels) == 1 + 6  # Si-Si, Si-Ge, Si-Sn, Ge-Ge, Ge-Sn, Sn-Sn
    assert "Å" in ax.get_xlabel() and "200 atoms" in ax.get_title()
    # an element keeps its colour of every figure: Si-Si in the Si colour
    si = next(line for line in ax.get_lines() if line.get_label().startswith("Si–Si"))
    assert matplotlib.colors.same_color(si.get_color(), element_color("Si"))
    plt.close(fig)


def test_bond_order_figure_scatters_each_element_with_the_references(tmp_path):
    fig, ax = plt.subplots()
    assert plot_bond_order(classified_packing(), ax=ax) is fig
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [n.split()[0] for n in names] == ["Si", "Ge", "Sn"]
    assert {t.get_text() for t in ax.texts} == {"fcc", "hcp", "bcc", "ico"}
    assert ax.get_xlabel().startswith("Q4") and ax.get_ylabel().startswith("Q6")
    plt.close(fig)
    paths = save_tomo_figures(tmp_path, traced=classified_packing())
    assert {"pair_distribution", "bond_order"} <= set(paths)
