"""How close the demo emulator comes to the noise on its own training spectra: chi^2 per used
pixel with the emulator at the training (high-resolution, noisy) labels, its mean, median and the
share of the few worst pixels, and the median at the true labels (SYNTHETIC survey only). The
validation chi^2 in data/models/*.json is a mean over pixels.

Usage: python studies/emulator_settings/emulator_chi2.py --demo data/demo [--n 800]
"""
import argparse
from pathlib import Path

import numpy as np

from ddpayne_core.demo import COMMITTED_MODEL
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.model import EmulatorModel, TrainingSetConfig, select_training
from ddpayne_core.preprocess import preprocess_batch


def chi2_per_pixel(model, labels, flux, ivar):
    """(per-spectrum chi^2 per used pixel (n,), chi^2 of every used pixel (m,))."""
    used = model.mask[None, :] & (ivar > 0)
    chi2 = np.where(used, (model.predict(labels) - flux) ** 2 * ivar, 0.0)
    return chi2.sum(1) / used.sum(1), chi2[used]


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
    per_spec, pixels = chi2_per_pixel(model, labels, flux, ivar)
    top = np.sort(pixels)[-len(pixels) // 100:].sum() / pixels.sum()
    print(f"{len(rows)} training spectra, chi2 per used pixel at the training labels: mean "
          f"{per_spec.mean():.2f}, median {np.median(per_spec):.2f}; the top 1% of pixels hold "
          f"{100 * top:.0f}% of the chi2. Median at the true labels: "
          f"{np.median(chi2_per_pixel(model, true, flux, ivar)[0]):.2f}")


if __name__ == "__main__":
    main()
