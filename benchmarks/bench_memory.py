"""Memory of fitting is flat in survey size: peak RSS of `fit_store` (streaming chunk by chunk,
results to parts on disk) on stores of --sizes spectra, each fitted in its own process.

The stores hold random LAMOST-grid spectra (3909 pixels, noise around a random emulator's
spectra) written chunk by chunk, and the fit uses fast settings (few candidates and
iterations): memory depends on the chunk and batch sizes, not on label values or iteration
counts, so this measures the streaming, not accuracy. Baseline in the same run: the smallest
store; the ratio of peak RSS largest/smallest should be ~1.

Usage: python benchmarks/bench_memory.py [--sizes 20000 200000] [--dir /tmp/ddpayne-mem] [--quick]
"""
import argparse
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import random_lamost_emulator  # noqa: E402

from ddpayne_core.fit import FitConfig, fit_store
from ddpayne_core.io import create_store, open_store, write_chunk

CHUNK = 1000


def make_store(path: Path, n: int, seed: int = 0):
    model = random_lamost_emulator()
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({"specid": np.arange(n), "snr": np.full(n, 50.0), "rv": np.zeros(n)})
    store = create_store(path, model.wave, n, meta, "lamost", CHUNK, synthetic=True,
                         provenance={"generator": "benchmarks/bench_memory.py (random spectra)"})
    base = model.predict(model.scaler.unscale(rng.uniform(-0.4, 0.4, (64, len(model.labels)))))
    for start, stop in store.chunks():
        flux = base[rng.integers(0, 64, stop - start)] * (1 + rng.normal(0, 0.02, (stop - start, base.shape[1])))
        write_chunk(store, start, flux.astype(np.float32), np.full_like(flux, 2500.0, dtype=np.float32))
    return store


def fit_one(path: str) -> None:
    """In a fresh process: fit the whole store without collecting; print peak RSS."""
    cfg = replace(FitConfig(), n_candidates=8, n_starts=1, explore_iter=1, max_iter=3)
    t0 = time.perf_counter()
    fit_store(random_lamost_emulator(), open_store(path), Path(path).parent / "cat.parquet", cfg,
              log=lambda *a: None, collect=False)
    dt = time.perf_counter() - t0
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {dt:.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    ap.add_argument("--dir", default="/tmp/ddpayne-mem")
    ap.add_argument("--fit-one")
    ap.add_argument("--quick", action="store_true", help="1,000 and 3,000 spectra: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.dir = [1000, 3000], args.dir + "-quick"
    if args.fit_one:
        return fit_one(args.fit_one)
    peaks = {}
    for n in args.sizes:
        d = Path(args.dir) / f"n{n}"
        shutil.rmtree(d, ignore_errors=True)
        make_store(d / "store", n)
        out = subprocess.run([sys.executable, __file__, "--fit-one", str(d / "store")],
                             check=True, capture_output=True, text=True).stdout.split()
        peaks[n] = float(out[0])
        print(f"n_spectra={n}: peak_rss_mb={peaks[n]:.0f}, fit {float(out[1]):.0f} s "
              f"({n / float(out[1]):.0f} spectra/s with fast settings)")
        shutil.rmtree(d, ignore_errors=True)
    lo, hi = min(peaks), max(peaks)
    print(f"peak_rss_ratio_{hi}_over_{lo}={peaks[hi] / peaks[lo]:.2f}")


if __name__ == "__main__":
    main()
