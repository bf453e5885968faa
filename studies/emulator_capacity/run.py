"""Is the emulator's own error (what is left of the accuracy excess with true labels and no prior,
logg and [Fe/H] at ~2.2x the Cramer-Rao bound; studies/accuracy_floor) a matter of capacity,
of the Levenberg-Marquardt training's stopping point, of its ridge, or of how many stars it
learns from? The committed demo model's
TrainConfig on the training stars' TRUE labels without the gradient prior (``SETTINGS``: its
changes), on every ``--stride``-th pixel (the loss separates by pixel, so these are the networks
a full training gives those pixels; ``studies/emulator_settings``). Per setting:

- the best validation chi2 per used pixel (held-out training spectra at their true labels);
- the emulator's systematic error in label units: robust scatter of fits against truth of
  ``--n-fit`` held-out stars observed without noise and instrument effects (S/N 10^4,
  ``simulate.reobserve`` with no effects, shifted by the true RV), on the same pixels;
- the robust scatter of fits of as many survey spectra at S/N > 80 against truth.

SYNTHETIC survey (`ddpayne demo`); results in ``emulator_capacity.json``, models in --work
(resumable: a setting already in the JSON is skipped).

Usage: python studies/emulator_capacity/run.py --demo data/demo [--work /tmp/emulator_capacity]
       [--stride 8] [--settings NAME ...]
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig, train_emulator
from ddpayne_core.pipeline import training_scatter
from ddpayne_core.preprocess import instrument_mask, preprocess_batch
from ddpayne_core.simulate import SurveyConfig
from ddpayne_core.simulate.survey import TRUTH_EMULATOR, reobserve

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "emulator_settings"))
from emulator_study import on_pixels, study_parser, training_on_pixels  # noqa: E402

COMMITTED = "committed (APOGEE-like labels, prior)"
# Changes to the committed model's TrainConfig; every setting trains on true labels, no prior.
SETTINGS = {
    "10 neurons": {"n_hidden": 10},
    "20 neurons": {"n_hidden": 20},
    "10 neurons, no ridge": {"n_hidden": 10, "lm_ridge": 0.0},
    "10 neurons, LM to 0.01 % (patience 10)": {"n_hidden": 10, "lm_tolerance": 1e-4,
                                               "lm_patience": 10, "epochs": 1000},
    # "pool": train on this many single stars drawn from every star of the survey with S/N >= 50
    # (the test stars excluded), not only those the APOGEE-like survey observed.
    "10 neurons, 3,504 survey stars": {"n_hidden": 10, "pool": 3504},
    "10 neurons, every survey star with S/N >= 50": {"n_hidden": 10, "pool": None},
}


def evaluation_sets(demo: Path, stride: int, n_fit: int):
    """What every setting is trained on and tested with: (store, committed model, its TrainConfig,
    pix (n_used,), the APOGEE-like training set (norm, nivar, labels) on those pixels, its TRUE
    labels (n_train, n_label), label names, tests: name -> (norm, nivar, true labels) of
    ``n_fit`` held-out stars, pool_set: n -> a training set of n random survey stars at S/N >= 50
    (None: all) with their true labels)."""
    store = open_store(demo / "survey")
    meta, inst = store.meta(), get_instrument(store.info["instrument"])
    cfg = SurveyConfig(**store.info["provenance"]["config"])
    committed = EmulatorModel.load(demo / "model.pt")
    pix, rows, labels, names, norm, nivar = training_on_pixels(store, stride)
    true = meta.loc[rows, names].to_numpy(dtype=np.float64)
    held_out = (~meta["is_binary"] & ~meta["injected_bad"]
                & ~meta["star_id"].isin(meta["star_id"].to_numpy()[rows]))

    def test_set(flux, ivar, rv, labels_true):
        return (*(a[:, pix] for a in preprocess_batch(flux, ivar, rv, inst)), labels_true)

    survey_rows = meta.index[held_out & (meta["snr"] > 80)].to_numpy()[:n_fit]
    tests = {"recovery_scatter_snr_gt_80": test_set(
        *store.read_rows(survey_rows), meta["rv"].to_numpy()[survey_rows],
        meta.loc[survey_rows, names].to_numpy(dtype=np.float64))}
    stars = meta[held_out & (meta["visit"] == 0)].sample(n_fit, random_state=0)
    flux, ivar, quiet = reobserve(stars, TRUTH_EMULATOR, replace(cfg, effects=()), 1e4, 1, 0)
    tests["systematic_error_noise_free"] = test_set(flux, ivar, quiet["rv_true"].to_numpy(),
                                                    quiet[list(names)].to_numpy(dtype=np.float64))

    tested = set(meta.loc[survey_rows, "star_id"]) | set(stars["star_id"])
    pool = meta[~meta["is_binary"] & ~meta["injected_bad"] & (meta["snr"] >= 50)
                & ~meta["star_id"].isin(tested)]
    pool = pool.sort_values("snr", ascending=False).drop_duplicates("star_id")

    def pool_set(n):
        chosen = pool if n is None else pool.sample(n, random_state=0)
        r = np.sort(chosen.index.to_numpy())
        f, iv = store.read_rows(r)
        return (*test_set(f, iv, meta["rv"].to_numpy()[r], None)[:2],
                meta.loc[r, list(names)].to_numpy(dtype=np.float64))

    return (store, committed, TrainConfig.of_model(committed), pix, (norm, nivar, labels), true,
            names, tests, pool_set)


def evaluate(model: EmulatorModel, tests: dict, names) -> dict:
    """test name -> label -> robust scatter of the model's fits against truth."""
    out = {}
    for key, (f, iv, lab_true) in tests.items():
        fit = fit_spectra(model, f, iv)
        out[key] = {lab: robust_bias_scatter(fit.labels[:, k] - lab_true[:, k])[1]
                    for k, lab in enumerate(names)}
    return out


def main():
    ap = study_parser(__doc__, str(HERE / "emulator_capacity.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/emulator_capacity"))
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--n-fit", type=int, default=1000)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store, committed, base, pix, (norm, nivar, _), true, names, tests, pool_set = \
        evaluation_sets(args.demo, args.stride, args.n_fit)
    inst = get_instrument(store.info["instrument"])
    rows_n = len(true)

    doc = json.loads(args.out.read_text()) if args.out.exists() else {
        "synthetic": True, "stride": args.stride, "n_train": rows_n, "n_fit": args.n_fit,
        "settings": {}}

    def record(name, model, seconds, n_used_pixels, n_train=rows_n):
        """n_used_pixels: those the model's validation chi2 was summed over."""
        row = doc["settings"][name] = {
            "train_seconds": seconds, "n_train": n_train, "n_iterations": len(model.history.get("epoch", [])),
            "valid_chi2_per_used_pixel_best": model.history["valid_chi2_best"] / n_used_pixels}
        row.update(evaluate(model, tests, names))
        atomic_write_text(args.out, json.dumps(doc, indent=1, default=float))
        print(f"{name} ({seconds:.0f} s, {row['n_iterations']} iterations): validation chi2 / pixel "
              f"{row['valid_chi2_per_used_pixel_best']:.3f}; noise-free systematic error "
              + ", ".join(f"{lab} {v:.3g}" for lab, v in row["systematic_error_noise_free"].items()),
              flush=True)

    if COMMITTED not in doc["settings"]:
        record(COMMITTED, on_pixels(committed, pix), 0.0,
               int(committed.mask.sum()))      # its validation chi2 is over every pixel
    for name in args.settings:
        if name in doc["settings"]:
            continue
        path = args.work / f"{name.split(',')[0].replace(' ', '_')}_{list(SETTINGS).index(name)}.pt"
        t0 = time.time()
        changes = dict(SETTINGS[name])
        train = pool_set(changes.pop("pool")) if "pool" in changes else (norm, nivar, true)
        if path.exists():
            model = EmulatorModel.load(path)
        else:
            model = train_emulator(*train, names, inst.wave[pix], instrument_mask(inst.wave)[pix],
                                   replace(base, regularize=False, **changes), None, log=lambda *a: None)
            if base.pixel_scatter:      # as the committed model, whose fits add it to the noise
                model.pixel_scatter = training_scatter(model, *train[:2])
            model.save(path)
        record(name, model, time.time() - t0, int(model.mask.sum()), len(train[0]))


if __name__ == "__main__":
    main()
