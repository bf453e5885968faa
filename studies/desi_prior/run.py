"""DESI demo model: X19's prior (D 5 / 50, absolute; committed) against one variant of it
(``VARIANTS``: the prior that removed most of the LAMOST demo's metal-poor bias,
studies/prior_strength; none; the abundances' alone; D scaled to X19's number of reference
stars). SYNTHETIC DESI survey.

Trains the second model on the DESI demo's survey and training set (``ddpayne demo --survey desi``
must have run into --demo), fits, flags and reports it into --work (the survey linked, not
copied), then compares both: bias by true [Fe/H] of all good fits and of the training stars
(their training labels against their fits), recovery by S/N, precision over the Cramer-Rao bound,
DESI against LAMOST, and the X_flag 1 fraction of single stars with S/N > 30.

    python studies/desi_prior/run.py [--variant "no prior" | "abundance prior only" |
      "D scaled to 16 reference stars" | "parameters' prior above [Fe/H] -1"] [--demo data/demo_desi]
      -> studies/desi_prior/desi_prior[_<variant>].json (15-40 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ddpayne_core.desi_demo import desi_training_set, lamost_demo_stars, run_desi_demo
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig

HERE = Path(__file__).resolve().parent
FEH_EDGES = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.6)
VARIANTS = {
    # studies/prior_strength's row "logg D 25, D 15, relative weighting" (docs/training.md).
    "logg D 25, D 15, relative": {
        "d_scale": {"logg": 25.0, "feh": 15.0, "c_fe": 15.0, "n_fe": 15.0, "o_fe": 15.0, "mg_fe": 15.0,
                    "al_fe": 15.0, "si_fe": 15.0, "ca_fe": 15.0, "ti_fe": 15.0, "cr_fe": 15.0,
                    "mn_fe": 15.0, "ni_fe": 15.0},
        "prior_weighting": "relative"},
    # No prior: does the reference physics pull the emulator off the truth at low [Fe/H]?
    "no prior": {"regularize": False},
    # The prior on the abundances alone: Teff, logg, vmic and [Fe/H] learned from the data only.
    "abundance prior only": {"d_scale": {"teff": 0.0, "logg": 0.0, "vmic": 0.0, "feh": 0.0}},
    # X19 set D for 16 reference stars; eq. 2 sums over them, so desi-isochrone's 100 hold the
    # emulator 100/16 times as hard. Their D scaled by 16/100: X19's weight per pixel and label.
    "D scaled to 16 reference stars": {"d_scale": {
        lab: (5.0 if lab in ("teff", "logg", "vmic") else 50.0) * 16 / 100
        for lab in ("teff", "logg", "vmic", "feh", "c_fe", "n_fe", "o_fe", "mg_fe", "al_fe",
                    "si_fe", "ca_fe", "ti_fe", "cr_fe", "mn_fe", "ni_fe")}},
    # X19's prior, but on Teff, logg, vmic and [Fe/H] only at the reference stars with
    # [Fe/H] >= -1 (50 of 100); every [X/Fe] at all of them. The parameters' prior is what
    # carries the metal-poor bias ("no prior", "abundance prior only") and what converges.
    "parameters' prior above [Fe/H] -1": {"param_prior_feh_min": -1.0},
    # The parameters' prior at a tenth of X19's D, the abundances' at X19's: without it the
    # parameters follow the data ("no prior") but 40 iterations do not converge ("abundance
    # prior only"); a weak one may keep the convergence without the pull.
    "parameters' prior at a tenth": {"d_scale": {"teff": 0.5, "logg": 0.5, "vmic": 0.5, "feh": 5.0}},
}
# "abundance prior only" run on to Levenberg-Marquardt's own stop (< 0.1 % in 3 iterations; at
# most 120): were its 40 iterations what made it worse?
VARIANTS["abundance prior only, to LM's own stop"] = {**VARIANTS["abundance prior only"], "epochs": 120}


def training_star_bias(run: Path, model: EmulatorModel, truth_by_spectrum: pd.DataFrame) -> dict:
    """Median (fitted - true) of the model's own training spectra by true [Fe/H] bin (Teff, logg,
    [Fe/H]), beside the training labels' (label - true): is the bias the labels' or the model's?"""
    labels = list(model.labels)
    meta, rows, _ = desi_training_set(open_store(run / "survey"), truth_by_spectrum,
                                      lamost_demo_stars(DEMO_OUT)[1], labels)
    cat = pd.read_parquet(run / "catalog.parquet")
    tr = meta.iloc[rows][["specid"] + [f"combined_{lab}" for lab in labels]].merge(
        truth_by_spectrum[["specid"] + labels], on="specid").merge(
        cat[["specid"] + labels], on="specid", suffixes=("_true", "_fit"))
    out = {}
    for lo, hi in zip(FEH_EDGES[:-1], FEH_EDGES[1:]):
        sel = (tr["feh_true"] >= lo) & (tr["feh_true"] < hi)
        row = {"n": int(sel.sum())}
        for lab in ("teff", "logg", "feh"):
            row[f"label_{lab}"] = float((tr[f"combined_{lab}"] - tr[f"{lab}_true"])[sel].median())
            row[f"fit_{lab}"] = float((tr[f"{lab}_fit"] - tr[f"{lab}_true"])[sel].median())
        out[f"{lo:+.1f}..{hi:+.1f}"] = row
    return out


def flag_fractions(run: Path, labels) -> dict:
    """X_flag 1 fraction per label among good single-star fits with S/N > 30."""
    cat = pd.read_parquet(run / "catalog.parquet")
    good = cat[(cat["snr"] > 30) & (cat["fit_status"] != 2) & (cat["qflag_chi2"] == 0)]
    return {lab: float((good[f"{lab}_flag"] == 1).mean()) for lab in labels}


def summarize(run: Path, truth_by_spectrum: pd.DataFrame) -> dict:
    summary = json.loads((run / "report" / "summary.json").read_text())
    model = EmulatorModel.load(run / "model.pt")
    labels = summary["labels"]
    return {"n_training": summary["n_training"],
            "valid_chi2_best": float(model.history["valid_chi2_best"]),
            "recovery": summary["recovery"],
            "bias_by_feh": summary["recovery_by_feh"]["overall"],
            "training_star_bias": training_star_bias(run, model, truth_by_spectrum),
            "precision_over_crb": {lab: r["precision_over_crb"] for lab, r in summary["crb_experiment"]["labels"].items()},
            "accuracy_s100": {lab: r["accuracy"] for lab, r in summary["crb_experiment"]["labels"].items()},
            "desi_over_lamost": {lab: r["desi_over_lamost"] for lab, r in summary["desi_vs_lamost"]["labels"].items()},
            "flag1_fraction": flag_fractions(run, labels)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("data/demo_desi"))
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="logg D 25, D 15, relative")
    ap.add_argument("--work", type=Path, default=None, help="default studies/desi_prior/work[_no_prior]")
    ap.add_argument("--out", type=Path, default=None, help="default studies/desi_prior/desi_prior[_no_prior].json")
    args = ap.parse_args(argv)
    suffix = "" if args.variant.startswith("logg") else \
        "_" + "".join(c for c in args.variant.replace(" ", "_") if c.isalnum() or c in "_-")
    args.work = args.work or HERE / f"work{suffix}"
    args.out = args.out or HERE / f"desi_prior{suffix}.json"
    if not (args.demo / "report" / "summary.json").exists():
        raise SystemExit(f"{args.demo}: run `ddpayne demo --survey desi --out {args.demo}` first")
    args.work.mkdir(parents=True, exist_ok=True)
    for part in ("desi", "survey"):
        link = args.work / part
        if not link.exists():
            link.symlink_to((args.demo / part).resolve())
    train_config = replace(TrainConfig.for_instrument("desi"), **VARIANTS[args.variant])
    run_desi_demo(args.work, train_config=train_config, retrain=True)
    store = open_store(args.demo / "survey")
    truth_by_spectrum = store.meta(["specid", "targetid", "filename", "row"]).merge(
        pd.read_parquet(args.demo / "desi" / "truth.parquet"), on=["targetid", "filename", "row"])
    result = {"synthetic": True, "variant": VARIANTS[args.variant],
              "models": {"x19_prior (committed)": summarize(args.demo, truth_by_spectrum),
                         args.variant: summarize(args.work, truth_by_spectrum)}}
    atomic_write_text(args.out, json.dumps(result, indent=1, default=float))
    print_models(result["models"])


def print_models(models: dict) -> None:
    """Print each model's ``summarize`` result (name -> dict)."""
    for name, r in models.items():
        print(name, "n_training", r["n_training"])
        print(pd.DataFrame(r["bias_by_feh"]).T[["n", "bias_teff", "bias_logg", "bias_feh", "scatter_teff",
                                                "scatter_logg", "scatter_feh"]].round(3).to_string())
        if "training_star_bias" in r:
            print(pd.DataFrame(r["training_star_bias"]).T.round(3).to_string())
        print(pd.DataFrame({k: r[k] for k in ("precision_over_crb", "accuracy_s100", "desi_over_lamost",
                                             "flag1_fraction")}).T.round(3).to_string())
        rec = pd.DataFrame(r["recovery"]).T
        print(rec[[c for c in rec.columns if c.startswith("scatter_")]].T.round(3).to_string())


if __name__ == "__main__":
    main()
