"""Figures of the Lorentz TEM stage: the images beside the model's, the retrieved phase, the induction on
the colour wheel, and the loss of the fit.

Every figure takes a :class:`~atomscount.ltem.result.PhaseRetrieval` (and, for the images, the
:class:`~atomscount.ltem.result.LTEMSeries` it came from). Positions are in nm, phases in rad, the
projected induction B⊥·t in T·nm.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .._figures import write_figures
from ..style import COLUMN_WIDTH_INCH, PAGE_WIDTH_INCH

__all__ = ["plot_images_model", "plot_phase", "plot_induction", "plot_loss", "save_ltem_figures"]


def _extent(shape, pixel_nm: float) -> tuple:
    ny, nx = shape
    return (0.0, nx * pixel_nm, 0.0, ny * pixel_nm)


def _scale_bar(ax):
    """A scale bar on ``ax``, whose data coordinates are in nm."""
    from matplotlib_scalebar.scalebar import ScaleBar

    bar = ScaleBar(1.0, "nm", location="lower right", length_fraction=0.25, box_alpha=0.7, pad=0.3, border_pad=0.4,
                   font_properties={"size": 7})  # fmt: skip
    ax.add_artist(bar)
    return bar


def _image(ax, data, pixel_nm: float, *, cmap: str, label: str | None, title: str, norm=None):
    im = ax.imshow(data, origin="lower", extent=_extent(data.shape, pixel_nm), cmap=cmap, norm=norm)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title)
    _scale_bar(ax)
    if label is not None:
        ax.figure.colorbar(im, ax=ax, shrink=0.9, pad=0.01, label=label)
    return im


def _model_images(series, result) -> np.ndarray:
    import jax

    from .forward import fresnel_image

    p = result.parameters
    defoci = np.asarray(p.get("defocus_nm", series.defoci_nm), dtype=np.float64)

    def model(phase, amplitude):
        return fresnel_image(phase, amplitude, pixel_nm=series.pixel_nm, defocus_nm=defoci,
                             beam_energy_ev=series.beam_energy_ev, cs_nm=p.get("cs_nm", series.cs_nm),
                             divergence_rad=p.get("divergence_rad", series.divergence_rad),
                             defocus_spread_nm=p.get("defocus_spread_nm", series.defocus_spread_nm))  # fmt: skip

    return np.asarray(jax.jit(model)(result.phase, result.amplitude), dtype=np.float64)


def plot_images_model(series, result):
    """Each image of ``series`` (top row) above the model's image at its fitted defocus (bottom row), on the
    image's colour scale; the model is scaled to the image's mean (counts).

    Parameters
    ----------
    series : LTEMSeries
    result : PhaseRetrieval

    Returns
    -------
    matplotlib.figure.Figure
    """
    model = _model_images(series, result)
    k = len(series)
    from matplotlib.colors import Normalize

    width = PAGE_WIDTH_INCH if k > 1 else COLUMN_WIDTH_INCH
    # two rows of square panels, each column's colour bar beneath it (beside them it overlapped the next column)
    fig, axes = plt.subplots(2, k, figsize=(width, 2 * width / k + 1.4), layout="constrained", squeeze=False)
    for i in range(k):
        data = series.images[i]
        scaled = model[i] * data.mean() / max(model[i].mean(), 1e-12)
        lo, hi = np.percentile(data, (1, 99))
        half = max(0.5 * (hi - lo), 1e-3 * max(abs(hi), 1.0))  # an image without contrast: a readable scale
        norm = Normalize(0.5 * (lo + hi) - half, 0.5 * (lo + hi) + half)  # one scale for the image and its model
        df = float(series.defoci_nm[i]) / 1e3
        _image(axes[0, i], data, series.pixel_nm, cmap="gray", label=None, title=f"image, Δf = {df:g} µm", norm=norm)
        im = _image(axes[1, i], scaled, series.pixel_nm, cmap="gray", label=None, title="model", norm=norm)
        fig.colorbar(im, ax=axes[:, i], location="bottom", shrink=0.8, pad=0.02, label="intensity (counts)")
        if i:
            for ax in axes[:, i]:
                ax.set_ylabel("")
    return fig


def plot_phase(result, *, ax=None):
    """The retrieved phase [rad], titled with the method and the median uncertainty where known."""
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.8), layout="constrained")
    title = f"phase ({result.method})"
    if result.uncertainty is not None:
        title += f", ±{np.median(result.uncertainty):.2g} rad"
    _image(ax, result.phase, result.pixel_nm, cmap="viridis", label="phase (rad)", title=title)
    return ax.figure


def plot_induction(result, *, ax=None, arrows: int = 12):
    """The projected in-plane induction B⊥·t: direction as hue and magnitude as brightness
    (:func:`~atomscount.ltem.induction.colour_wheel`), with arrows on a coarse grid and the wheel as key."""
    from .induction import colour_wheel

    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.8), layout="constrained")
    bx, by = result.induction
    ext = _extent(result.shape, result.pixel_nm)
    from matplotlib.colors import Normalize

    b = np.hypot(bx, by)
    # brightness is the magnitude: the colour bar gives its scale, the wheel beside it the direction
    im = ax.imshow(colour_wheel(bx, by), origin="lower", extent=ext, cmap="gray",
                   norm=Normalize(0.0, float(b.max()) or 1.0))  # fmt: skip
    ny, nx = result.shape
    step = max(1, max(ny, nx) // arrows)
    ys, xs = np.mgrid[step // 2 : ny : step, step // 2 : nx : step]
    px = result.pixel_nm
    if b.max() > 0:
        ax.quiver((xs + 0.5) * px, (ys + 0.5) * px, bx[ys, xs], by[ys, xs], color="white", pivot="mid", width=0.006)
    else:  # a zero phase (nothing above the noise): no arrows to scale, and say so
        ax.text(0.5, 0.5, "no induction\n(zero phase)", transform=ax.transAxes, ha="center", va="center",
                color="white")  # fmt: skip
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title("in-plane induction B⊥·t")
    _scale_bar(ax)
    ax.figure.colorbar(im, ax=ax, shrink=0.6, pad=0.01, label="|B⊥·t| (T·nm)")
    key = ax.inset_axes((0.02, 0.72, 0.26, 0.26))
    t = np.linspace(-1, 1, 65)
    kx, ky = np.meshgrid(t, t)
    wheel = colour_wheel(kx, ky)
    wheel[np.hypot(kx, ky) > 1] = 1.0
    key.pcolormesh(kx, ky, np.zeros_like(kx), color=wheel.reshape(-1, 3), shading="nearest")  # not an image
    key.set_aspect("equal")
    key.set_axis_off()
    return ax.figure


def plot_loss(result, *, ax=None):
    """The loss (Poisson deviance per pixel plus the regulariser) against iteration."""
    loss = np.asarray(result.loss_history, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH_INCH, 2.6), layout="constrained")
    ax.plot(np.arange(1, loss.size + 1), loss, "-")
    if loss.size and np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss per pixel")
    ax.set_title(f"{result.method}: {loss.size} iterations")
    return ax.figure


def save_ltem_figures(result, out_dir, *, series=None, fmt: str = "png", dpi: float | None = None) -> dict:
    """Write the figures of ``result`` in ``out_dir`` as ``fmt`` (``"png"``, ``"pdf"`` or ``"svg"``) at ``dpi``
    [dots per inch] (default the style's), each atomically; return name → path.

    The phase and the induction; the images against the model when ``series`` is given; the loss when
    ``result`` has a loss history."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {"phase": lambda: plot_phase(result), "induction": lambda: plot_induction(result)}
    if series is not None:
        figs["images_model"] = lambda: plot_images_model(series, result)
    if np.asarray(result.loss_history).size:
        figs["loss"] = lambda: plot_loss(result)
    return write_figures(figs, out, fmt=fmt, dpi=dpi)
