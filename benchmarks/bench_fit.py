"""Fitting throughput and accuracy: batched LM (ddpayne) versus a The-Payne-style baseline.

Baseline (faithful to The Payne's ``fitting.py``): scipy ``curve_fit`` with method "trf",
numerical 2-point Jacobian, one start at the centre of the scaled label space, bounds +-0.5,
ftol = xtol = 5e-4, absolute sigma with masked pixels given sigma 999, one spectrum at a time,
the emulator evaluated in numpy. Both fit the same LAMOST-like spectra (3909 pixels, 16 labels,
10 neurons) made from the same emulator at known labels plus Gaussian noise at S/N 50.

Emulator: the committed demo model (data/models/demo_emulator.pt) if present, else a random
emulator of the same size (said in the output).
Usage: python benchmarks/bench_fit.py [--quick]
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import curve_fit

from common import random_lamost_emulator
from ddpayne_core.emulator import EmulatorModel
from ddpayne_core.fit import FitConfig, fit_spectra

MODEL = Path(__file__).resolve().parents[1] / "data" / "models" / "demo_emulator.pt"


def load_or_make_model():
    if MODEL.exists():
        return EmulatorModel.load(MODEL), f"committed demo model {MODEL.name}"
    return random_lamost_emulator(), "random emulator (no committed demo model)"


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
        err = np.where((iv > 0) & model.mask, 1 / np.sqrt(np.where(iv > 0, iv, 1)), 999.0)
        t0 = time.perf_counter()
        popt, _ = curve_fit(lambda _x, *lab: f(np.array(lab)), xdata=[], ydata=spec, sigma=err,
                            p0=np.zeros(n_lab), bounds=(-0.5, 0.5), ftol=5e-4, xtol=5e-4,
                            absolute_sigma=True, method="trf")
        times.append(time.perf_counter() - t0)
        out.append(model.scaler.unscale(popt))
    return np.array(out), np.array(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_base, n_ours = (50, 1000) if args.quick else (200, 4000)
    torch.set_num_threads(2)
    model, what = load_or_make_model()
    rng = np.random.default_rng(0)
    truth = model.scaler.unscale(rng.uniform(-0.35, 0.35, (n_ours, len(model.labels))))
    sigma = 1 / 50.0
    flux = model.predict(truth) + rng.normal(0, sigma, (n_ours, model.net.n_pix))
    ivar = np.where(model.mask, 1 / sigma ** 2, 0.0) * np.ones((n_ours, 1))
    print(f"emulator: {what}; {model.net.n_pix} pixels, {len(model.labels)} labels, "
          f"{model.net.n_hidden} neurons; S/N 50")

    # Like for like with the baseline: the labels alone (the spectra have the emulator's LSF).
    t0 = time.perf_counter()
    ours = fit_spectra(model, flux, ivar, FitConfig(fit_lsf=False))
    t_ours = (time.perf_counter() - t0) / n_ours
    t0 = time.perf_counter()
    fit_spectra(model, flux, ivar, FitConfig())
    t_lsf = (time.perf_counter() - t0) / n_ours
    base, t_base = baseline_fit(model, flux[:n_base], ivar[:n_base])

    span = model.scaler.span
    err_ours = np.median(np.abs(ours.labels[:n_base] - truth[:n_base]) / span, axis=0)
    err_base = np.median(np.abs(base - truth[:n_base]) / span, axis=0)
    print(f"ddpayne batched LM ({FitConfig().n_starts} starts): {1 / t_ours:.1f} spectra/s "
          f"({n_ours} spectra); {1 / t_lsf:.1f} spectra/s with the LSF width fitted too "
          f"(the default)")
    print(f"curve_fit trf baseline (1 start): {1 / np.median(t_base):.2f} spectra/s "
          f"(median of {n_base})")
    # The chi^2 both fits minimise (masked pixels have ivar 0), at both solutions.
    chi2 = lambda lab: ((model.predict(lab) - flux[:n_base]) ** 2 * ivar[:n_base]).sum(1)
    d_chi2 = chi2(ours.labels[:n_base]) - chi2(base)
    print(f"on the same {n_base} spectra: rms over labels of the median |error| / label range: "
          f"ddpayne {np.sqrt(np.mean(err_ours ** 2)):.4f}, baseline "
          f"{np.sqrt(np.mean(err_base ** 2)):.4f}; chi2(ddpayne) - chi2(baseline): median "
          f"{np.median(d_chi2):+.2f}, <= 0.5 for {np.mean(d_chi2 <= 0.5):.0%} of spectra")
    print("median |error| per label:")
    for lab, a, b in zip(model.labels, err_ours * span, err_base * span):
        print(f"  {lab:>6s}: ddpayne {a:.4g}  baseline {b:.4g}")
    print(f"speedup_vs_curve_fit={np.median(t_base) / t_ours:.1f} "
          f"(with the LSF fitted: {np.median(t_base) / t_lsf:.1f})")


if __name__ == "__main__":
    main()
