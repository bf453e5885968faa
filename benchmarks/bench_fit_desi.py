"""Fitting throughput of a DESI-size model (Z24: 7,781 pixels, 15 labels, 40 neurons per pixel)
against a The-Payne-style baseline on the same model and the same SYNTHETIC spectra.

Spectra: the model's own spectra at random labels plus Gaussian noise at S/N 20-100 (no model
mismatch: a throughput measurement, not an accuracy one), in a store, fitted as ``ddpayne fit``
does (``fit_store``, default ``FitConfig``, one single-threaded process per core, and one). The
model is a random emulator of DESI's size (``common.random_desi_emulator``), or with ``--model``
a trained DESI model (e.g. ``DIR/model.pt`` of ``ddpayne demo --survey desi --out DIR``), whose
labels are drawn inside its training range.
Baseline: scipy ``curve_fit`` (method "trf", numerical Jacobian, one start, one spectrum at a time,
the emulator in numpy, one thread), as in bench_fit.py.

Prints spectra/s of each and speedup_vs_curve_fit=<x>. Usage: python benchmarks/bench_fit_desi.py [--quick] [--model PATH]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_fit import baseline_fit
from common import random_desi_emulator

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import FitConfig, fit_store, fit_workers
from ddpayne_core.io.store import create_store, write_chunk
from ddpayne_core.memory import keep_freed_memory
from ddpayne_core.model.emulator import EmulatorModel

QUIET = dict(log=lambda *a: None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", help="a trained DESI emulator (default: a random one of DESI's size)")
    args = ap.parse_args()
    n, n_base = (200, 4) if args.quick else (2000, 30)
    keep_freed_memory()
    torch.set_num_threads(1)
    model = EmulatorModel.load(args.model) if args.model else random_desi_emulator()
    rng = np.random.default_rng(0)
    labels = model.scaler.unscale(rng.uniform(-0.35, 0.35, (n, len(model.labels))))
    snr = rng.uniform(20, 100, n)
    flux = model.predict(labels)
    noisy = flux + rng.normal(size=flux.shape) * flux / snr[:, None]
    ivar = np.where(model.mask, (snr[:, None] / flux) ** 2, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = pd.DataFrame({"specid": np.arange(n), "snr": snr, "rv": 0.0})
        store = create_store(tmp / "store", model.wave, n, meta, "desi", 500, synthetic=True)
        for start in range(0, n, 500):
            write_chunk(store, start, noisy[start:start + 500], ivar[start:start + 500])
        cfg = FitConfig()
        print(f"{n} SYNTHETIC spectra (the {'trained' if args.model else 'random DESI-size'} emulator's "
              f"own, S/N 20-100); model: "
              f"{model.net.n_pix} pixels ({int(model.mask.sum())} fitted), {len(model.labels)} labels, "
              f"{model.net.n_hidden} neurons; FitConfig: {cfg.n_starts} starts, LSF width fitted")
        speeds = {}
        for workers in (1, fit_workers()):
            t0 = time.perf_counter()
            table = fit_store(model, store, tmp / f"fit{workers}.parquet", cfg, workers=workers, **QUIET)
            speeds[workers] = n / (time.perf_counter() - t0)
            print(f"ddpayne fit_store, {workers} process(es) x 1 thread: {speeds[workers]:.1f} spectra/s")
        base, t_base = baseline_fit(model, noisy[:n_base], ivar[:n_base])
        print(f"curve_fit trf baseline (1 start, LSF not fitted): {1 / np.median(t_base):.2f} "
              f"spectra/s (median of {n_base})")
        ours = table[list(model.labels)].to_numpy()
        print("robust scatter of fitted - true (ddpayne | baseline on its subset):")
        for k, lab in enumerate(model.labels[:4]):
            print(f"  {lab:>6s}: {robust_bias_scatter(ours[:, k] - labels[:, k])[1]:8.4g} | "
                  f"{robust_bias_scatter(base[:, k] - labels[:n_base, k])[1]:8.4g}")
        print(f"speedup_vs_curve_fit={np.median(t_base) * speeds[fit_workers()]:.1f} "
              f"(per core: {np.median(t_base) * speeds[1]:.1f})")


if __name__ == "__main__":
    main()
