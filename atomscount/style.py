"""The figure style of the whole package: one colour per element, journal sizes and the style file.

Every figure function of atomscount draws inside :func:`figure_style` (the
shipped ``atomscount.mplstyle`` applied with :func:`matplotlib.style.context`),
so a user's own settings are never changed. An element has the same colour in
every figure (histograms, orthoslices, 3D models, core-shell slices): the one
:func:`element_color` gives.
"""

from __future__ import annotations

import contextlib
import functools
from importlib import resources
from types import MappingProxyType

__all__ = ["ELEMENT_COLORS", "COLUMN_WIDTH_INCH", "PAGE_WIDTH_INCH", "DEFAULT_DPI", "STYLE_FILE", "element_color",
           "class_color", "figure_style"]  # fmt: skip

#: Width of a figure that fills one journal column [inch].
COLUMN_WIDTH_INCH = 3.5
#: Width of a figure that fills a journal page [inch].
PAGE_WIDTH_INCH = 7.0
#: Resolution of saved figures when none is given [dots per inch].
DEFAULT_DPI = 300
#: The shipped matplotlib style file.
STYLE_FILE = str(resources.files("atomscount") / "data" / "atomscount.mplstyle")

#: One colour per element, the same in every figure; chosen to stay apart in print and for
#: the commonest colour-vision deficiencies in the usual pairs (Fe/Pt, Au/Ag, Pt/Co, Pd/Au).
ELEMENT_COLORS = MappingProxyType(
    {
        "Fe": "#d55e00",  # vermilion
        "Pt": "#0072b2",  # blue
        "Au": "#e69f00",  # orange-gold
        "Ag": "#7f7f7f",  # grey
        "Pd": "#009e73",  # bluish green
        "Co": "#cc79a7",  # reddish purple
        "Ni": "#56b4e9",  # sky blue
        "Cu": "#8c510a",  # brown
        "Si": "#117733",
        "Ge": "#882255",
        "Sn": "#332288",
        "Ir": "#44aa99",
        "Rh": "#aa4499",
        "Ru": "#999933",
        "Ti": "#88ccee",
        "O": "#cc3311",
    }
)  # read-only: one mapping for every figure, not a setting
_NOT_AN_ELEMENT = "#bbbbbb"  # "non-atom", "traced" and other classes that are no element


def element_color(symbol: str) -> str:
    """The colour of element ``symbol`` in every atomscount figure, as ``"#rrggbb"``.

    Elements not in :data:`ELEMENT_COLORS` take their Jmol colour (as ASE gives it).

    Parameters
    ----------
    symbol : str
        Chemical symbol, e.g. ``"Pt"``.

    Raises
    ------
    ValueError
        ``symbol`` is no chemical symbol.

    Examples
    --------
    >>> element_color("Pt")
    '#0072b2'
    """
    if symbol in ELEMENT_COLORS:
        return ELEMENT_COLORS[symbol]
    from ase.data import atomic_numbers
    from ase.data.colors import jmol_colors

    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"symbol must be a chemical symbol such as 'Pt', got {symbol!r}")
    r, g, b = (int(round(255 * c)) for c in jmol_colors[atomic_numbers[symbol]])
    return f"#{r:02x}{g:02x}{b:02x}"


def class_color(name: str) -> str:
    """The colour of a class of atoms named ``name``: :func:`element_color` for an element, light grey else.

    Examples
    --------
    >>> class_color("non-atom")
    '#bbbbbb'
    """
    try:
        return element_color(str(name))
    except ValueError:
        return _NOT_AN_ELEMENT


@contextlib.contextmanager
def figure_style():
    """Draw in atomscount's style (:data:`STYLE_FILE`) inside the ``with`` block only.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> with figure_style():
    ...     plt.rcParams["savefig.dpi"]
    300.0
    """
    import matplotlib.style

    with matplotlib.style.context(STYLE_FILE):
        yield


def styled(func):
    """Decorate a figure function so that it draws in :func:`figure_style`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib.pyplot as plt

        with figure_style():
            fig = func(*args, **kwargs)
            # tick labels are made when the figure is drawn, perhaps outside this style: fix their size now
            size = plt.rcParams["xtick.labelsize"]
            for ax in getattr(fig, "axes", ()):
                ax.tick_params(which="both", labelsize=size)
                if ax.name == "3d":
                    ax.tick_params(axis="z", labelsize=size)
        return fig

    return wrapper
