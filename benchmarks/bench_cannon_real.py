"""Peer benchmark on REAL spectra: The Cannon against the DD-Payne, same training spectra, same
preprocessing, same held-out stars, labels compared with the reference survey's (by default the
LAMOST pipeline's Teff, logg, [Fe/H] of the 2,323 DR10 spectra in shared/data).

The Cannon: TheCannon 0.7.3 from PyPI (``pip install thecannon==0.7.3``, a benchmark-only
dependency), quadratic in the labels, trained three ways as in docs/validation.md: on A, F and G
stars together, on F/G only and on A only, each with every training star and, when the DD-Payne
left some out (``training_outliers``), without those as well. The DD-Payne: the model of a ``ddpayne demo --real``
bundle (trained on A, F and G together), read from its catalogue; its test step is timed again
here on the same spectra, beside The Cannon's.

Prints, per spectral type group (held-out stars, S/N(g) > 20), each method's robust scatter
and median bias of fitted minus reference, and the DD-Payne / best-Cannon scatter ratio; writes
the rows to <bundle>/report/peer_cannon.json, which the real-data report then shows.

Usage: python benchmarks/bench_cannon_real.py --bundle data/demo_real [--quick]
  --quick builds a small bundle of 300 real spectra (5 training epochs) in a temporary folder
  and trains The Cannon on it: a check that the benchmark runs, not a measurement.
"""
import argparse
import itertools
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from common import cannon

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import FitConfig, fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig, select_training
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.real import RealDataConfig, run_real, training_meta
from ddpayne_core.validation import REAL_TYPE_GROUPS

CANNON_SETS = {"A, F and G together": ("A", "F", "G"), "F/G only": ("F", "G"), "A only": ("A",)}


def quick_bundle(work: Path) -> Path:
    """300 real DR10 spectra (links to the shared files) through ``run_real`` with 5 epochs."""
    cfg = RealDataConfig()
    folder = work / "spectra"
    folder.mkdir()
    for f in sorted(Path(cfg.spectra).glob("spec-*.fits*"))[:300]:
        os.symlink(f, folder / f.name)
    out = work / "bundle"
    run_real(out, replace(cfg, spectra=str(folder)), train_config=replace(TrainConfig(), epochs=5),
             fit_config=replace(FitConfig(), n_candidates=16), synthetic_model=None,
             log=lambda *a: None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="data/demo_real", help="a `ddpayne demo --real` folder")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--snr-min", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = quick_bundle(Path(tmp)) if args.quick else Path(args.bundle)
        run(bundle, args.snr_min, args.quick)


def run(bundle: Path, snr_min: float, quick: bool):
    cfg = RealDataConfig()
    meta = pd.read_parquet(bundle / "labels.parquet")
    catalog = pd.read_parquet(bundle / "catalog.parquet")
    model = EmulatorModel.load(bundle / "model.pt")
    store = open_store(bundle / "survey")
    inst = get_instrument("lamost")
    names = list(model.labels)
    ref = [f"{cfg.prefix}_{lab}" for lab in names]

    def spectra(rows):
        flux, ivar = store.read_rows(rows)
        return preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)

    test = meta[meta["heldout"] & (meta["snr_g"] > snr_min) & meta[ref].notna().all(axis=1)
                & meta["spectral_type"].isin(["A", "F", "G"])]
    test_flux, test_ivar = spectra(test.index.to_numpy())
    results, timing = [], {}
    # The DD-Payne left out the training stars whose labels its first model could not reproduce
    # (real.RealDataConfig.outlier_sigma); The Cannon is trained with and without them.
    outliers = model.config.get("training_outliers", [])
    for (set_name, types), cleaned in itertools.product(CANNON_SETS.items(), (False, True)[:1 + bool(outliers)]):
        m = training_meta(meta, cfg)
        m.loc[~m["spectral_type"].isin(types) | (cleaned & m["filename"].isin(outliers)), ref] = np.nan
        name = set_name + (", cleaned as the DD-Payne" if cleaned else "")
        try:
            rows, labels, _ = select_training(m, cfg.training_set())
        except ValueError as exc:      # the quick subset may hold too few of a type
            print(f"The Cannon, {name}: skipped ({exc})")
            continue
        f, iv = spectra(rows)
        fitted, t_train, t_test = cannon(f, iv, labels, test_flux, test_ivar, inst.wave, names)
        timing[name] = {"n_train": len(rows), "train_s": t_train,
                        "test_spectra_per_s": len(test) / t_test}
        results.append((f"The Cannon ({name}, {len(rows)} stars)", types, fitted))
    ours = catalog.set_index("specid").loc[test["specid"].to_numpy(), names].to_numpy()
    n_train_ours = len(model.training_labels) if model.training_labels is not None else "?"
    results.append((f"DD-Payne (A, F and G together, {n_train_ours} stars)", ("A", "F", "G"), ours))
    # The DD-Payne's test step, timed on the same preprocessed spectra in this process.
    t0 = time.perf_counter()
    fit_spectra(model, test_flux, test_ivar, FitConfig())
    timing["DD-Payne"] = {"test_spectra_per_s": len(test) / (time.perf_counter() - t0)}

    rows_out = []
    for group, letters in REAL_TYPE_GROUPS.items():
        in_group = test["spectral_type"].isin(letters).to_numpy()
        for method, types, fitted in results:
            if not set(letters) <= set(types):
                continue      # a Cannon trained without this type is not tested on it
            row = {"tested on": f"{group}, S/N > {snr_min:g}", "method": method, "n": int(in_group.sum())}
            for k, lab in enumerate(names):
                b, s = robust_bias_scatter(fitted[in_group, k] - test[ref[k]].to_numpy()[in_group])
                row[f"{lab} scatter"], row[f"{lab} bias"] = s, b
            rows_out.append(row)
    table = pd.DataFrame(rows_out)
    pd.set_option("display.width", 200)
    print("Real LAMOST spectra; " + ("QUICK run (300 spectra, 5-epoch model): checks that the "
                                     "benchmark runs, measures nothing" if quick else f"bundle {bundle}"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for group in REAL_TYPE_GROUPS:
        g = table[table["tested on"].str.startswith(group + ",")]
        ours_row = g[g["method"].str.startswith("DD-Payne")]
        peers = g[g["method"].str.startswith("The Cannon")]
        if ours_row.empty or peers.empty:
            continue
        ratios = ", ".join(f"{lab} {ours_row[f'{lab} scatter'].iloc[0] / peers[f'{lab} scatter'].min():.2f}"
                           for lab in names)
        print(f"{group}: DD-Payne scatter / best Cannon scatter: {ratios}")
        same = peers[peers["method"].str.contains("A, F and G together" + (", cleaned" if outliers else ""))]
        if not same.empty:
            print(f"{group}: DD-Payne scatter / Cannon on the same training set: " + ", ".join(
                f"{lab} {ours_row[f'{lab} scatter'].iloc[0] / same[f'{lab} scatter'].iloc[0]:.2f}"
                for lab in names))
    for name, t in timing.items():
        print(f"speed, {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in t.items()))
    if not quick:
        out = bundle / "report" / "peer_cannon.json"
        atomic_write_text(out, json.dumps({"rows": rows_out, "timing": timing,
                                           "snr_min": snr_min}, indent=1, default=float))
        print(f"-> {out} (the next `ddpayne demo --real` shows it in its report)")


if __name__ == "__main__":
    main()
