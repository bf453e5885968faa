"""The model-error floor of the *fit* on real spectra: fit the committed real-data model to the
training and held-out spectra of ``ddpayne demo --real`` (S/N(g) > 20) with floors s = 0 ...
0.01 in normalized flux (``FitConfig.model_error``: ivar -> 1 / (1/ivar + s^2)) and score them
against LASP with the report's ``real_validation``. The floor is chosen on the *training* stars;
the held-out stars only report what that choice gives. REAL LAMOST DR10 spectra, LASP labels.

Usage: python studies/real_training/fit_error_floor.py [--bundle data/demo_real]
       [--model data/models/lamost_dr10_lasp.pt] [--result studies/real_training/fit_error_floor.json]
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.fit import fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.real import COMMITTED_REAL_MODEL, REAL_FIT_CONFIG, RealDataConfig
from ddpayne_core.validation.report import real_validation

FLOORS = (0.0, 0.002, 0.005, 0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=DEMO_OUT.parent / "demo_real")
    ap.add_argument("--model", type=Path, default=COMMITTED_REAL_MODEL)
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("fit_error_floor.json"))
    args = ap.parse_args()
    cfg = RealDataConfig()
    meta = pd.read_parquet(args.bundle / "labels.parquet")
    meta = meta[meta["lasp_matched"].astype(bool) & (meta["snr"] > cfg.min_snr)
                & (meta["ingest_error"].fillna("") == "")]
    store = open_store(args.bundle / "survey")
    model = EmulatorModel.load(args.model)
    rows = meta.index.to_numpy()          # labels.parquet lists the store's rows in order
    meta = meta.reset_index(drop=True)
    flux, ivar = store.read_rows(rows)
    flux, ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy(), get_instrument("lamost"))
    labels = list(cfg.label_names)
    out = []
    for floor in FLOORS:
        t0 = time.time()
        fit = fit_spectra(model, flux, ivar, replace(REAL_FIT_CONFIG, model_error=floor))
        cat = meta.copy()
        cat[labels] = fit.labels
        cat["fit_status"] = np.where(np.isfinite(fit.labels).all(1), 0, 2)
        for stars, heldout in (("training", False), ("held-out", True)):
            sub = cat[cat["heldout"] == heldout].assign(heldout=True)
            table = real_validation(sub, labels, cfg.prefix)
            for r in table[table["snr"] == f"S/N > {cfg.min_snr:g}"].to_dict("records"):
                sel = (cat["heldout"] == heldout) & cat["spectral_type"].isin(list(r["type"].replace("/", "")))
                r.update(stars=stars, model_error=floor, fit_s=round(time.time() - t0, 1),
                         median_redchi2=float(np.median(fit.redchi2[sel.to_numpy()])),
                         **{f"{lab}_median_err": float(np.median(fit.errors[sel.to_numpy(), k]))
                            for k, lab in enumerate(labels)})
                out.append(r)
                print(f"s={floor:<6g} {stars:9s} {r['type']:4s} n={r['n']:4d} Teff {r['teff_scatter']:5.1f} "
                      f"({r['teff_bias']:+5.1f}) logg {r['logg_scatter']:.3f} [Fe/H] {r['feh_scatter']:.3f} "
                      f"redchi2 {r['median_redchi2']:.2f}", flush=True)
    atomic_write_text(args.result, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
