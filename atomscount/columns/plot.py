"""Figures of the column stage: columns over the image, model and residual, SCS maps and histograms,
the detection check. Each function returns its Figure.

SCS carry the unit of the fit (:attr:`~atomscount.columns.ColumnFit.scs_unit`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .._checks import check_positive
from .._figures import (
    _COLORBAR,
    _LABELS,
    _backdrop,
    _colour_limits,
    _column_scatter,
    _fig_ax,
    _intensity_unit,
    _map_figsize,
    _marker_size,
    _pixel_size,
    _show_image,
    _title,
    write_figures,
)
from ..image import HAADFImage
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH, styled
from .fit import ColumnFit

__all__ = [
    "plot_columns",
    "plot_model_residual",
    "plot_scs_map",
    "plot_scs_histogram",
    "save_fit_figures",
    "plot_detection",
    "save_detection_figure",
    "residual_summary",
    "scs_bin_edges",
]

#: Histogram bins per SCS spacing of neighbouring mixture components.
BINS_PER_COMPONENT = 3
#: Most bins in one histogram, so that one far outlier cannot make thousands of empty ones.
MAX_BINS = 300


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


@styled
def plot_columns(image: HAADFImage, fit: ColumnFit, *, ax=None, show_unconverged=True):
    """The image with fitted column positions (red: flagged as not converged), a colour bar and a scale bar."""
    fig, ax = _fig_ax(ax, _map_figsize(image.shape, colorbar=True))
    im = _show_image(ax, image.data, image.pixel_size_angstrom, alpha=1.0)
    fig.colorbar(im, ax=ax, label=f"intensity ({_intensity_unit(fit)})")
    ok = fit.converged
    size = _marker_size(ax, fit.positions)
    ax.scatter(*fit.positions[ok].T, s=size, c="tab:cyan", marker="+", linewidths=0.8, label="fitted")
    if show_unconverged and (~ok).any():
        ax.scatter(*fit.positions[~ok].T, s=4 * size, facecolors="none", edgecolors="red", label="not converged")
    # above the image, titled: a legend on an image always hides data
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, borderaxespad=0.1, handletextpad=0.3,
              markerscale=min(1.0, 6.0 / np.sqrt(size)), title=f"{fit.n_columns} columns",
              alignment="left")  # fmt: skip
    return fig


@styled
def plot_model_residual(image: HAADFImage, fit: ColumnFit, *, dose_e_per_angstrom2: float | None = None):
    """Three panels: data, fitted model and residual, with colour bars in image units and scale bars.

    The figure's title states the residual's RMS as :func:`residual_summary` does
    (relative to the expected noise when ``dose_e_per_angstrom2`` is given).
    Panels sit side by side on a page-wide figure, or stacked in one column for
    an image more than 1.5 times wider than tall.
    """
    model = fit.model().image()
    resid = image.data - model
    rows, cols = image.shape
    stacked = cols > 1.5 * rows
    if stacked:
        w = COLUMN_WIDTH_INCH - _LABELS - _COLORBAR
        size = (COLUMN_WIDTH_INCH, 3 * (w * rows / cols + _LABELS) + 0.3)
    else:
        w = (PAGE_WIDTH_INCH - 2 * _COLORBAR) / 3 - _LABELS
        size = (PAGE_WIDTH_INCH, min(w * rows / cols, 3 * w) + _LABELS + 0.3)
    fig, axes = plt.subplots(3 if stacked else 1, 1 if stacked else 3, constrained_layout=True, figsize=size)
    axes = np.ravel(axes)
    lo, hi = np.nanpercentile(image.data, [0.5, 99.5])
    unit = _intensity_unit(fit)
    for ax, arr, title in ((axes[0], image.data, "data"), (axes[1], model, "fitted model")):
        im = _show_image(ax, arr, image.pixel_size_angstrom, alpha=1.0, vmin=lo, vmax=hi)
        ax.set_title(title)
    axes[0].images[0].set_norm(im.norm)  # one scale, the one the shared colour bar shows
    # two lines: the panels of a page-wide row are shorter than the label on one
    fig.colorbar(im, ax=list(axes[:2]), shrink=0.9, label=f"intensity\n({unit})")
    r = np.nanpercentile(np.abs(resid), 99.5) or 1.0
    im = _show_image(axes[2], resid, image.pixel_size_angstrom, alpha=1.0, cmap="RdBu_r", vmin=-r, vmax=r)
    axes[2].set_title("residual")
    fig.colorbar(im, ax=axes[2], shrink=0.9, label=f"data − model\n({unit})")
    fig.suptitle(residual_summary(fit, image, dose_e_per_angstrom2=dose_e_per_angstrom2)["text"])
    return fig


@styled
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
    _title(ax, f"scattering cross-sections {where}")
    return fig


@styled
def plot_scs_histogram(fit: ColumnFit, *, ax=None, bins=None, voronoi=True, component_means=None):
    """Histogram of the converged columns' SCS, with the Voronoi estimate beside it.

    Bins follow :func:`scs_bin_edges`: about three per component spacing when
    ``component_means`` (e.g. ``counts.component_means``) are given, else
    Freedman–Diaconis refined by the SCS errors.
    """
    fig, ax = _fig_ax(ax, (COLUMN_WIDTH_INCH, 2.6))
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
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, borderaxespad=0.1,
              title=f"{int(ok.sum())} converged columns", alignment="left")  # fmt: skip
    return fig


def save_fit_figures(image: HAADFImage, fit: ColumnFit, out_dir, *, dose_e_per_angstrom2: float | None = None,
                     fmt: str = "png", dpi: float | None = None) -> dict:  # fmt: skip
    """Write the four column-fit figures into ``out_dir`` (see :func:`~atomscount._figures.write_figures` for
    ``fmt``, ``"png"``, ``"pdf"`` or ``"svg"``, and ``dpi`` [dots per inch]); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "columns": lambda: plot_columns(image, fit),
        "model_residual": lambda: plot_model_residual(image, fit, dose_e_per_angstrom2=dose_e_per_angstrom2),
        "scs_map": lambda: plot_scs_map(fit, image=image),
        "scs_histogram": lambda: plot_scs_histogram(fit),
    }
    return write_figures(makers, out, fmt=fmt, dpi=dpi)


@styled
def plot_detection(image: HAADFImage, positions, *, detection=None):
    """Detected columns over the image (and, for a model-based detection, the candidates it added and
    removed), page-wide, with a colour bar and a scale bar.

    The figure is what to check before fitting: every column should carry a marker,
    and nothing else should.
    """
    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    ny, nx = image.shape
    # the image as large as a page allows (7 in wide, its height within 7.8 in) [inch]
    side = _COLORBAR + _LABELS + 0.3  # the colour bar's ticks need more than a map's
    w = PAGE_WIDTH_INCH - side
    h = w * ny / nx
    if h > 7.8:
        w, h = 7.8 * nx / ny, 7.8
    fig, ax = plt.subplots(figsize=(max(w, 1.5) + side, max(h, 1.2) + _LABELS + 0.3), layout="constrained")
    data = np.where(np.isfinite(image.data), image.data, np.nan)
    lo, hi = np.nanpercentile(data, [0.5, 99.5]) if np.isfinite(data).any() else (0.0, 1.0)
    im = _show_image(ax, data, image.pixel_size_angstrom, alpha=1.0, vmin=lo, vmax=hi)
    unit = {True: "fraction of beam", False: "counts"}.get(image.metadata.get("normalised"), "image units")
    fig.colorbar(im, ax=ax, label=f"intensity ({unit})", shrink=0.9)
    size = float(np.clip(3000.0 / max(len(pos), 1), 4.0, 40.0))
    if detection is not None and len(detection.removed):
        # faint and underneath: the candidates tried must not hide the result
        ax.scatter(*np.asarray(detection.removed).T, s=0.5 * size, marker="x", color="tab:cyan", linewidths=0.5,
                   alpha=0.35, zorder=1, label=f"tried and removed ({len(detection.removed)})")  # fmt: skip
    ax.scatter(*pos.T, s=size, facecolors="none", edgecolors="tab:red", linewidths=0.8, zorder=2,
               label=f"columns ({len(pos)})")  # fmt: skip
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2 if w > 3.0 else 1, borderaxespad=0.1)
    return fig


def save_detection_figure(image: HAADFImage, positions, path, *, detection=None, fmt: str = "png",
                          dpi: float | None = None) -> Path:  # fmt: skip
    """Write :func:`plot_detection` to ``path`` (its suffix made ``fmt``: ``"png"``, ``"pdf"`` or ``"svg"``)
    atomically; return the path written."""
    path = Path(path)
    fmt = fmt.lower() if isinstance(fmt, str) else fmt
    written = write_figures({path.stem: lambda: plot_detection(image, positions, detection=detection)},
                            path.parent, fmt=fmt, dpi=dpi)  # fmt: skip
    return written[path.stem]
