"""Which training settings give the demo emulator gradient spectra that pass X_flag?

The training loss separates by pixel (``loss.py``), so a model trained on every ``--stride``-th
pixel has the networks full training would give those pixels, in a fraction of the time; the
gradient correlation over a regular subsample of pixels estimates the one over all of them.
Each setting is trained that way on the demo survey's APOGEE-label training set and compared
with the committed model seen on the same pixels (``Emulator.pixel_subset``):

- X_flag 1 fraction per featured label and X_flag 0 fraction of the featureless label, with
  gradcorr at the *true* labels of a random sample of the catalogue (the same for every model,
  binned by the catalogue's fitted Teff, logg, [Fe/H] as the catalogue is);
- the same fractions against each grid of REFERENCES (``by_reference``: a model regularized
  with more reference stars is also flagged against them, which changes the nearest reference
  star; the Table 1 column compares every model on the same footing);
- the best validation chi2 per used pixel;
- label recovery against truth (robust scatter) of fits of high-S/N spectra on these pixels
  (noise-limited errors are sqrt(stride) larger than a full model's; the systematic floor, which
  dominates at high S/N, is what is compared), and the same fits' ``report.partial_slopes``: how
  much each fitted label follows its own true variation, with its bootstrap sigma (``--rerun
  NAME`` trains and evaluates a row again).

A setting is a dict of ``TrainConfig`` fields, plus ``train_fraction`` (train on a uniform random
fraction of the training set), ``true_labels`` (train on the synthetic survey's true labels in place
of the high-resolution survey's noisy ones: the part of the error that label noise causes) and
``d_scale`` as "xF" (every label's default D times F).

Usage (writes JSON atomically, marked synthetic, a row per setting under "settings", resumable):
    python studies/emulator_settings/emulator_study.py --demo /tmp/demo_new --out studies/emulator_settings/emulator_settings.json
"""
import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core import constants as C
from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.demo import COMMITTED_MODEL
from ddpayne_core.fit import fit_spectra
from ddpayne_core.flags import gradcorr, reflag
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import (
    EmulatorModel,
    TrainConfig,
    TrainingSetConfig,
    default_d_scale,
    select_training,
    train_emulator,
)
from ddpayne_core.preprocess import instrument_mask, preprocess_batch
from ddpayne_core.theory import ReferenceGradients, load_reference_gradients
from ddpayne_core.validation import flag_fractions, partial_slopes

SETTINGS = {

    "committed (10 neurons, D 5/50, 420 epochs)": None,
    "baseline 420 epochs": {"epochs": 420, "clip_sigma": 0.0},
    "D 50 for Teff, logg, vmic": {"epochs": 420, "clip_sigma": 0.0,
                                  "d_scale": {"teff": 50.0, "logg": 50.0, "vmic": 50.0}},
    "20 neurons": {"epochs": 420, "clip_sigma": 0.0, "n_hidden": 20},
    "D x10 for every label": {"epochs": 420, "clip_sigma": 0.0, "d_scale": "x10"},
    "outlier clipping 5 sigma every 20 epochs": {"epochs": 420, "clip_sigma": 5.0, "clip_every": 20},
    "36 reference stars (Table 1 + lamost-isochrone)": {
        "epochs": 420, "clip_sigma": 0.0, "reference": "lamost-table1+lamost-isochrone"},
    "36 reference stars, D x 16/36 (Table 1's total prior weight)": {
        "epochs": 420, "clip_sigma": 0.0, "reference": "lamost-table1+lamost-isochrone",
        "d_scale": "x0.444"},
    "D x10 for N, Mn, Ni (the weak-feature labels)": {
        "epochs": 420, "clip_sigma": 0.0, "d_scale": {"n_fe": 500.0, "mn_fe": 500.0, "ni_fe": 500.0}},
    "D x10 for Teff, logg, vmic, N, Mn, Ni": {
        "epochs": 420, "clip_sigma": 0.0, "d_scale": {"teff": 50.0, "logg": 50.0, "vmic": 50.0,
                                                      "n_fe": 500.0, "mn_fe": 500.0, "ni_fe": 500.0}},
    "no regularization": {"epochs": 420, "clip_sigma": 0.0, "regularize": False},
    "half the training stars (random)": {"epochs": 420, "clip_sigma": 0.0, "train_fraction": 0.5},
    "a quarter of the training stars (random)": {"epochs": 420, "clip_sigma": 0.0,
                                                 "train_fraction": 0.25},
    "true labels for the training stars (high-resolution labels without noise)": {
        "epochs": 420, "clip_sigma": 0.0, "true_labels": True},
}


def pixel_reference(ref: ReferenceGradients, pix) -> ReferenceGradients:
    return ReferenceGradients(ref.name, ref.wavelength[pix], ref.labels, ref.stars, ref.flux[:, pix],
                              ref.dflux[:, :, pix], ref.provenance)


def on_pixels(model: EmulatorModel, pix) -> EmulatorModel:
    """``model`` seen on the pixels ``pix`` only."""
    scatter = None if model.pixel_scatter is None else model.pixel_scatter[pix]
    return replace(model, net=model.net.pixel_subset(pix), wave=model.wave[pix], mask=model.mask[pix],
                   pixel_scatter=scatter)


def study_parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """Command line of a study of the demo emulator on every ``--stride``-th pixel."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished `ddpayne demo` folder")
    ap.add_argument("--out", type=Path, default=Path(default_out))
    ap.add_argument("--stride", type=int, default=8)
    return ap


def training_on_pixels(store, stride: int):
    """The demo's APOGEE-label training set on every ``stride``-th pixel: (pix (n_pix_used,),
    rows (n,), labels (n, n_label), names, norm, nivar (n, n_pix_used) normalized)."""
    meta, inst = store.meta(), get_instrument(store.info["instrument"])
    pix = np.arange(inst.wave.size)[::stride]
    rows, labels, names = select_training(meta, TrainingSetConfig())
    flux, ivar = store.read_rows(rows)
    norm, nivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
    return pix, rows, labels, names, norm[:, pix], nivar[:, pix]


REFERENCES = ("lamost-table1", "lamost-table1+lamost-isochrone", "lamost-table1-galactic")
# The settings below vary X19's training, so they start from its Table 1 prior (the study
# predates the lamost-table1-galactic default).
BASE = replace(TrainConfig(), reference=C.TABLE1_GRID)


def evaluate(model, truth_meta, sample, fit_rows, norm, nivar, references, featureless) -> dict:
    """X_flag fractions (gradcorr at true labels) against the model's own reference grid and
    against each of ``references`` (name -> pixel-subset grid), recovery scatter of fits at
    high S/N."""
    x = truth_meta.loc[sample.index, list(model.labels)].to_numpy(dtype=np.float64)
    by_reference = {}
    for name, reference in references.items():
        g = gradcorr(model, x, reference)
        table = sample[["teff", "logg", "feh", "snr"]].copy()
        for k, lab in enumerate(model.labels):
            table[f"{lab}_gradcorr"] = g[:, k]
        by_reference[name] = flag_fractions(reflag(table, model.labels), model.labels, featureless)
    fractions = by_reference[model.config.get("reference", C.TABLE1_GRID)]
    fit = fit_spectra(model, norm, nivar)
    true = truth_meta.loc[fit_rows, list(model.labels)].to_numpy(dtype=np.float64)
    scatter = {lab: robust_bias_scatter(fit.labels[:, k] - true[:, k])[1]
               for k, lab in enumerate(model.labels)}
    ok = np.flatnonzero(np.all(np.isfinite(fit.labels), axis=1))
    partial = partial_slopes(fit.labels[ok], true[ok])
    # bootstrap over the fitted stars: the slopes' sampling error, for comparing settings
    boot = np.random.default_rng(0).choice(ok, size=(200, ok.size))
    spread = np.std([partial_slopes(fit.labels[b], true[b]) for b in boot], axis=0)
    return {**fractions, "by_reference": by_reference, "recovery_scatter_snr_gt_80": scatter,
            "partial_slope_snr_gt_80": dict(zip(model.labels, partial.tolist())),
            "partial_slope_snr_gt_80_bootstrap_sigma": dict(zip(model.labels, spread.tolist()))}


def main():
    ap = study_parser(__doc__, "studies/emulator_settings/emulator_settings.json")
    ap.add_argument("--n-flag-sample", type=int, default=3000)
    ap.add_argument("--n-fit", type=int, default=1000)
    ap.add_argument("--rerun", nargs="*", default=[], choices=list(SETTINGS),
                    help="settings to train and evaluate again although the JSON has them")
    args = ap.parse_args()

    store = open_store(args.demo / "survey")
    meta = store.meta()
    featureless = store.info["provenance"]["config"]["featureless"]
    inst = get_instrument(store.info["instrument"])
    pix, rows, labels, names, norm, nivar = training_on_pixels(store, args.stride)
    references = {name: pixel_reference(load_reference_gradients(name), pix) for name in REFERENCES}
    committed = EmulatorModel.load(COMMITTED_MODEL)

    catalog = pd.read_parquet(args.demo / "catalog.parquet",
                              columns=["specid", "teff", "logg", "feh", "snr", "fit_status"])
    clean = ~meta["is_binary"] & ~meta["injected_bad"] & (catalog["fit_status"] != 2)
    sample = catalog[clean].sample(min(args.n_flag_sample, int(clean.sum())), random_state=0)
    fit_rows = meta.index[clean & (meta["snr"] > 80)].to_numpy()[:args.n_fit]
    f, iv = store.read_rows(fit_rows)
    fit_norm, fit_nivar = preprocess_batch(f, iv, meta["rv"].to_numpy()[fit_rows], inst)
    fit_norm, fit_nivar = fit_norm[:, pix], fit_nivar[:, pix]

    doc = json.loads(args.out.read_text()) if args.out.exists() else {
        "synthetic": True,
        "what": "demo emulator training settings vs X_flag, on the SYNTHETIC demo survey",
        "stride": args.stride, "training_set": asdict(TrainingSetConfig()), "settings": {}}
    results = doc["settings"]
    for name, setting in SETTINGS.items():
        if name in results and name not in args.rerun:
            continue
        t0 = time.perf_counter()
        if setting is None:
            model = on_pixels(committed, pix)
            valid = committed.history["valid_chi2_best"] / int(committed.mask.sum())
        else:
            setting = dict(setting)
            if isinstance(setting.get("d_scale"), str):  # "xF": every label's default D times F
                factor = float(setting["d_scale"][1:])
                setting["d_scale"] = {lab: factor * d for lab, d in zip(names, default_d_scale(names))}
            # "train_fraction": a uniform random subset of the training set (every population
            # thinned alike, unlike TrainingSetConfig.max_stars, which keeps every metal-poor star).
            fraction = setting.get("train_fraction", 1.0)
            use = np.sort(np.random.default_rng(0).permutation(len(rows))[:round(fraction * len(rows))])
            train_labels = (meta.loc[rows, names].to_numpy(dtype=np.float64)
                            if setting.get("true_labels") else labels)
            config = replace(BASE, **{k: v for k, v in setting.items()
                                               if k not in ("train_fraction", "true_labels")})
            model = train_emulator(norm[use], nivar[use], train_labels[use], names, inst.wave[pix],
                                   instrument_mask(inst.wave)[pix], config,
                                   references.get(config.reference), log=lambda *a: None)
            valid = model.history["valid_chi2_best"] / int(model.mask.sum())
        row = {"setting": setting, "n_train_stars": int(len(use)) if setting is not None else None,
               "train_seconds": time.perf_counter() - t0,
               "valid_chi2_per_used_pixel_best": valid,
               **evaluate(model, meta, sample, fit_rows, fit_norm, fit_nivar, references,
                          featureless)}
        results[name] = row
        atomic_write_text(args.out, json.dumps(doc, indent=2, default=float))
        print(name, json.dumps({k: row[k] for k in ("valid_chi2_per_used_pixel_best",
                                                     "featured_flag1_fraction",
                                                     "featureless_flag0_fraction")},
                               default=float), flush=True)


if __name__ == "__main__":
    main()
