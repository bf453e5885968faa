"""Fitting throughput and accuracy on survey-like SYNTHETIC spectra: ddpayne's fit against a
The-Payne-style baseline and The Cannon's test step, on the same spectra, in one run.

Spectra: a synthetic LAMOST survey drawn by ``simulate_survey`` from the truth emulator (the
demo's population, noise, LSF, calibration and sky effects, S/N median 45), so the fitted model
(the committed demo emulator) does not describe them exactly, as on real data. The ddpayne fit
runs as ``ddpayne fit`` does: ``fit_store`` over the store's chunks, one single-threaded process
per core, with the default ``FitConfig`` (two starts, LSF width fitted); also one process with
one thread, the per-core figure.

Baseline (faithful to The Payne's ``fitting.py``): scipy ``curve_fit`` with method "trf",
numerical 2-point Jacobian, one start at the centre of the scaled label space, bounds +-0.5,
ftol = xtol = 5e-4, one spectrum at a time, the emulator evaluated in numpy, one thread.
The Cannon (thecannon 0.7.3, quadratic, a benchmark-only dependency; skipped when absent):
trained on a second simulated set with true labels, its test step timed on the same spectra.

Prints spectra/s of each, speedup_vs_curve_fit=<x>, cannon_test_ratio=<x> (ddpayne / The
Cannon's test step) and the robust scatter against the truth per label.
Usage: python benchmarks/bench_fit.py [--quick]
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import cannon
from scipy.optimize import curve_fit

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import FitConfig, fit_store, fit_workers
from ddpayne_core.instrument import get_instrument
from ddpayne_core.memory import keep_freed_memory
from ddpayne_core.model import EmulatorModel
from ddpayne_core.paths import MODELS
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.simulate import SurveyConfig, simulate_survey

QUIET = dict(log=lambda *a: None)


def numpy_emulator(model):
    p = {k: v.detach().numpy().astype(np.float64) for k, v in model.net.state_dict().items()}

    def flux(x):
        h1 = 1 / (1 + np.exp(-(np.einsum("pjk,k->pj", p["W1"], x) + p["b1"])))
        h2 = 1 / (1 + np.exp(-(np.einsum("pij,pj->pi", p["W2"], h1) + p["b2"])))
        return np.einsum("pi,pi->p", p["w"], h2) + p["fbar"]
    return flux


def baseline_fit(model, flux, ivar):
    """One spectrum at a time, as The Payne's fit_normalized_spectrum_single_star_model."""
    f = numpy_emulator(model)
    n_lab = len(model.labels)
    out, times = [], []
    for spec, iv in zip(flux, ivar):
        use = (iv > 0) & model.mask
        err = np.where(use, 1 / np.sqrt(np.where(use, iv, 1)), 999.0)
        t0 = time.perf_counter()
        popt, _ = curve_fit(lambda _x, *lab: f(np.array(lab)), xdata=[], ydata=spec, sigma=err,
                            p0=np.zeros(n_lab), bounds=(-0.5, 0.5), ftol=5e-4, xtol=5e-4,
                            absolute_sigma=True, method="trf")
        times.append(time.perf_counter() - t0)
        out.append(model.scaler.unscale(popt))
    return np.array(out), np.array(times)


def survey(path, n_stars, seed):
    """A synthetic survey store (no injected broken spectra) and its normalized spectra."""
    store = simulate_survey(path, replace(SurveyConfig(), n_stars=n_stars, seed=seed,
                                          bad_fraction=0.0, chunk=500), **QUIET)
    meta = store.meta()
    flux, ivar = store.read(0, len(meta))
    norm, niv = preprocess_batch(flux, ivar, meta["rv"].to_numpy(), get_instrument("lamost"))
    return store, meta, norm, niv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_stars, n_base, n_cannon = (600, 10, 300) if args.quick else (4000, 100, 1000)
    keep_freed_memory()
    torch.set_num_threads(1)
    model = EmulatorModel.load(MODELS / "demo_emulator.pt")
    labels = list(model.labels)
    cfg = FitConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, meta, norm, niv = survey(tmp / "test", n_stars, seed=7)
        n = len(meta)
        print(f"{n} SYNTHETIC spectra ({n_stars} stars, median S/N {meta.snr.median():.0f}); "
              f"model: committed demo emulator, {model.net.n_pix} pixels, {len(labels)} labels, "
              f"{model.net.n_hidden} neurons; FitConfig: {cfg.n_starts} starts, batch "
              f"{cfg.batch}, LSF width fitted")

        speeds = {}
        for workers in (1, fit_workers()):
            t0 = time.perf_counter()
            table = fit_store(model, store, tmp / f"fit{workers}.parquet", cfg, workers=workers,
                              **QUIET)
            speeds[workers] = n / (time.perf_counter() - t0)
            print(f"ddpayne fit_store, {workers} process(es) x 1 thread: "
                  f"{speeds[workers]:.1f} spectra/s")
        ours = table[labels].to_numpy()

        base, t_base = baseline_fit(model, norm[:n_base], niv[:n_base])
        print(f"curve_fit trf baseline (1 start, LSF not fitted): {1 / np.median(t_base):.2f} "
              f"spectra/s (median of {n_base})")

        truth = meta[labels].to_numpy()
        ratio_cannon = None
        try:
            _, tmeta, tnorm, tniv = survey(tmp / "train", n_cannon, seed=8)
            fitted, t_train, t_test = cannon(tnorm, tniv, tmeta[labels].to_numpy(), norm, niv,
                                             model.wave, labels)
            ratio_cannon = speeds[fit_workers()] / (n / t_test)
            print(f"The Cannon (quadratic, trained on {len(tmeta)} other synthetic spectra in "
                  f"{t_train:.0f} s): test step {n / t_test:.1f} spectra/s")
        except ImportError as exc:
            fitted = None
            print(f"The Cannon: skipped ({exc}; pip install thecannon==0.7.3)")

        single = (meta["is_binary"] == 0).to_numpy()
        print("robust scatter of fitted - true over single stars "
              "(ddpayne | baseline on its subset | The Cannon):")
        for k, lab in enumerate(labels):
            s_ours = robust_bias_scatter(ours[single, k] - truth[single, k])[1]
            s_base = robust_bias_scatter(base[:, k] - truth[:n_base, k])[1]
            s_can = robust_bias_scatter(fitted[single, k] - truth[single, k])[1] \
                if fitted is not None else np.nan
            print(f"  {lab:>6s}: {s_ours:8.4g} | {s_base:8.4g} | {s_can:8.4g}")
        print(f"speedup_vs_curve_fit={np.median(t_base) * speeds[fit_workers()]:.1f} "
              f"(per core: {np.median(t_base) * speeds[1]:.1f})")
        if ratio_cannon is not None:
            print(f"cannon_test_ratio={ratio_cannon:.2f}")


if __name__ == "__main__":
    main()
