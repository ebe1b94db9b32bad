"""Figures of the tomography stage: orthoslices with traced atoms, the intensity histogram with the class
boundaries, a 3D view by element, and the R1 factor against iteration."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .reconstruct import Volume
from .trace import TracedAtoms

__all__ = ["plot_orthoslices", "plot_intensity_histogram", "plot_r1", "save_tomo_figures"]

_AXES = ("x", "y", "z")


def plot_orthoslices(volume: Volume, traced: TracedAtoms | None = None, *, thickness_angstrom: float = 1.0):
    """The three central slices of ``volume`` (normal to z, y and x), with the traced atoms within
    ``thickness_angstrom`` of each slice drawn over it, coloured by class when classified."""
    data, px = volume.data, volume.pixel_size_angstrom
    nz, ny, nx = data.shape
    half = np.array([nx - 1, ny - 1, nz - 1]) / 2.0 * px
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
    cuts = [("z", data[nz // 2], (0, 1)), ("y", data[:, ny // 2, :], (0, 2)), ("x", data[:, :, nx // 2], (1, 2))]
    for ax, (normal, img, (a, b)) in zip(axes, cuts, strict=True):
        ax.imshow(img, cmap="gray", origin="lower", extent=(-half[a], half[a], -half[b], half[b]))
        ax.set_xlabel(f"{_AXES[a]} (Å)")
        ax.set_ylabel(f"{_AXES[b]} (Å)")
        ax.set_title(f"slice {normal} = 0")
        if traced is not None and len(traced):
            k = "xyz".index(normal)
            near = np.abs(traced.positions[:, k]) <= thickness_angstrom
            labels = traced.labels if traced.labels is not None else np.zeros(len(traced), dtype=int)
            names = traced.class_names or ("traced",)
            for c, name in enumerate(names):
                m = near & (labels == c)
                if np.any(m):
                    ax.scatter(traced.positions[m, a], traced.positions[m, b], s=10, facecolors="none",
                               edgecolors=plt.cm.tab10(c), linewidths=0.8,
                               label=f"{name} ({int(m.sum())})")  # fmt: skip
            if ax is axes[0]:
                ax.legend(loc="upper right", fontsize=7)
    return fig


def plot_intensity_histogram(traced: TracedAtoms, *, ax=None, bins: int = 120):
    """Histogram of the box-integrated intensities (log scale), by class, with the boundaries between classes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    fig = ax.figure
    values = np.maximum(traced.intensity_box, np.min(traced.intensity_box[traced.intensity_box > 0]))
    edges = np.geomspace(values.min(), values.max(), bins + 1)
    if traced.labels is None:
        ax.hist(values, bins=edges, color="0.4", label=f"traced ({len(values)})")
    else:
        for c, name in enumerate(traced.class_names):
            m = traced.labels == c
            ax.hist(values[m], bins=edges, color=plt.cm.tab10(c), alpha=0.75, label=f"{name} ({int(m.sum())})")
        for c in range(1, len(traced.class_names)):
            lo, hi = values[traced.labels == c - 1], values[traced.labels == c]
            if len(lo) and len(hi):
                ax.axvline(np.sqrt(lo.max() * hi.min()), color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("integrated intensity (projection units · Å²)")
    ax.set_ylabel("atoms")
    ax.legend()
    return fig


def plot_r1(volume: Volume, *, ax=None):
    """The R1 factor of the reprojections against iteration."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    fig = ax.figure
    ax.plot(np.arange(1, len(volume.r1) + 1), volume.r1, "o-", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("R1 = Σ|b - Ax| / Σ|b|")
    ax.set_title(f"R1 {volume.r1[-1]:.3f} after {len(volume.r1)} iterations")
    return fig


def save_tomo_figures(out_dir, *, volume: Volume | None = None, traced: TracedAtoms | None = None) -> dict:
    """Write the figures that the inputs allow as PNGs in ``out_dir`` (each atomically); return name → path."""
    from .._figures import write_figures
    from ..counting.plot import plot_model_3d

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {}
    if volume is not None:
        figs["orthoslices"] = lambda: plot_orthoslices(volume, traced)
        figs["r1"] = lambda: plot_r1(volume)
    if traced is not None:
        figs["intensity_histogram"] = lambda: plot_intensity_histogram(traced)
        if traced.labels is not None:
            figs["model_3d"] = lambda: plot_model_3d(traced.to_atoms())
    return write_figures(figs, out)
