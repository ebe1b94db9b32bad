"""Library and hybrid counting of 10⁵ and 10⁶ columns: time and peak memory.

Each case runs in a process of its own (so that its peak RSS is its own) on SCS
drawn from the shipped Pt [001] library (counts 1-29, noise 0.08 of a mean
step), with SCS errors, and without them at 10⁴ times the library (the scale
found by the scan). Writes ``benchmarks/results/bench_counting_large.json``.

    NUMBA_NUM_THREADS=1 python benchmarks/bench_counting_large.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASE = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from atomscount.counting import count_by_library, count_hybrid
from atomscount.library import load_default

method, n, factor = sys.argv[1], int(float(sys.argv[2])), float(sys.argv[3])
lib = load_default("Pt", "001")
rng = np.random.default_rng(0)
truth = rng.integers(1, 30, n)
sd = 0.08 * np.mean(np.diff(lib.scs))
scs = factor * (lib.scs_at(truth) + rng.normal(0, sd, n))
kw = {"scs_errors": np.full(n, factor * sd)} if factor == 1 else {"normalised": False}
count_hybrid(scs[:2000], lib, **{k: v[:2000] if k == "scs_errors" else v for k, v in kw.items()})  # compile
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tracemalloc.start()
t = time.perf_counter()
r = (count_by_library if method == "library" else count_hybrid)(scs, lib, **kw)
seconds = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"method": method, "n": n, "factor": factor, "seconds": round(seconds, 2),
                  "tracemalloc_peak_mb": round(peak, 1),
                  "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_before_mb": round(rss0, 1), "exact": float(np.mean(r.counts == truth)),
                  "scale_over_factor": r.library_scale / factor}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10⁵ columns only")
    args = p.parse_args()
    sizes = ["1e5"] if args.quick else ["1e5", "1e6"]
    rows = []
    for n in sizes:
        for method in ("library", "hybrid"):
            for factor in ("1", "1e4"):
                out = subprocess.run([sys.executable, "-c", CASE, method, n, factor], capture_output=True, text=True,
                                     check=True)  # fmt: skip
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{method:8s} n = {row['n']:.0e} x {row['factor']:g}: {row['seconds']:6.2f} s, tracemalloc "
                      f"peak {row['tracemalloc_peak_mb']:6.1f} MB, max RSS {row['max_rss_mb']:6.1f} MB, exact "
                      f"{row['exact']:.4f}", flush=True)  # fmt: skip
    path = Path(__file__).parent / "results" / "bench_counting_large.json"
    path.write_text(json.dumps({"quick": args.quick, "cases": rows}, indent=1) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
