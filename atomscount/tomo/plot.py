"""Figures of the tomography stage: orthoslices with traced atoms, the intensity histogram with the class
boundaries, a 3D view by element, the R1 factor against iteration, and the traced model's structure (pair
distribution functions and the Q4-Q6 map of bond-orientational order).

Classes keep one colour each in every figure: class k (darkest first, the non-atom class 0) is
``tab10(k)``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .reconstruct import Volume
from .trace import TracedAtoms

__all__ = ["plot_bond_order", "plot_orthoslices", "plot_intensity_histogram", "plot_pair_distribution", "plot_r1",
           "save_tomo_figures"]  # fmt: skip

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


def _atoms_by_class(traced: TracedAtoms, drop=("non-atom",)):
    """Positions, element names and the class index (colour) of each atom kept."""
    if traced.labels is None:
        names, labels = ("atom",), np.zeros(len(traced), dtype=int)
    else:
        names, labels = traced.class_names, traced.labels
    keep = ~np.isin(np.asarray(names, dtype=object)[labels], list(drop))
    return traced.positions[keep], np.asarray(names, dtype=object)[labels][keep].astype(str), labels[keep], names


def plot_pair_distribution(traced: TracedAtoms, *, r_max_angstrom: float = 8.0, bin_angstrom: float = 0.05,
                           ax=None):  # fmt: skip
    """The pair distribution function g(r) of the traced atoms (the non-atom class left out): the total, and
    for a classified model the partial g_ab(r) of every element pair below it, offset for clarity. A pair of
    one element is drawn in its colour, a pair of two in a dashed line of both colours."""
    from .structure import pair_distribution

    pos, el, labels, names = _atoms_by_class(traced)
    kinds = [n for n in names if n in set(el.tolist())]
    partial = traced.labels is not None and len(kinds) > 1
    pdf = pair_distribution(pos, el, r_max_angstrom=r_max_angstrom, bin_angstrom=bin_angstrom, partial=partial)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8 if partial else 3.8), layout="constrained")
    fig = ax.figure
    r = pdf["r"]
    ax.plot(r, pdf["g"], color="k", lw=1.4, label="total")
    offset = 0.0
    if partial:
        colour = {n: plt.cm.tab10(names.index(n)) for n in kinds}
        step = 1.1 * max(float(np.max(pdf["g"])), 1.0)
        pairs = [(a, b) for ia, a in enumerate(kinds) for b in kinds[ia:]]
        for a, b in pairs:
            key = "-".join(sorted((a, b)))
            offset += step
            g = pdf["partials"][key]
            style = {"color": colour[a]} if a == b else {"color": colour[a], "ls": (0, (4, 3)), "gapcolor": colour[b]}
            ax.plot(r, g + offset, lw=1.2, label=f"{a}–{b} (+{offset:.0f})", **style)
            ax.axhline(offset, color="0.8", lw=0.6, zorder=0)
    ax.set_xlim(0.0, r[-1])
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)" + (" (partials offset)" if partial else ""))
    ax.set_title(f"pair distribution of {len(pos)} atoms")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return fig


#: (Q4, Q6) of the perfect crystals and the icosahedron (12 neighbours; bcc with its 14).
REFERENCE_ORDER = {"fcc": (0.191, 0.575), "hcp": (0.097, 0.485), "bcc": (0.036, 0.511), "ico": (0.0, 0.663)}


def plot_bond_order(traced: TracedAtoms, *, cutoff_angstrom: float | None = None, ax=None):
    """The Q4-Q6 map of the traced atoms' bond-orientational order, one colour per element, with the perfect
    fcc, hcp, bcc and icosahedral values marked (neighbours within ``cutoff_angstrom``, default the first
    minimum of g(r))."""
    from .structure import bond_orientational_order

    pos, el, labels, names = _atoms_by_class(traced)
    q = bond_orientational_order(pos, cutoff_angstrom=cutoff_angstrom)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    fig = ax.figure
    for c in np.unique(labels):
        m = (labels == c) & np.isfinite(q["Q4"])
        ax.scatter(q["Q4"][m], q["Q6"][m], s=6, alpha=0.6, color=plt.cm.tab10(int(c)), linewidths=0,
                   label=f"{names[int(c)]} ({int(m.sum())})")  # fmt: skip
    for name, (q4, q6) in REFERENCE_ORDER.items():
        ax.scatter([q4], [q6], marker="*", s=90, color="k", zorder=3)
        ax.annotate(name, (q4, q6), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlim(-0.02, max(0.3, float(np.nanmax(q["Q4"], initial=0.0)) * 1.05))
    ax.set_ylim(0.0, max(0.75, float(np.nanmax(q["Q6"], initial=0.0)) * 1.05))
    ax.set_xlabel("Q4 (dimensionless)")
    ax.set_ylabel("Q6 (dimensionless)")
    ax.set_title(f"bond-orientational order, neighbours within {q['cutoff_angstrom']:.2f} Å")
    ax.legend(loc="lower right", fontsize=8, markerscale=2)
    return fig


def save_tomo_figures(out_dir, *, volume: Volume | None = None, traced: TracedAtoms | None = None,
                      structure: bool = True) -> dict:  # fmt: skip
    """Write the figures that the inputs allow as PNGs in ``out_dir`` (each atomically); return name → path.

    With ``structure`` (and at least 8 traced atoms) the pair distribution and the Q4-Q6 map of the
    traced model are among them."""
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
        if structure and len(_atoms_by_class(traced)[0]) >= 8:
            figs["pair_distribution"] = lambda: plot_pair_distribution(traced)
            figs["bond_order"] = lambda: plot_bond_order(traced)
    return write_figures(figs, out)
