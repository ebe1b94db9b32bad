"""Figures of the lattice stage: strain and rotation maps, displacement and polarisation vector maps.

Strain and rotation are drawn with a diverging colour scale centred on zero
(ε in %, ω in degrees); displacements as arrows over the image, scaled up so
that they can be seen, with a key that gives their true length in pm. Each
function draws on a given Axes (or a new figure) and returns the Figure.
"""

from __future__ import annotations

import numpy as np

from .._figures import _column_scatter, _fig_ax, _map_figsize, _marker_size, _scale_bar, _show_image, write_figures
from ..image import HAADFImage
from ..style import styled
from .polarisation import PolarisationMap
from .strain import COMPONENTS, StrainMap

__all__ = ["plot_strain_map", "plot_strain_maps", "plot_displacement_map", "plot_polarisation_map",
           "save_strain_figures"]  # fmt: skip

#: Percentile of the columns' absolute values that sets a map's symmetric colour limit.
LIMIT_PERCENTILE = 99.0
#: The longest arrows (their 95th percentile) are drawn this many column spacings long.
ARROW_SPACINGS = 0.9
#: Labels and display factors of the components: ε in %, ω in degrees.
_SHOWN = {"eps_xx": ("ε_xx", "%", 100.0), "eps_yy": ("ε_yy", "%", 100.0), "eps_xy": ("ε_xy", "%", 100.0),
          "omega_xy": ("ω_xy", "°", float(np.degrees(1.0)))}  # fmt: skip


def _check_image(image):
    if image is not None and not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage or None, got {type(image).__name__}")


def _symmetric_limit(values) -> float:
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    lim = float(np.percentile(v, LIMIT_PERCENTILE))
    return lim if lim > 0 else (float(v.max()) if v.max() > 0 else 1.0)


def _frame(ax, pos, image):
    """The image (with a scale bar) under the markers, or axes in Å around the columns."""
    if image is not None:
        _show_image(ax, image.data, image.pixel_size_angstrom, alpha=0.6)
        return
    ok = np.all(np.isfinite(pos), axis=1)
    if ok.any():
        p = pos[ok]
        pad = 0.05 * max(float(np.ptp(p[:, 0])), float(np.ptp(p[:, 1])), 1.0)
        ax.set_xlim(p[:, 0].min() - pad, p[:, 0].max() + pad)
        ax.set_ylim(p[:, 1].max() + pad, p[:, 1].min() - pad)  # y down, as in an image
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    _scale_bar(ax)


def _shape(image, image_shape, pos):
    """The map's (rows, cols): the image's, else the one the columns were found in, else the columns' span [Å]."""
    if image is not None:
        return image.data.shape
    if image_shape is not None:
        return image_shape
    span = np.ptp(pos[np.all(np.isfinite(pos), axis=1)], axis=0) if len(pos) else np.ones(2)
    return (max(float(span[1]), 1.0), max(float(span[0]), 1.0))


def _vector_map(ax, pos, vectors, image, shape, title):
    """Arrows of ``vectors`` [Å] at ``pos`` coloured by direction, over ``image`` (or axes in Å)."""
    fig, ax = _fig_ax(ax, _map_figsize(shape, colorbar=True))
    _frame(ax, pos, image)
    _quiver(ax, pos, vectors, True)
    ax.set_title(title, pad=14)
    return fig


@styled
def plot_strain_map(strain: StrainMap, component: str = "eps_xx", *, image: HAADFImage | None = None, ax=None,
                    limit: float | None = None):  # fmt: skip
    """One component of the strain map, columns coloured on a diverging scale centred on zero.

    Parameters
    ----------
    strain : StrainMap
    component : {"eps_xx", "eps_yy", "eps_xy", "omega_xy"}
    image : HAADFImage, optional
        Drawn under the columns.
    ax : matplotlib Axes, optional
    limit : float, optional
        The colour scale runs from ``-limit`` to ``+limit`` in the units shown (% for
        ε, degrees for ω); by default the 99th percentile of the absolute values.

    Returns
    -------
    matplotlib Figure
    """
    if not isinstance(strain, StrainMap):
        raise TypeError(f"strain must be a StrainMap, got {type(strain).__name__}")
    _check_image(image)
    values, _ = strain.component(component)
    label, unit, factor = _SHOWN[component]
    shown = values * factor
    ok = strain.valid
    lim = _symmetric_limit(shown[ok]) if limit is None else float(limit)
    fig, ax = _fig_ax(ax, _map_figsize(_shape(image, strain.image_shape, strain.positions), colorbar=True))
    pos = strain.positions[ok]
    if image is not None:
        _column_scatter(pos, shown[ok], ax, image.data, image.pixel_size_angstrom, "RdBu_r",
                        f"{label} ({unit})", annotate=False, vmin=-lim, vmax=lim)  # fmt: skip
    else:
        _frame(ax, strain.positions, None)
        _column_scatter(pos, shown[ok], ax, None, None, "RdBu_r", f"{label} ({unit})", annotate=False,
                        vmin=-lim, vmax=lim)  # fmt: skip
    # the columns the reference lattice was fitted to, ringed, unless they are all of them
    ref = strain.in_reference & ok
    if ref.any() and not ref[ok].all():
        size = _marker_size(ax, pos)
        ax.scatter(*strain.positions[ref].T, s=1.3 * size, facecolors="none", edgecolors="k", linewidths=0.5)
        ax.set_title(f"{label} (ringed: the reference columns)")
    else:
        ax.set_title(f"{label} against the reference lattice")
    return fig


@styled
def plot_strain_maps(strain: StrainMap, *, image: HAADFImage | None = None):
    """The four maps (ε_xx, ε_yy, ε_xy, ω_xy) side by side, two by two.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    if not isinstance(strain, StrainMap):
        raise TypeError(f"strain must be a StrainMap, got {type(strain).__name__}")
    w, h = _map_figsize(_shape(image, strain.image_shape, strain.positions), colorbar=True)
    scale = min(1.0, 7.0 / (2 * w))
    fig, axes = plt.subplots(2, 2, figsize=(2 * w * scale, 2 * h * scale), constrained_layout=True)
    for ax, name in zip(axes.ravel(), COMPONENTS, strict=True):
        plot_strain_map(strain, name, image=image, ax=ax)
    return fig


def _arrow_scale(vectors, pos) -> float:
    """Display factor that draws the longest arrows :data:`ARROW_SPACINGS` column spacings long."""
    from scipy.spatial import cKDTree

    ok = np.all(np.isfinite(vectors), axis=1)
    if ok.sum() < 2:
        return 1.0
    d, _ = cKDTree(pos[ok]).query(pos[ok], k=2)
    spacing = float(np.median(d[:, 1]))
    length = float(np.percentile(np.hypot(*vectors[ok].T), 95))
    return ARROW_SPACINGS * spacing / length if length > 0 else 1.0


def _quiver(ax, pos, vectors, colour_by_direction):
    """Arrows of ``vectors`` [Å] at ``pos``, magnified, with a key in pm; coloured by direction if asked."""
    ok = np.all(np.isfinite(vectors), axis=1) & np.all(np.isfinite(pos), axis=1)
    factor = _arrow_scale(vectors, pos)
    p, v = pos[ok], vectors[ok] * factor
    # y points down on the image: angles="xy" with inverted y draws the arrows in data directions
    kw = {"angles": "xy", "scale_units": "xy", "scale": 1.0, "width": 0.006, "pivot": "middle"}
    if colour_by_direction:
        direction = np.degrees(np.arctan2(vectors[ok, 1], vectors[ok, 0]))
        q = ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], direction, cmap="hsv", clim=(-180, 180), **kw)
        ax.figure.colorbar(q, ax=ax, label="direction from +x toward +y (°)", ticks=[-180, -90, 0, 90, 180])
    else:
        q = ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], color="tab:orange", **kw)
    if ok.any():
        key = float(np.percentile(np.hypot(*vectors[ok].T), 95))
        key = float(f"{key:.1g}") if key > 0 else 0.01
        ax.quiverkey(q, 0.12, 1.02, key * factor, f"{100 * key:g} pm", labelpos="E", coordinates="axes")
    return q


@styled
def plot_displacement_map(strain: StrainMap, *, image: HAADFImage | None = None, ax=None, sublattice=None):
    """Each column's displacement from the reference lattice as an arrow over the image.

    The arrows are magnified (the key gives the true length in pm) and coloured by
    their direction.

    Parameters
    ----------
    strain : StrainMap
    image : HAADFImage, optional
    ax : matplotlib Axes, optional
    sublattice : str, optional
        Draw one sublattice only.

    Returns
    -------
    matplotlib Figure
    """
    if not isinstance(strain, StrainMap):
        raise TypeError(f"strain must be a StrainMap, got {type(strain).__name__}")
    _check_image(image)
    keep = strain.sublattice >= 0
    if sublattice is not None:
        if sublattice not in strain.sublattice_names:
            raise ValueError(f"sublattice must be one of {list(strain.sublattice_names)}, got {sublattice!r}")
        keep &= strain.sublattice == strain.sublattice_names.index(sublattice)
    shown = np.where(keep[:, None], strain.displacements, np.nan)  # the frame still spans every column
    return _vector_map(ax, strain.positions, shown, image, _shape(image, strain.image_shape, strain.positions),
                       "displacements from the reference lattice")  # fmt: skip


@styled
def plot_polarisation_map(polarisation: PolarisationMap, *, image: HAADFImage | None = None, ax=None):
    """B-site displacements from their A cells (polarisation vectors) as arrows coloured by direction.

    Returns
    -------
    matplotlib Figure
    """
    if not isinstance(polarisation, PolarisationMap):
        raise TypeError(f"polarisation must be a PolarisationMap, got {type(polarisation).__name__}")
    _check_image(image)
    pos = polarisation.positions
    title = f"{polarisation.b_site} displacement from the {polarisation.a_site} cell centre"
    return _vector_map(ax, pos, polarisation.vectors, image, _shape(image, None, pos), title)


def save_strain_figures(strain: StrainMap, out_dir, *, image: HAADFImage | None = None,
                        polarisation: PolarisationMap | None = None, fmt: str = "png",
                        dpi: float | None = None) -> dict:  # fmt: skip
    """Write the strain maps (one figure per component), the displacement map and, when given, the
    polarisation map into ``out_dir``; return name -> path.

    Parameters
    ----------
    strain : StrainMap
    out_dir : path
        An existing folder.
    image : HAADFImage, optional
        Drawn under the maps.
    polarisation : PolarisationMap, optional
    fmt : {"png", "pdf", "svg"}
    dpi : float, optional

    Returns
    -------
    dict
    """
    makers = {f"strain_{name}": (lambda name=name: plot_strain_map(strain, name, image=image)) for name in COMPONENTS}
    makers["displacements"] = lambda: plot_displacement_map(strain, image=image)
    if polarisation is not None:
        makers["polarisation"] = lambda: plot_polarisation_map(polarisation, image=image)
    return write_figures(makers, out_dir, fmt=fmt, dpi=dpi)
