"""Validation chi^2 against wall time for training settings, on the demo's APOGEE-label training
set (SYNTHETIC survey), against the validation chi^2 of the demo model X19's way (Adam, 420 epochs) on the same spectra
(``model.validation_chi2``, today's pipeline).

The loss separates by pixel, so every ``--every``-th pixel trains as the full model would, at a
fraction of the cost. Usage (after ``ddpayne demo``):
    python studies/training_speed/curves.py --every 8 --out studies/training_speed/curves.json \
        --setting "epochs=420" --setting "optimizer=lm,epochs=40" ...
Each --setting is comma-separated TrainConfig fields. A run stops at its epoch budget, its own
early stop, or once it reaches the target.
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io.store import open_store
from ddpayne_core.model import (
    EmulatorModel,
    TrainConfig,
    TrainingCancelled,
    train_emulator,
    validation_chi2,
)
from ddpayne_core.pipeline import training_spectra
from ddpayne_core.preprocess import instrument_mask
from ddpayne_core.theory import ReferenceGradients, load_reference_gradients


def parse(setting: str) -> dict:
    out = {}
    for item in filter(None, setting.split(",")):
        key, value = item.split("=")
        out[key] = type(getattr(TrainConfig(), key))(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=Path("data/demo"))
    ap.add_argument("--committed", type=Path, default=Path("data/models/demo_emulator_adam.pt"))
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--setting", action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    store = open_store(args.demo / "survey")
    flux, ivar, labels, names = training_spectra(store)
    inst = get_instrument(store.info["instrument"])
    pix = np.arange(0, flux.shape[1], args.every)
    target = float(validation_chi2(EmulatorModel.load(args.committed), flux, ivar, labels)[pix].sum())
    mask = instrument_mask(inst.wave, inst.name)
    ref = load_reference_gradients(TrainConfig().reference)
    ref = ReferenceGradients(ref.name, ref.wavelength[pix], ref.labels, ref.stars, ref.flux[:, pix],
                             ref.dflux[:, :, pix], ref.provenance)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(target_valid_chi2=target, every=args.every)
    for setting in args.setting:
        if setting in results:
            continue
        cfg = replace(TrainConfig(), **parse(setting))
        curve, t0 = [], time.perf_counter()

        def on_epoch(epoch, history):
            curve.append((time.perf_counter() - t0, history["valid_chi2_kept"][-1]))

        try:
            train_emulator(flux[:, pix], ivar[:, pix], labels, names, inst.wave[pix], mask[pix], cfg,
                           ref, on_epoch=on_epoch, log=lambda *a: None,
                           should_stop=lambda: curve[-1][1] <= target)
        except TrainingCancelled:
            pass
        reached = next((t for t, v in curve if v <= target), None)
        results[setting] = {"curve": curve, "seconds_to_target": reached,
                            "threads": torch.get_num_threads()}
        print(f"{setting}: {len(curve)} epochs, best {curve[-1][1]:.1f} (target {target:.1f}), "
              f"target reached after {reached} s", flush=True)
        args.out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
