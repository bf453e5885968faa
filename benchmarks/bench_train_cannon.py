"""Training time against The Cannon's on the same spectra, in one run (SYNTHETIC survey).

Spectra: the demo's APOGEE-label training set (``ddpayne demo`` first; 3,504 spectra, 3,909
pixels), preprocessed as the pipeline does (``pipeline.training_spectra``). The target is the
validation chi^2 of the demo model as X19 trains it (Adam, 420 epochs, 22 min on 2 cores;
``data/models/demo_emulator_adam.pt``) on the validation spectra a training holds out
(``model.validation_chi2``). ddpayne trains from scratch
with the default gradient prior and the per-pixel Levenberg-Marquardt optimizer until its
validation chi^2 reaches the target; The Cannon (thecannon, quadratic, a benchmark-only
dependency) trains on the training spectra of the same split. ``--adam N`` adds Adam's time per
epoch and its validation chi^2 after N epochs in the same run.

``--quick``: a 2,500-star simulated survey, every 8th pixel, and as target Adam's validation
chi^2 after 15 epochs in the same run (a check that everything runs, not a figure).
Prints the seconds of each and train_speedup_vs_cannon=<Cannon s / ddpayne s>.
Usage: python benchmarks/bench_train_cannon.py [--demo data/demo] [--every K] [--adam N] [--quick]
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import cannon

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io.store import open_store
from ddpayne_core.model import (
    EmulatorModel,
    TrainConfig,
    TrainingCancelled,
    split_train_valid,
    train_emulator,
    validation_chi2,
)
from ddpayne_core.paths import DEMO_OUT, MODELS
from ddpayne_core.pipeline import training_spectra
from ddpayne_core.preprocess import instrument_mask
from ddpayne_core.simulate import SurveyConfig, simulate_survey
from ddpayne_core.theory import ReferenceGradients, load_reference_gradients

QUIET = dict(log=lambda *a: None)


def train_until(flux, ivar, labels, names, wave, mask, config, reference, target=None):
    """Train; returns (seconds, epochs run, validation chi^2 of the kept weights, seconds when
    it first reached ``target`` or None)."""
    kept, t0 = [], time.perf_counter()
    try:
        train_emulator(flux, ivar, labels, names, wave, mask, config, reference,
                       on_epoch=lambda e, h: kept.append((time.perf_counter() - t0, h["valid_chi2_kept"][-1])),
                       should_stop=lambda: target is not None and kept[-1][1] <= target, **QUIET)
    except TrainingCancelled:
        pass
    reached = next((t for t, v in kept if target is not None and v <= target), None)
    return time.perf_counter() - t0, len(kept), kept[-1][1], reached


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=DEMO_OUT)
    ap.add_argument("--every", type=int, default=1, help="train every K-th pixel (both methods)")
    ap.add_argument("--adam", type=int, default=0, help="also train Adam for this many epochs")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        store = simulate_survey(Path(tmp.name) / "survey", replace(SurveyConfig(), n_stars=2500, seed=3,
                                                                   chunk=300), **QUIET)
        args.every, args.adam = 8, 15
    elif not (args.demo / "survey").exists():
        raise SystemExit(f"{args.demo / 'survey'}: no demo survey; run `ddpayne demo` first")
    else:
        store = open_store(args.demo / "survey")
    flux, ivar, labels, names = training_spectra(store)
    inst = get_instrument(store.info["instrument"])
    pix = np.arange(0, flux.shape[1], args.every)
    target = None if args.quick else \
        float(validation_chi2(EmulatorModel.load(MODELS / "demo_emulator_adam.pt"), flux, ivar, labels)[pix].sum())
    flux, ivar, wave, mask = flux[:, pix], ivar[:, pix], inst.wave[pix], instrument_mask(inst.wave, inst.name)[pix]
    ref = load_reference_gradients(TrainConfig().reference)
    ref = ReferenceGradients(ref.name, ref.wavelength[pix], ref.labels, ref.stars, ref.flux[:, pix],
                             ref.dflux[:, :, pix], ref.provenance)
    print(f"{len(flux)} training spectra x {len(pix)} pixels, {len(names)} labels")
    if args.adam:
        adam = replace(TrainConfig(), optimizer="adam", epochs=args.adam)
        seconds, n, chi2, _ = train_until(flux, ivar, labels, names, wave, mask, adam, ref)
        print(f"Adam: {n} epochs in {seconds:.1f} s ({seconds / n:.2f} s per epoch), "
              f"validation chi2 {chi2:.1f}")
        target = chi2 if args.quick else target
    lm = replace(TrainConfig(), optimizer="lm", epochs=60)
    seconds, n, chi2, reached = train_until(flux, ivar, labels, names, wave, mask, lm, ref, target)
    print(f"ddpayne (Levenberg-Marquardt): target validation chi2 {target:.1f} "
          f"({'Adam in this run' if args.quick else 'the Adam-trained model'}) reached after "
          f"{reached if reached is None else round(reached, 1)} s ({n} iterations; validation chi2 {chi2:.1f})")
    tr, _ = split_train_valid(len(flux), TrainConfig().valid_fraction, TrainConfig().seed)
    _, cannon_train_s, _ = cannon(flux[tr], ivar[tr], labels[tr], flux[tr[:2]], ivar[tr[:2]], wave, names)
    print(f"The Cannon (quadratic): trained in {cannon_train_s:.1f} s")
    print(f"train_speedup_vs_cannon={cannon_train_s / (reached or np.inf):.2f}")


if __name__ == "__main__":
    main()
