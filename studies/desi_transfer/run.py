"""What the label transfer costs the DESI model (Z24 sec. 3.2; SYNTHETIC DESI demo).

The committed DESI model trains on 808 spectra: 111 with APOGEE-like labels, 124 from the
metal-poor sample, 573 with labels transferred from the LAMOST demo's catalogue. Two more models
are trained on the same survey and fitted to all its spectra:

- "APOGEE-like only": the 111 APOGEE-like spectra alone (``desi_demo.transfer_cost``, what
  ``ddpayne demo --survey desi --full`` adds): what the transfer buys in sample size;
- "same stars, APOGEE-quality labels": the same 808 spectra, each with a label drawn as the
  APOGEE-like ones are (truth plus ``simulate.survey.HIRES_NOISE``): what the transferred labels'
  quality costs, sample size held fixed. Only a simulation can do this: a real survey has no
  APOGEE labels for the stars it transfers labels to.

For the three: robust scatter against truth at S/N 20/50/100, median bias by true [Fe/H], and
the scatter against truth over the LAMOST demo's on the stars both surveys observed
(``desi_demo.desi_vs_lamost``, as in the demo's report): whether DESI, trained on better labels,
would beat LAMOST where the physics says it should.

    python studies/desi_transfer/run.py [--demo data/demo_desi]
      -> studies/desi_transfer/desi_transfer.json (about 90 min on 2 cores; resumes from work/)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.catalog import recovery_by_feh, recovery_scatter, write_catalog
from ddpayne_core.desi_demo import desi_training_set, desi_vs_lamost, lamost_demo_stars, transfer_cost
from ddpayne_core.fit.lm import FitConfig
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import fit_and_flag, train_from_store
from ddpayne_core.simulate.survey import HIRES_NOISE
from ddpayne_core.theory.gradients import load_reference_gradients

HERE = Path(__file__).resolve().parent


def apogee_quality_labels(meta: pd.DataFrame, rows: np.ndarray, truth_by_spectrum: pd.DataFrame,
                          labels, seed: int = 7) -> pd.DataFrame:
    """``meta`` with the training rows' ``combined_<label>`` replaced by truth plus APOGEE-like
    noise (HIRES_NOISE; SYNTHETIC): the same spectra, labels as good as the APOGEE overlap's."""
    out = meta.copy()
    truth = out[["specid"]].merge(truth_by_spectrum[["specid"] + list(labels)], on="specid", how="left")
    rng = np.random.default_rng(seed)
    for lab in labels:
        noise = HIRES_NOISE.get(lab, HIRES_NOISE["xfe"])
        col = out[f"combined_{lab}"].to_numpy(dtype=float).copy()
        col[rows] = truth[lab].to_numpy(dtype=float)[rows] + rng.normal(0, noise, len(rows))
        out[f"combined_{lab}"] = col
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("data/demo_desi"))
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "desi_transfer.json")
    args = ap.parse_args(argv)
    if not (args.demo / "report" / "summary.json").exists():
        raise SystemExit(f"{args.demo}: run `ddpayne demo --survey desi --out {args.demo}` first")
    args.work.mkdir(parents=True, exist_ok=True)
    link = args.work / "survey"
    if not link.exists():
        link.symlink_to((args.demo / "survey").resolve())
    store = open_store(args.demo / "survey")
    truth_by_spectrum = store.meta(["specid", "targetid", "filename", "row"]).merge(
        pd.read_parquet(args.demo / "desi" / "truth.parquet"), on=["targetid", "filename", "row"])
    committed = EmulatorModel.load(args.demo / "model.pt")
    labels = list(committed.labels)
    meta, rows, ts = desi_training_set(store, truth_by_spectrum, lamost_demo_stars(DEMO_OUT)[1], labels)
    train_config, fit_config = TrainConfig.for_instrument("desi"), FitConfig()
    reference = load_reference_gradients(train_config.reference)
    demo_fits = pd.read_parquet(args.demo / "catalog.parquet")

    apogee_only = transfer_cost(store, meta, truth_by_spectrum, labels, demo_fits, train_config,
                                fit_config, reference, args.work)
    ideal_path = args.work / "model_same_stars.pt"
    ideal = EmulatorModel.load(ideal_path) if ideal_path.exists() else train_from_store(
        args.work / "survey", ideal_path, ts, train_config,
        meta=apogee_quality_labels(meta, rows, truth_by_spectrum, labels))
    same_path = args.work / "catalog_same_stars.parquet"
    if same_path.exists():
        same_stars = pd.read_parquet(same_path)
    else:
        same_stars = fit_and_flag(ideal, store, same_path, fit_config, reference, refit_stale=True)
        write_catalog(same_stars, same_path, {"synthetic": True, "instrument": "desi", "model": str(ideal_path),
                                              "training_labels": "truth plus APOGEE-like noise"})
    truth = truth_by_spectrum[["specid"] + labels]
    apogee_fits = pd.read_parquet(args.work / "catalog_apogee.parquet")
    models = {"committed (transferred labels)": (len(rows), demo_fits),
              "APOGEE-like only": (apogee_only["n_train_apogee"], apogee_fits),
              "same stars, APOGEE-quality labels": (len(rows), same_stars)}
    result = {"synthetic": True, "models": {}}
    for name, (n_train, fits) in models.items():
        result["models"][name] = {
            "n_train": int(n_train),
            "recovery": json.loads(recovery_scatter(fits, truth, labels).to_json(orient="index")),
            "bias_by_feh": json.loads(recovery_by_feh(fits, truth, labels).to_json(orient="index")),
            "desi_over_lamost": {lab: v["desi_over_lamost"] for lab, v in
                                 desi_vs_lamost(fits, truth_by_spectrum, DEMO_OUT, labels)["labels"].items()}}
    atomic_write_text(args.out, json.dumps(result, indent=1, default=float))
    for name, r in result["models"].items():
        rec = pd.DataFrame(r["recovery"]).T
        print(f"{name} ({r['n_train']} training spectra)")
        print(rec[[c for c in rec.columns if c.startswith("scatter_")]].T.round(3).to_string())
        print(pd.DataFrame(r["bias_by_feh"]).T[["n", "bias_teff", "bias_logg", "bias_feh"]].round(3).to_string())
        print("DESI / LAMOST scatter on shared stars:", {k: round(v, 2) for k, v in r["desi_over_lamost"].items()})


if __name__ == "__main__":
    main()
