"""Figures of the library stage: SCS against thickness, and a mixed-column model's predictions."""

from __future__ import annotations

import numpy as np

from .._figures import _fig_ax
from ..style import COLUMN_WIDTH_INCH, styled

__all__ = ["plot_scs_library", "plot_mixed_predictions"]


@styled
def plot_scs_library(library, *, ax=None, extrapolate_to=None):
    """SCS against the number of atoms, with the phonon standard error, each
    configuration faintly, and the fitted thickness curve (dashed where extrapolated)."""
    from .scs import thickness_curve

    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 3.0))
    n = library.n_atoms
    for row in library.scs_per_config:
        ax.plot(n, row, color="0.8", lw=0.6)
    ax.errorbar(n, library.scs, yerr=library.scs_sem, fmt="o", ms=3, color="tab:blue", label="multislice (mean ± s.e.)")
    top = extrapolate_to or int(n.max() * 1.25)
    nn = np.linspace(n.max() / 2, n.max(), 100)  # the curve is fitted to the thicker half
    ax.plot(nn, thickness_curve(nn, **library.curve), color="tab:orange", label="fitted curve (thicker half)")
    ne = np.linspace(n.max(), top, 50)
    ax.plot(ne, thickness_curve(ne, **library.curve), "--", color="tab:orange", label="extrapolated")
    ax.set_xlabel("atoms in column")
    ax.set_ylabel("SCS (Å²)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.1,
              title=f"{library.element} [{library.zone_axis}]", alignment="left")  # fmt: skip
    return fig


@styled
def plot_mixed_predictions(models: dict, mixed, *, ax=None):
    """Predicted against multislice SCS of mixed columns (each sequence at its full length), per model.

    ``models`` maps a label to anything with ``predict(sequences)`` (a
    :class:`~atomscount.library.LensingModel` or :class:`~atomscount.library.LinearModel`).
    """
    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 3.4))
    seqs, truth = [], []
    for i, row in enumerate(mixed.sequences):
        k = int(np.sum(np.asarray(row) != ""))
        seqs.append(tuple(e for e in row if e))
        truth.append(mixed.scs[i, k - 1])
    truth = np.array(truth)
    for label, model in models.items():
        pred = np.asarray(model.predict(seqs))
        err = np.mean(np.abs(pred - truth) / truth)
        ax.plot(truth, pred, "o", ms=4, alpha=0.75, label=f"{label}: mean |error| {100 * err:.1f} %")
    lo, hi = float(truth.min()) * 0.9, float(truth.max()) * 1.1
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel("multislice SCS (Å²)")
    ax.set_ylabel("predicted SCS (Å²)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.1,
              title=f"{len(seqs)} held-out mixed columns", alignment="left")  # fmt: skip
    return fig
