"""What can be done, without the truth, about the part of the demo emulator's accuracy excess at
S/N 100 that its training labels' noise causes (studies/accuracy_floor: true labels remove it)?

Each training set of ``TRAININGS`` is trained with the committed model's TrainConfig (changed as
the entry says) on every ``--stride``-th pixel, with a few seeds (initial weights, validation
split, Levenberg-Marquardt rows; a fresh noise draw where noise is added):
- the committed APOGEE-like labels with the gradient prior, and the TRUE labels without it;
- the APOGEE-like labels plus 1x or 2x their stated noise variance (SIMEX's lambda);
- a stiffer first layer (ridge) or fewer neurons;
- more reference stars: survey stars given labels as the APOGEE-like survey would measure them.
``COMBINATIONS`` then adds trainings' spectra with weights, as one network (``stack``): the mean
of K trainings, and SIMEX's extrapolation to labels without noise (Cook & Stefanski 1994).
Each row is scored as in studies/emulator_capacity (``evaluate``): the robust scatter against
truth of fits of held-out stars observed without noise and instrument effects (the systematic
error) and of survey spectra at S/N > 80. Combinations get their own pixel scatter.

SYNTHETIC survey (`ddpayne demo`); results in ``label_noise.json``, models in --work (resumable:
a row already in the JSON is not scored again).

Usage: python studies/label_noise/run.py --demo data/demo [--work /tmp/label_noise] [--stride 8]
"""
import importlib.util
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import Emulator, EmulatorModel, train_emulator
from ddpayne_core.pipeline import training_scatter
from ddpayne_core.preprocess import instrument_mask
from ddpayne_core.simulate import HIRES_NOISE, HIRES_OFFSETS
from ddpayne_core.theory import load_reference_gradients

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "emulator_settings"))
from emulator_study import pixel_reference, study_parser  # noqa: E402

_spec = importlib.util.spec_from_file_location("emulator_capacity", HERE.parent / "emulator_capacity" / "run.py")
capacity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capacity)

# Training sets: name -> (file stem, labels: the committed model's APOGEE-like ones or the TRUE
# ones, SIMEX's lambda: extra Gaussian noise of lambda times the reference survey's stated variance
# (``HIRES_NOISE``) added to them, a fresh draw per seed; changes to the committed TrainConfig;
# number of seeds).
TRAININGS = {"APOGEE-like labels, prior": ("apogee_lambda0", "apogee", 0.0, {}, 4),
             "true labels, no prior": ("true_lambda0", "true", 0.0, {"regularize": False}, 4),
             "APOGEE-like labels + 1x their noise variance, prior": ("apogee_lambda1", "apogee", 1.0, {}, 4),
             "APOGEE-like labels + 2x their noise variance, prior": ("apogee_lambda2", "apogee", 2.0, {}, 2),
             # Fewer parameters or a stiffer first layer learn less of the labels' noise.
             "APOGEE-like labels, prior, ridge 0.1": ("apogee_ridge0.1", "apogee", 0.0, {"lm_ridge": 0.1}, 2),
             "APOGEE-like labels, prior, ridge 1": ("apogee_ridge1", "apogee", 0.0, {"lm_ridge": 1.0}, 1),
             "APOGEE-like labels, prior, 5 neurons": ("apogee_5neurons", "apogee", 0.0, {"n_hidden": 5}, 2),
             # More reference stars: survey stars with S/N >= 50 given labels as the APOGEE-like
             # survey would have measured them (truth + its offsets + its noise), as if it had
             # observed 3,504 random ones (the control) or all 7,703.
             "3,504 survey stars, APOGEE-like noisy labels, prior": ("pool3504", "pool 3504", 0.0, {}, 1),
             "7,703 survey stars, APOGEE-like noisy labels, prior": ("pool_all", "pool all", 0.0, {}, 1)}
_A, _T, _A1, _A2 = list(TRAININGS)[:4]
# Combinations: name -> [(training, seed, weight)]. SIMEX (Cook & Stefanski 1994) extrapolates
# the emulator's spectrum from lambda = 0, 1, 2 to lambda = -1, labels without noise:
# linearly 2 f_0 - f_1, quadratically 3 f_0 - 3 f_1 + f_2 (each f the mean of two seeds).
COMBINATIONS = {
    f"{_A}: mean of seeds 0-1": [(_A, 0, 0.5), (_A, 1, 0.5)],
    f"{_A}: mean of seeds 0-3": [(_A, k, 0.25) for k in range(4)],
    f"{_T}: mean of seeds 0-1": [(_T, 0, 0.5), (_T, 1, 0.5)],
    f"{_T}: mean of seeds 0-3": [(_T, k, 0.25) for k in range(4)],
    f"{_A1}: mean of seeds 0-1": [(_A1, 0, 0.5), (_A1, 1, 0.5)],
    f"{_A2}: mean of seeds 0-1": [(_A2, 0, 0.5), (_A2, 1, 0.5)],
    "SIMEX, linear: 2 f_0 - f_1": [(_A, 0, 1.0), (_A, 1, 1.0), (_A1, 0, -0.5), (_A1, 1, -0.5)],
    f"{_A1}: mean of seeds 0-3": [(_A1, k, 0.25) for k in range(4)],
    "SIMEX, linear, four seeds each: 2 f_0 - f_1": [(_A, k, 0.5) for k in range(4)]
    + [(_A1, k, -0.25) for k in range(4)],
    "SIMEX, quadratic: 3 f_0 - 3 f_1 + f_2": [(_A, 0, 1.5), (_A, 1, 1.5), (_A1, 0, -1.5),
                                              (_A1, 1, -1.5), (_A2, 0, 0.5), (_A2, 1, 0.5)],
}


def stack(models: list[EmulatorModel], weights=None) -> EmulatorModel:
    """sum_k weights[k] * models[k]'s spectrum (default: the mean) as one emulator: hidden layers
    side by side, the second layer block-diagonal, output weights times weights[k]. Every member
    is re-expressed in the first one's label scaling (its first layer absorbs the affine map
    between the two), so members trained on different labels combine too. The pixel scatter is
    left for the caller to estimate."""
    first = models[0]
    weights = np.full(len(models), 1.0 / len(models)) if weights is None else np.asarray(weights, float)
    nets = [m.net for m in models]
    out = Emulator(first.net.n_label, first.net.n_pix, sum(n.n_hidden for n in nets))
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)
    w1, b1 = [], []
    for m in models:    # x_m = a x + c, x in the first model's scaling
        a = first.scaler.span / m.scaler.span
        c = (first.scaler.lo - m.scaler.lo) / m.scaler.span + 0.5 * a - 0.5
        w1.append(m.net.W1.detach() * f32(a))
        b1.append(m.net.b1.detach() + m.net.W1.detach() @ f32(c))
    with torch.no_grad():
        out.W1.copy_(torch.cat(w1, 1))
        out.b1.copy_(torch.cat(b1, 1))
        out.W2.zero_()
        start = 0
        for n in nets:
            out.W2[:, start:start + n.n_hidden, start:start + n.n_hidden] = n.W2
            start += n.n_hidden
        out.b2.copy_(torch.cat([n.b2 for n in nets], 1))
        out.w.copy_(torch.cat([n.w * wk for n, wk in zip(nets, weights)], 1))
        out.fbar.copy_(sum(n.fbar * wk for n, wk in zip(nets, weights)))
    return replace(first, net=out, pixel_scatter=None,
                   config={**first.config, "combination_weights": weights.tolist()}, history={})


def main():
    ap = study_parser(__doc__, str(HERE / "label_noise.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/label_noise"))
    ap.add_argument("--n-fit", type=int, default=1000)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store, _, base, pix, (norm, nivar, labels), true, names, tests, pool_set = \
        capacity.evaluation_sets(args.demo, args.stride, args.n_fit)
    inst = get_instrument(store.info["instrument"])
    reference = pixel_reference(load_reference_gradients(base.reference), pix)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {
        "synthetic": True, "stride": args.stride, "n_train": len(true), "n_fit": args.n_fit,
        "rows": {}}

    def record(name, model, seconds):
        """Score ``model`` as row ``name`` unless the JSON has it already, and print the row."""
        if name not in doc["rows"]:
            doc["rows"][name] = {"seconds": seconds, **capacity.evaluate(model, tests, names)}
            atomic_write_text(args.out, json.dumps(doc, indent=1, default=float))
        print(f"{name}: noise-free systematic error " + ", ".join(
            f"{lab} {v:.3g}" for lab, v in doc["rows"][name]["systematic_error_noise_free"].items()),
            flush=True)

    sigma = np.array([HIRES_NOISE.get(lab, HIRES_NOISE["xfe"]) for lab in names])
    models = {}
    for t, (stem, kind, lam, changes, n_seeds) in TRAININGS.items():
        for seed in range(n_seeds):
            path = args.work / f"{stem}_seed{seed}.pt"
            t0 = time.time()
            if not path.exists():
                f, iv, y = (norm, nivar, true if kind == "true" else labels)
                if kind.startswith("pool"):
                    n = kind.split()[1]
                    f, iv, y = pool_set(None if n == "all" else int(n))
                    offset = np.array([HIRES_OFFSETS["apogee"].get(lab, 0.0) for lab in names])
                    y = y + offset + sigma * np.random.default_rng(2000 + seed).normal(size=y.shape)
                y = y + np.sqrt(lam) * sigma * np.random.default_rng(1000 + seed).normal(size=y.shape)
                model = train_emulator(f, iv, y, names, inst.wave[pix], instrument_mask(inst.wave)[pix],
                                       replace(base, seed=seed, **changes), reference,
                                       log=lambda *a: None)
                model.pixel_scatter = training_scatter(model, f, iv)
                model.save(path)
            models[t, seed] = EmulatorModel.load(path)
            record(f"{t}: seed {seed}", models[t, seed], time.time() - t0)
    for name, terms in COMBINATIONS.items():
        if name in doc["rows"]:     # scored already: no need to build and rescatter it
            record(name, None, 0.0)
            continue
        t0 = time.time()
        combined = stack([models[t, k] for t, k, _ in terms], [w for _, _, w in terms])
        combined.pixel_scatter = training_scatter(combined, norm, nivar)
        record(name, combined, time.time() - t0)


if __name__ == "__main__":
    main()
