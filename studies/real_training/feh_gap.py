"""Why the real-data DD-Payne's [Fe/H] scatter (0.150 dex on held-out F/G stars) is twice The
Cannon's trained on F/G stars only (0.068): the committed training (LM, gradient prior of
lamost-table1-galactic, A, F and G stars together) against variants that each change one thing.
REAL LAMOST DR10 spectra, LASP labels; the split, spectra, fit settings and held-out stars of
``ddpayne demo --real``. Each variant is trained on the training stars, fits the held-out spectra
and is scored with the report's own ``real_validation`` (S/N(g) > 20). Resumable: variants
already in the result file are skipped.

Usage: python studies/real_training/feh_gap.py [--bundle data/demo_real] [--work /tmp/feh_gap]
       [--result studies/real_training/feh_gap.json] [--only NAME ...]
(run ``ddpayne demo --real`` first: it ingests the spectra into the bundle)
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.flags import model_reference
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import fit_and_flag, train_from_store
from ddpayne_core.real import (REAL_FIT_CONFIG, REAL_TRAIN_CONFIG, RealDataConfig, training_meta,
                               with_reference_labels)
from ddpayne_core.validation.report import real_validation

# name: (TrainConfig changes, spectral types trained on)
VARIANTS = {
    "committed: LM, prior, A+F+G": ({"regularize": True}, "AFG"),
    "no gradient prior, A+F+G": ({"regularize": False}, "AFG"),
    "[Fe/H] prior 10x weaker (D 5), A+F+G": ({"regularize": True, "d_scale": {"feh": 5.0}}, "AFG"),
    "prior, F/G only": ({"regularize": True}, "FG"),
    "no gradient prior, F/G only": ({"regularize": False}, "FG"),
    # the logg gap to The Cannon trained on F/G only: capacity or the A stars?
    "no gradient prior, 20 neurons, A+F+G": ({"regularize": False, "n_hidden": 20}, "AFG"),
    "no gradient prior, A only": ({"regularize": False}, "A"),
}


def run_variant(bundle: Path, work: Path, name: str, changes: dict, types: str) -> list:
    cfg = RealDataConfig()
    meta = pd.read_parquet(bundle / "labels.parquet")
    train = training_meta(meta, cfg)
    # other types keep their spectra in the store but lose their labels: never trained on
    train.loc[~train["spectral_type"].isin(list(types)), [f"{cfg.prefix}_{lab}" for lab in cfg.label_names]] = np.nan
    slug = "".join(c if c.isalnum() else "_" for c in name)
    t0 = time.time()
    model = train_from_store(bundle / "survey", work / f"{slug}.pt", cfg.training_set(),
                             replace(REAL_TRAIN_CONFIG, **changes), meta=train, log=lambda *a: None)
    train_s = time.time() - t0
    store = open_store(bundle / "survey")
    fits = fit_and_flag(model, store, work / f"{slug}.parquet", REAL_FIT_CONFIG, model_reference(model),
                        rows=meta["heldout"].to_numpy(), log=lambda *a: None)
    rows = real_validation(with_reference_labels(fits, meta, cfg), cfg.label_names, cfg.prefix)
    rows = rows[rows["snr"] == "S/N > 20"].to_dict("records")
    for r in rows:
        r.update(variant=name, train_s=round(train_s, 1),
                 n_labelled_stars=int(train.loc[train[f"{cfg.prefix}_teff"].notna(), "star_id"].nunique()))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=DEMO_OUT.parent / "demo_real")
    ap.add_argument("--work", type=Path, default=Path("/tmp/feh_gap"))
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("feh_gap.json"))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    done = json.loads(args.result.read_text()) if args.result.exists() else []
    for name, (changes, types) in VARIANTS.items():
        if any(r["variant"] == name for r in done) or (args.only and name not in args.only):
            continue
        print(f"training and fitting: {name}", flush=True)
        done += run_variant(args.bundle, args.work, name, changes, types)
        atomic_write_text(args.result, json.dumps(done, indent=1, default=float))
    for r in done:
        print(f"{r['variant']:32s} {r['type']:4s} n={r['n']:4d} Teff {r['teff_scatter']:5.0f} ({r['teff_bias']:+4.0f}) "
              f"logg {r['logg_scatter']:.3f} ({r['logg_bias']:+.3f}) [Fe/H] {r['feh_scatter']:.3f} "
              f"({r['feh_bias']:+.3f})  train {r['train_s']:.0f} s")


if __name__ == "__main__":
    main()
