"""How the command line writes a run: into a temporary folder beside ``--out`` that is
renamed into place only when complete, so an interrupted or failed run leaves nothing.

Ctrl-C and SIGTERM stop a run with one line and exit codes 130 and 143. The output
folder then either holds the complete earlier run or does not exist, and no
temporary file or folder is left beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

#: Written last into every complete output folder; its presence marks a folder that
#: a later run may replace.
MARKER = "atomscount-run.json"
#: The figures' file formats: those of ``atomscount._figures.FIGURE_FORMATS``, named here
#: because that module imports matplotlib, which the parser must not wait for.
FIGURE_FORMATS = ("png", "pdf", "svg")
#: The largest ``--dpi`` (as ``atomscount._figures`` allows): a page-wide figure is then a gigapixel image.
MAX_DPI = 2400


def figure_options(p: argparse.ArgumentParser) -> None:
    """Add ``--format`` and ``--dpi`` to a command that draws figures."""
    p.add_argument("--format", choices=FIGURE_FORMATS, default="png",
                   help="file format of the figures (PDF and SVG keep text and lines as vectors)")  # fmt: skip
    p.add_argument("--dpi", type=dots_per_inch, default=None,
                   help="resolution of the figures [dots per inch] (in PDF and SVG, of their images); the "
                        "figure style's 300 when not given")  # fmt: skip


def dots_per_inch(text: str) -> float:
    """``--dpi``: a number in (0, MAX_DPI], refused while parsing (before any work)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of dots per inch, got {text!r}") from None
    if not 0 < value <= MAX_DPI:
        raise argparse.ArgumentTypeError(f"must lie in (0, {MAX_DPI}] dots per inch, got {text}")
    return value


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


class Signals:
    """Turn SIGINT and SIGTERM into exceptions, and remember them.

    An interrupt that arrives while a library swallows exceptions (an HDF5
    callback, a destructor) is still honoured: :func:`output_folder` checks
    :attr:`received` before it renames the run into place.
    """

    def __init__(self):
        self.received = None
        self._old = {}

    def _handler(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave the defaults
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def interruption(exc: BaseException) -> int | None:
    """Exit code (130 for Ctrl-C, 143 for SIGTERM) if ``exc`` is, or was caused by, an interrupt.

    An interrupt that arrives inside a numba kernel surfaces as a ``SystemError``
    whose context is the ``KeyboardInterrupt``.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if isinstance(exc, Terminated):
            return 143
        exc = exc.__cause__ or exc.__context__
    return None


def check_output_folder(out, option: str = "--out") -> Path:
    """Refuse an ``--out`` that exists as a file or holds files not written by atomscount."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} must be a folder, got the existing file {str(out)!r}")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"{option} folder {str(out)!r} holds files that atomscount did not write; "
                         "give a new or empty folder")  # fmt: skip
    return out


@contextlib.contextmanager
def output_folder(out, *, command: str, signals: Signals | None = None, option: str = "--out"):
    """Yield a temporary folder beside ``out``; on success, replace ``out`` with it.

    Checked before any work: ``out`` is a folder atomscount may replace, and its
    parent can be written. On any exception or interrupt the temporary folder is
    removed and ``out`` is left as it was.
    """
    out = check_output_folder(out, option)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise OSError(f"{option} folder {str(out)!r} cannot be written: {exc.strerror or exc}") from None
    try:
        yield tmp
        if signals is not None and signals.received is not None:
            raise KeyboardInterrupt if signals.received == signal.SIGINT else Terminated()
        (tmp / MARKER).write_text(json.dumps({"command": command, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if out.exists():
            old = parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def final_paths(files: dict, tmp: Path, out: Path) -> dict:
    """The paths of ``files`` (written under ``tmp``) once the run sits at ``out``."""
    result = {}
    for name, path in files.items():
        path = Path(path)
        with contextlib.suppress(ValueError):
            path = Path(out) / path.relative_to(tmp)
        result[name] = path
    return result


def warm_up() -> None:
    """Compile the numba kernels with a progress bar on the first run (otherwise a silent minute)."""
    from .._warmup import compile_kernels, kernels_compiled

    if not kernels_compiled():
        print("atomscount: first run on this machine: compiling the numerical kernels (about a minute, once)",
              file=sys.stderr)  # fmt: skip
        compile_kernels(progress=True)


def print_files(files: dict, out: Path) -> None:
    print(f"results written to {out.resolve()}")
    for name, path in files.items():
        print(f"  {name:16s} {path}")
