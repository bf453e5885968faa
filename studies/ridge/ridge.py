"""Levenberg-Marquardt training with and without a ridge on the first layer's label weights:
validation chi^2, weight sizes, and how well the fit then converges (SYNTHETIC demo survey).

The loss separates by pixel, so every ``--every``-th pixel trains as the full model would. For
each ridge weight: the model's validation chi^2 (``model.validation_chi2``, against the Adam
model's on the same pixels), the 99th percentile of |W1| (scaled labels span 1), and a fit of
``--n-fit`` demo-survey spectra on those pixels (LSF width not fitted) with the default
``FitConfig`` against a thorough one (4 starts, 6 exploring iterations, tol 1e-7): mean LM
iterations, spectra/s (one thread) and the share of spectra whose chi^2 is worse than the
thorough fit's by > 1 and > 10 (local minima or unfinished fits).

Usage (after ``ddpayne demo``): python studies/ridge/ridge.py --ridge 0 1e-4 1e-3 1e-2 \
    --out studies/ridge/ridge.json
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ddpayne_core.fit import FitConfig, fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io.store import open_store
from ddpayne_core.model import (
    EmulatorModel,
    TrainConfig,
    train_emulator,
    validation_chi2,
)
from ddpayne_core.pipeline import training_spectra
from ddpayne_core.preprocess import instrument_mask, preprocess_batch
from ddpayne_core.theory import ReferenceGradients, load_reference_gradients

THOROUGH = replace(FitConfig(), n_starts=4, explore_iter=6, tol=1e-7, max_iter=300, fit_lsf=False)


def convergence(model, norm, niv):
    torch.set_num_threads(1)      # as in a fit worker
    fast_cfg = replace(FitConfig(), fit_lsf=False)
    t0 = time.perf_counter()
    fast = fit_spectra(model, norm, niv, fast_cfg)
    rate = len(norm) / (time.perf_counter() - t0)
    ref = fit_spectra(model, norm, niv, THOROUGH)
    d = fast.chi2 - ref.chi2
    return {"spectra_per_s": rate, "mean_iter": float(fast.n_iter.mean()),
            "worse_by_1": float(np.mean(d > 1)), "worse_by_10": float(np.mean(d > 10))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=Path("data/demo"))
    ap.add_argument("--committed", type=Path, default=Path("data/models/demo_emulator_adam.pt"))
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--n-fit", type=int, default=400)
    ap.add_argument("--ridge", type=float, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    store = open_store(args.demo / "survey")
    flux, ivar, labels, names = training_spectra(store)
    inst = get_instrument(store.info["instrument"])
    pix = np.arange(0, flux.shape[1], args.every)
    adam = EmulatorModel.load(args.committed)
    target = float(validation_chi2(adam, flux, ivar, labels)[pix].sum())
    mask = instrument_mask(inst.wave, inst.name)
    ref = load_reference_gradients(TrainConfig().reference)
    ref = ReferenceGradients(ref.name, ref.wavelength[pix], ref.labels, ref.stars, ref.flux[:, pix],
                             ref.dflux[:, :, pix], ref.provenance)
    # Fit spectra: survey spectra that are not training spectra (every 7th row from the end).
    meta = store.meta()
    rows = np.arange(len(meta) - 1, 0, -7)[:args.n_fit][::-1]
    f, iv = store.read_rows(rows)
    norm, niv = preprocess_batch(f, iv, meta["rv"].to_numpy()[rows], inst)
    norm, niv = norm[:, pix], niv[:, pix]
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(adam_valid_chi2=target, every=args.every, n_fit=len(rows))
    for alpha in args.ridge:
        key = f"ridge={alpha:g}"
        if key in results:
            continue
        cfg = replace(TrainConfig(), lm_ridge=alpha)
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        model = train_emulator(flux[:, pix], ivar[:, pix], labels, names, inst.wave[pix], mask[pix],
                               cfg, ref, log=lambda *a: None)
        seconds = time.perf_counter() - t0
        w1 = model.net.W1.detach().abs().numpy()
        row = {"train_s": seconds, "iterations": len(model.history["epoch"]),
               "valid_chi2": float(validation_chi2(model, flux[:, pix], ivar[:, pix], labels).sum()),
               "w1_p99": float(np.percentile(w1, 99)), "w1_median": float(np.median(w1)),
               **convergence(model, norm, niv)}
        results[key] = row
        print(key, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    adam_sub = EmulatorModel.load(args.committed)
    print("Adam model: |W1| p99", float(np.percentile(adam_sub.net.W1.detach().abs().numpy()[pix], 99)),
          "valid chi2", round(target, 1))


if __name__ == "__main__":
    main()
