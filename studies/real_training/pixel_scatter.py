"""A per-pixel model scatter in the fit of real spectra (The Cannon's s^2, Ness et al. 2015
sec. 2): the real-data model fitted to the training and held-out spectra of ``ddpayne demo
--real`` (S/N(g) > 20) with each pixel's noise plus nothing, plus the scatter of the training
spectra's residuals at their LASP labels, or at their own fitted labels (``pipeline.
training_scatter``), and scored against LASP with the report's ``real_validation``. The choice is
made on the *training* stars; the held-out stars report what it gives. REAL LAMOST DR10 spectra,
LASP labels.

Usage: python studies/real_training/pixel_scatter.py [--bundle data/demo_real]
       [--model data/models/lamost_dr10_lasp.pt] [--result studies/real_training/pixel_scatter.json]
(about 1 min; the model's own pixel_scatter, if any, is replaced by each variant's)
"""
import argparse
import json
from pathlib import Path

import numpy as np
from common import labelled_spectra, score

from ddpayne_core.fit import fit_spectra
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, estimate_pixel_scatter
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import training_scatter
from ddpayne_core.real import COMMITTED_REAL_MODEL, REAL_FIT_CONFIG, RealDataConfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=DEMO_OUT.parent / "demo_real")
    ap.add_argument("--model", type=Path, default=COMMITTED_REAL_MODEL)
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("pixel_scatter.json"))
    args = ap.parse_args()
    cfg = RealDataConfig()
    labels = list(cfg.label_names)
    meta, flux, ivar = labelled_spectra(args.bundle, cfg)
    model = EmulatorModel.load(args.model)
    train = ~meta["heldout"].to_numpy()
    usable = np.where(model.mask[None, :] & np.isfinite(flux[train]), ivar[train], 0.0)
    at_lasp = model.predict(meta.loc[train, [f"{cfg.prefix}_{lab}" for lab in labels]].to_numpy())
    variants = {"none": None,
                "residuals at the LASP labels": estimate_pixel_scatter(flux[train] - at_lasp, usable),
                "residuals at the fitted labels": training_scatter(model, flux[train], ivar[train])}
    out = []
    for name, scatter in variants.items():
        model.pixel_scatter = scatter
        fit = fit_spectra(model, flux, ivar, REAL_FIT_CONFIG)
        for r, sel in score(meta, fit, cfg):
            r.update(scatter=name, median_redchi2=float(np.median(fit.redchi2[sel])),
                     median_scatter=float(np.median(scatter[model.mask])) if scatter is not None else 0.0)
            out.append(r)
            print(f"{name:31s} {r['stars']:9s} {r['type']:4s} n={r['n']:4d} Teff {r['teff_scatter']:5.1f} "
                  f"({r['teff_bias']:+5.1f}) logg {r['logg_scatter']:.3f} [Fe/H] {r['feh_scatter']:.3f} "
                  f"redchi2 {r['median_redchi2']:.2f}", flush=True)
    atomic_write_text(args.result, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
