"""Does a DESI training set of Z24's size close the gap to LAMOST? The DESI demo model (808
training stars) against one trained on 3,551 (Z24 sec. 3.2: 3,627), both fitted to the same
SYNTHETIC DESI survey.

The demo's survey has 8,000 stars; its LAMOST-shared ones are as faint as the rest (r 16-20), so
few reach S/N 20 in both surveys. This study's survey has 12,000, with the shared ones at LAMOST's
bright end, r 16-17 (``Z24_SIZED``), which gives 3,062 transferred labels (Z24: 3,181). It runs
the DESI demo on that survey with a new model (--big-work; 30 min of training), then fits the
committed 808-star model (trained on the demo's survey: same physics, truth emulator and
settings) to the same spectra, flagged and reported as the demo does (--old-work, the survey
linked), and compares both: recovery by S/N and by true [Fe/H], precision and accuracy over the
Cramer-Rao bound at S/N 100 (the same stars), DESI against LAMOST, X_flag 1 fractions.

    python studies/desi_training_size/run.py  (after `ddpayne demo`; about 45 min on 2 cores)
      -> studies/desi_training_size/desi_training_size.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from ddpayne_core.desi_demo import COMMITTED_DESI_MODEL, run_desi_demo
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import DesiSurveyConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "desi_prior"))
from run import print_models, summarize  # noqa: E402  (studies/desi_prior: the same summary)

Z24_SIZED = replace(DesiSurveyConfig(), n_stars=12000, lamost_fraction=0.32, lamost_r_mag=(16.0, 17.0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-work", type=Path, default=HERE / "work_z24", help="the Z24-sized run")
    ap.add_argument("--old-work", type=Path, default=HERE / "work_808", help="the 808-star model's fit")
    ap.add_argument("--old-model", type=Path, default=COMMITTED_DESI_MODEL)
    ap.add_argument("--out", type=Path, default=HERE / "desi_training_size.json")
    args = ap.parse_args(argv)
    run_desi_demo(args.big_work, config=Z24_SIZED, retrain=True)
    args.old_work.mkdir(parents=True, exist_ok=True)
    for part in ("desi", "survey"):
        link = args.old_work / part
        if not link.exists():
            link.symlink_to((args.big_work / part).resolve())
    if not (args.old_work / "model.pt").exists():
        shutil.copyfile(args.old_model, args.old_work / "model.pt")
    run_desi_demo(args.old_work, config=Z24_SIZED)
    store = open_store(args.big_work / "survey")
    truth_by_spectrum = store.meta(["specid", "targetid", "filename", "row"]).merge(
        pd.read_parquet(args.big_work / "desi" / "truth.parquet"), on=["targetid", "filename", "row"])
    old = summarize(args.old_work, truth_by_spectrum)
    # Its own training stars were the demo survey's: count those, and drop the bias of this
    # survey's training stars, which it never saw.
    cfg = EmulatorModel.load(args.old_work / "model.pt").config
    old.pop("training_star_bias")
    old["n_training"] = int(cfg["n_train"] + cfg["n_valid"])
    result = {"synthetic": True, "survey": json.loads(json.dumps(asdict(Z24_SIZED))),
              "models": {"808 training stars (committed demo model)": old,
                         "3,551 training stars (Z24-sized)": summarize(args.big_work, truth_by_spectrum)}}
    atomic_write_text(args.out, json.dumps(result, indent=1, default=float))
    print_models(result["models"])


if __name__ == "__main__":
    main()
