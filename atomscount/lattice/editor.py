"""Correcting columns by hand: :class:`ColumnEditor`, an interactive matplotlib editor.

It works wherever matplotlib draws interactively: a desktop window, or a Jupyter
notebook with ``%matplotlib widget`` (ipympl). It needs no more than matplotlib's
event callbacks, so a test can drive it with synthetic events on the Agg backend.
"""

from __future__ import annotations

import csv

import numpy as np

from .._checks import check_2d_image, check_positions, check_positive
from ..image import HAADFImage

__all__ = ["ColumnEditor"]

#: A click closer than this many column spacings to a column picks it (removes it, or changes its type).
PICK_RADIUS_SPACINGS = 0.35
#: Keys: cycle the type of the column under the cursor (or of new columns, away from any), undo.
TYPE_KEY = "t"
UNDO_KEY = "z"
#: Colours of column types that are no element, in the order of ``type_names`` (matplotlib's qualitative cycle).
_TYPE_COLOURS = ("tab:red", "tab:cyan", "tab:orange", "tab:green", "tab:purple", "tab:pink", "tab:olive", "tab:blue")


class ColumnEditor:
    """Add, remove and retype atomic columns over an image with the mouse and the keyboard.

    A left click on empty space adds a column there (moved to the brightest point
    within the pick radius when ``refine``); a left click on a column (within the
    pick radius) removes it; the key ``t`` cycles the type of the column under the
    cursor (away from any column it cycles the type that new columns get); ``z``
    undoes the last change. Clicks are ignored while the toolbar's zoom or pan is on.

    Parameters
    ----------
    image : HAADFImage or array_like (ny, nx)
        The image to draw the columns over.
    positions : array_like (n, 2) or ColumnFit
        Column positions (x, y) [Å], or a fit (its positions and types).
    types : sequence of str (n,), optional
        Column types (element or sublattice names); all ``"column"`` when not given.
    pixel_size_angstrom : float, optional
        Pixel size [Å/pixel]; needed when ``image`` is a plain array.
    type_names : sequence of str, optional
        The types that ``t`` cycles through, in order; the types given, sorted, when
        not given.
    pick_radius_angstrom : float, optional
        How close a click must be to a column to pick it [Å]; by default
        :data:`PICK_RADIUS_SPACINGS` times the median nearest-neighbour spacing.
    refine : bool
        Move an added column to the brightest point (sub-pixel) within the pick radius.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when not given.

    Attributes
    ----------
    positions : ndarray (n, 2)
        The edited positions [Å] (a copy).
    types : ndarray (n,) of str
        The edited types (a copy).
    new_type : str
        The type that an added column gets.

    Examples
    --------
    >>> import matplotlib
    >>> from atomscount.columns.model import ColumnModel, square_lattice
    >>> pos = square_lattice((40, 40), 0.2, 2.0)
    >>> img = ColumnModel((40, 40), 0.2, pos, heights=np.ones(len(pos)), widths=0.4).image()
    >>> editor = ColumnEditor(HAADFImage(img, 0.2), pos[1:])
    >>> editor.add(pos[0]) == len(pos) - 1, editor.positions.shape == pos.shape
    (True, True)
    >>> editor.undo(), len(editor.positions) == len(pos) - 1
    (True, True)
    >>> matplotlib.pyplot.close(editor.figure)
    """

    def __init__(self, image, positions, types=None, *, pixel_size_angstrom: float | None = None,
                 type_names=None, pick_radius_angstrom: float | None = None, refine: bool = True, ax=None):  # fmt: skip
        if isinstance(image, HAADFImage):
            data, pixel = image.data, image.pixel_size_angstrom
            if pixel_size_angstrom is not None:
                pixel = check_positive(pixel_size_angstrom, "pixel_size_angstrom")
        else:
            if pixel_size_angstrom is None:
                raise ValueError("pixel_size_angstrom must be given when image is an array, got None")
            data, pixel = image, check_positive(pixel_size_angstrom, "pixel_size_angstrom")
        self._data = check_2d_image(data, "image", allow_nonfinite=True)
        self._pixel = float(pixel)
        if hasattr(positions, "type_names") and hasattr(positions, "positions"):  # a ColumnFit: its types too
            if types is None:
                types = [positions.type_names[t] for t in positions.types]
            positions = positions.positions
        pos = check_positions(positions, "positions")
        if types is None:
            names = np.full(len(pos), "column", dtype=object)
        else:
            names = np.array([str(t) for t in np.asarray(types).ravel()], dtype=object)
            if names.shape != (len(pos),):
                raise ValueError(f"types must have one entry per column ({len(pos)}), got {len(names)}")
        if type_names is None:
            type_names = sorted(set(names)) or ["column"]
        self.type_names = tuple(str(t) for t in type_names)
        if not self.type_names:
            raise ValueError("type_names must name at least one type, got none")
        unknown = sorted(set(names) - set(self.type_names))
        if unknown:
            raise ValueError(f"types holds {unknown}, which type_names {list(self.type_names)} lacks")
        self._pos = pos.copy()
        self._types = names
        self.new_type = self.type_names[0]
        if pick_radius_angstrom is None:
            pick_radius_angstrom = PICK_RADIUS_SPACINGS * _spacing(pos, self._data.shape, self._pixel)
        self.pick_radius_angstrom = check_positive(pick_radius_angstrom, "pick_radius_angstrom")
        self.refine = bool(refine)
        self._history: list[tuple[np.ndarray, np.ndarray]] = []
        self._draw(ax)

    # ------------------------------------------------------------------ results
    @property
    def positions(self) -> np.ndarray:
        return self._pos.copy()

    @property
    def types(self) -> np.ndarray:
        return np.array(self._types, dtype=str) if len(self._types) else np.zeros(0, dtype=str)

    @property
    def n_columns(self) -> int:
        return len(self._pos)

    def save(self, path) -> None:
        """Write ``x_angstrom, y_angstrom, type`` per column to the CSV ``path`` (atomically), the
        file that ``atomscount detect`` writes and ``atomscount fit --positions`` reads."""
        from ..io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x_angstrom", "y_angstrom", "type"])
            for (x, y), t in zip(self._pos, self._types, strict=True):
                w.writerow([f"{x:.6f}", f"{y:.6f}", t])

    def __repr__(self) -> str:
        return f"ColumnEditor(n_columns={self.n_columns}, types={list(self.type_names)})"

    # ------------------------------------------------------------------ edits
    def add(self, xy, *, type_name: str | None = None) -> int:
        """Add a column at ``xy`` (x, y) [Å] (refined when ``refine``); return its index."""
        xy = np.asarray(xy, dtype=float).reshape(2)
        name = self.new_type if type_name is None else str(type_name)
        if name not in self.type_names:
            raise ValueError(f"type_name must be one of {list(self.type_names)}, got {name!r}")
        if self.refine:
            xy = self._brightest_near(xy)
        self._remember()
        self._pos = np.vstack([self._pos, xy[None]])
        self._types = np.append(self._types, name).astype(object)
        self._redraw()
        return self.n_columns - 1

    def remove(self, index: int) -> None:
        """Remove column ``index``."""
        if not 0 <= index < self.n_columns:
            raise IndexError(f"index must be in [0, {self.n_columns}), got {index}")
        self._remember()
        self._pos = np.delete(self._pos, index, axis=0)
        self._types = np.delete(self._types, index)
        self._redraw()

    def cycle_type(self, index: int | None) -> str:
        """Give column ``index`` the next type of ``type_names`` (``None``: the type of new columns)."""
        if index is None:
            k = self.type_names.index(self.new_type)
            self.new_type = self.type_names[(k + 1) % len(self.type_names)]
            self._redraw()
            return self.new_type
        self._remember()
        k = self.type_names.index(self._types[index])
        self._types = self._types.copy()
        self._types[index] = self.type_names[(k + 1) % len(self.type_names)]
        self._redraw()
        return self._types[index]

    def undo(self) -> bool:
        """Undo the last edit; False when there is none."""
        if not self._history:
            return False
        self._pos, self._types = self._history.pop()
        self._redraw()
        return True

    def nearest(self, xy) -> int | None:
        """The index of the column within the pick radius of ``xy`` [Å], the nearest one; None if none."""
        if self.n_columns == 0:
            return None
        d = np.hypot(*(self._pos - np.asarray(xy, dtype=float)).T)
        k = int(np.argmin(d))
        return k if d[k] <= self.pick_radius_angstrom else None

    def _remember(self):
        self._history.append((self._pos.copy(), self._types.copy()))

    def _brightest_near(self, xy):
        """The brightest pixel within the pick radius of ``xy``, refined by a parabola through its neighbours."""
        data, p = self._data, self._pixel
        ny, nx = data.shape
        r = max(self.pick_radius_angstrom / p, 1.0)
        c0, r0 = xy / p
        rows = np.arange(max(int(np.floor(r0 - r)), 0), min(int(np.ceil(r0 + r)) + 1, ny))
        cols = np.arange(max(int(np.floor(c0 - r)), 0), min(int(np.ceil(c0 + r)) + 1, nx))
        if rows.size == 0 or cols.size == 0:
            return xy
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        inside = (rr - r0) ** 2 + (cc - c0) ** 2 <= r * r
        patch = np.where(inside & np.isfinite(data[rr, cc]), data[rr, cc], -np.inf)
        if not np.isfinite(patch).any():
            return xy
        i, j = np.unravel_index(int(np.argmax(patch)), patch.shape)
        row, col = float(rr[i, j]), float(cc[i, j])
        row += _parabola_peak(data, int(row), int(col), axis=0)
        col += _parabola_peak(data, int(row), int(col), axis=1)
        return np.array([col * p, row * p])

    # ------------------------------------------------------------------ drawing and events
    def _draw(self, ax):
        import matplotlib.pyplot as plt

        from .._figures import _extent, _image_inches, _marker_size

        if ax is None:
            w, h = _image_inches(self._data.shape, area=36.0)  # a window to work in, not a journal figure
            fig, ax = plt.subplots(figsize=(w + 1.8, h + 1.3), constrained_layout=True)
        self.ax, self.figure = ax, ax.figure
        finite = self._data[np.isfinite(self._data)]
        lo, hi = np.percentile(finite, (0.5, 99.5)) if finite.size else (None, None)
        ax.imshow(self._data, cmap="gray", vmin=lo, vmax=hi, extent=_extent(self._data.shape, self._pixel))
        ax.set_aspect("equal")
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        # rings of about half a column spacing at the window's scale
        size = _marker_size(ax, self._pos) if self.n_columns >= 2 else 40.0
        self._scatter = ax.scatter(np.zeros(0), np.zeros(0), s=size, facecolors="none", linewidths=1.5)
        from matplotlib.lines import Line2D

        self._colours = _type_colours(self.type_names)
        handles = [Line2D([], [], ls="", marker="o", mfc="none", mec=c, label=t)
                   for c, t in zip(self._colours, self.type_names, strict=True)]  # fmt: skip
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the image
        canvas = self.figure.canvas
        self._connections = [canvas.mpl_connect("button_press_event", self._on_click),
                             canvas.mpl_connect("key_press_event", self._on_key)]  # fmt: skip
        self._redraw()

    def _redraw(self):
        colours = [self._colours[self.type_names.index(t)] for t in self._types]
        self._scatter.set_offsets(self._pos if self.n_columns else np.zeros((0, 2)))
        self._scatter.set_edgecolors(colours if colours else "none")
        self.ax.set_title(f"{self.n_columns} columns (new ones: {self.new_type})\nclick: add / remove; "
                          f"'{TYPE_KEY}': type; '{UNDO_KEY}': undo", fontsize=9)  # fmt: skip
        self.figure.canvas.draw_idle()

    def _on_click(self, event):
        toolbar = getattr(self.figure.canvas, "toolbar", None)
        if toolbar is not None and str(getattr(toolbar, "mode", "")):
            return  # zooming or panning
        if event.inaxes is not self.ax or event.button != 1 or event.xdata is None:
            return
        xy = np.array([event.xdata, event.ydata])
        k = self.nearest(xy)
        if k is None:
            self.add(xy)
        else:
            self.remove(k)

    def _on_key(self, event):
        if event.key == UNDO_KEY:
            self.undo()
        elif event.key == TYPE_KEY:
            inside = event.inaxes is self.ax and event.xdata is not None
            self.cycle_type(self.nearest((event.xdata, event.ydata)) if inside else None)


def _type_colours(names) -> list:
    """An element's own colour (:func:`atomscount.style.element_color`) for a type named by an element, the
    qualitative cycle for the others."""
    from ..style import element_color

    out = []
    for k, name in enumerate(names):
        try:
            out.append(element_color(name))
        except ValueError:
            out.append(_TYPE_COLOURS[k % len(_TYPE_COLOURS)])
    return out


def _spacing(pos, shape, pixel) -> float:
    """Median nearest-neighbour spacing [Å]; a tenth of the image's shorter side for fewer than two columns."""
    if len(pos) < 2:
        return 0.1 * min(shape) * pixel
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pos).query(pos, k=2)
    return float(np.median(d[:, 1])) if np.median(d[:, 1]) > 0 else 0.1 * min(shape) * pixel


def _parabola_peak(data, row, col, *, axis) -> float:
    """Sub-pixel offset of a peak at (row, col) along ``axis`` from a parabola through three pixels."""
    ny, nx = data.shape
    if axis == 0:
        if not 0 < row < ny - 1:
            return 0.0
        a, b, c = data[row - 1, col], data[row, col], data[row + 1, col]
    else:
        if not 0 < col < nx - 1:
            return 0.0
        a, b, c = data[row, col - 1], data[row, col], data[row, col + 1]
    den = a - 2 * b + c
    if not np.isfinite(den) or den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
