"""How strong a prior, and how many training stars? Side by side, the validation summaries of
demo runs on the same synthetic survey whose overall models differ only in the prior (``ddpayne
train --d-scale``, ``--prior-weighting``) or in the training set (trained on a store simulated
with a larger high-resolution overlap, ``ddpayne simulate --apogee-fraction``: the same stars and
spectra, more of them labelled), each then fitted, flagged and reported by ``ddpayne demo`` (the
metal-poor and GALAH models stay the committed ones). Per run: the training stars and epochs, the
X_flag 1 fraction inside the training coverage, the robust scatter against truth at S/N 100, the
precision and accuracy over the Cramer-Rao bound at S/N 100, the overall model's bias against
truth by true [Fe/H] (S/N > 30) and the best validation chi^2 per used pixel. A run directory
without a report (only RUN/model.pt) is fitted and flagged here (parts in RUN/catalog.parts,
resumable) on --store, without the Cramer-Rao experiment. SYNTHETIC survey only: it needs the
truth.

Usage (writes JSON atomically):
    ddpayne train --store data/demo/survey --out RUN/model.pt --d-scale logg=25 ...
    cp -r data/demo/survey data/models/demo_emulator_{mp,galah}.pt RUN/   (as model_mp.pt, ...)
    ddpayne demo --out RUN
    python studies/prior_strength/prior_strength.py NAME=RUN ... --store data/demo/survey \
        --out studies/prior_strength/prior_strength.json
    ddpayne simulate --apogee-fraction 0.7 --out S70
    ddpayne train --store S70 --out RUN70/model.pt --epochs 210
    python studies/prior_strength/prior_strength.py "3,154 stars=data/demo" "6,403 stars=RUN70" \
        --store data/demo/survey --out studies/prior_strength/training_size.json
"""
import argparse
import json
from pathlib import Path

from ddpayne_core.catalog import recovery_by_feh, recovery_scatter
from ddpayne_core.fit import FitConfig
from ddpayne_core.flags import model_reference
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.pipeline import fit_and_flag
from ddpayne_core.simulate import SurveyConfig
from ddpayne_core.validation import flag_fractions

FEH_BINS = ("-2.0..-1.5", "-1.5..-1.0", "+0.0..+0.6")


def catalog_summary(run: Path, model: EmulatorModel, store_path: str) -> dict:
    """The summary fields run_figures needs, from fitting and flagging the store with
    RUN/model.pt (no Cramer-Rao experiment)."""
    store = open_store(store_path)
    results = fit_and_flag(model, store, run / "catalog.parquet", FitConfig(),
                           model_reference(model), log=print)
    truth = store.meta(["specid"] + list(model.labels))
    featureless = SurveyConfig(**store.info["provenance"]["config"]).featureless
    by_feh = recovery_by_feh(results, truth, model.labels)
    return {**flag_fractions(results, model.labels, featureless),
            "recovery": recovery_scatter(results, truth, model.labels).to_dict(orient="index"),
            "recovery_by_feh": {"overall": by_feh.to_dict(orient="index")}}


def run_figures(run: Path, store_path: str) -> dict:
    """The figures of one run directory: its report/summary.json and model.pt, or model.pt
    alone (see catalog_summary)."""
    model = EmulatorModel.load(run / "model.pt")
    summary = run / "report" / "summary.json"
    s = json.loads(summary.read_text()) if summary.exists() else catalog_summary(run, model, store_path)
    by_feh = s["recovery_by_feh"]["overall"]
    out = {
        "d_scale": model.config.get("d_scale", {}),
        "prior_weighting": model.config.get("prior_weighting", "absolute"),
        "n_train": model.config.get("n_train"),
        "epochs": len(model.history["epoch"]),
        "valid_chi2_per_used_pixel": model.history["valid_chi2_best"] / float(model.mask.sum()),
        "featured_flag1_fraction": {k: round(v, 3) for k, v in s["featured_flag1_fraction"].items()},
        "featureless_flag0_fraction": round(s["featureless_flag0_fraction"], 3),
        "scatter_snr100": {k: round(v["scatter_100"], 4) for k, v in s["recovery"].items()},
        "bias_by_true_feh": {b: {k: round(by_feh[b][f"bias_{k}"], 3) for k in ("teff", "logg", "feh")}
                             for b in FEH_BINS if b in by_feh},
    }
    if "precision_over_crb" in s:
        out["precision_over_crb"] = {k: round(v, 2) for k, v in s["precision_over_crb"].items()}
        out["error_over_crb"] = {k: round(v, 2) for k, v in s["error_over_crb"].items()}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="NAME=DEMO_DIR")
    ap.add_argument("--store", default="data/demo/survey",
                    help="the survey store, for runs without a report")
    ap.add_argument("--out", default="studies/prior_strength/prior_strength.json")
    ap.add_argument("--add", action="store_true",
                    help="keep the runs already in --out (the new ones replace those of their name)")
    args = ap.parse_args()
    runs = json.loads(Path(args.out).read_text())["runs"] if args.add and Path(args.out).exists() else {}
    for item in args.runs:
        name, _, path = item.partition("=")
        runs[name] = run_figures(Path(path), args.store)
    out = {"synthetic": True, "what": __doc__.split("\n\n")[0], "runs": runs}
    atomic_write_text(args.out, json.dumps(out, indent=1))
    first = next(iter(runs.values()))
    print("X_flag 1 fraction inside the coverage (SYNTHETIC):")
    for lab in first["featured_flag1_fraction"]:
        print(f"  {lab:6s}" + "".join(f" {r['featured_flag1_fraction'][lab]:6.3f}" for r in runs.values()))
    print("bias against truth (Teff/logg/[Fe/H]) by true [Fe/H]:")
    for b in FEH_BINS:
        print(f"  {b:11s}" + "".join(
            f"  {r['bias_by_true_feh'][b]['teff']:+5.0f}/{r['bias_by_true_feh'][b]['logg']:+.2f}/"
            f"{r['bias_by_true_feh'][b]['feh']:+.2f}" for r in runs.values()))
    print("validation chi2:", {n: round(r["valid_chi2_per_used_pixel"], 2) for n, r in runs.items()})


if __name__ == "__main__":
    main()
