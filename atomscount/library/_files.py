"""Checks of the values read from library files: a damaged or hand-edited file is refused on load."""

from __future__ import annotations

import contextlib

import numpy as np

from .._checks import check_increasing
from ..io import FileFormatError


@contextlib.contextmanager
def checking(path, kind: str):
    """Turn a failed check into a FileFormatError (a ValueError) that names the file; the check names the field."""
    try:
        yield
    except FileFormatError:  # a field the file lacks: the reader's message already names file and field
        raise
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{kind} file {str(path)!r} holds invalid values: {exc}") from exc


def check_finite(values, name: str, *, minimum: float | None = None) -> np.ndarray:
    """``values`` as a float64 array, raising unless they are all finite (and >= ``minimum``)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold real numbers, got {values!r:.60}") from exc
    bad = ~np.isfinite(arr) if minimum is None else ~(np.isfinite(arr) & (arr >= minimum))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = ", ".join(map(str, where))
        k = int(bad.sum())
        want = "finite" if minimum is None else f"finite and >= {minimum:g}"
        raise ValueError(f"{name} must be {want}, got {name}[{index}] = {arr[where]} ({k} such value{'s' * (k > 1)})")
    return arr


def check_scs_table(scs, name: str) -> np.ndarray:
    """A table of SCS [Å²] for 1, 2, ... atoms: finite, above zero and strictly increasing with thickness."""
    return check_increasing(scs, name, positive=True)


CURVE_KEYS = ("amplitude", "n_sat", "slope", "offset")


def check_curve(curve, name: str) -> None:
    """Parameters of :func:`~atomscount.library.thickness_curve`: all present, finite, ``n_sat`` > 0."""
    if not isinstance(curve, dict):
        raise TypeError(f"{name} must be a dict of {list(CURVE_KEYS)}, got {type(curve).__name__}")
    missing = [k for k in CURVE_KEYS if k not in curve]
    if missing:
        raise ValueError(f"{name} lacks {missing}, got keys {sorted(curve)}")
    for k in CURVE_KEYS:
        value = float(check_finite(curve[k], f"{name}[{k!r}]"))
        if k == "n_sat" and not value > 0:
            raise ValueError(f"{name}['n_sat'] must be > 0, got {value}")


def read_text_table(path, kind: str) -> np.ndarray:
    """Rows of 2 or 3 numbers from a text file, as an (m, 2) or (m, 3) float array.

    Separators are commas, semicolons, tabs or spaces. Blank lines and comments
    (from ``#`` or ``%``) are skipped, and so are lines of text before the first
    row of numbers (a header). Anything else that is not a row of numbers is refused
    with the file and the line number.
    """
    import re

    try:
        with open(path, encoding="utf-8-sig", errors="strict") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{kind} file {str(path)!r} is neither HDF5 nor a text table (not UTF-8 text: "
                              f"{exc.reason} at byte {exc.start})") from None  # fmt: skip
    rows, width, first = [], None, None
    for number, line in enumerate(text.splitlines(), start=1):
        line = re.split(r"[#%]", line, maxsplit=1)[0].strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[,;\s]+", line) if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not rows:  # a header
                continue
            raise FileFormatError(f"{kind} file {str(path)!r} line {number}: expected numbers (atoms, SCS), got "
                                  f"{line!r:.80}") from None  # fmt: skip
        if len(values) not in (2, 3):
            raise FileFormatError(f"{kind} file {str(path)!r} line {number}: expected 2 columns (atoms, SCS) or 3 "
                                  f"(atoms, SCS, s.e.), got {len(values)}: {line!r:.80}")  # fmt: skip
        if width is None:
            width, first = len(values), number
        elif len(values) != width:
            raise FileFormatError(f"{kind} file {str(path)!r} line {number}: {len(values)} columns, but line {first} "
                                  f"has {width}")  # fmt: skip
        rows.append(values)
    if not rows:
        raise FileFormatError(f"{kind} file {str(path)!r} is neither HDF5 nor a text table: it holds no rows of "
                              "numbers (atoms, SCS)")  # fmt: skip
    return np.array(rows, dtype=np.float64)
