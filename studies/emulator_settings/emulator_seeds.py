"""Is the emulator's logg gradient wrong by chance or by the data? Seeds and their ensemble.

The demo model's logg gradient correlates with the ab initio one too weakly for X_flag in giants
(README, *Flags*). If that were the variance of training (random initial weights, mini-batch
order), emulators trained with other seeds would disagree with each other and their mean would
correlate better; if it is a bias set by the training data and the prior, they agree. Four
emulators, identical but for ``TrainConfig.seed``, are trained on every ``--stride``-th pixel of
the demo's APOGEE-label training set (the loss separates by pixel, ``studies/emulator_settings/emulator_study.py``)
and compared, with the committed model seen on the same pixels, at the *true* labels of a
random sample of single stars inside the training coverage (SYNTHETIC truth):

- median gradcorr per label, giants and dwarfs apart, of each model and of the seeds' mean;
- the median correlation between two seeds' gradients.

Usage (trained models cached in --work, so a rerun only evaluates; JSON written atomically):
    python studies/emulator_settings/emulator_seeds.py --store data/demo/survey --work /tmp/seeds \
        --out studies/emulator_settings/emulator_seeds.json
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from emulator_study import on_pixels, pixel_reference, training_on_pixels

from ddpayne_core.demo import COMMITTED_MODEL
from ddpayne_core.flags import emulator_dflux, nearest_reference
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig, train_emulator
from ddpayne_core.preprocess import instrument_mask
from ddpayne_core.theory import load_reference_gradients
from ddpayne_core.validation import inside_training_coverage

SEEDS = (0, 1, 2, 3)


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last axis of two (..., n_pix) arrays."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a ** 2).sum(-1) * (b ** 2).sum(-1))


def dflux_batched(model: EmulatorModel, labels: np.ndarray, steps: np.ndarray, batch: int = 100):
    """emulator_dflux over the model's unmasked pixels, ``batch`` stars at a time: (n, k, p)."""
    return np.concatenate([emulator_dflux(model, labels[a:a + batch], steps[a:a + batch])
                           for a in range(0, len(labels), batch)])[:, :, model.mask]


def medians(gc: np.ndarray, giant: np.ndarray, names) -> dict:
    return {part: {lab: round(float(np.median(gc[sel, k])), 3) for k, lab in enumerate(names)}
            for part, sel in (("giants", giant), ("dwarfs", ~giant))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="data/demo/survey")
    ap.add_argument("--work", type=Path, required=True, help="folder caching the trained seeds")
    ap.add_argument("--out", type=Path, default=Path("studies/emulator_settings/emulator_seeds.json"))
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=420)
    ap.add_argument("--n-stars", type=int, default=1500)
    args = ap.parse_args()
    store = open_store(args.store)
    inst = get_instrument(store.info["instrument"])
    pix, _, labels, names, norm, nivar = training_on_pixels(store, args.stride)
    names = list(names)
    reference = pixel_reference(load_reference_gradients(), pix)
    args.work.mkdir(parents=True, exist_ok=True)
    models = {}
    for seed in SEEDS:
        path = args.work / f"seed{seed}.pt"
        if not path.exists():
            t0 = time.perf_counter()
            config = replace(TrainConfig(), seed=seed, epochs=args.epochs)
            train_emulator(norm, nivar, labels, names, inst.wave[pix], instrument_mask(inst.wave)[pix],
                           config, reference, log=lambda *a: None).save(path)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        models[f"seed {seed}"] = EmulatorModel.load(path)
    committed = EmulatorModel.load(COMMITTED_MODEL)
    models["committed"] = on_pixels(committed, pix)
    valid = {n: m.history["valid_chi2_best"] / m.mask.sum() for n, m in models.items()}
    valid["committed"] = committed.history["valid_chi2_best"] / committed.mask.sum()

    meta = store.meta()
    meta = meta[~meta["is_binary"] & ~meta["injected_bad"]].drop_duplicates("star_id")
    stars = meta[inside_training_coverage(meta)].sample(args.n_stars, random_state=1)
    ref = reference.select_labels(names)
    idx = nearest_reference(stars["teff"], stars["logg"], stars["feh"], ref.stars["teff"],
                            ref.stars["logg"], ref.stars["feh"])
    truth = stars[names].to_numpy(dtype=np.float64)
    steps = ref.steps()[idx]
    mask = models["committed"].mask
    ab = ref.dflux[idx][:, :, mask]
    giant = (stars["logg"] < 3.8).to_numpy()
    dflux = {name: dflux_batched(m, truth, steps) for name, m in models.items()}
    seeds = [dflux[f"seed {s}"] for s in SEEDS]
    out = {"synthetic": True, "what": __doc__.split("\n\n")[0], "n_stars": int(len(stars)),
           "stride": args.stride, "epochs": args.epochs,
           "valid_chi2_per_used_pixel": {n: round(float(v), 3) for n, v in valid.items()},
           "gradcorr_median": {n: medians(correlation(d, ab), giant, names) for n, d in dflux.items()},
           "logg_gradcorr_above_cutoff_giants": {
               n: round(float((correlation(d, ab)[giant, names.index("logg")] > 0.5).mean()), 3)
               for n, d in dflux.items()}}
    mean = sum(seeds) / len(seeds)
    out["gradcorr_median"]["mean of the seeds"] = medians(correlation(mean, ab), giant, names)
    out["logg_gradcorr_above_cutoff_giants"]["mean of the seeds"] = round(
        float((correlation(mean, ab)[giant, names.index("logg")] > 0.5).mean()), 3)
    out["seed_vs_seed_median"] = medians(correlation(seeds[0], seeds[1]), giant, names)
    atomic_write_text(args.out, json.dumps(out, indent=1))
    for name in list(dflux) + ["mean of the seeds"]:
        g = out["gradcorr_median"][name]
        print(f"{name:18s} logg gradcorr giants {g['giants']['logg']:.2f} dwarfs {g['dwarfs']['logg']:.2f}"
              f"  (> 0.5 for {out['logg_gradcorr_above_cutoff_giants'][name]:.2f} of giants)")
    print("seed 0 vs seed 1, logg, giants:", out["seed_vs_seed_median"]["giants"]["logg"])


if __name__ == "__main__":
    main()
