"""Is the emulator a least-squares fit of its own training spectra? Mean residual of the F/G and
A training stars at their labels, projected on the emulator's dF/dTeff.
Usage: python studies/real_training/emulator_residuals.py MODEL.pt
"""
import sys

import numpy as np
import pandas as pd

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.model import EmulatorModel, select_training
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.real import RealDataConfig, training_meta

meta = pd.read_parquet("data/demo_real/labels.parquet")
store = open_store("data/demo_real/survey"); inst = get_instrument("lamost")
model = EmulatorModel.load(sys.argv[1]); cfg = RealDataConfig()
rows, labels, _ = select_training(training_meta(meta, cfg), cfg.training_set())
print("training rows", len(rows), "model train labels", model.training_labels.shape, np.allclose(np.sort(model.training_labels[:,0]), np.sort(labels[:,0])))
f, iv = store.read_rows(rows)
nf, niv = preprocess_batch(f, iv, meta.rv.to_numpy()[rows], inst)
pred = model.predict(labels)
w = (niv > 0) & model.mask
fg = meta.spectral_type.to_numpy()[rows] != "A"
for name, s in {"F/G": fg, "A": ~fg}.items():
    r = np.where(w[s], nf[s] - pred[s], np.nan)
    mr = np.nanmean(r, 0)
    # emulator Teff derivative at these labels (+100 K)
    l2 = labels[s].copy(); l2[:, 0] += 100
    d = np.nanmean(np.where(w[s], model.predict(l2) - pred[s], np.nan), 0)
    ok = np.isfinite(mr) & np.isfinite(d)
    k = np.sum(mr[ok] * d[ok]) / np.sum(d[ok] ** 2)
    print(name, "mean residual rms", np.sqrt(np.nanmean(mr ** 2)).round(4), "projection on dF/dTeff(+100K):", round(k * 100), "K equivalent", "corr", np.corrcoef(mr[ok], d[ok])[0, 1].round(2))
