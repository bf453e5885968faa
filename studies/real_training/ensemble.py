"""Is the real-data emulator's error variance (which seed it was trained from) or bias (what
three labels cannot describe)? The committed training (``real.REAL_TRAIN_CONFIG``, seed 0) is
repeated with other seeds (each seed draws its own 10 % validation stars, initial weights and
Levenberg-Marquardt rows), and the members are averaged into one emulator
(``ensemble`` below: the mean of K networks is one network of K x 10 neurons with a
block-diagonal second layer). Each single model and each ensemble gets its own per-pixel scatter
from the training spectra (``pipeline.training_scatter``), fits the training and held-out
spectra with S/N(g) > 20 and is scored against LASP with the report's ``real_validation``.
REAL LAMOST DR10 spectra, LASP labels. Resumable: trained members are reused from --work.

Usage: python studies/real_training/ensemble.py [--bundle data/demo_real] [--work /tmp/ensemble]
       [--seeds 5] [--result studies/real_training/ensemble.json]
(run ``ddpayne demo --real`` first; each member trains in about 3.5 min on 2 cores)
"""
import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import labelled_spectra, score

from ddpayne_core.fit import fit_spectra
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import Emulator, EmulatorModel
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import train_from_store, training_scatter
from ddpayne_core.real import (
    REAL_FIT_CONFIG,
    REAL_TRAIN_CONFIG,
    RealDataConfig,
    training_meta,
)


def ensemble(models: list[EmulatorModel]) -> EmulatorModel:
    """The mean of K emulators trained alike (same labels, scaling, pixels; e.g. different seeds)
    as one ``EmulatorModel``: K networks of H neurons averaged are one network of K H neurons whose
    second layer is block diagonal (each member's hidden units feed only its own), with output
    weights w / K and offset mean(fbar). Everything that reads an emulator (fits, flags, the app)
    uses it unchanged. The config and training labels are the first member's, with the members'
    seeds recorded; the per-pixel scatter is left for the caller to estimate anew
    (``pipeline.training_scatter``). One model is returned as it is."""
    if len(models) == 1:
        return models[0]
    first = models[0]
    for m in models[1:]:
        if m.labels != first.labels or not (np.array_equal(m.scaler.lo, first.scaler.lo)
                                            and np.array_equal(m.scaler.hi, first.scaler.hi)
                                            and np.array_equal(m.mask, first.mask)):
            raise ValueError("ensemble: the members differ in labels, label scaling or pixel mask")
    k, (n_pix, h, n_label) = len(models), first.net.W1.shape
    net = Emulator(n_label, n_pix, k * h)
    nets = [m.net for m in models]
    with torch.no_grad():
        net.W1.copy_(torch.cat([n.W1 for n in nets], 1))
        net.b1.copy_(torch.cat([n.b1 for n in nets], 1))
        net.W2.zero_()
        for i, n in enumerate(nets):
            net.W2[:, i * h:(i + 1) * h, i * h:(i + 1) * h] = n.W2
        net.b2.copy_(torch.cat([n.b2 for n in nets], 1))
        net.w.copy_(torch.cat([n.w for n in nets], 1) / k)
        net.fbar.copy_(torch.stack([n.fbar for n in nets]).mean(0))
    net.eval()
    config = dict(first.config, ensemble_seeds=[m.config.get("seed") for m in models],
                  ensemble_members=k)
    return EmulatorModel(net, first.labels, first.scaler, first.wave, first.mask, config,
                         first.history, first.training_labels, None)


def member(bundle: Path, work: Path, seed: int, cfg: RealDataConfig) -> EmulatorModel:
    path = work / f"seed{seed}.pt"
    if path.exists():
        return EmulatorModel.load(path)
    print(f"training seed {seed}", flush=True)
    meta = pd.read_parquet(bundle / "labels.parquet")
    return train_from_store(bundle / "survey", path, cfg.training_set(),
                            replace(REAL_TRAIN_CONFIG, seed=seed), meta=training_meta(meta, cfg),
                            log=lambda *a: None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=DEMO_OUT.parent / "demo_real")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ensemble"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("ensemble.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = RealDataConfig()
    members = [member(args.bundle, args.work, s, cfg) for s in range(args.seeds)]

    meta, flux, ivar = labelled_spectra(args.bundle, cfg)
    train = ~meta["heldout"].to_numpy()

    variants = {f"seed {s}": [s] for s in range(args.seeds)}
    variants.update({f"ensemble of {k}": list(range(k)) for k in (3, 5, 8) if k <= args.seeds})
    out = []
    for name, seeds in variants.items():
        model = ensemble([members[s] for s in seeds])
        model.pixel_scatter = training_scatter(model, flux[train], ivar[train])
        fit = fit_spectra(model, flux, ivar, REAL_FIT_CONFIG)
        for r, sel in score(meta, fit, cfg):
            r.update(variant=name, members=len(seeds), median_redchi2=float(np.median(fit.redchi2[sel])),
                     median_scatter=float(np.median(model.pixel_scatter[model.mask])))
            out.append(r)
            print(f"{name:14s} {r['stars']:9s} {r['type']:4s} n={r['n']:4d} Teff {r['teff_scatter']:5.1f} "
                  f"({r['teff_bias']:+5.1f}) logg {r['logg_scatter']:.3f} [Fe/H] {r['feh_scatter']:.3f} "
                  f"redchi2 {r['median_redchi2']:.2f} s {r['median_scatter']:.4f}", flush=True)
        atomic_write_text(args.result, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
