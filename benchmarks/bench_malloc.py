"""Fitting and gradient correlations with glibc's default memory thresholds and with ddpayne's
(``ddpayne_core/memory.py``), in one process.

Baseline: mmap and trim thresholds at glibc's initial 128 KiB (every tensor batch is mapped and
unmapped, page-faulted afresh); then the thresholds `import ddpayne_core` sets. The same fits
(the committed demo model, 1,000 LAMOST-size spectra it made at random labels plus S/N-50 noise)
and the same X_gradcorr (300 stars) under each. Prints wall and system seconds and the ratios.
Usage: python benchmarks/bench_malloc.py [--quick]
"""
import argparse
import resource
import time

import numpy as np

from ddpayne_core.fit import fit_spectra
from ddpayne_core.flags import gradcorr
from ddpayne_core.memory import MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES, set_malloc_thresholds
from ddpayne_core.model import EmulatorModel
from ddpayne_core.paths import MODELS
from ddpayne_core.theory import load_reference_gradients


def timed(fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter() - t0, r1.ru_stime - r0.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 spectra, 50 stars: a check that it runs")
    n_fit, n_corr = (200, 50) if ap.parse_args().quick else (1000, 300)
    model, what = EmulatorModel.load(MODELS / "demo_emulator.pt"), "committed demo model"
    rng = np.random.default_rng(0)
    labels = model.scaler.unscale(rng.uniform(-0.3, 0.3, (n_fit, len(model.labels))))
    flux = model.predict(labels)
    flux += rng.normal(size=flux.shape) / 50.0
    ivar = np.full_like(flux, 2500.0)
    reference = load_reference_gradients()
    print(f"emulator: {what}")
    out = {}
    for name, (mmap, trim) in (("glibc initial 128 KiB", (128 << 10, 128 << 10)),
                               ("ddpayne", (MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES))):
        if not set_malloc_thresholds(mmap, trim):
            raise SystemExit("this C library has no mallopt: nothing to compare")
        fit = timed(lambda: fit_spectra(model, flux, ivar))
        corr = timed(lambda: gradcorr(model, labels[:n_corr], reference))
        out[name] = fit, corr
        print(f"{name}: fit {n_fit:,} spectra {fit[0]:.2f} s (system {fit[1]:.2f} s), "
              f"gradcorr {n_corr} stars {corr[0]:.2f} s (system {corr[1]:.2f} s)")
    (fb, cb), (ft, ct) = out.values()
    print(f"fit_speedup={fb[0] / ft[0]:.2f} gradcorr_speedup={cb[0] / ct[0]:.2f}")


if __name__ == "__main__":
    main()
