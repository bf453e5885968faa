"""Fit held-out and training F/G and A spectra of data/demo_real with MODEL.pt, with and without
the LSF fit and the model-error floor; robust bias and scatter against LASP.
Usage: python studies/real_training/fit_variants.py MODEL.pt
"""
from dataclasses import replace

import numpy as np
import pandas as pd

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import FitConfig, fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.model import EmulatorModel
from ddpayne_core.preprocess import preprocess_batch

meta = pd.read_parquet("data/demo_real/labels.parquet")
store = open_store("data/demo_real/survey"); inst = get_instrument("lamost")
import sys; model = EmulatorModel.load(sys.argv[1])
for name, sel in {"heldout F/G": meta.heldout & meta.spectral_type.isin(["F","G"]) & (meta.snr_g > 20), "heldout A": meta.heldout & meta.spectral_type.isin(["A"]) & (meta.snr_g > 20),
                  "train F/G": ~meta.heldout & meta.spectral_type.isin(["F","G"]) & (meta.snr_g > 20)}.items():
    rows = np.nonzero(sel.to_numpy())[0][:200]
    f, iv = store.read_rows(rows)
    nf, niv = preprocess_batch(f, iv, meta.rv.to_numpy()[rows], inst)
    ref = meta.loc[rows, ["lasp_teff", "lasp_logg", "lasp_feh"]].to_numpy()
    for cname, cfg in {"lsf free": FitConfig(), "lsf free me.01": replace(FitConfig(), model_error=0.01), "lsf fixed me.01": replace(FitConfig(), fit_lsf=False, model_error=0.01)}.items():
        r = fit_spectra(model, nf, niv, cfg)
        out = [robust_bias_scatter(r.labels[:, k] - ref[:, k]) for k in range(3)]
        print(name, cname, [(round(b, 3), round(s, 3)) for b, s in out], "redchi2", np.median(r.redchi2).round(2))
    # emulator at the reference labels: chi2
    pred = model.predict(ref)
    chi = np.sum((nf - pred) ** 2 * niv * model.mask, 1) / (niv * model.mask > 0).sum(1)
    print(name, "redchi2 at reference labels", np.median(chi).round(2))
