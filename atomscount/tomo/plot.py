"""Figures of the tomography stage: orthoslices with traced atoms, the intensity histogram with the class
boundaries, a 3D view by element, the R1 factor against iteration, and the traced model's structure (pair
distribution functions and the Q4-Q6 map of bond-orientational order).

A class named after an element has that element's colour in every figure of the package
(:func:`atomscount.style.element_color`); the non-atom class is light grey."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .._figures import _COLORBAR, _scale_bar, write_figures
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH, class_color, styled
from .reconstruct import Volume
from .trace import TracedAtoms

__all__ = ["plot_bond_order", "plot_orthoslices", "plot_volume_gallery", "plot_intensity_histogram",
           "plot_pair_distribution", "plot_r1", "save_tomo_figures"]  # fmt: skip

_VOLUME_UNIT = "projection units/Å"  # a voxel: its share of a projection's pixel, per Å of path

_AXES = ("x", "y", "z")


def _coordinates(n: int, px: float) -> np.ndarray:
    """Centres of ``n`` voxels of side ``px`` centred on the origin [Å]."""
    return (np.arange(n) - (n - 1) / 2.0) * px


def _draw_slice(ax, volume: Volume, normal: str, index: int, traced, thickness: float, norm):
    """Slice ``index`` of ``volume`` normal to ``normal`` on ``ax`` (in Å, origin at the centre), with a scale
    bar and the traced atoms within ``thickness / 2`` of it; return the image."""
    data, px = volume.data, volume.pixel_size_angstrom
    nz, ny, nx = data.shape
    k = "xyz".index(normal)
    a, b = [i for i in range(3) if i != k]
    img = {0: data[:, :, index], 1: data[:, index, :], 2: data[index]}[k]
    n = (nx, ny, nz)
    ext = (-n[a] / 2 * px, n[a] / 2 * px, -n[b] / 2 * px, n[b] / 2 * px)
    im = ax.imshow(img, cmap="gray", origin="lower", extent=ext, norm=norm)
    cut = float(_coordinates(n[k], px)[index])
    ax.set_xlabel(f"{_AXES[a]} (Å)")
    ax.set_ylabel(f"{_AXES[b]} (Å)")
    ax.set_title(f"{normal} = {cut:.1f} Å")
    _scale_bar(ax)
    if traced is not None and len(traced):
        near = np.abs(traced.positions[:, k] - cut) <= thickness / 2.0
        labels = traced.labels if traced.labels is not None else np.zeros(len(traced), dtype=int)
        names = traced.class_names or ("traced",)
        for c, name in enumerate(names):
            m = near & (labels == c)
            if np.any(m):
                ax.scatter(traced.positions[m, a], traced.positions[m, b], s=8, facecolors="none",
                           edgecolors=class_color(name), linewidths=0.8, label=name)  # fmt: skip
    return im


def _class_legend(fig, traced):
    """One legend of the classes for the whole figure, above the panels."""
    from matplotlib.lines import Line2D

    if traced is None or not len(traced):
        return
    names = traced.class_names or ("traced",)
    labels = traced.labels if traced.labels is not None else np.zeros(len(traced), dtype=int)
    handles = [Line2D([], [], ls="none", marker="o", mfc="none", mec=class_color(n),
                      label=f"{n} ({int(np.sum(labels == c))})") for c, n in enumerate(names)]  # fmt: skip
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))


def _norm(data):
    """One colour scale for every slice of ``data`` (so that one colour bar serves them all)."""
    from matplotlib.colors import Normalize

    lo, hi = np.nanpercentile(data, [0.5, 99.9]) if np.isfinite(data).any() else (0.0, 1.0)
    return Normalize(float(lo), float(hi)) if hi > lo else Normalize()


@styled
def plot_orthoslices(volume: Volume, traced: TracedAtoms | None = None, *, thickness_angstrom: float = 1.0):
    """The three central slices of ``volume`` (normal to z, y and x) on one colour scale, with a colour bar,
    scale bars and the traced atoms within ``thickness_angstrom / 2`` of each slice drawn over it, coloured by
    class (an element in its colour)."""
    nz, ny, nx = volume.data.shape
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_INCH, 2.9), layout="constrained")
    norm = _norm(volume.data)
    for ax, (normal, index) in zip(axes, [("z", nz // 2), ("y", ny // 2), ("x", nx // 2)], strict=True):
        im = _draw_slice(ax, volume, normal, index, traced, 2.0 * thickness_angstrom, norm)
    fig.colorbar(im, ax=list(axes), shrink=0.9, label=f"intensity ({_VOLUME_UNIT})")
    _class_legend(fig, traced)
    return fig


@styled
def plot_volume_gallery(volume: Volume, traced: TracedAtoms | None = None, *, axis: str = "z", n_slices: int = 9,
                        thickness_angstrom: float | None = None):  # fmt: skip
    """A gallery of ``n_slices`` slices through ``volume`` normal to ``axis``, evenly spaced over the
    voxels that hold the particle, on one colour scale, with a colour bar, scale bars and the traced atoms
    within half of ``thickness_angstrom`` (default: the spacing of the slices) of each.

    Parameters
    ----------
    volume : Volume
    traced : TracedAtoms, optional
    axis : {"x", "y", "z"}
        The slices' normal.
    n_slices : int
        Panels, 1 to 36; laid out three or four to a row on a page-wide figure.
    thickness_angstrom : float, optional
        [Å].
    """
    from .._checks import check_choice, check_integer

    check_choice(axis, "axis", set(_AXES))
    n_slices = check_integer(n_slices, "n_slices", low=1, high=36)
    k = "xyz".index(axis)
    data = volume.data
    n = data.shape[2 - k]
    profile = np.nansum(np.abs(data), axis=tuple(i for i in range(3) if i != 2 - k))
    held = np.flatnonzero(profile > 0.05 * np.max(profile)) if np.max(profile) > 0 else np.arange(n)
    first, last = (int(held[0]), int(held[-1])) if held.size else (0, n - 1)
    index = np.unique(np.round(np.linspace(first, last, n_slices)).astype(int))
    step = volume.pixel_size_angstrom * max((last - first) / max(len(index) - 1, 1), 1.0)
    thickness = step if thickness_angstrom is None else float(thickness_angstrom)
    n_cols = 3 if len(index) <= 9 else 4
    n_rows = int(np.ceil(len(index) / n_cols))
    panel = (PAGE_WIDTH_INCH - _COLORBAR) / n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PAGE_WIDTH_INCH, n_rows * panel + 0.4), layout="constrained",
                             squeeze=False)  # fmt: skip
    norm = _norm(data)
    for ax, i in zip(axes.flat, index, strict=False):
        im = _draw_slice(ax, volume, axis, int(i), traced, thickness, norm)
    for ax in axes.flat[len(index) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=list(axes.flat), shrink=0.6, label=f"intensity ({_VOLUME_UNIT})")
    _class_legend(fig, traced)
    return fig


@styled
def plot_intensity_histogram(traced: TracedAtoms, *, ax=None, bins: int = 120):
    """Histogram of the box-integrated intensities (log scale), by class, with the boundaries between classes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.6), layout="constrained")
    fig = ax.figure
    values = np.maximum(traced.intensity_box, np.min(traced.intensity_box[traced.intensity_box > 0]))
    edges = np.geomspace(values.min(), values.max(), bins + 1)
    if traced.labels is None:
        ax.hist(values, bins=edges, color="0.4", label=f"traced ({len(values)})")
    else:
        for c, name in enumerate(traced.class_names):
            m = traced.labels == c
            ax.hist(values[m], bins=edges, color=class_color(name), alpha=0.75, label=f"{name} ({int(m.sum())})")
        for c in range(1, len(traced.class_names)):
            lo, hi = values[traced.labels == c - 1], values[traced.labels == c]
            if len(lo) and len(hi):
                ax.axvline(np.sqrt(lo.max() * hi.min()), color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("integrated intensity (projection units · Å²)")
    ax.set_ylabel("atoms")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, borderaxespad=0.1)
    return fig


@styled
def plot_r1(volume: Volume, *, ax=None):
    """The R1 factor of the reprojections against iteration."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.6), layout="constrained")
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


@styled
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
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH + 1.2, 3.6 if partial else 2.6), layout="constrained")
    fig = ax.figure
    r = pdf["r"]
    ax.plot(r, pdf["g"], color="k", lw=1.4, label="total")
    offset = 0.0
    if partial:
        colour = {n: class_color(n) for n in kinds}
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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


#: (Q4, Q6) of the perfect crystals and the icosahedron (12 neighbours; bcc with its 14).
REFERENCE_ORDER = {"fcc": (0.191, 0.575), "hcp": (0.097, 0.485), "bcc": (0.036, 0.511), "ico": (0.0, 0.663)}


@styled
def plot_bond_order(traced: TracedAtoms, *, cutoff_angstrom: float | None = None, ax=None):
    """The Q4-Q6 map of the traced atoms' bond-orientational order, one colour per element, with the perfect
    fcc, hcp, bcc and icosahedral values marked (neighbours within ``cutoff_angstrom``, default the first
    minimum of g(r))."""
    from .structure import bond_orientational_order

    pos, el, labels, names = _atoms_by_class(traced)
    q = bond_orientational_order(pos, cutoff_angstrom=cutoff_angstrom)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH + 1.0, 3.0), layout="constrained")
    fig = ax.figure
    for c in np.unique(labels):
        m = (labels == c) & np.isfinite(q["Q4"])
        ax.scatter(q["Q4"][m], q["Q6"][m], s=6, alpha=0.6, color=class_color(names[int(c)]), linewidths=0,
                   label=f"{names[int(c)]} ({int(m.sum())})")  # fmt: skip
    for name, (q4, q6) in REFERENCE_ORDER.items():
        ax.scatter([q4], [q6], marker="*", s=90, color="k", zorder=3)
        ax.annotate(name, (q4, q6), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlim(-0.02, max(0.3, float(np.nanmax(q["Q4"], initial=0.0)) * 1.05))
    ax.set_ylim(0.0, max(0.75, float(np.nanmax(q["Q6"], initial=0.0)) * 1.05))
    ax.set_xlabel("Q4 (dimensionless)")
    ax.set_ylabel("Q6 (dimensionless)")
    ax.set_title(f"neighbours within {q['cutoff_angstrom']:.2f} Å")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, markerscale=2)
    return fig


def save_tomo_figures(out_dir, *, volume: Volume | None = None, traced: TracedAtoms | None = None,
                      structure: bool = True, fmt: str = "png", dpi: float | None = None) -> dict:  # fmt: skip
    """Write the figures that the inputs allow in ``out_dir`` as ``fmt`` (``"png"``, ``"pdf"`` or ``"svg"``)
    at ``dpi`` [dots per inch] (default the style's), each atomically; return name → path.

    A volume gives the orthoslices, a gallery of slices along z and the R1 curve. With ``structure`` (and
    at least 8 traced atoms) the pair distribution and the Q4-Q6 map of the traced model are among them."""
    from ..counting.plot import plot_model_3d

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {}
    if volume is not None:
        figs["orthoslices"] = lambda: plot_orthoslices(volume, traced)
        figs["slices_z"] = lambda: plot_volume_gallery(volume, traced)
        if len(volume.r1):
            figs["r1"] = lambda: plot_r1(volume)
    if traced is not None:
        figs["intensity_histogram"] = lambda: plot_intensity_histogram(traced)
        if traced.labels is not None:
            figs["model_3d"] = lambda: plot_model_3d(traced.to_atoms())
        if structure and len(_atoms_by_class(traced)[0]) >= 8:
            figs["pair_distribution"] = lambda: plot_pair_distribution(traced)
            figs["bond_order"] = lambda: plot_bond_order(traced)
    return write_figures(figs, out, fmt=fmt, dpi=dpi)
