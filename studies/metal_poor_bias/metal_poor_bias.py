"""Is the metal-poor stars' Teff/logg/[Fe/H] bias the emulator's or the fit's? Each model fits
the same single, clean survey spectra at S/N > 50, up to --per-bin in each bin of true [Fe/H];
per bin: the median fitted-minus-true Teff, logg, [Fe/H], and the chi^2 of the spectrum under
the emulator at the fitted labels and at the true labels (both with the fitted LSF offset). If
the truth's chi^2 is the lower, the fit missed the minimum (an optimizer problem); if it is
the higher, the emulator's spectrum at the true labels is wrong. SYNTHETIC survey only: it
needs the truth.

Usage (writes JSON atomically):
    python studies/metal_poor_bias/metal_poor_bias.py --demo data/demo "galactic prior=data/models/demo_emulator.pt" \
        [NAME=MODEL.pt ...] --out studies/metal_poor_bias/metal_poor_bias.json [--per-bin 300]
"""
import argparse
import json
from pathlib import Path

import numpy as np

from ddpayne_core.fit import fit_spectra, fitted_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.preprocess import preprocess_batch

FEH_BINS = ((-3.0, -2.2), (-2.2, -1.5), (-1.5, -1.0), (-1.0, -0.5), (-0.5, 0.6))


def emulator_chi2(model, labels, lsf_dvar, flux, ivar) -> np.ndarray:
    """chi^2 over the model's used pixels of each spectrum under the fit's model: (n,)."""
    used = model.mask[None, :] & (ivar > 0) & np.isfinite(flux)
    pred = fitted_spectra(model, labels, lsf_dvar)
    return np.where(used, (pred - np.nan_to_num(flux)) ** 2 * ivar, 0.0).sum(1)


def select_rows(meta, per_bin: int) -> dict:
    """Rows of single, clean spectra at S/N > 50, the first per_bin in each [Fe/H] bin."""
    clean = ~meta["injected_bad"].to_numpy(bool) & ~meta["is_binary"].to_numpy(bool) \
        & (meta["snr"].to_numpy() > 50)
    feh = meta["feh"].to_numpy()
    return {f"{lo:+.1f}..{hi:+.1f}": np.flatnonzero(clean & (feh >= lo) & (feh < hi))[:per_bin]
            for lo, hi in FEH_BINS}


def study(model: EmulatorModel, store, meta, bins: dict) -> dict:
    labels = list(model.labels)
    inst = get_instrument(store.info["instrument"])
    out = {"reference": model.config.get("reference"),
           "regularized": model.config.get("regularize"), "bins": {}}
    for name, rows in bins.items():
        flux, ivar = store.read_rows(rows)
        flux, ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
        fit = fit_spectra(model, flux, ivar)
        good = fit.status < 2
        true = meta.loc[rows, labels].to_numpy(np.float64)
        at_fit = emulator_chi2(model, fit.labels[good], fit.lsf_dvar[good], flux[good], ivar[good])
        at_truth = emulator_chi2(model, true[good], fit.lsf_dvar[good], flux[good], ivar[good])
        d = fit.labels[good] - true[good]
        out["bins"][name] = {
            "n": int(good.sum()),
            **{f"bias_{lab}": round(float(np.median(d[:, labels.index(lab)])), 3)
               for lab in ("teff", "logg", "feh")},
            "median_chi2_at_fit": round(float(np.median(at_fit)), 1),
            "median_chi2_at_truth": round(float(np.median(at_truth)), 1),
            "fraction_truth_chi2_lower": round(float(np.mean(at_truth < at_fit)), 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="[NAME=]MODEL.pt")
    ap.add_argument("--demo", type=Path, required=True, help="output of ddpayne demo (its survey/)")
    ap.add_argument("--out", type=Path, default=Path("studies/metal_poor_bias/metal_poor_bias.json"))
    ap.add_argument("--per-bin", type=int, default=300)
    args = ap.parse_args()
    store = open_store(args.demo / "survey")
    meta = store.meta().reset_index(drop=True)
    bins = select_rows(meta, args.per_bin)
    doc = {"synthetic": True, "what": __doc__.splitlines()[0], "snr_min": 50, "results": {}}
    for item in args.models:
        name, _, path = item.rpartition("=")
        doc["results"][name or path] = res = study(EmulatorModel.load(path), store, meta, bins)
        print(name or path, res["reference"], "regularized" if res["regularized"] else "unregularized")
        for b, r in res["bins"].items():
            print(f"  [Fe/H] {b}: n={r['n']} Teff {r['bias_teff']:+.0f} K logg {r['bias_logg']:+.2f} "
                  f"[Fe/H] {r['bias_feh']:+.2f}; chi2 at fit {r['median_chi2_at_fit']:.0f}, at truth "
                  f"{r['median_chi2_at_truth']:.0f}, truth lower for {r['fraction_truth_chi2_lower']:.0%}")
    atomic_write_text(args.out, json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
