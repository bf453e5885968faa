"""Dask fitting of a store: agreement with the in-process fit and scaling from 1 to 2 workers.

Store: a SYNTHETIC survey simulated from a random emulator on the LAMOST grid (LAMOST-APOGEE
labels, 10 neurons), so the benchmark needs no committed model; the same random emulator fits it.
Prints max_label_diff=<x> (Dask versus in-process, in units of the label ranges) and
scaling_2_workers=<x> (throughput with 2 workers over 1 worker).
Usage: python benchmarks/bench_dask.py [--quick]
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import random_lamost_emulator

from ddpayne_core.fit import FitConfig, fit_store, fit_store_dask
from ddpayne_core.io import open_store
from ddpayne_core.simulate import SurveyConfig, simulate_survey


def random_model(path):
    model = random_lamost_emulator(seed=2)
    model.save(path)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_stars, chunk = (1500, 250) if args.quick else (20000, 1000)
    cfg = replace(FitConfig(), n_candidates=32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = random_model(tmp / "model.pt")
        simulate_survey(tmp / "store", replace(SurveyConfig(), n_stars=n_stars, chunk=chunk,
                                                featureless=()), tmp / "model.pt",
                        log=lambda *a: None)
        store = open_store(tmp / "store")
        print(f"store: {store.n_spec} synthetic spectra in chunks of {chunk}")
        local = fit_store(model, store, tmp / "local.parquet", cfg, log=lambda *a: None)
        rates = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            table = fit_store_dask(tmp / "model.pt", store, tmp / f"dask{workers}.parquet",
                                   n_workers=workers, config=cfg, log=lambda *a: None)
            rates[workers] = store.n_spec / (time.perf_counter() - t0)
            print(f"dask, {workers} worker(s): {rates[workers]:.1f} spectra/s")
        labels = list(model.labels)
        diff = np.nanmax(np.abs(table[labels].to_numpy() - local[labels].to_numpy())
                         / model.scaler.span)
        print(f"max_label_diff={diff:.2e}")
        print(f"scaling_2_workers={rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
