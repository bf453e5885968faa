"""Do the training stars whose reference labels the model cannot reproduce pull the emulator?
LASP's labels have heavy tails (fitted minus LASP on the committed model's own F/G training
stars: robust scatter 43 K, standard deviation 130 K; 4 % beyond 3 sigma): a least-squares
emulator (``model.levenberg``) gives each of them full weight. X19 sec. 3.1 removed what it
could identify before training (binaries by parallax, spectra with > 10 bad pixels); here the
model itself identifies them, as a self-cleaning training set: fit the training spectra with the
committed model, drop those whose fitted label lies more than ``k`` robust sigmas (per spectral
type: A against F/G, whose scatters differ 5x) from its reference label in any label, retrain
(``real.REAL_TRAIN_CONFIG``, same seed and split) on the rest, and score training and held-out
stars with the report's ``real_validation``. The training's own seed moves held-out F/G Teff by
+-2 K (studies/real_training/ensemble.py), so with ``--seeds`` each seed is trained with and
without the cleaning (the same spectra dropped, found by the committed model) and compared in
pairs. REAL LAMOST DR10 spectra, LASP labels.

Usage: python studies/real_training/clean_training.py [--bundle data/demo_real]
       [--first-model M.pt] [--work /tmp/clean_training] [--k 4 3] [--seeds 0]
       [--result studies/real_training/clean_training.json]
The results committed here were measured with the real-data model trained on every training star
(commit 6999c4c; ``git show 6999c4c:data/models/lamost_dr10_lasp.pt > /tmp/uncleaned.pt`` and
``--first-model /tmp/uncleaned.pt``), which the bundle held then; the committed model is now the
cleaned one.
(run ``ddpayne demo --real`` first; each training takes about 3.5 min on 2 cores; resumable:
trained models are kept in --work, where ensemble.py's seed<N>.pt are reused)
"""
import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from common import labelled_spectra, score

from ddpayne_core.fit import fit_spectra
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import train_from_store
from ddpayne_core.real import REAL_FIT_CONFIG, REAL_TRAIN_CONFIG, RealDataConfig, training_meta


def robust_z(resid: np.ndarray) -> np.ndarray:
    """|x - median| / (1.4826 MAD) of a 1-d array (NaN stays NaN)."""
    med = np.nanmedian(resid)
    return np.abs(resid - med) / (1.4826 * np.nanmedian(np.abs(resid - med)))


def outliers(meta: pd.DataFrame, fitted: np.ndarray, cfg: RealDataConfig, k: float) -> np.ndarray:
    """(n_spec,) True for the training spectra whose fitted label is more than ``k`` robust sigmas
    from the reference label in any of cfg.label_names, sigma taken per group (A; F and G)."""
    out = np.zeros(len(meta), bool)
    train = ~meta["heldout"].to_numpy()
    hot = meta["spectral_type"].to_numpy() == "A"
    for group in (hot, ~hot):
        sel = train & group
        for j, lab in enumerate(cfg.label_names):
            z = robust_z(fitted[sel, j] - meta[f"{cfg.prefix}_{lab}"].to_numpy()[sel])
            out[np.flatnonzero(sel)[~(z <= k)]] = True          # a failed fit (NaN) goes too
    return out


def trained(args, cfg: RealDataConfig, meta: pd.DataFrame, fitted: np.ndarray,
            store_meta: pd.DataFrame, committed: EmulatorModel, k: float | None, seed: int):
    """(model, dropped): the committed model (seed 0, no cleaning) or one trained with ``seed``
    (``real.REAL_TRAIN_CONFIG`` otherwise) on the training spectra less those ``outliers`` drops
    at ``k`` (none when k is None); dropped: (n_spec,) bool."""
    if k is None:
        dropped = np.zeros(len(meta), bool)
        if seed == 0:
            return committed, dropped
        path = args.work / f"seed{seed}.pt"
    else:
        dropped = outliers(meta, fitted, cfg, k)
        path = args.work / (f"clean_k{k:g}.pt" if seed == 0 else f"clean_k{k:g}_seed{seed}.pt")
    if path.exists():
        return EmulatorModel.load(path), dropped
    print(f"seed {seed}, k {k}: {int(dropped.sum())} of {int((~meta['heldout']).sum())} training "
          "spectra dropped; training", flush=True)
    m = training_meta(store_meta, cfg)
    drop_files = set(meta.loc[dropped, "filename"])
    for lab in cfg.label_names:
        m.loc[m["filename"].isin(drop_files), f"{cfg.prefix}_{lab}"] = np.nan
    model = train_from_store(args.bundle / "survey", path, cfg.training_set(),
                             replace(REAL_TRAIN_CONFIG, seed=seed), meta=m, log=lambda *a: None)
    return model, dropped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=DEMO_OUT.parent / "demo_real")
    ap.add_argument("--work", type=Path, default=Path("/tmp/clean_training"))
    ap.add_argument("--first-model", type=Path, default=None,
                    help="the model trained on every training star (default: the bundle's)")
    ap.add_argument("--k", type=float, nargs="+", default=[4.0, 3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("clean_training.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = RealDataConfig()
    meta, flux, ivar = labelled_spectra(args.bundle, cfg)
    committed = EmulatorModel.load(args.first_model or args.bundle / "model.pt")
    first = fit_spectra(committed, flux, ivar, REAL_FIT_CONFIG)
    store_meta = pd.read_parquet(args.bundle / "labels.parquet")

    out = []
    for seed in args.seeds:
        for k in [None] + args.k:
            model, dropped = trained(args, cfg, meta, first.labels, store_meta, committed, k, seed)
            name = ("no cleaning" if k is None else f"drop > {k:g} sigma") + f", seed {seed}"
            fit = first if (k is None and seed == 0) else fit_spectra(model, flux, ivar, REAL_FIT_CONFIG)
            for r, sel in score(meta, fit, cfg):
                r.update(variant=name, k=k, seed=seed, n_dropped=int((dropped & sel).sum()))
                out.append(r)
                print(f"{name:28s} {r['stars']:9s} {r['type']:4s} n={r['n']:4d} dropped {r['n_dropped']:3d} "
                      f"Teff {r['teff_scatter']:5.1f} ({r['teff_bias']:+5.1f}) logg {r['logg_scatter']:.3f} "
                      f"[Fe/H] {r['feh_scatter']:.3f}", flush=True)
        atomic_write_text(args.result, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
