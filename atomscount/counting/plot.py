"""Figures of the counting stage: count histograms, the ICL curve with its candidates, count and
probability maps over the image, and the 3D model. Each function returns its Figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .._figures import (
    LABELLED_COLUMNS,
    _backdrop,
    _column_scatter,
    _fig_ax,
    _map_figsize,
    _pixel_size,
    _positions,
    _title,
    write_figures,
)
from ..columns.fit import ColumnFit
from ..columns.plot import scs_bin_edges
from ..image import HAADFImage
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH, element_color, styled

__all__ = [
    "plot_count_histogram",
    "plot_icl",
    "plot_count_map",
    "plot_count_probability_map",
    "plot_model_3d",
    "save_count_figures",
]


@styled
def plot_count_histogram(counts, *, ax=None, bins=None, scs_unit: str = "image units·Å²"):
    """SCS histogram with the fitted mixture components and their sum.

    Bins follow :func:`scs_bin_edges` (about three per component spacing).
    ``scs_unit`` labels the SCS axis: pass ``fit.scs_unit``.
    """
    from scipy.stats import norm

    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 2.6))
    x = np.asarray(counts.scs, dtype=float).ravel()
    x = x[np.isfinite(x)]
    means = np.asarray(counts.component_means, dtype=float)
    if bins is None:
        bins = scs_bin_edges(x, component_means=means)
    h, edges, _ = ax.hist(x, bins=bins, color="0.75", label=f"{x.size} SCS values")
    width = edges[1] - edges[0]
    grid = np.linspace(edges[0], edges[-1], 1000)
    weights = np.asarray(counts.component_weights)
    sd = float(counts.component_width)
    dose = (counts.metadata or {}).get("dose")
    total = np.zeros_like(grid)
    for i, (m, w) in enumerate(zip(means, weights, strict=True)):
        s = np.sqrt(sd**2 + (max(m, 0) / dose if dose else 0.0))
        comp = x.size * width * w * norm.pdf(grid, m, s)
        total += comp
        ax.plot(grid, comp, color="tab:blue", lw=0.8, alpha=0.8, label="components" if i == 0 else None)
    ax.plot(grid, total, color="tab:red", lw=1.5, label="mixture")
    ax.set_xlabel(f"SCS ({scs_unit})")
    ax.set_ylabel("columns")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    # above the axes, titled, in one row: beside them it would take a third of a column's width
    title = f"{counts.method}: {counts.n_components} components"
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, borderaxespad=0.1, handlelength=1.2,
              columnspacing=0.8, title=title, alignment="left")  # fmt: skip
    return fig


@styled
def plot_icl(counts, *, ax=None):
    """ICL, AIC and BIC against the number of components G (integer ticks).

    Markers, each in the legend: the physically consistent candidates (open
    circles), the ICL local minima (open squares; filled inside where clear,
    at least two standard deviations of the ICL steps deep), the chosen G (star), the runners-up
    (their G written beside them) and the global ICL minimum (triangle) when it
    was not chosen. The legend sits outside the axes, right of the data.
    Results saved before candidates carried ``consistent`` and ``depth_sigma``
    show every candidate as a circle.
    """
    fig, ax = _fig_ax(ax, (PAGE_WIDTH_INCH, 2.8))
    icl = np.asarray(counts.icl)
    if icl.size == 0:
        ax.text(0.5, 0.5, f"no ICL curve for method {counts.method!r}", ha="center", transform=ax.transAxes)
        return fig
    g = np.arange(1, icl.size + 1)
    ax.plot(g, icl, "-", color="tab:blue", label="ICL")
    ax.plot(g, counts.bic, "--", color="tab:green", label="BIC")
    ax.plot(g, counts.aic, ":", color="tab:orange", label="AIC")
    cands = list(counts.candidates)
    old = cands and "consistent" not in cands[0]
    consistent = [c for c in cands if old or c.get("consistent")]
    minima = [c for c in cands if not old and (c.get("depth") or -1) > 0]
    if consistent:
        ax.plot([c["n_components"] for c in consistent], [c["icl"] for c in consistent], "o", mfc="none",
                color="0.3", ms=7, ls="none", label="candidates" if old else "physically consistent G")  # fmt: skip
    if minima:
        ax.plot([c["n_components"] for c in minima], [c["icl"] for c in minima], "s", mfc="none", color="tab:purple",
                ms=9, ls="none", label="ICL local minima (filled: clear, ≥ 2 sd deep)")  # fmt: skip
        clear = [c for c in minima if (c.get("depth_sigma") or 0) >= 2]
        if clear:
            ax.plot([c["n_components"] for c in clear], [c["icl"] for c in clear], "s", color="tab:purple", ms=5,
                    ls="none", alpha=0.6, label="clear ICL local minima")  # fmt: skip
    gmin = int(np.argmin(icl)) + 1
    chosen = f"chosen G = {counts.n_components}" + (" (global minimum)" if gmin == counts.n_components else "")
    ax.plot(counts.n_components, icl[counts.n_components - 1], "*", color="tab:red", ms=14, label=chosen)
    runners = [c for c in cands if c["n_components"] != counts.n_components][:3]
    for k, c in enumerate(runners):
        ax.annotate(f"#{k + 2}", (c["n_components"], c["icl"]), textcoords="offset points", xytext=(3, 5 + 7 * k),
                    fontsize=7, color="0.2", annotation_clip=False)  # fmt: skip
    if runners:
        ax.plot([], [], ls="none", label="runners-up #2-#4: G = " + ", ".join(str(c["n_components"]) for c in runners))
    if gmin != counts.n_components:
        ax.plot(gmin, icl[gmin - 1], "v", color="k", ms=8, label=f"global ICL minimum G = {gmin}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of components G")
    ax.set_ylabel("criterion (lower is better)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


@styled
def plot_count_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured by their atom count on a discrete colour bar (one colour per count), the count
    written on each column where the columns are drawn large enough to hold it legibly.

    ``fit`` is a :class:`ColumnFit` or the (n, 2) positions [Å]. The map is drawn
    over ``image``, else over the image a fit keeps (its model plus its residual,
    see :func:`~atomscount.columns.fit.save_fit`), else over the fitted model, as
    the title says.
    """
    c = np.atleast_2d(counts.counts)[frame]
    fig, ax, backdrop, where = _count_axes(fit, ax, image, labelled=True)
    _column_scatter(_positions(fit), np.where(c >= 0, c, np.nan), ax, backdrop, _pixel_size(fit, image),
                    "viridis", "column count (atoms)", annotate=True, discrete=True)  # fmt: skip
    _title(ax, f"atom counts ({int(np.where(c >= 0, c, 0).sum())} atoms) {where}".strip())
    return fig


@styled
def plot_count_probability_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured by the posterior probability of their count, over the image as in :func:`plot_count_map`."""
    p = np.atleast_2d(counts.probability)[frame]
    fig, ax, backdrop, where = _count_axes(fit, ax, image)
    _column_scatter(_positions(fit), p, ax, backdrop, _pixel_size(fit, image), "magma",
                    "probability of the count (0–1)", annotate=False, vmin=0.0, vmax=1.0)  # fmt: skip
    _title(ax, f"count probability (mean {np.mean(p):.2f}) {where}".strip())
    return fig


@styled
def plot_model_3d(atoms, *, ax=None, color_by="element"):
    """3D scatter of an atomic model (from :func:`atomscount.counting.model_from_counts`), each element in
    its colour (:func:`atomscount.style.element_color`)."""
    if ax is None:
        fig = plt.figure(figsize=(COLUMN_WIDTH_INCH, 3.2), constrained_layout=True)
        ax = fig.add_subplot(projection="3d")
    fig = ax.figure
    pos = atoms.positions
    sym = np.array(atoms.get_chemical_symbols())
    for el in np.unique(sym):
        m = sym == el
        ax.scatter(*pos[m].T, s=8, depthshade=True, color=element_color(str(el)), label=f"{el} ({int(m.sum())})")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_zlabel("z, beam (Å)")
    span = np.ptp(pos, axis=0).max() if len(pos) else 1.0
    mid = pos.mean(axis=0) if len(pos) else np.zeros(3)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid, strict=True):
        setter(c - span / 2, c + span / 2)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))  # more collide on a column-wide figure
    ax.set_box_aspect(None, zoom=0.8)  # room for the axis labels: constrained layout does not see 3D labels
    fig.legend(loc="outside upper right")
    ax.set_title(f"{len(atoms)} atoms")
    return fig


def save_count_figures(fit, counts, out_dir, *, image: HAADFImage | None = None, model=None, fmt: str = "png",
                       dpi: float | None = None) -> dict:  # fmt: skip
    """Write the counting figures into ``out_dir`` as ``fmt`` (``"png"``, ``"pdf"`` or ``"svg"``) at ``dpi``
    [dots per inch] (default the style's); return their paths.

    The maps are drawn over ``image``, or, without one, over the image ``fit`` keeps
    (model plus residual) or its fitted model. SCS are labelled in ``fit.scs_unit``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unit = fit.scs_unit if isinstance(fit, ColumnFit) else "image units·Å²"
    makers = {"count_histogram": lambda: plot_count_histogram(counts, scs_unit=unit),
              "count_map": lambda: plot_count_map(fit, counts, image=image),
              "count_probability": lambda: plot_count_probability_map(fit, counts, image=image)}  # fmt: skip
    if np.asarray(counts.icl).size:
        makers["icl"] = lambda: plot_icl(counts)
    if model is not None:
        makers["model_3d"] = lambda: plot_model_3d(model)
    return write_figures(makers, out, fmt=fmt, dpi=dpi)


def _count_axes(fit, ax, image, *, labelled=False):
    if image is not None:
        shape = image.shape
    elif isinstance(fit, ColumnFit):
        shape = fit.image_shape
    else:  # positions only: their bounding box, one column spacing around
        span = np.ptp(_positions(fit), axis=0) if len(_positions(fit)) else np.ones(2)
        shape = (max(span[1], 1e-3), max(span[0], 1e-3))
    # page-wide when counts are written on the columns: at a column's width they would not fit legibly
    page = labelled and len(_positions(fit)) <= LABELLED_COLUMNS
    fig, ax = _fig_ax(ax, _map_figsize(shape, colorbar=True, page=page))
    return fig, ax, *_backdrop(fit, image)
