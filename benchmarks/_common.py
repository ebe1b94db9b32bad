"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class PeakRSS:
    """Sample resident memory in a thread; ``mb`` is the peak above the start [MB]."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.start = self.rss()
        self.peak = self.start
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())

    @property
    def mb(self):
        return (self.peak - self.start) / 2**20


def json_default(o):
    """JSON value of what ``json`` cannot write: arrays and numpy scalars as lists or numbers, the rest as text."""
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def save_json_atomic(path: Path, data: dict, *, indent: int = 1) -> None:
    """Write ``data`` to ``path`` as JSON through ``FILE.json.partial``, so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(data, indent=indent, default=json_default) + "\n")
    tmp.replace(path)
