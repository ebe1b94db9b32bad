"""Figures of a :class:`~.model.CoreShellModel`: measured against predicted SCS, a slice, the core counts per column."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .forward import CORE, SHELL, ForwardModel, LensingTables
from .model import CoreShellModel
from .sites import group_columns, tilt_rotation

__all__ = ["view_scs", "plot_scs_agreement", "plot_slice", "plot_core_count_map", "save_coreshell_figures"]

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


def plot_scs_agreement(measured, error, predicted, *, ax=None, title: str = ""):
    """Measured against predicted SCS [Å²] with error bars and the 1:1 line."""
    fig, ax = _fig_ax(ax, (4.6, 4.4))
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
    ax.set_title(title or "measured against predicted SCS")
    ax.legend(fontsize="small")
    return fig


def _slice_mask(model: CoreShellModel, axis: int, position, thickness: float):
    pos = model.atoms.positions
    if position is None:
        centre = model.core.get("centroid") or model.core.get("centre") or pos.mean(axis=0)
        position = float(np.asarray(centre, dtype=float)[axis])
    nearest = pos[np.argmin(np.abs(pos[:, axis] - position)), axis]
    return np.abs(pos[:, axis] - nearest) <= thickness / 2.0, float(nearest)


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
        Element of the best configuration (sites with a core probability between
        0.05 and 0.95 ringed), or the core probability per site.
    """
    from .._checks import check_choice

    check_choice(axis, "axis", set(_AXES))
    check_choice(color_by, "color_by", {"element", "probability"})
    a = _AXES[axis]
    mask, cut = _slice_mask(model, a, position, thickness)
    h, w = [i for i in range(3) if i != a]
    pos = model.atoms.positions[mask]
    fig, ax = _fig_ax(ax, (5.4, 4.6))
    size = float(np.clip(4000.0 / max(len(pos), 1), 10.0, 120.0))
    if color_by == "element":
        core = model.is_core[mask]
        for sel, name, colour in [(~core, f"{model.shell_element} shell", "silver"),
                                  (core, f"{model.core_element} core", "gold")]:  # fmt: skip
            ax.scatter(pos[sel, h], pos[sel, w], s=size, c=colour, edgecolors="0.3", linewidths=0.4,
                       label=f"{name} ({int(sel.sum())})")  # fmt: skip
        p = model.probability[mask]
        unsure = (p > 0.05) & (p < 0.95)
        if unsure.any():
            ax.scatter(pos[unsure, h], pos[unsure, w], s=size * 1.8, facecolors="none", edgecolors="tab:red",
                       linewidths=1.0, label=f"uncertain, 0.05 < P({model.core_element}) < 0.95 "
                                             f"({int(unsure.sum())})")  # fmt: skip
        ax.legend(fontsize="small", loc="upper right", framealpha=0.8)
    else:
        sc = ax.scatter(pos[:, h], pos[:, w], s=size, c=model.probability[mask], cmap="viridis", vmin=0.0, vmax=1.0,
                        edgecolors="0.3", linewidths=0.4)  # fmt: skip
        fig.colorbar(sc, ax=ax, label=f"P({model.core_element}) per site")
    names = "xyz"
    ax.set_aspect("equal")
    ax.set_xlabel(f"{names[h]} (Å)")
    ax.set_ylabel(f"{names[w]} (Å)")
    ax.set_title(f"slice {axis} = {cut:.2f} Å ({len(pos)} sites)")
    return fig


def plot_core_count_map(model: CoreShellModel, view: int = 0, *, ax=None):
    """Core atoms in each of the model's columns along view ``view``, at the column positions [Å]."""
    if not 0 <= view < len(model.zone_axes):
        raise ValueError(f"view must be in 0..{len(model.zone_axes) - 1}, got {view}")
    cols = group_columns(model.atoms.positions, _rotation(model, view))
    n_core = np.bincount(cols.column_of_site, weights=model.is_core.astype(float), minlength=cols.n_columns)
    fig, ax = _fig_ax(ax, (5.6, 4.6))
    size = float(np.clip(6000.0 / max(cols.n_columns, 1), 10.0, 150.0))
    sc = ax.scatter(*cols.xy.T, c=n_core, s=size, cmap="magma", marker="s", edgecolors="0.5", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label=f"{model.core_element} atoms per column")
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image convention, as the other maps
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(f"[{model.zone_axes[view]}]: {int(n_core.sum())} {model.core_element} in {cols.n_columns} columns")
    return fig


def save_coreshell_figures(model: CoreShellModel, out_dir, *, views=None, lensing=None) -> dict:
    """Write the figures of ``model`` as PNGs in ``out_dir`` (each atomically); return name → path.

    The measured-against-predicted SCS figures use the SCS the model carries, or
    else the ``views`` and ``lensing`` given to the search; without either only the
    slices and the count maps are drawn.
    """
    from .._figures import write_figures

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"out_dir does not exist: {str(out)!r}")
    figs = {"slice_elements": lambda: plot_slice(model), "slice_probability":
            lambda: plot_slice(model, color_by="probability")}  # fmt: skip
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
    return write_figures(figs, out)


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    else:
        fig = ax.figure
    return fig, ax
