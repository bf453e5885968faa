"""Ingest rate: LAMOST FITS files per second into the spectral store, with 1 and 2 worker
processes (the 1-worker run is the baseline, same files, same process).

The files are SYNTHETIC stand-ins in the LAMOST DR5 layout (ddpayne_core.simulate.standins) written from
a small synthetic survey; reading them costs what reading real DR5 files costs (same size and
structure). Usage: python benchmarks/bench_ingest.py [--files 2000] [--dir /tmp/ddpayne-ingest] [--quick]
"""
import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ddpayne_core.preprocess import ingest_lamost
from ddpayne_core.simulate import SurveyConfig, export_lamost_fits, simulate_survey


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--dir", default="/tmp/ddpayne-ingest")
    ap.add_argument("--quick", action="store_true", help="100 files: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.files, args.dir = 100, args.dir + "-quick"
    d = Path(args.dir)
    shutil.rmtree(d, ignore_errors=True)
    sim = simulate_survey(d / "sim", replace(SurveyConfig(), n_stars=args.files, repeat_fraction=0.0,
                                             binary_fraction=0.0, bad_fraction=0.0), log=lambda *a: None)
    n = min(args.files, sim.n_spec)
    export_lamost_fits(sim, np.arange(n), d / "fits")
    rate = {}
    for workers in (1, 2):
        shutil.rmtree(d / f"store{workers}", ignore_errors=True)
        t0 = time.perf_counter()
        ingest_lamost([d / "fits"], d / f"store{workers}", workers=workers, log=lambda *a: None)
        rate[workers] = n / (time.perf_counter() - t0)
        print(f"workers={workers}: {rate[workers]:.0f} files/s ({n} files)")
    print(f"ingest_scaling_2_workers={rate[2] / rate[1]:.2f}")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
