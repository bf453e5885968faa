"""How close the demo emulator comes to the noise on its own training spectra: the median over
spectra of chi^2 per used pixel with the emulator at the training (high-resolution, noisy) labels
and at the true labels (SYNTHETIC survey only). The validation chi^2 in data/models/*.json is a
mean, which a few spectra with cosmic rays or sky and telluric residuals raise.

Usage: python scripts/emulator_chi2.py --demo data/demo [--n 800]
"""
import argparse
from pathlib import Path

import numpy as np

from ddpayne_core.demo import COMMITTED_MODEL
from ddpayne_core.emulator import EmulatorModel
from ddpayne_core.instrument import get_instrument
from ddpayne_core.spectra import preprocess_batch
from ddpayne_core.store import open_store
from ddpayne_core.trainingset import TrainingSetConfig, select_training


def median_chi2(model, labels, flux, ivar) -> float:
    used = model.mask[None, :] & (ivar > 0)
    chi2 = np.where(used, (model.predict(labels) - flux) ** 2 * ivar, 0.0)
    return float(np.median(chi2.sum(1) / used.sum(1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--n", type=int, default=800)
    args = ap.parse_args()
    store = open_store(args.demo / "survey")
    meta = store.meta()
    model = EmulatorModel.load(COMMITTED_MODEL)
    rows, labels, _ = select_training(meta, TrainingSetConfig.of_model(model))
    rows, labels = rows[:args.n], labels[:args.n]
    flux, ivar = store.read_rows(rows)
    flux, ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows],
                                  get_instrument(store.info["instrument"]))
    true = meta.loc[rows, list(model.labels)].to_numpy(dtype=np.float64)
    print(f"{len(rows)} training spectra, median chi2 per used pixel: "
          f"{median_chi2(model, labels, flux, ivar):.2f} at the training labels, "
          f"{median_chi2(model, true, flux, ivar):.2f} at the true labels")


if __name__ == "__main__":
    main()
