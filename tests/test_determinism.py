"""Issue 11, item 10: the same input gives the same fit and counts at any thread count."""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import hashlib, json, warnings
import numpy as np
import numba
from atomscount import HAADFImage, add_poisson_noise, find_columns, fit_columns
from atomscount.columns.model import ColumnModel, square_lattice
from atomscount.counting import count_atoms

warnings.simplefilter("ignore")
rng = np.random.default_rng(5)
pos = square_lattice((120, 120), 0.1, 1.6)
n = rng.integers(1, 8, len(pos))
img = ColumnModel((120, 120), 0.1, pos, 0.06 * n, 0.42, background=(0.01,)).image()
img = add_poisson_noise(img, dose_e_per_angstrom2=2e4, pixel_size_angstrom=0.1, rng=1)
image = HAADFImage(img, 0.1)
fit = fit_columns(image, find_columns(image), noise="poisson", progress=False)
counts = count_atoms(fit.scs, scs_errors=fit.scs_error, rng=0)
print(json.dumps({"threads": numba.get_num_threads(), "n": fit.n_columns,
                  "scs": hashlib.sha256(fit.scs.tobytes()).hexdigest(),
                  "counts": counts.counts.tolist(), "g": int(counts.n_components)}))
"""


def _run(threads: int) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fit_and_counts_do_not_depend_on_the_thread_count():
    one, two = _run(1), _run(2)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["n"] > 20
    assert one["scs"] == two["scs"]  # bit-identical SCS
    assert one["counts"] == two["counts"]
    assert one["g"] == two["g"]
