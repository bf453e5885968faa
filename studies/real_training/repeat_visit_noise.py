"""Repeat visits of real DR10 stars: robust scatter of the visits' difference over its predicted sigma,
in the observed frame and after the rest-frame shift. Usage: python studies/real_training/repeat_visit_noise.py
"""
import numpy as np
import pandas as pd

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.preprocess import normalize, preprocess_batch

meta = pd.read_parquet("data/demo_real/labels.parquet")
store = open_store("data/demo_real/survey")
inst = get_instrument("lamost")
g = meta.groupby("star_id").filter(lambda d: len(d) > 1)
rows = g.index.to_numpy()
flux, ivar = store.read_rows(rows)
rv = meta.rv.to_numpy()[rows]
nf, niv = preprocess_batch(flux, ivar, rv, inst)
# observed frame normalized (no shift)
of, oiv = normalize(inst.wave, flux, ivar, inst.continuum_width)
zs = {"observed frame": [], "rest frame (shifted)": []}
for sid, d in g.groupby("star_id"):
    idx = [np.nonzero(rows == r)[0][0] for r in d.index]
    a, b = idx[0], idx[1]
    for name, (F, IV) in {"observed frame": (of, oiv), "rest frame (shifted)": (nf, niv)}.items():
        ok = (IV[a] > 0) & (IV[b] > 0)
        if name == "observed frame":
            ok &= True
        z = (F[a] - F[b])[ok] / np.sqrt(1 / IV[a][ok] + 1 / IV[b][ok])
        mad = 1.4826 * np.median(np.abs(z - np.median(z)))
        zs[name].append(mad)
print(len(zs["observed frame"]), "pairs; RV diff median", )
for k, v in zs.items():
    print(k, "robust std of pair difference / predicted sigma: median", np.median(v).round(3), "quartiles", np.percentile(v, [25, 75]).round(3))
print("wave grid identical?", np.allclose(store.wave, inst.wave))
