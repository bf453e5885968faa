"""Which pseudo-continuum weights let survey gradients match ab initio gradients?

A perfect emulator of the *pipeline* (the truth emulator's spectrum made into an observation:
continuum, photon-noise ivar, no noise drawn, then ``preprocess_batch``) is differentiated in
each label with the nearest reference star's step, and its gradient correlated (X_gradcorr)
with that star's ab initio gradient, once with each ``normalize.pseudo_continuum`` weighting.
The truth emulator was trained on ab initio spectra normalized with every pixel alike, so the
mask weights are the same normalization for both and the ivar weights (docs/spec.md sec. 3, Z24 eqs.
1-2) are not: photon noise weighs line cores above the continuum beside them. Whatever the
emulator, its gradients can match the ab initio ones only as well as this ceiling allows.

Usage (SYNTHETIC; writes JSON atomically):
    python studies/continuum_weighting/continuum_weighting.py --store data/demo/survey --out studies/continuum_weighting/continuum_weighting.json
"""
import argparse
import json
from dataclasses import replace

import numpy as np

from ddpayne_core.demo import model_reference
from ddpayne_core.flags import nearest_reference
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.simulate import TRUTH_EMULATOR, expected_observation

MODEL = "data/models/demo_emulator.pt"  # only its labels, mask and reference grid are used


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the rows of a and b (n, p) -> (n,)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="data/demo/survey")
    ap.add_argument("--out", default="studies/continuum_weighting/continuum_weighting.json")
    ap.add_argument("--n-stars", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()

    model, truth = EmulatorModel.load(MODEL), EmulatorModel.load(TRUTH_EMULATOR)
    meta, inst, mask = open_store(args.store).meta(), get_instrument("lamost"), model.mask
    stars = meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]
                 & (meta["teff"] < 7500)].sample(args.n_stars, random_state=args.seed)
    stars = stars.assign(lsf_extra_pix=0.0, snr=100.0)
    featured = [lab for lab in model.labels if lab not in ("cu_fe", "eu_fe")]
    ref = model_reference(model).select_labels(featured)
    true = stars[list(truth.labels)].to_numpy(dtype=np.float64, copy=True)
    true[:, [truth.labels.index(l) for l in ("cu_fe", "eu_fe") if l in truth.labels]] = 0.0
    idx = nearest_reference(stars["teff"].to_numpy(), stars["logg"].to_numpy(),
                            stars["feh"].to_numpy(), ref.stars["teff"], ref.stars["logg"],
                            ref.stars["feh"])
    steps = ref.steps()[idx]
    cool_giants = ((stars["logg"] < 3.0) & (stars["teff"] < 4500)).to_numpy()

    def observed(labels, weights):
        if weights == "ab initio":  # the truth's own spectra, normalized as ab initio ones are
            return replace(truth, mask=mask).predict(labels)[:, mask]
        flux, ivar = expected_observation(truth.predict(labels), inst.wave, stars)
        return preprocess_batch(flux, ivar, np.zeros(len(labels)), inst, weights)[0][:, mask]

    result = {"synthetic": True, "what": __doc__.split("\n\n")[0], "n_stars": len(stars),
              "n_cool_giants (logg < 3, Teff < 4500 K)": int(cool_giants.sum()),
              "snr": 100.0, "weights": {}}
    for weights in ("ivar", "mask", "ab initio"):
        base = observed(true, weights)
        row = {}
        for k, lab in enumerate(featured):
            stepped = true.copy()
            stepped[:, truth.labels.index(lab)] += steps[:, k]
            g = correlation(observed(stepped, weights) - base, ref.dflux[idx, k][:, mask])
            row[lab] = {"median": float(np.median(g)), "fraction_above_cutoff": float(np.mean(g > 0.5)),
                        "median_cool_giants": float(np.median(g[cool_giants]))}
        result["weights"][weights] = row
        print(weights, {lab: round(v["median"], 2) for lab, v in row.items()}, flush=True)
    atomic_write_text(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
