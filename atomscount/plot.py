"""Matplotlib figures for every result type. Each function returns its Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .columns.fit import ColumnFit
from .image import HAADFImage

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
]


def _extent(shape, p):
    return (-0.5 * p, (shape[1] - 0.5) * p, (shape[0] - 0.5) * p, -0.5 * p)


def plot_columns(image: HAADFImage, fit: ColumnFit, *, ax=None, show_unconverged=True):
    """The image with fitted column positions (red: flagged as not converged)."""
    fig, ax = _fig_ax(ax, (6, 6))
    ax.imshow(image.data, cmap="gray", extent=_extent(image.shape, image.pixel_size_angstrom))
    ok = fit.converged
    size = max(2.0, 2000.0 / max(np.sqrt(fit.n_columns), 1) ** 2)
    ax.scatter(*fit.positions[ok].T, s=size, c="tab:cyan", marker="+", linewidths=0.8, label="fitted")
    if show_unconverged and (~ok).any():
        ax.scatter(*fit.positions[~ok].T, s=4 * size, facecolors="none", edgecolors="red", label="not converged")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(f"{fit.n_columns} columns")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_model_residual(image: HAADFImage, fit: ColumnFit):
    """Three panels: data, fitted model and residual (same units)."""
    model = fit.model().image()
    resid = image.data - model
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
    ext = _extent(image.shape, image.pixel_size_angstrom)
    lo, hi = np.nanpercentile(image.data, [0.5, 99.5])
    for ax, arr, title in ((axes[0], image.data, "data"), (axes[1], model, "model")):
        im = ax.imshow(arr, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        ax.set_title(title)
    fig.colorbar(im, ax=axes[:2], shrink=0.8)
    r = np.nanpercentile(np.abs(resid), 99.5) or 1.0
    im = axes[2].imshow(resid, cmap="RdBu_r", vmin=-r, vmax=r, extent=ext)
    axes[2].set_title(f"residual (reduced χ² = {fit.reduced_chi2:.3g})")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.set_xlabel("x (Å)")
    return fig


def plot_scs_map(fit: ColumnFit, *, ax=None, image: HAADFImage | None = None):
    """Columns coloured by SCS (Å²)."""
    fig, ax = _fig_ax(ax, (6.5, 5.5))
    if image is not None:
        ax.imshow(image.data, cmap="gray", alpha=0.4, extent=_extent(image.shape, image.pixel_size_angstrom))
    size = max(4.0, 4000.0 / max(fit.n_columns, 1))
    sc = ax.scatter(*fit.positions.T, c=fit.scs, s=size, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="SCS (Å²)")
    ax.set_aspect("equal")
    if image is None:
        ax.invert_yaxis()
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title("scattering cross-sections")
    return fig


def plot_scs_histogram(fit: ColumnFit, *, ax=None, bins="auto", voronoi=True):
    """Histogram of fitted SCS, with the Voronoi estimate beside it."""
    fig, ax = _fig_ax(ax, (6.5, 4.2))
    ok = fit.converged
    ax.hist(fit.scs[ok], bins=bins, alpha=0.75, label="Gaussian fit", color="tab:blue")
    if voronoi and np.all(np.isfinite(fit.voronoi_scs)) and fit.n_columns:
        ax.hist(fit.voronoi_scs[ok], bins=bins, histtype="step", lw=1.5, label="Voronoi", color="tab:orange")
    ax.set_xlabel("SCS (Å²)")
    ax.set_ylabel("columns")
    ax.legend()
    return fig


def save_fit_figures(image: HAADFImage, fit: ColumnFit, out_dir) -> dict:
    """Write the four column-fit figures as PNG into ``out_dir``; return their paths."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "columns": plot_columns(image, fit),
        "model_residual": plot_model_residual(image, fit),
        "scs_map": plot_scs_map(fit, image=image),
        "scs_histogram": plot_scs_histogram(fit),
    }
    return _save_pngs(figs, out)


def plot_scs_library(library, *, ax=None, extrapolate_to=None):
    """SCS against the number of atoms, with the phonon standard error, each
    configuration faintly, and the fitted thickness curve (dashed where extrapolated)."""
    from .library.scs import thickness_curve

    fig, ax = _fig_ax(ax, (6.5, 4.4))
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
    ax.set_title(f"{library.element} [{library.zone_axis}]")
    ax.legend()
    return fig


def plot_count_histogram(counts, *, ax=None, bins=None):
    """SCS histogram with the fitted mixture components and their sum."""
    from scipy.stats import norm

    fig, ax = _fig_ax(ax, (7, 4.2))
    x = np.asarray(counts.scs, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if bins is None:
        bins = int(np.clip(np.sqrt(x.size) * 2, 20, 200))
    h, edges, _ = ax.hist(x, bins=bins, color="0.75", label=f"{x.size} SCS values")
    width = edges[1] - edges[0]
    grid = np.linspace(edges[0], edges[-1], 1000)
    means = np.asarray(counts.component_means)
    weights = np.asarray(counts.component_weights)
    sd = float(counts.component_width)
    dose = (counts.metadata or {}).get("dose")
    total = np.zeros_like(grid)
    for m, w in zip(means, weights, strict=True):
        s = np.sqrt(sd**2 + (max(m, 0) / dose if dose else 0.0))
        comp = x.size * width * w * norm.pdf(grid, m, s)
        total += comp
        ax.plot(grid, comp, color="tab:blue", lw=0.8, alpha=0.8)
    ax.plot(grid, total, color="tab:red", lw=1.5, label="mixture")
    ax.set_xlabel("SCS (Å²)")
    ax.set_ylabel("columns")
    ax.set_title(f"{counts.method}: {counts.n_components} components")
    ax.legend()
    return fig


def plot_icl(counts, *, ax=None):
    """ICL, AIC and BIC against the number of components, the chosen G and the candidates marked."""
    fig, ax = _fig_ax(ax, (6.5, 4.2))
    icl = np.asarray(counts.icl)
    if icl.size == 0:
        ax.text(0.5, 0.5, f"no ICL curve for method {counts.method!r}", ha="center", transform=ax.transAxes)
        return fig
    g = np.arange(1, icl.size + 1)
    ax.plot(g, icl, "-", color="tab:blue", label="ICL")
    ax.plot(g, counts.bic, "--", color="tab:green", label="BIC")
    ax.plot(g, counts.aic, ":", color="tab:orange", label="AIC")
    for c in counts.candidates:
        ax.plot(c["n_components"], c["icl"], "o", mfc="none", color="0.3", ms=7)
    ax.plot(counts.n_components, icl[counts.n_components - 1], "*", color="tab:red", ms=14,
            label=f"chosen G = {counts.n_components}")  # fmt: skip
    gmin = int(np.argmin(icl)) + 1
    if gmin != counts.n_components:
        ax.plot(gmin, icl[gmin - 1], "v", color="k", ms=8, label=f"global minimum G = {gmin}")
    ax.set_xlabel("number of components G")
    ax.set_ylabel("criterion")
    ax.legend(fontsize=8)
    return fig


def _column_scatter(fit, values, ax, image, cmap, label, annotate):
    fig = ax.figure
    if image is not None:
        ax.imshow(image.data, cmap="gray", alpha=0.4, extent=_extent(image.shape, image.pixel_size_angstrom))
    pos = np.asarray(getattr(fit, "positions", fit))
    size = max(4.0, 4000.0 / max(len(pos), 1))
    sc = ax.scatter(*pos.T, c=values, s=size, cmap=cmap)
    fig.colorbar(sc, ax=ax, label=label)
    if annotate and len(pos) <= 300:
        for (x, y), v in zip(pos, values, strict=True):
            ax.annotate(f"{v:g}", (x, y), ha="center", va="center", fontsize=6, color="w")
    ax.set_aspect("equal")
    if image is None:
        ax.invert_yaxis()
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    return fig


def plot_count_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured (and, when few, labelled) by their atom count."""
    fig, ax = _fig_ax(ax, (6.5, 5.5))
    c = np.atleast_2d(counts.counts)[frame]
    _column_scatter(fit, np.where(c >= 0, c, np.nan), ax, image, "viridis", "atoms", True)
    ax.set_title(f"atom counts ({int(np.where(c >= 0, c, 0).sum())} atoms)")
    return fig


def plot_count_probability_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured by the posterior probability of their count."""
    fig, ax = _fig_ax(ax, (6.5, 5.5))
    p = np.atleast_2d(counts.probability)[frame]
    _column_scatter(fit, p, ax, image, "magma", "probability of the count", False)
    ax.set_title(f"count probability (mean {np.mean(p):.2f})")
    return fig


def plot_model_3d(atoms, *, ax=None, color_by="element"):
    """3D scatter of an atomic model (from :func:`atomscount.counting.model_from_counts`)."""
    if ax is None:
        fig = plt.figure(figsize=(6.5, 6), constrained_layout=True)
        ax = fig.add_subplot(projection="3d")
    fig = ax.figure
    pos = atoms.positions
    sym = np.array(atoms.get_chemical_symbols())
    for i, el in enumerate(np.unique(sym)):
        m = sym == el
        ax.scatter(*pos[m].T, s=18, depthshade=True, color=plt.cm.tab10(i), label=f"{el} ({int(m.sum())})")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_zlabel("z, beam (Å)")
    span = np.ptp(pos, axis=0).max() if len(pos) else 1.0
    mid = pos.mean(axis=0) if len(pos) else np.zeros(3)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid, strict=True):
        setter(c - span / 2, c + span / 2)
    ax.legend()
    ax.set_title(f"{len(atoms)} atoms")
    return fig


def save_count_figures(fit, counts, out_dir, *, image: HAADFImage | None = None, model=None) -> dict:
    """Write the counting figures as PNG into ``out_dir``; return their paths."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {"count_histogram": plot_count_histogram(counts), "count_map": plot_count_map(fit, counts, image=image),
            "count_probability": plot_count_probability_map(fit, counts, image=image)}  # fmt: skip
    if np.asarray(counts.icl).size:
        figs["icl"] = plot_icl(counts)
    if model is not None:
        figs["model_3d"] = plot_model_3d(model)
    return _save_pngs(figs, out)


def plot_mixed_predictions(models: dict, mixed, *, ax=None):
    """Predicted against multislice SCS of mixed columns (each sequence at its full length), per model.

    ``models`` maps a label to anything with ``predict(sequences)`` (a
    :class:`~atomscount.library.LensingModel` or :class:`~atomscount.library.LinearModel`).
    """
    fig, ax = _fig_ax(ax, (5.5, 5.2))
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
    ax.set_title(f"{len(seqs)} held-out mixed columns")
    ax.legend(fontsize=8)
    return fig


def _save_pngs(figs: dict, out) -> dict:
    paths = {}
    for name, fig in figs.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)
    return paths


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    else:
        fig = ax.figure
    return fig, ax
