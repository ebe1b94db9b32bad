"""Matplotlib figures for every result type. Each function returns its Figure.

Maps keep the image's proportions (equal aspect in Å on a canvas shaped like the
image) and are drawn over an image: the one given, else the fitted model. Colour
limits come from the converged columns only, every colour bar names its quantity
and unit, and SCS carry the unit of the fit
(:attr:`~atomscount.columns.ColumnFit.scs_unit`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ._checks import check_positive
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
    "residual_summary",
    "scs_bin_edges",
]

#: Percentiles of the converged columns' values that set a map's colour limits.
COLOUR_PERCENTILES = (1.0, 99.0)
#: Histogram bins per SCS spacing of neighbouring mixture components.
BINS_PER_COMPONENT = 3
#: Most bins in one histogram, so that one far outlier cannot make thousands of empty ones.
MAX_BINS = 300

# a square image is drawn 6 x 6 inches; other shapes keep that area within these sides [inch]
_MAP_AREA = 36.0
_MAP_LONGEST = 12.0
_MAP_SHORTEST = 1.8
_LABELS = 0.9  # axis labels and title
_COLORBAR = 1.3  # a colour bar with its label


def residual_summary(fit: ColumnFit, image=None, *, dose_e_per_angstrom2: float | None = None) -> dict:
    """How large the fit residual is, in terms a microscopist can read.

    The residual is ``data - model`` over the finite pixels of the fitted image.
    Instead of a reduced χ² (whose scale depends on the image units and the noise
    model) it is stated as a root mean square, relative to the peaks and, when
    the dose is known, relative to the counting noise the model predicts.

    Parameters
    ----------
    fit : ColumnFit
    image : HAADFImage or ndarray, optional
        The image that was fitted. Default: ``fit.residual`` (kept with
        ``fit_columns(..., keep_residual=True)``).
    dose_e_per_angstrom2 : float, optional
        Incident dose [e/Å²] of a normalised image (fraction of the incident
        beam), known independently of the fit. The estimate that a Poisson fit
        stores in ``fit.metadata["dose_estimate_e_per_angstrom2"]`` is derived
        from this same residual and would give a ratio of 1 by construction.

    Returns
    -------
    dict
        ``residual_rms``: ``sqrt(mean((data - model)^2))`` [image units].
        ``mean_peak_height``: mean background-subtracted peak height ``eta`` of
        the converged columns [image units].
        ``rms_over_peak``: ``residual_rms / mean_peak_height``.
        ``expected_noise_rms``: with a dose, the RMS of Poisson noise expected
        from the model. Pixel ``i`` collects ``dose * pixel_area * model_i``
        electrons, so its standard deviation is ``sqrt(model_i / (dose *
        pixel_area))`` and ``expected_noise_rms = sqrt(mean(model_i / (dose *
        pixel_area)))`` [image units]. None without a dose.
        ``rms_over_noise``: ``residual_rms / expected_noise_rms``: about 1 when the
        model explains the image down to counting noise, above 1 when structure
        is left in the residual (or the dose is overstated). None without a dose.
        ``unit``: the image units in words.
        ``text``: one line for a title, e.g. ``"residual RMS = 1.3 × expected noise"``.

    Raises
    ------
    ValueError
        Neither an image nor a stored residual, an image of another shape than
        the fit's, a dose not > 0, or a dose for an image marked not normalised.

    Examples
    --------
    >>> from atomscount import HAADFImage, fit_columns
    >>> from atomscount.columns.model import ColumnModel, add_poisson_noise
    >>> truth = ColumnModel((40, 40), 0.1, [[2.0, 2.0]], heights=[0.5], widths=[0.4], background=(0.05,))
    >>> data = add_poisson_noise(truth.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=0)
    >>> fit = fit_columns(HAADFImage(data, 0.1, {"normalised": True}), [[2.0, 2.0]])
    >>> s = residual_summary(fit, data, dose_e_per_angstrom2=1e5)
    >>> bool(0.8 < s["rms_over_noise"] < 1.2)
    True
    """
    if image is None:
        if fit.residual is None:
            raise ValueError("image must be given: the fit keeps no residual (fit_columns(..., keep_residual=True))")
        resid = np.asarray(fit.residual, dtype=float)
        model = None
    else:
        data = np.asarray(image.data if isinstance(image, HAADFImage) else image, dtype=float)
        if data.shape != tuple(fit.image_shape):
            raise ValueError(f"image must have the fit's shape {tuple(fit.image_shape)}, got {data.shape}")
        model = fit.model().image()
        resid = data - model
    finite = np.isfinite(resid)
    rms = float(np.sqrt(np.mean(resid[finite] ** 2))) if finite.any() else float("nan")
    heights = fit.heights[fit.converged]
    peak = float(np.mean(heights)) if heights.size else float("nan")
    unit = _intensity_unit(fit)
    out = {"residual_rms": rms, "mean_peak_height": peak, "rms_over_peak": rms / peak if peak > 0 else float("nan"),
           "expected_noise_rms": None, "rms_over_noise": None, "unit": unit}  # fmt: skip
    if dose_e_per_angstrom2 is not None:
        dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
        if fit.normalised is False:
            raise ValueError("dose_e_per_angstrom2 needs a normalised image (fraction of the incident beam); "
                             "this fit's image is marked not normalised")  # fmt: skip
        if model is None:
            model = fit.model().image()
        electrons = dose * fit.pixel_size_angstrom**2
        expected = float(np.sqrt(np.mean(np.clip(model[finite], 0.0, None) / electrons)))
        out.update(expected_noise_rms=expected, rms_over_noise=rms / expected if expected > 0 else float("inf"))
        out["text"] = f"residual RMS = {out['rms_over_noise']:.2g} × expected noise ({dose:.3g} e/Å²)"
    else:
        out["text"] = f"residual RMS = {rms:.3g} {unit} = {100 * out['rms_over_peak']:.2g} % of the mean peak height"
    return out


def scs_bin_edges(values, *, component_means=None, errors=None) -> np.ndarray:
    """Histogram bin edges that resolve the per-atom peaks of SCS values.

    With mixture components (at least two), the bin width is the median spacing
    of neighbouring component means divided by :data:`BINS_PER_COMPONENT`, so
    each atom's peak spans about three bins. Otherwise the Freedman–Diaconis
    width (NumPy's ``"fd"``). FD sizes bins for one smooth peak, and on SCS of
    several counts its bins are about one atom wide; so, given the SCS
    standard errors, the width is the median error (the finest detail the data
    hold), but not below a quarter of the FD width. At most :data:`MAX_BINS` bins.

    Parameters
    ----------
    values : array_like
        SCS, any unit; non-finite values are ignored.
    component_means : array_like, optional
        Means of the fitted mixture components (same unit).
    errors : array_like, optional
        Standard errors of the SCS (same unit), e.g. ``fit.scs_error``; used
        without ``component_means`` only.

    Returns
    -------
    ndarray
        Equally spaced edges spanning the finite values.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scs = np.repeat([1.0, 2.0, 3.0, 4.0], 30) + rng.normal(0, 0.05, 120)
    >>> len(scs_bin_edges(scs, component_means=[1.0, 2.0, 3.0, 4.0])) - 1  # about 3 per atom
    10
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.linspace(0.0, 1.0, 11)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        half = 0.01 * abs(lo) or 0.5
        return np.array([lo - half, lo + half])
    means = np.unique(np.asarray(component_means if component_means is not None else [], dtype=float))
    means = means[np.isfinite(means)]
    spacing = float(np.median(np.diff(means))) if means.size >= 2 else 0.0
    if spacing > 0:
        width = spacing / BINS_PER_COMPONENT
    else:
        fd = np.histogram_bin_edges(x, bins="fd")
        width = fd[1] - fd[0] if fd.size > 1 else hi - lo
        err = np.asarray(errors if errors is not None else [], dtype=float).ravel()
        err = err[np.isfinite(err) & (err > 0)]
        if err.size:
            width = min(width, max(float(np.median(err)), width / 4))
    n = int(np.clip(np.ceil((hi - lo) / width), 1, MAX_BINS))
    return np.linspace(lo, hi, n + 1)


def plot_columns(image: HAADFImage, fit: ColumnFit, *, ax=None, show_unconverged=True):
    """The image with fitted column positions (red: flagged as not converged)."""
    fig, ax = _fig_ax(ax, _map_figsize(image.shape))
    _show_image(ax, image.data, image.pixel_size_angstrom, alpha=1.0)
    ok = fit.converged
    size = _marker_size(ax, fit.positions)
    ax.scatter(*fit.positions[ok].T, s=size, c="tab:cyan", marker="+", linewidths=0.8, label="fitted")
    if show_unconverged and (~ok).any():
        ax.scatter(*fit.positions[~ok].T, s=4 * size, facecolors="none", edgecolors="red", label="not converged")
    ax.set_title(f"{fit.n_columns} columns")
    ax.legend(loc="upper right", fontsize=8, markerscale=min(1.0, 6.0 / np.sqrt(size)))  # legend-sized markers
    return fig


def plot_model_residual(image: HAADFImage, fit: ColumnFit, *, dose_e_per_angstrom2: float | None = None):
    """Three panels: data, fitted model and residual, with a colour bar in image units.

    The residual's title states its RMS as :func:`residual_summary` does
    (relative to the expected noise when ``dose_e_per_angstrom2`` is given).
    Panels sit side by side, or stacked for an image more than 1.5 times wider than tall.
    """
    model = fit.model().image()
    resid = image.data - model
    rows, cols = image.shape
    stacked = cols > 1.5 * rows
    w, h = _image_inches(image.shape, area=_MAP_AREA / 2)
    size = (w + _LABELS + _COLORBAR, 3 * (h + _LABELS)) if stacked else (3 * (w + _LABELS) + 2 * _COLORBAR, h + _LABELS)
    fig, axes = plt.subplots(3 if stacked else 1, 1 if stacked else 3, constrained_layout=True, figsize=size)
    axes = np.ravel(axes)
    lo, hi = np.nanpercentile(image.data, [0.5, 99.5])
    unit = _intensity_unit(fit)
    for ax, arr, title in ((axes[0], image.data, "data"), (axes[1], model, "fitted model")):
        im = _show_image(ax, arr, image.pixel_size_angstrom, alpha=1.0, vmin=lo, vmax=hi)
        ax.set_title(title)
    fig.colorbar(im, ax=list(axes[:2]), shrink=0.8, label=f"intensity ({unit})")
    r = np.nanpercentile(np.abs(resid), 99.5) or 1.0
    im = _show_image(axes[2], resid, image.pixel_size_angstrom, alpha=1.0, cmap="RdBu_r", vmin=-r, vmax=r)
    axes[2].set_title(residual_summary(fit, image, dose_e_per_angstrom2=dose_e_per_angstrom2)["text"], fontsize=9)
    fig.colorbar(im, ax=axes[2], shrink=0.8, label=f"data − model ({unit})")
    return fig


def plot_scs_map(fit: ColumnFit, *, ax=None, image: HAADFImage | None = None):
    """Columns coloured by SCS, over the image (default: the fitted model).

    The colour limits are percentiles :data:`COLOUR_PERCENTILES` of the
    converged columns' SCS, so that one failed column cannot set the scale;
    values beyond them take the end colours (the colour bar's arrows).
    """
    backdrop, where = _backdrop(fit, image)
    fig, ax = _fig_ax(ax, _map_figsize(backdrop.shape, colorbar=True))
    vmin, vmax = _colour_limits(fit.scs, fit.converged)
    _column_scatter(fit.positions, fit.scs, ax, backdrop, _pixel_size(fit, image), "viridis",
                    f"SCS ({fit.scs_unit})", annotate=False, vmin=vmin, vmax=vmax)  # fmt: skip
    ax.set_title(f"scattering cross-sections {where}")
    return fig


def plot_scs_histogram(fit: ColumnFit, *, ax=None, bins=None, voronoi=True, component_means=None):
    """Histogram of the converged columns' SCS, with the Voronoi estimate beside it.

    Bins follow :func:`scs_bin_edges`: about three per component spacing when
    ``component_means`` (e.g. ``counts.component_means``) are given, else
    Freedman–Diaconis refined by the SCS errors.
    """
    fig, ax = _fig_ax(ax, (6.5, 4.2))
    ok = fit.converged
    x = fit.scs[ok]
    show_voronoi = voronoi and fit.n_columns and np.all(np.isfinite(fit.voronoi_scs))
    if bins is None:
        edges = scs_bin_edges(x, component_means=component_means, errors=fit.scs_error[ok])
        both = np.concatenate([x, fit.voronoi_scs[ok]]) if show_voronoi else x
        if both.size and np.ptp(both) > 0:  # the same bin width over both estimates
            n = int(np.clip(np.ceil(np.ptp(both) / (edges[1] - edges[0])), 1, MAX_BINS))
            edges = np.linspace(np.min(both), np.max(both), n + 1)
        bins = edges
    ax.hist(x, bins=bins, alpha=0.75, label="Gaussian fit", color="tab:blue")
    if show_voronoi:
        ax.hist(fit.voronoi_scs[ok], bins=bins, histtype="step", lw=1.5, label="Voronoi", color="tab:orange")
    ax.set_xlabel(f"SCS ({fit.scs_unit})")
    ax.set_ylabel("columns")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{int(ok.sum())} converged columns")
    ax.legend()
    return fig


def save_fit_figures(image: HAADFImage, fit: ColumnFit, out_dir, *, dose_e_per_angstrom2: float | None = None) -> dict:
    """Write the four column-fit figures as PNG into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "columns": plot_columns(image, fit),
        "model_residual": plot_model_residual(image, fit, dose_e_per_angstrom2=dose_e_per_angstrom2),
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


def plot_count_histogram(counts, *, ax=None, bins=None, scs_unit: str = "image units·Å²"):
    """SCS histogram with the fitted mixture components and their sum.

    Bins follow :func:`scs_bin_edges` (about three per component spacing).
    ``scs_unit`` labels the SCS axis: pass ``fit.scs_unit``.
    """
    from scipy.stats import norm

    fig, ax = _fig_ax(ax, (7, 4.2))
    x = np.asarray(counts.scs, dtype=float).ravel()
    x = x[np.isfinite(x)]
    means = np.asarray(counts.component_means, dtype=float)
    if bins is None:
        bins = scs_bin_edges(x, component_means=means)
    h, edges, _ = ax.hist(x, bins=bins, color="0.75", label=f"{x.size} SCS values")
    width = edges[1] - edges[0]
    grid = np.linspace(edges[0], edges[-1], 1000)
    weights = np.asarray(counts.component_weights)
    sd = float(counts.component_width)
    dose = (counts.metadata or {}).get("dose")
    total = np.zeros_like(grid)
    for i, (m, w) in enumerate(zip(means, weights, strict=True)):
        s = np.sqrt(sd**2 + (max(m, 0) / dose if dose else 0.0))
        comp = x.size * width * w * norm.pdf(grid, m, s)
        total += comp
        ax.plot(grid, comp, color="tab:blue", lw=0.8, alpha=0.8, label="components" if i == 0 else None)
    ax.plot(grid, total, color="tab:red", lw=1.5, label="mixture")
    ax.set_xlabel(f"SCS ({scs_unit})")
    ax.set_ylabel("columns")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{counts.method}: {counts.n_components} components")
    ax.legend()
    return fig


def plot_icl(counts, *, ax=None):
    """ICL, AIC and BIC against the number of components G (integer ticks).

    Markers, each in the legend: the physically consistent candidates (open
    circles), the ICL local minima (open squares; filled inside where clear,
    at least two standard deviations of the ICL steps deep), the chosen G (star), the runners-up
    (their G written beside them) and the global ICL minimum (triangle) when it
    was not chosen. The legend sits outside the axes, right of the data.
    Results saved before candidates carried ``consistent`` and ``depth_sigma``
    show every candidate as a circle.
    """
    fig, ax = _fig_ax(ax, (8.5, 4.2))
    icl = np.asarray(counts.icl)
    if icl.size == 0:
        ax.text(0.5, 0.5, f"no ICL curve for method {counts.method!r}", ha="center", transform=ax.transAxes)
        return fig
    g = np.arange(1, icl.size + 1)
    ax.plot(g, icl, "-", color="tab:blue", label="ICL")
    ax.plot(g, counts.bic, "--", color="tab:green", label="BIC")
    ax.plot(g, counts.aic, ":", color="tab:orange", label="AIC")
    cands = list(counts.candidates)
    old = cands and "consistent" not in cands[0]
    consistent = [c for c in cands if old or c.get("consistent")]
    minima = [c for c in cands if not old and (c.get("depth") or -1) > 0]
    if consistent:
        ax.plot([c["n_components"] for c in consistent], [c["icl"] for c in consistent], "o", mfc="none",
                color="0.3", ms=7, ls="none", label="candidates" if old else "physically consistent G")  # fmt: skip
    if minima:
        ax.plot([c["n_components"] for c in minima], [c["icl"] for c in minima], "s", mfc="none", color="tab:purple",
                ms=9, ls="none", label="ICL local minima (filled: clear, ≥ 2 sd deep)")  # fmt: skip
        clear = [c for c in minima if (c.get("depth_sigma") or 0) >= 2]
        if clear:
            ax.plot([c["n_components"] for c in clear], [c["icl"] for c in clear], "s", color="tab:purple", ms=5,
                    ls="none", alpha=0.6, label="clear ICL local minima")  # fmt: skip
    gmin = int(np.argmin(icl)) + 1
    chosen = f"chosen G = {counts.n_components}" + (" (global minimum)" if gmin == counts.n_components else "")
    ax.plot(counts.n_components, icl[counts.n_components - 1], "*", color="tab:red", ms=14, label=chosen)
    runners = [c for c in cands if c["n_components"] != counts.n_components][:3]
    for k, c in enumerate(runners):
        ax.annotate(f"#{k + 2}", (c["n_components"], c["icl"]), textcoords="offset points", xytext=(3, 5 + 7 * k),
                    fontsize=7, color="0.2")  # fmt: skip
    if runners:
        ax.plot([], [], ls="none", label="runners-up #2-#4: G = " + ", ".join(str(c["n_components"]) for c in runners))
    if gmin != counts.n_components:
        ax.plot(gmin, icl[gmin - 1], "v", color="k", ms=8, label=f"global ICL minimum G = {gmin}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of components G")
    ax.set_ylabel("criterion (lower is better)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def plot_count_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured (and, when few, labelled) by their atom count.

    ``fit`` is a :class:`ColumnFit` or the (n, 2) positions [Å]. The map is drawn
    over ``image``, else over the fitted model (a ColumnFit), as the title says.
    """
    c = np.atleast_2d(counts.counts)[frame]
    fig, ax, backdrop, where = _count_axes(fit, ax, image)
    sc = _column_scatter(_positions(fit), np.where(c >= 0, c, np.nan), ax, backdrop, _pixel_size(fit, image),
                         "viridis", "atoms in the column", annotate=True)  # fmt: skip
    sc.colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"atom counts ({int(np.where(c >= 0, c, 0).sum())} atoms) {where}".strip())
    return fig


def plot_count_probability_map(fit, counts, *, ax=None, image: HAADFImage | None = None, frame: int = 0):
    """Columns coloured by the posterior probability of their count, over the image as in :func:`plot_count_map`."""
    p = np.atleast_2d(counts.probability)[frame]
    fig, ax, backdrop, where = _count_axes(fit, ax, image)
    _column_scatter(_positions(fit), p, ax, backdrop, _pixel_size(fit, image), "magma",
                    "probability of the count (0–1)", annotate=False, vmin=0.0, vmax=1.0)  # fmt: skip
    ax.set_title(f"count probability (mean {np.mean(p):.2f}) {where}".strip())
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
    """Write the counting figures as PNG into ``out_dir``; return their paths.

    The maps are drawn over ``image``, or, without one, over the fitted model of
    ``fit`` (a :class:`ColumnFit`). SCS are labelled in ``fit.scs_unit``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unit = fit.scs_unit if isinstance(fit, ColumnFit) else "image units·Å²"
    figs = {"count_histogram": plot_count_histogram(counts, scs_unit=unit),
            "count_map": plot_count_map(fit, counts, image=image),
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


def _count_axes(fit, ax, image):
    if image is not None:
        shape = image.shape
    elif isinstance(fit, ColumnFit):
        shape = fit.image_shape
    else:  # positions only: their bounding box, one column spacing around
        span = np.ptp(_positions(fit), axis=0) if len(_positions(fit)) else np.ones(2)
        shape = (max(span[1], 1e-3), max(span[0], 1e-3))
    fig, ax = _fig_ax(ax, _map_figsize(shape, colorbar=True))
    return fig, ax, *_backdrop(fit, image)


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


def save_detection_figure(image: HAADFImage, positions, path, *, detection=None) -> Path:
    """Draw detected columns over the image (and, for a model-based detection, the
    candidates it added and removed) and write a PNG to ``path``; return it.

    The figure is what to check before fitting: every column should carry a marker,
    and nothing else should.
    """
    from .io import atomic_path

    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    ny, nx = image.shape
    aspect = ny / nx
    width = 7.0 if aspect <= 1 else float(np.clip(7.0 / aspect, 3.0, 7.0))
    height = float(np.clip(width * aspect, 2.0, 10.0)) + 0.6
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    data = np.where(np.isfinite(image.data), image.data, np.nan)
    lo, hi = np.nanpercentile(data, [0.5, 99.5]) if np.isfinite(data).any() else (0.0, 1.0)
    p = image.pixel_size_angstrom
    ax.imshow(data, cmap="gray", vmin=lo, vmax=hi, extent=(-0.5 * p, (nx - 0.5) * p, (ny - 0.5) * p, -0.5 * p))
    size = float(np.clip(3000.0 / max(len(pos), 1), 4.0, 40.0))
    if detection is not None and len(detection.removed):
        # faint and underneath: the candidates tried must not hide the result
        ax.scatter(*np.asarray(detection.removed).T, s=0.5 * size, marker="x", color="tab:cyan", linewidths=0.5,
                   alpha=0.35, zorder=1, label=f"tried and removed ({len(detection.removed)})")  # fmt: skip
    ax.scatter(*pos.T, s=size, facecolors="none", edgecolors="tab:red", linewidths=0.8, zorder=2,
               label=f"columns ({len(pos)})")  # fmt: skip
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.04), ncols=2, fontsize="small", frameon=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
