"""Is the metal-poor stars' Teff/logg/[Fe/H] bias the emulator's or the fit's? For single, good
fits at S/N > 50 in bins of true [Fe/H]: the median fitted-minus-true Teff, logg, [Fe/H], and
the chi^2 of the spectrum under the emulator at the fitted labels and at the true labels (both
with the fitted LSF offset). If the truth's chi^2 is the lower, the fit missed the minimum (an
optimizer problem); if it is the higher, the emulator's spectrum at the true labels is wrong
(SYNTHETIC survey only: it needs the truth).

Usage (writes JSON atomically; NAME=DIR, DIR from `ddpayne demo --out DIR`, its model.pt and
catalog.parquet):
    python scripts/metal_poor_bias.py "galactic prior=data/demo" [NAME=DIR ...] \
        --out data/studies/metal_poor_bias.json [--per-bin 300]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.emulator import EmulatorModel
from ddpayne_core.fit import fitted_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.spectra import preprocess_batch
from ddpayne_core.store import open_store

FEH_BINS = ((-3.0, -2.2), (-2.2, -1.5), (-1.5, -1.0), (-1.0, -0.5), (-0.5, 0.6))


def emulator_chi2(model, labels, lsf_dvar, flux, ivar) -> np.ndarray:
    """chi^2 over the model's used pixels of each spectrum under the fit's model: (n,)."""
    used = model.mask[None, :] & (ivar > 0) & np.isfinite(flux)
    pred = fitted_spectra(model, labels, lsf_dvar)
    return np.where(used, (pred - np.nan_to_num(flux)) ** 2 * ivar, 0.0).sum(1)


def study(demo: Path, per_bin: int) -> dict:
    store = open_store(demo / "survey")
    meta = store.meta().reset_index(drop=True)
    model = EmulatorModel.load(demo / "model.pt")
    labels = list(model.labels)
    truth = meta[["specid", "injected_bad", "is_binary"] + labels].rename(
        columns={lab: f"{lab}_true" for lab in labels}).assign(row=np.arange(len(meta)))
    cat = pd.read_parquet(demo / "catalog.parquet").merge(truth, on="specid")
    cat = cat[~cat["injected_bad"] & ~cat["is_binary"] & (cat["snr"] > 50) & (cat["fit_status"] < 2)]
    inst = get_instrument(store.info["instrument"])
    out = {"model": str(demo / "model.pt"), "reference": model.config.get("reference"), "bins": {}}
    for lo, hi in FEH_BINS:
        sel = cat[(cat["feh_true"] >= lo) & (cat["feh_true"] < hi)].head(per_bin)
        rows = sel["row"].to_numpy()
        flux, ivar = store.read_rows(rows)
        flux, ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
        dvar = sel["lsf_dvar"].to_numpy() if "lsf_dvar" in sel else None
        at_fit = emulator_chi2(model, sel[labels].to_numpy(np.float64), dvar, flux, ivar)
        at_truth = emulator_chi2(model, sel[[f"{lab}_true" for lab in labels]].to_numpy(np.float64),
                                 dvar, flux, ivar)
        out["bins"][f"{lo:+.1f}..{hi:+.1f}"] = {
            "n": int(len(sel)),
            **{f"bias_{lab}": round(float(np.median(sel[lab] - sel[f"{lab}_true"])), 3)
               for lab in ("teff", "logg", "feh")},
            "median_chi2_at_fit": round(float(np.median(at_fit)), 1),
            "median_chi2_at_truth": round(float(np.median(at_truth)), 1),
            "fraction_truth_chi2_lower": round(float(np.mean(at_truth < at_fit)), 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demos", nargs="+", help="NAME=DIR of a demo output")
    ap.add_argument("--out", type=Path, default=Path("data/studies/metal_poor_bias.json"))
    ap.add_argument("--per-bin", type=int, default=300)
    args = ap.parse_args()
    doc = {"synthetic": True, "what": __doc__.splitlines()[0], "snr_min": 50, "results": {}}
    for item in args.demos:
        name, _, path = item.rpartition("=")
        doc["results"][name or path] = res = study(Path(path), args.per_bin)
        print(name or path, res["reference"])
        for b, r in res["bins"].items():
            print(f"  [Fe/H] {b}: n={r['n']} Teff {r['bias_teff']:+.0f} K logg {r['bias_logg']:+.2f} "
                  f"[Fe/H] {r['bias_feh']:+.2f}; chi2 at fit {r['median_chi2_at_fit']:.0f}, at truth "
                  f"{r['median_chi2_at_truth']:.0f}, truth lower for {r['fraction_truth_chi2_lower']:.0%}")
    atomic_write_text(args.out, json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
