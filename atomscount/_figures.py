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
from .style import PAGE_WIDTH_INCH, figure_style

__all__ = ["FIGURE_FORMATS", "write_figures", "check_figure_options", "text_off_canvas", "texts_overlapping",
           "legends_over_data"]  # fmt: skip

#: The file formats figures are written in.
FIGURE_FORMATS = ("png", "pdf", "svg")
#: Percentiles of the converged columns' values that set a map's colour limits.
COLOUR_PERCENTILES = (1.0, 99.0)
_MAX_DPI = 2400  # above this a page-wide figure is a gigapixel image

# an image is drawn on about 2.2 x 2.2 inches, so that with its labels and colour bar a map fills one
# journal column; other shapes keep that area within these sides [inch]
_MAP_AREA = 2.2**2
_LABELS = 0.6  # axis labels and title
_COLORBAR = 0.75  # a colour bar with its label
_MAP_WIDEST = PAGE_WIDTH_INCH - _LABELS - _COLORBAR
_MAP_TALLEST = 8.5
_MAP_READABLE = 1.5
_MAP_SHORTEST = 1.0


def check_figure_options(fmt="png", dpi=None) -> tuple:
    """``(fmt, dpi)`` checked: ``fmt`` one of :data:`FIGURE_FORMATS`, ``dpi`` None or a number in (0, 2400].

    Raises
    ------
    ValueError
        Naming ``fmt`` or ``dpi`` and the value given.
    """
    if not isinstance(fmt, str) or fmt.lower() not in FIGURE_FORMATS:
        raise ValueError(f"fmt must be one of {list(FIGURE_FORMATS)}, got {fmt!r}")
    if dpi is not None:
        from ._checks import check_real

        try:
            dpi = check_real(dpi, "dpi", low=0.0, high=_MAX_DPI, open_low=True, why=" dots per inch")
        except TypeError as err:
            raise ValueError(str(err)) from None
    return fmt.lower(), dpi


def write_figures(makers: dict, out_dir, *, fmt: str = "png", dpi: float | None = None) -> dict:
    """Draw each figure of ``makers`` in atomscount's style and write it to ``out_dir``.

    Parameters
    ----------
    makers : dict
        Name -> function of no arguments that returns a Figure. One figure is open at a time.
    out_dir : path
        An existing folder; each figure goes to ``out_dir/NAME.FMT``, atomically.
    fmt : {"png", "pdf", "svg"}
        File format.
    dpi : float, optional
        Resolution of the raster parts [dots per inch]; default the style's
        (:data:`atomscount.style.DEFAULT_DPI`).

    Returns
    -------
    dict
        Name -> path written.

    Raises
    ------
    ValueError
        An unknown ``fmt`` or a ``dpi`` not in (0, 2400].
    """
    from .io import atomic_path

    fmt, dpi = check_figure_options(fmt, dpi)
    paths = {}
    for name, make in makers.items():
        with figure_style():
            fig = make()
            paths[name] = Path(out_dir) / f"{name}.{fmt}"
            try:
                with atomic_path(paths[name]) as tmp:
                    fig.savefig(tmp, dpi=dpi, format=fmt)
            finally:
                plt.close(fig)
    return paths


def _drawn_texts(fig) -> list:
    """The Text artists a draw of ``fig`` puts on the canvas (tick labels outside the view are not drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    drawn = []
    plain = renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():
            drawn.append(mtext)
        return plain(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record
    try:
        fig.draw(renderer)
    finally:
        del renderer.draw_text
    return list({id(t): t for t in drawn}.values()), renderer


def text_off_canvas(fig, *, tolerance_px: float = 1.0) -> int:
    """How many of the texts drawn on ``fig`` reach beyond its canvas (0 for a good figure).

    The figure is drawn once; each text that the draw puts on the canvas (titles,
    labels, tick labels, legends, annotations, scale bars) is measured with
    ``get_window_extent``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(2, 2), layout="constrained")
    >>> _ = ax.set_title("a title far too long for a canvas two inches wide")
    >>> text_off_canvas(fig)
    1
    >>> plt.close(fig)
    """
    texts, renderer = _drawn_texts(fig)
    box = fig.bbox
    off = 0
    for t in texts:
        e = t.get_window_extent(renderer)
        if (e.x0 < box.x0 - tolerance_px or e.y0 < box.y0 - tolerance_px or e.x1 > box.x1 + tolerance_px
                or e.y1 > box.y1 + tolerance_px):  # fmt: skip
            off += 1
    return off


def texts_overlapping(fig, *, tolerance_px: float = 1.0) -> int:
    """How many pairs of the texts drawn on ``fig`` overlap (0 for a good figure): a title over a colour
    bar's label, a legend over a title, tick labels that run together.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
    >>> _ = ax.text(0.5, 0.5, "one")
    >>> _ = ax.text(0.5, 0.5, "two")
    >>> texts_overlapping(fig)
    1
    >>> plt.close(fig)
    """
    texts, renderer = _drawn_texts(fig)
    boxes = [t.get_window_extent(renderer).padded(-tolerance_px) for t in texts]
    return int(sum(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))))


def _data_boxes(ax, renderer) -> list:
    """Display-space boxes of what ``ax`` shows: images, bars and patches, and a tiny box per point."""
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import Bbox

    boxes = []
    clip = ax.bbox
    for art in ax.get_children():
        if not art.get_visible() or art is ax.patch or art in ax.spines.values():
            continue
        if isinstance(art, AxesImage | Patch):
            b = art.get_window_extent(renderer)
            boxes.append(Bbox.intersection(b, clip) or Bbox.null())
        elif isinstance(art, Line2D):
            pts = art.get_transform().transform(art.get_xydata())
            boxes += [Bbox.from_extents(x - 0.5, y - 0.5, x + 0.5, y + 0.5) for x, y in pts if clip.contains(x, y)]
        elif isinstance(art, Collection) and len(art.get_offsets()):
            pts = art.get_offset_transform().transform(art.get_offsets())
            r = 0.5 * np.sqrt(np.max(art.get_sizes())) * ax.figure.dpi / 72.0 if len(art.get_sizes()) else 1.0
            boxes += [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in pts if clip.contains(x, y)]
    return boxes


def legends_over_data(fig) -> int:
    """How many legends of ``fig`` cover part of what an axes shows (0 for a good figure).

    A legend outside its axes covers nothing; inside, it must not overlap an
    image, a bar, a line's or a scatter's points.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.stale or not isinstance(fig.canvas, FigureCanvasAgg):  # the layout is made by a draw
        _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    bad = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible() or ax.name == "3d":
            continue
        box = legend.get_window_extent(renderer)
        if not box.overlaps(ax.bbox):
            continue
        if any(box.overlaps(b) for b in _data_boxes(ax, renderer) if b.width > 0 or b.height > 0):
            bad += 1
    return bad


def _in_nm(value, unit) -> str:
    """A scale bar's length in nm, the unit of papers at this scale (matplotlib-scalebar says pm below 1 nm)."""
    factor = {"pm": 1e-3, "nm": 1.0, "µm": 1e3, "um": 1e3}.get(unit)
    return f"{value * factor:g} nm" if factor is not None and value * factor < 1e4 else f"{value:g} {unit}"


def _scale_bar(ax, *, location: str = "lower right"):
    """A scale bar on ``ax``, whose data coordinates are in Å (matplotlib-scalebar)."""
    from matplotlib_scalebar.scalebar import ScaleBar

    bar = ScaleBar(0.1, "nm", location=location, length_fraction=0.25, box_alpha=0.7, pad=0.3, border_pad=0.4,
                   font_properties={"size": 7}, scale_formatter=_in_nm)  # fmt: skip
    ax.add_artist(bar)
    return bar


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    else:
        fig = ax.figure
    return fig, ax


def _image_inches(shape, area=_MAP_AREA):
    """(width, height) [inch] of an image of ``shape`` (rows, cols) drawn on about ``area`` square inches.

    A long, narrow image grows until its short side is readable, as far as a page allows.
    """
    rows, cols = max(float(shape[0]), 1e-9), max(float(shape[1]), 1e-9)
    aspect = cols / rows
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    grow = max(1.0, _MAP_READABLE / min(w, h))
    shrink = min(1.0, _MAP_WIDEST / (w * grow), _MAP_TALLEST / (h * grow))
    return max(w * grow * shrink, _MAP_SHORTEST), max(h * grow * shrink, _MAP_SHORTEST)


def _map_figsize(shape, *, colorbar=False, page=False):
    """Canvas (width, height) [inch] shaped like the image, plus room for the labels (and a colour bar);
    a column wide, or with ``page`` a page wide."""
    w, h = _image_inches(shape, area=_MAP_WIDEST**2 if page else _MAP_AREA)
    return (float(w + _LABELS + (_COLORBAR if colorbar else 0.0)), float(h + _LABELS))


def _extent(shape, p):
    return (-0.5 * p, (shape[1] - 0.5) * p, (shape[0] - 0.5) * p, -0.5 * p)


def _show_image(ax, data, pixel, *, alpha, cmap="gray", vmin=None, vmax=None, scale_bar=True):
    """``data`` on ``ax`` in Å (y down), with a scale bar."""
    im = ax.imshow(data, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=_extent(data.shape, pixel))
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    if scale_bar:
        _scale_bar(ax)
    return im


def _intensity_unit(fit) -> str:
    return {True: "fraction of beam", False: "counts"}.get(fit.normalised, "image units")


def _backdrop(fit, image):
    """The image that maps are drawn over, and the words for the title.

    Without ``image``, a fit that keeps its residual (``fit.h5`` written by
    :func:`~atomscount.columns.fit.save_fit` with the image) gives back the data
    as model + residual; only a fit without one falls back to the fitted model.
    """
    if image is not None:
        return np.asarray(image.data), "over the image"
    if isinstance(fit, ColumnFit):
        if fit.residual is not None:
            return fit.model().image() + np.asarray(fit.residual), "over the image"
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


#: Most columns whose values are written on them; a map of more shows colours only.
LABELLED_COLUMNS = 300
#: Smallest font of a count written on a column [pt]; columns drawn smaller than such a
#: number are left unlabelled (their colour on the discrete colour bar says the count).
LABEL_POINTS = 7.0


def _discrete(values, cmap):
    """A colour map of one colour per integer of ``values``, its norm and the colour bar's ticks."""
    from matplotlib.colors import BoundaryNorm

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (int(np.floor(v.min())), int(np.ceil(v.max()))) if v.size else (0, 1)
    n = hi - lo + 1
    norm = BoundaryNorm(np.arange(lo - 0.5, hi + 1.0), n)
    step = int(np.ceil(n / 10))
    return plt.get_cmap(cmap).resampled(n), norm, np.arange(lo, hi + 1, step)


def _label_columns(ax, pos, values, size):
    """Write each integer value on its column, in white with a dark outline, when the marker holds it."""
    import matplotlib.patheffects as pe

    diameter = np.sqrt(size)  # [pt]
    digits = max((len(f"{v:g}") for v in values if np.isfinite(v)), default=1)
    fontsize = min(0.55 * diameter, 0.9 * diameter / (0.6 * digits), 10.0)
    if fontsize < LABEL_POINTS:
        return 0
    outline = [pe.withStroke(linewidth=1.5, foreground="k")]
    n = 0
    for (x, y), val in zip(pos, values, strict=True):
        if np.isfinite(val):
            ax.annotate(f"{val:g}", (x, y), ha="center", va="center", fontsize=fontsize, color="w",
                        path_effects=outline, annotation_clip=True)  # fmt: skip
            n += 1
    return n


def _wrap(text: str, inches: float, *, points: float = 8.0) -> str:
    """``text`` broken into lines that fit ``inches`` at a font of ``points`` (about 0.55 em a character)."""
    import textwrap

    width = max(int(inches * 72.0 / (0.55 * points)), 8)
    return "\n".join(textwrap.wrap(text, width)) if len(text) > width else text


def _title(ax, text: str):
    """A map's title, on as many lines as the figure's width needs."""
    ax.set_title(_wrap(text, 0.9 * ax.figure.get_figwidth()))


def _column_scatter(pos, values, ax, backdrop, pixel, cmap, label, *, annotate, vmin=None, vmax=None,
                    discrete=False):  # fmt: skip
    """Columns coloured by ``values`` over ``backdrop`` (when there is one), with a labelled colour bar
    (one colour per integer with ``discrete``)."""
    fig = ax.figure
    label = _wrap(label, 0.8 * fig.get_figheight())
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
    size = _marker_size(ax, pos)
    if discrete:
        cmap, norm, ticks = _discrete(v, cmap)
        sc = ax.scatter(*pos.T, c=v, s=size, cmap=cmap, norm=norm)
        fig.colorbar(sc, ax=ax, label=label, ticks=ticks, spacing="proportional")
    else:
        sc = ax.scatter(*pos.T, c=v, s=size, cmap=cmap, vmin=vmin, vmax=vmax)
        finite = v[np.isfinite(v)]
        over = vmax is not None and finite.size and finite.max() > vmax
        under = vmin is not None and finite.size and finite.min() < vmin
        extend = {(True, True): "both", (True, False): "max", (False, True): "min"}.get((bool(over), bool(under)))
        fig.colorbar(sc, ax=ax, label=label, extend=extend or "neither")
    if annotate and len(pos) <= LABELLED_COLUMNS:
        _label_columns(ax, pos, v, size)
    return sc
