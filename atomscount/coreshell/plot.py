"""Figures of a :class:`~.model.CoreShellModel`: measured against predicted SCS, a slice, the core counts per column."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .._figures import _COLORBAR, _discrete, _fig_ax, write_figures
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH, element_color, styled
from .forward import CORE, SHELL, ForwardModel, LensingTables
from .model import CoreShellModel
from .sites import group_columns, tilt_rotation

__all__ = ["view_scs", "plot_scs_agreement", "plot_slice", "plot_slice_gallery", "plot_core_count_map",
           "save_coreshell_figures"]  # fmt: skip

_AXES = {"x": 0, "y": 1, "z": 2}


def _rotation(model: CoreShellModel, v: int):
    if model.rotations:
        return None if v == 0 else model.rotations[v]
    return None if v == 0 else tilt_rotation(model.zone_axes[0], model.zone_axes[v])


def _codes(model: CoreShellModel) -> np.ndarray:
    return np.where(model.is_core, CORE, SHELL).astype(np.int64)


def view_scs(model: CoreShellModel, views=None, lensing=None) -> list:
    """Per view, (measured (c,) [Å²], error (c,) [Å²], predicted (c,) [Å²]) of the model's columns.

    A model from :func:`~.search.search_core_shell` carries them (every measured
    column, in input order). For a model without them, ``views`` and ``lensing`` as
    given to the search are needed; each of the model's projected columns is then
    paired with the measured column under it.
    """
    if model.measured_scs:
        return [(m, e, p) for m, e, p in zip(model.measured_scs, model.scs_error, model.predicted_scs, strict=True)]
    if views is None or lensing is None:
        raise ValueError("this model carries no SCS per view: give the views and lensing of its search")
    from .search import _match, _parse_view

    if len(views) != len(model.zone_axes):
        raise ValueError(f"views has {len(views)} entries, the model {len(model.zone_axes)} views")
    models = lensing if isinstance(lensing, dict) else {a: lensing for a in model.zone_axes}
    models = {str(k).strip("[]"): m for k, m in models.items()}
    out = []
    for v, view in enumerate(views):
        pos, scs, err, axis = _parse_view(view, v)
        if axis not in models:
            raise ValueError(f"views[{v}] is along [{axis}], but lensing has models for {sorted(models)} only")
        cols = group_columns(model.atoms.positions, _rotation(model, v))
        idx, _ = _match(cols.xy, pos, v)
        tables = LensingTables(models[axis], core=model.core_element, shell=model.shell_element)
        fm = ForwardModel(_codes(model), [cols], [tables], [scs[idx]], [err[idx]])
        out.append((scs[idx], err[idx], fm.predicted[0].copy()))
    return out


@styled
def plot_scs_agreement(measured, error, predicted, *, ax=None, title: str = ""):
    """Measured against predicted SCS [Å²] with error bars and the 1:1 line."""
    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 3.4))
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    chi2 = float(np.sum(((measured - predicted) / np.asarray(error)) ** 2))
    ax.errorbar(predicted, measured, yerr=error, fmt="o", ms=3, lw=0.6, alpha=0.8,
                label=f"columns ({len(measured)}), χ² {chi2:.1f}")  # fmt: skip
    both = np.concatenate([measured, predicted]) if len(measured) else np.array([0.0, 1.0])
    lo, hi = float(both.min()), float(both.max())
    pad = 0.05 * max(hi - lo, 1e-9)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8, label="1:1")
    ax.set_xlabel("predicted SCS (Å²)")
    ax.set_ylabel("measured SCS (Å²)")
    # above the axes, titled: inside, it would hide the columns that lie off the 1:1 line
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.1, ncols=2,
              title=title or "measured against predicted SCS", alignment="left")  # fmt: skip
    return fig


def _slice_mask(model: CoreShellModel, axis: int, position, thickness: float):
    pos = model.atoms.positions
    if position is None:
        centre = model.core.get("centroid") or model.core.get("centre") or pos.mean(axis=0)
        position = float(np.asarray(centre, dtype=float)[axis])
    nearest = pos[np.argmin(np.abs(pos[:, axis] - position)), axis]
    return np.abs(pos[:, axis] - nearest) <= thickness / 2.0, float(nearest)


def _draw_sites(ax, model: CoreShellModel, a: int, mask, color_by: str, size: float, *, counts: bool = True):
    """The sites of ``mask`` on ``ax``, projected along axis ``a``; return the probability scatter (or None)."""
    h, w = [i for i in range(3) if i != a]
    pos = model.atoms.positions[mask]
    sc = None
    if color_by == "element":
        core = model.is_core[mask]
        for sel, name, el in [(~core, "shell", model.shell_element), (core, "core", model.core_element)]:
            ax.scatter(pos[sel, h], pos[sel, w], s=size, color=element_color(el), edgecolors="0.3", linewidths=0.4,
                       label=f"{el} {name}" + (f" ({int(sel.sum())})" if counts else ""))  # fmt: skip
        p = model.probability[mask]
        unsure = (p > 0.05) & (p < 0.95)
        if unsure.any() or not counts:
            ax.scatter(pos[unsure, h], pos[unsure, w], s=size * 1.8, facecolors="none", edgecolors="k",
                       linewidths=1.0, label=f"uncertain, 0.05 < P({model.core_element}) < 0.95"
                       + (f" ({int(unsure.sum())})" if counts else ""))  # fmt: skip
    else:
        sc = ax.scatter(pos[:, h], pos[:, w], s=size, c=model.probability[mask], cmap="viridis", vmin=0.0, vmax=1.0,
                        edgecolors="0.3", linewidths=0.4)  # fmt: skip
    names = "xyz"
    ax.set_aspect("equal")
    ax.set_xlabel(f"{names[h]} (Å)")
    ax.set_ylabel(f"{names[w]} (Å)")
    return sc


def _counts_text(model: CoreShellModel, mask) -> str:
    core = model.is_core[mask]
    return f"{int(core.sum())} {model.core_element}, {int((~core).sum())} {model.shell_element}"


@styled
def plot_slice(model: CoreShellModel, *, axis: str = "z", position: float | None = None, thickness: float = 0.5,
               color_by: str = "element", ax=None):  # fmt: skip
    """The sites in one lattice plane perpendicular to ``axis`` (x, y or z of the first view's frame).

    Parameters
    ----------
    axis : {"x", "y", "z"}
    position : float
        Where the plane cuts ``axis`` [Å]; the plane of sites nearest the core centroid when not given.
    thickness : float
        Sites within half of this of the plane are drawn [Å].
    color_by : {"element", "probability"}
        Element of the best configuration, each in its colour
        (:func:`atomscount.style.element_color`; sites with a core probability
        between 0.05 and 0.95 ringed), or the core probability per site.
    """
    from .._checks import check_choice

    check_choice(axis, "axis", set(_AXES))
    check_choice(color_by, "color_by", {"element", "probability"})
    a = _AXES[axis]
    mask, cut = _slice_mask(model, a, position, thickness)
    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 3.4))
    size = float(np.clip(1500.0 / max(int(mask.sum()), 1), 6.0, 60.0))
    sc = _draw_sites(ax, model, a, mask, color_by, size)
    if sc is None:  # above the axes, the slice named in its title
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, borderaxespad=0.1, handletextpad=0.2,
                  columnspacing=0.8, title=f"slice {axis} = {cut:.2f} Å ({int(mask.sum())} sites)",
                  alignment="left")  # fmt: skip
    else:
        fig.colorbar(sc, ax=ax, label=f"P({model.core_element}) per site")
        ax.set_title(f"slice {axis} = {cut:.2f} Å ({int(mask.sum())} sites)")
    return fig


@styled
def plot_slice_gallery(model: CoreShellModel, *, axis: str = "z", n_slices: int = 6, color_by: str = "element",
                       thickness: float = 0.5):  # fmt: skip
    """``n_slices`` lattice planes of ``model`` perpendicular to ``axis``, evenly spread from one side of the
    particle to the other, on one scale, with one legend (or colour bar) for all.

    Parameters
    ----------
    axis : {"x", "y", "z"}
    n_slices : int
        Panels, 1 to 24; three to a row on a page-wide figure.
    color_by : {"element", "probability"}
        As in :func:`plot_slice`.
    thickness : float
        Sites within half of this of a plane belong to it [Å].
    """
    from .._checks import check_choice, check_integer

    check_choice(axis, "axis", set(_AXES))
    check_choice(color_by, "color_by", {"element", "probability"})
    n_slices = check_integer(n_slices, "n_slices", low=1, high=24)
    a = _AXES[axis]
    pos = model.atoms.positions
    planes = []
    for z in np.sort(pos[:, a]):
        if not planes or z - planes[-1] > thickness / 2.0:
            planes.append(float(z))
    picked = np.unique(np.round(np.linspace(0, len(planes) - 1, min(n_slices, len(planes)))).astype(int))
    n_cols = min(3, len(picked))
    n_rows = int(np.ceil(len(picked) / n_cols))
    h, w = [i for i in range(3) if i != a]
    span = np.ptp(pos[:, [h, w]], axis=0) + 2.0 if len(pos) else np.ones(2)
    panel_w = (PAGE_WIDTH_INCH - (_COLORBAR if color_by == "probability" else 0.0)) / n_cols
    panel_h = float(np.clip(panel_w * span[1] / span[0], 0.5 * panel_w, 1.5 * panel_w)) + 0.2
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PAGE_WIDTH_INCH, n_rows * panel_h + 0.5), layout="constrained",
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    size = float(np.clip(600.0 / max(len(pos) ** (2 / 3), 1.0), 4.0, 40.0))
    sc = None
    for ax, i in zip(axes.flat, picked, strict=False):
        mask = np.abs(pos[:, a] - planes[i]) <= thickness / 2.0
        sc = _draw_sites(ax, model, a, mask, color_by, size, counts=False)
        ax.set_title(f"{axis} = {planes[i]:.1f} Å: {_counts_text(model, mask)}")
        ax.label_outer()
    for ax in axes.flat[len(picked) :]:
        ax.set_visible(False)
    if sc is None:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=3)
    else:
        fig.colorbar(sc, ax=list(axes.flat), shrink=0.6, label=f"P({model.core_element}) per site (0–1)")
    return fig


@styled
def plot_core_count_map(model: CoreShellModel, view: int = 0, *, ax=None):
    """Core atoms in each of the model's columns along view ``view``, at the column positions [Å]."""
    if not 0 <= view < len(model.zone_axes):
        raise ValueError(f"view must be in 0..{len(model.zone_axes) - 1}, got {view}")
    cols = group_columns(model.atoms.positions, _rotation(model, view))
    n_core = np.bincount(cols.column_of_site, weights=model.is_core.astype(float), minlength=cols.n_columns)
    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 3.0))
    size = float(np.clip(2000.0 / max(cols.n_columns, 1), 4.0, 60.0))
    cmap, norm, ticks = _discrete(n_core, "magma")
    sc = ax.scatter(*cols.xy.T, c=n_core, s=size, cmap=cmap, norm=norm, marker="s", edgecolors="0.5",
                    linewidths=0.3)  # fmt: skip
    fig.colorbar(sc, ax=ax, label=f"{model.core_element} per column (atoms)", ticks=ticks, spacing="proportional")
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image convention, as the other maps
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(f"[{model.zone_axes[view]}]: {int(n_core.sum())} {model.core_element} in {cols.n_columns} columns")
    return fig


def save_coreshell_figures(model: CoreShellModel, out_dir, *, views=None, lensing=None, fmt: str = "png",
                           dpi: float | None = None) -> dict:  # fmt: skip
    """Write the figures of ``model`` in ``out_dir`` as ``fmt`` (``"png"``, ``"pdf"`` or ``"svg"``) at
    ``dpi`` [dots per inch] (default the style's), each atomically; return name → path.

    The central slice by element and by core probability, a gallery of slices
    along z, the core counts per column of each view, and, from the SCS the model
    carries (or else the ``views`` and ``lensing`` given to the search), measured
    against predicted SCS per view.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"out_dir does not exist: {str(out)!r}")
    figs = {"slice_elements": lambda: plot_slice(model),
            "slice_probability": lambda: plot_slice(model, color_by="probability"),
            "slices_z": lambda: plot_slice_gallery(model)}  # fmt: skip
    for v, axis in enumerate(model.zone_axes):
        figs[f"core_counts_{v}_{axis}"] = lambda v=v: plot_core_count_map(model, v)
    if model.measured_scs or (views is not None and lensing is not None):
        for v, (meas, err, pred) in enumerate(view_scs(model, views, lensing)):
            scale = model.info.get("scs_scale", [1.0] * len(model.zone_axes))[v] if model.measured_scs else 1.0
            title = f"[{model.zone_axes[v]}]: measured against predicted SCS" + (
                f"\n(lensing model × {scale:.3f})" if abs(scale - 1.0) > 1e-9 else ""
            )
            figs[f"scs_{v}_{model.zone_axes[v]}"] = lambda m=meas, e=err, p=pred, t=title: plot_scs_agreement(
                m, e, p, title=t
            )
    return write_figures(figs, out, fmt=fmt, dpi=dpi)
