"""Figures of the elemental stage: orthogonal slices of each element's concentration on one colour scale,
an RGB composite of the elements, line profiles with their uncertainty bands, the histogram of the
composition over the particle, the convergence of the objective, and denoised EDXS maps beside the
noisy ones (:func:`plot_denoised`).

Every figure takes an :class:`~atomscount.elemental.result.ElementalVolumes`. Concentrations are atomic
fractions (0 to 1); positions are in Å with the origin at the centre of the volume, as in
:mod:`atomscount.tomo.plot`. An element has its colour of every atomscount figure
(:func:`atomscount.style.element_color`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .._checks import check_choice, check_integer
from .._figures import _COLORBAR, _scale_bar, write_figures
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH, element_color, styled

__all__ = ["plot_orthoslices", "plot_rgb_composite", "plot_line_profile", "plot_composition_histogram",
           "plot_convergence", "plot_denoised", "save_elemental_figures"]  # fmt: skip

_CONCENTRATION = "concentration (atomic fraction)"
_AXES = ("x", "y", "z")


def _coordinates(n: int, px: float) -> np.ndarray:
    """Centres of ``n`` voxels of side ``px`` centred on the origin [Å]."""
    return (np.arange(n) - (n - 1) / 2.0) * px


def _centre_index(result) -> tuple:
    """(iz, iy, ix): the voxel nearest the particle's centroid (the volume's centre when the mask is empty)."""
    mask = np.asarray(result.mask, dtype=bool)
    if not mask.any():
        return tuple(n // 2 for n in mask.shape)
    return tuple(int(round(float(np.mean(i)))) for i in np.nonzero(mask))


def _slice(data: np.ndarray, normal: str, index: int) -> np.ndarray:
    """The 2D slice of ``data`` (nz, ny, nx) normal to ``normal`` at ``index``, rows along the second axis."""
    return {"x": data[:, :, index], "y": data[:, index, :], "z": data[index]}[normal]


def _extent(shape: tuple, normal: str, px: float) -> tuple:
    """The slice's extent in Å (horizontal axis first) and the names of its two axes."""
    nz, ny, nx = shape
    k = "xyz".index(normal)
    a, b = [i for i in range(3) if i != k]
    n = (nx, ny, nz)
    return (-n[a] / 2 * px, n[a] / 2 * px, -n[b] / 2 * px, n[b] / 2 * px), _AXES[a], _AXES[b]


def _check_slice(result, axis, index) -> tuple:
    check_choice(axis, "axis", set(_AXES))
    shape = result.concentration.shape[1:]
    n = shape[2 - "xyz".index(axis)]
    if index is None:
        index = _centre_index(result)[2 - "xyz".index(axis)]
    return check_integer(index, "index", low=0, high=n - 1), shape


def _element_cmap(element: str):
    """Black (none of the element) to the element's colour (the pure element)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(f"{element}_fraction", ["black", element_color(element)])


@styled
def plot_orthoslices(result, *, centre: tuple | None = None, cmap: str = "viridis"):
    """The three slices of each element's concentration through ``centre`` (normal to z, y and x), one row per
    element, all on one colour scale from 0 to 1 with one colour bar, and scale bars.

    Parameters
    ----------
    result : ElementalVolumes
    centre : tuple of int, optional
        Voxel (iz, iy, ix) that the slices go through; default the voxel nearest the centroid of the mask.
    cmap : str
        Colour map of the concentration (one for every element, so that the colours compare).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import Normalize

    shape = result.concentration.shape[1:]
    if centre is None:
        centre = _centre_index(result)
    if len(centre) != 3:
        raise ValueError(f"centre must be a voxel (iz, iy, ix), got {centre!r}")
    iz, iy, ix = (check_integer(c, "centre", low=0, high=n - 1) for c, n in zip(centre, shape, strict=True))
    n_el, px = len(result.elements), float(result.voxel_size_angstrom)
    panel = (PAGE_WIDTH_INCH - _COLORBAR - 0.4) / 3
    fig, axes = plt.subplots(n_el, 3, figsize=(PAGE_WIDTH_INCH, n_el * (panel + 0.2) + 0.4), layout="constrained",
                             squeeze=False)  # fmt: skip
    norm = Normalize(0.0, 1.0)
    for row, element in enumerate(result.elements):
        for ax, (normal, index) in zip(axes[row], [("z", iz), ("y", iy), ("x", ix)], strict=True):
            ext, xa, ya = _extent(shape, normal, px)
            im = ax.imshow(_slice(result.concentration[row], normal, index), cmap=cmap, norm=norm, origin="lower",
                           extent=ext)  # fmt: skip
            cut = float(_coordinates(shape[2 - "xyz".index(normal)], px)[index])
            ax.set_title(f"{element}, {normal} = {cut:.1f} Å", color=element_color(element))
            ax.set_xlabel(f"{xa} (Å)")
            ax.set_ylabel(f"{ya} (Å)")
            _scale_bar(ax)
    fig.colorbar(im, ax=list(axes.flat), shrink=0.9 if n_el > 1 else 1.0, label=_CONCENTRATION)
    return fig


@styled
def plot_rgb_composite(result, *, axis: str = "z", index: int | None = None, ax=None):
    """One slice of the volume with every element in its colour, weighted by its concentration and added (a
    voxel of pure Au is Au's colour, an empty one black), with one colour bar per element and a scale bar.

    Parameters
    ----------
    result : ElementalVolumes
    axis : {"x", "y", "z"}
        The slice's normal.
    index : int, optional
        The slice; default through the centroid of the mask.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize, to_rgb

    index, shape = _check_slice(result, axis, index)
    px = float(result.voxel_size_angstrom)
    ext, xa, ya = _extent(shape, axis, px)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH + 0.6 * len(result.elements), 3.0), layout="constrained")
    fig = ax.figure
    rgb = np.zeros((*_slice(result.concentration[0], axis, index).shape, 3))
    for c, element in zip(result.concentration, result.elements, strict=True):
        rgb += np.clip(_slice(c, axis, index), 0.0, 1.0)[..., None] * np.asarray(to_rgb(element_color(element)))
    norm = Normalize(0.0, 1.0)
    im = ax.imshow(np.clip(rgb, 0.0, 1.0), origin="lower", extent=ext, norm=norm,
                   cmap=_element_cmap(result.elements[0]))  # fmt: skip  # the first colour bar's scale
    cut = float(_coordinates(shape[2 - "xyz".index(axis)], px)[index])
    ax.set_title(f"{' + '.join(result.elements)}, {axis} = {cut:.1f} Å")
    ax.set_xlabel(f"{xa} (Å)")
    ax.set_ylabel(f"{ya} (Å)")
    _scale_bar(ax)
    for i, element in reversed(list(enumerate(result.elements))):  # the first element's bar beside the image
        mappable = im if i == 0 else ScalarMappable(norm=norm, cmap=_element_cmap(element))
        fig.colorbar(mappable, ax=ax, shrink=0.9, pad=0.01, label=f"{element} (atomic fraction)")
    return fig


def _profile_points(result, start, end, n_points):
    """Voxel coordinates (z, y, x) of ``n_points`` along the line from ``start`` to ``end`` (x, y, z) [Å],
    and the distance of each from ``start`` [Å]."""
    shape = np.asarray(result.concentration.shape[1:], dtype=float)
    px = float(result.voxel_size_angstrom)
    centre = _centre_index(result)
    centre_xyz = np.array([(centre[2 - k] - (shape[2 - k] - 1) / 2.0) * px for k in range(3)])
    if start is None and end is None:
        half = (shape[2] - 1) / 2.0 * px
        start, end = centre_xyz - [half, 0, 0], centre_xyz + [half, 0, 0]
    start, end = (np.asarray(p, dtype=float) for p in (start, end))
    for name, p in (("start", start), ("end", end)):
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"{name} must be a finite point (x, y, z) [Å], got {p.tolist()!r}")
    length = float(np.linalg.norm(end - start))
    if length == 0:
        raise ValueError(f"start and end must differ, both are {start.tolist()!r}")
    n = int(np.ceil(length / px)) + 1 if n_points is None else check_integer(n_points, "n_points", low=2)
    t = np.linspace(0.0, 1.0, n)
    xyz = start + t[:, None] * (end - start)
    zyx = xyz[:, ::-1] / px + (shape - 1) / 2.0
    return zyx.T, t * length


@styled
def plot_line_profile(result, *, start=None, end=None, truth: dict | None = None, n_points: int | None = None,
                      ax=None):  # fmt: skip
    """Each element's concentration along a line through the volume, with its ±1σ band, and the true
    concentration (dashed) where ``truth`` gives it.

    Parameters
    ----------
    result : ElementalVolumes
    start, end : array_like (3,), optional
        The line's ends (x, y, z) [Å], origin at the volume's centre; default the line along x through the
        centroid of the mask, across the whole volume.
    truth : dict, optional
        Element -> true concentration volume (nz, ny, nx) [atomic fraction].
    n_points : int, optional
        Samples along the line (trilinear interpolation); default one per voxel length.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.ndimage import map_coordinates

    coords, distance = _profile_points(result, start, end, n_points)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH + 1.0, 2.6), layout="constrained")
    fig = ax.figure
    for c, s, element in zip(result.concentration, result.sigma, result.elements, strict=True):
        colour = element_color(element)
        value = map_coordinates(np.asarray(c, dtype=float), coords, order=1, mode="nearest")
        error = map_coordinates(np.asarray(s, dtype=float), coords, order=1, mode="nearest")
        ax.fill_between(distance, value - error, value + error, color=colour, alpha=0.3, linewidth=0)
        ax.plot(distance, value, color=colour, label=element)
        if truth is not None and element in truth:
            true = np.asarray(truth[element], dtype=float)
            if true.shape != c.shape:
                raise ValueError(f"truth[{element!r}] must have the volume's shape {c.shape}, got {true.shape}")
            ax.plot(distance, map_coordinates(true, coords, order=1, mode="nearest"), color=colour, ls="--",
                    lw=0.9, label=f"{element} (true)")  # fmt: skip
    ax.set_xlim(distance[0], distance[-1])
    ax.set_xlabel("distance along the line (Å)")
    ax.set_ylabel(_CONCENTRATION)
    ax.set_title("concentration ± 1σ along the line")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


@styled
def plot_composition_histogram(result, *, bins: int = 40, ax=None):
    """The histogram of each element's concentration over the particle's voxels (the mask), in its colour."""
    bins = check_integer(bins, "bins", low=2)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH + 0.8, 2.6), layout="constrained")
    fig = ax.figure
    mask = np.asarray(result.mask, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for c, element in zip(result.concentration, result.elements, strict=True):
        values = np.clip(c[mask], 0.0, 1.0)
        ax.hist(values, bins=edges, color=element_color(element), alpha=0.6,
                label=f"{element} (mean {np.mean(values) if values.size else np.nan:.2f})")  # fmt: skip
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(_CONCENTRATION)
    ax.set_ylabel(f"voxels (of {int(mask.sum())})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


@styled
def plot_convergence(result, *, ax=None):
    """The objective of the reconstruction against iteration (log scale where it stays positive), titled
    with whether it converged."""
    objective = np.asarray(result.objective, dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.6), layout="constrained")
    fig = ax.figure
    ax.plot(np.arange(1, len(objective) + 1), objective, "o-", ms=2)
    if objective.size and np.all(objective[np.isfinite(objective)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective (negative log-likelihood)")
    state = "converged" if result.converged else "not converged"
    ax.set_title(f"{result.method}: {state} after {len(objective)} iterations")
    return fig


def _denoised_rows(noisy, result, truth, index):
    """[(label, noisy map, denoised map, sigma map or None, truth map or None)], one per element (or one)."""

    def pick(a, name):
        a = np.asarray(a, dtype=float)
        if a.shape[-2:] != result.maps.shape[-2:]:
            raise ValueError(f"{name} must hold maps of {result.maps.shape[-2:]} pixels, got shape {a.shape}")
        if a.ndim == 2:
            return a
        i = a.shape[0] // 2 if index is None else check_integer(index, "index", low=0, high=a.shape[0] - 1)
        return a[i]

    if result.elements is not None:
        keys = result.elements
        if not isinstance(noisy, dict) or set(noisy) != set(keys):
            raise ValueError(f"noisy must be the dict of element maps that was denoised ({list(keys)})")
        if truth is not None and not (isinstance(truth, dict) and set(truth) <= set(keys)):
            raise ValueError(f"truth must be a dict of some of the elements {list(keys)}")
        return [(e, pick(noisy[e], f"noisy[{e!r}]"), pick(result[e], "result.maps"),
                 None if result.sigma is None else pick(result.sigma[k], "result.sigma"),
                 None if truth is None or e not in truth else pick(truth[e], f"truth[{e!r}]"))
                for k, e in enumerate(keys)]  # fmt: skip
    if np.shape(noisy) != result.maps.shape:
        raise ValueError(f"noisy must have the denoised maps' shape {result.maps.shape}, got {np.shape(noisy)}")
    return [(None, pick(noisy, "noisy"), pick(result.maps, "result.maps"),
             None if result.sigma is None else pick(result.sigma, "result.sigma"),
             None if truth is None else pick(truth, "truth"))]  # fmt: skip


@styled
def plot_denoised(noisy, result, *, truth=None, pixel_size_angstrom: float = 1.0, index: int | None = None):
    """Noisy, denoised, uncertainty and (where known) true EDXS maps side by side, one row per element.

    The noisy, denoised and true maps of a row share one colour scale [counts per pixel]
    (the noisy map saturates above it); the uncertainty (1σ, counts per pixel) has its
    own, and is left out for a method without one. Scale bars on every map.

    Parameters
    ----------
    noisy : ndarray or dict of str to ndarray
        The counts given to :func:`~atomscount.elemental.denoise.denoise_edxs`.
    result : DenoisedMaps
    truth : ndarray or dict of str to ndarray, optional
        The expected counts without noise, in the layout of ``noisy``.
    pixel_size_angstrom : float
        [Å], for the axes and scale bars.
    index : int, optional
        Which map of a stack (default the middle one).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import Normalize

    from .._checks import check_positive

    px = check_positive(pixel_size_angstrom, "pixel_size_angstrom")
    rows = _denoised_rows(noisy, result, truth, index)
    has_sigma = result.sigma is not None
    has_truth = any(r[4] is not None for r in rows)
    n_cols = 2 + has_sigma + has_truth
    bars = (1 + has_sigma) * _COLORBAR
    panel = min(1.9, (PAGE_WIDTH_INCH - bars - 1.4) / n_cols)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * panel + bars + 1.4,
                             len(rows) * (panel + 0.35) + 0.3), layout="constrained", squeeze=False)  # fmt: skip
    for ax_row, (element, y, m, s, t) in zip(axes, rows, strict=True):
        h, w = m.shape
        ext = (0.0, w * px, h * px, 0.0)
        top = max(float(m.max()), float(t.max()) if t is not None else 0.0, 1e-12) * 1.05
        norm = Normalize(0.0, top)
        who = f"{element}: " if element else ""
        panels = [(y, f"{who}noisy", norm), (m, f"denoised ({result.method})", norm)]
        if t is not None:
            panels.append((t, "truth", norm))
        elif has_truth:
            panels.append((None, "truth", norm))
        if s is not None:
            panels.append((s, "uncertainty (1σ)", Normalize(0.0, max(float(s.max()), 1e-12))))
        for k, (ax, (data, title, nm)) in enumerate(zip(ax_row, panels, strict=True)):
            ax.set_title(title, **({"color": element_color(element)} if element and k == 0 else {}))
            if data is None:
                ax.set_axis_off()
                continue
            im = ax.imshow(data, cmap="viridis" if nm is norm else "magma", norm=nm, extent=ext)
            ax.set_xlabel("x (Å)")
            if k == 0:
                ax.set_ylabel("y (Å)")
            else:
                ax.tick_params(labelleft=False)
            _scale_bar(ax)
            if k == 0:
                counts_image = im
            if nm is not norm:
                fig.colorbar(im, ax=ax, shrink=0.8, label="1σ (counts)")
        fig.colorbar(counts_image, ax=list(ax_row[: n_cols - has_sigma]), shrink=0.8, extend="max",
                     label="counts (per pixel)")  # fmt: skip
    return fig


def save_elemental_figures(result, out_dir, *, fmt: str = "png", dpi: float | None = None) -> dict:
    """Write every figure of ``result`` in ``out_dir`` as ``fmt`` (``"png"``, ``"pdf"`` or ``"svg"``) at
    ``dpi`` [dots per inch] (default the style's), each atomically; return name → path.

    The orthoslices, the RGB composite (two elements or more), the line profile along x and the
    composition histogram; the convergence curve when ``result`` has an objective."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "orthoslices": lambda: plot_orthoslices(result),
        "line_profile": lambda: plot_line_profile(result),
        "composition_histogram": lambda: plot_composition_histogram(result),
    }
    if len(result.elements) > 1:
        figs["rgb_composite"] = lambda: plot_rgb_composite(result)
    if len(np.asarray(result.objective)):
        figs["convergence"] = lambda: plot_convergence(result)
    return write_figures(figs, out, fmt=fmt, dpi=dpi)
