"""Helpers shared by the figures of every stage: canvas sizes, image backdrops, column scatters, saving.

Maps keep the image's proportions (equal aspect in Å on a canvas shaped like the
image) and are drawn over an image: the one given, else the fitted model. Colour
limits come from the converged columns only, and every colour bar names its
quantity and unit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .columns.fit import ColumnFit

__all__ = ["write_figures"]

#: Percentiles of the converged columns' values that set a map's colour limits.
COLOUR_PERCENTILES = (1.0, 99.0)

# a square image is drawn 6 x 6 inches; other shapes keep that area within these sides [inch]
_MAP_AREA = 36.0
_MAP_LONGEST = 12.0
_MAP_SHORTEST = 1.8
_LABELS = 0.9  # axis labels and title
_COLORBAR = 1.3  # a colour bar with its label


def write_figures(makers: dict, out_dir) -> dict:
    """Draw each figure of ``makers`` (name -> function returning a Figure), write it as ``out_dir/NAME.png``
    atomically and close it; return name -> path. One figure is open at a time."""
    from .io import atomic_path

    paths = {}
    for name, make in makers.items():
        fig = make()
        paths[name] = Path(out_dir) / f"{name}.png"
        try:
            with atomic_path(paths[name]) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
        finally:
            plt.close(fig)
    return paths



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



def _image_inches(shape, area=_MAP_AREA):
    """(width, height) [inch] of an image of ``shape`` (rows, cols) drawn on about ``area`` square inches."""
    rows, cols = max(float(shape[0]), 1e-9), max(float(shape[1]), 1e-9)
    aspect = cols / rows
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    scale = min(1.0, _MAP_LONGEST / max(w, h))
    return max(w * scale, _MAP_SHORTEST), max(h * scale, _MAP_SHORTEST)



def _map_figsize(shape, *, colorbar=False):
    """Canvas (width, height) [inch] shaped like the image, plus room for the labels (and a colour bar)."""
    w, h = _image_inches(shape)
    return (float(w + _LABELS + (_COLORBAR if colorbar else 0.0)), float(h + _LABELS))



def _extent(shape, p):
    return (-0.5 * p, (shape[1] - 0.5) * p, (shape[0] - 0.5) * p, -0.5 * p)



def _show_image(ax, data, pixel, *, alpha, cmap="gray", vmin=None, vmax=None):
    im = ax.imshow(data, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=_extent(data.shape, pixel))
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    return im



def _intensity_unit(fit) -> str:
    return {True: "fraction of beam", False: "counts"}.get(fit.normalised, "image units")



def _backdrop(fit, image):
    """The image that maps are drawn over, and the words for the title."""
    if image is not None:
        return np.asarray(image.data), "over the image"
    if isinstance(fit, ColumnFit):
        return fit.model().image(), "over the fitted model"
    return None, ""



def _positions(fit) -> np.ndarray:
    return np.asarray(fit.positions if isinstance(fit, ColumnFit) else fit, dtype=float).reshape(-1, 2)



def _pixel_size(fit, image):
    if image is not None:
        return image.pixel_size_angstrom
    return fit.pixel_size_angstrom if isinstance(fit, ColumnFit) else None



def _colour_limits(values, converged):
    """Percentiles of the converged columns' finite values (all finite ones when none converged)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & np.asarray(converged, dtype=bool)
    if not ok.any():
        ok = np.isfinite(v)
    if not ok.any():
        return None, None
    lo, hi = np.percentile(v[ok], COLOUR_PERCENTILES)
    return (float(lo), float(hi)) if hi > lo else (None, None)



def _marker_size(ax, pos) -> float:
    """Marker area [pt²]: a disc of about 0.55 column spacings at the axes' scale."""
    fig = ax.figure
    box = ax.get_position()
    w_in, h_in = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    inch_per_angstrom = min(w_in / max(abs(x1 - x0), 1e-9), h_in / max(abs(y1 - y0), 1e-9))
    if len(pos) >= 2:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(pos).query(pos, k=2)
        spacing = float(np.median(d[:, 1]))
    else:
        spacing = 0.25 * max(abs(x1 - x0), abs(y1 - y0))
    return float(np.clip((0.55 * spacing * inch_per_angstrom * 72.0) ** 2, 4.0, 2000.0))



def _column_scatter(pos, values, ax, backdrop, pixel, cmap, label, *, annotate, vmin=None, vmax=None):
    """Columns coloured by ``values`` over ``backdrop`` (when there is one), with a labelled colour bar."""
    fig = ax.figure
    if backdrop is not None:
        _show_image(ax, backdrop, pixel, alpha=0.45)
    else:
        if len(pos):
            pad = 0.05 * max(float(np.ptp(pos[:, 0])), float(np.ptp(pos[:, 1])), 1.0)
            ax.set_xlim(pos[:, 0].min() - pad, pos[:, 0].max() + pad)
            ax.set_ylim(pos[:, 1].max() + pad, pos[:, 1].min() - pad)  # y down, as in an image
        ax.set_aspect("equal")
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    v = np.asarray(values, dtype=float)
    sc = ax.scatter(*pos.T, c=v, s=_marker_size(ax, pos), cmap=cmap, vmin=vmin, vmax=vmax)
    finite = v[np.isfinite(v)]
    over = vmax is not None and finite.size and finite.max() > vmax
    under = vmin is not None and finite.size and finite.min() < vmin
    extend = {(True, True): "both", (True, False): "max", (False, True): "min"}.get((bool(over), bool(under)))
    fig.colorbar(sc, ax=ax, label=label, extend=extend or "neither")
    if annotate and len(pos) <= 300:
        for (x, y), val in zip(pos, v, strict=True):
            if np.isfinite(val):
                ax.annotate(f"{val:g}", (x, y), ha="center", va="center", fontsize=6, color="w")
    return sc
