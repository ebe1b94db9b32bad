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
    paths = {}
    for name, fig in figs.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)
    return paths


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


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    else:
        fig = ax.figure
    return fig, ax
