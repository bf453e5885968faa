"""How strong should the gradient prior be? Side by side, the validation summaries of demo runs
on the same synthetic survey whose overall models differ only in D_scale (``ddpayne train
--d-scale``), each then fitted, flagged and reported by ``ddpayne demo`` (the metal-poor and
GALAH models stay the committed ones). Per run: the X_flag 1 fraction inside the training
coverage, the robust scatter against truth at S/N 100, the precision and accuracy over the
Cramer-Rao bound at S/N 100, the overall model's bias against truth by true [Fe/H] (S/N > 30)
and the best validation chi^2 per used pixel. SYNTHETIC survey only: it needs the truth.

Usage (writes JSON atomically):
    ddpayne train --store data/demo/survey --out RUN/model.pt --d-scale logg=25 ...
    cp -r data/demo/survey data/models/demo_emulator_{mp,galah}.pt RUN/   (as model_mp.pt, ...)
    ddpayne demo --out RUN
    python scripts/prior_strength.py "NAME=RUN:D settings" ... --out data/studies/prior_strength.json
"""
import argparse
import json
from pathlib import Path

from ddpayne_core.emulator import EmulatorModel
from ddpayne_core.io_utils import atomic_write_text

FEH_BINS = ("-2.0..-1.5", "-1.5..-1.0", "+0.0..+0.6")


def run_figures(run: Path) -> dict:
    """The figures of one demo directory's report/summary.json and model.pt."""
    s = json.loads((run / "report" / "summary.json").read_text())
    model = EmulatorModel.load(run / "model.pt")
    labels = list(s["precision_over_crb"])
    by_feh = s["recovery_by_feh"]["overall"]
    return {
        "d_scale": model.config.get("d_scale", {}),
        "valid_chi2_per_used_pixel": model.history["valid_chi2_best"] / float(model.mask.sum()),
        "featured_flag1_fraction": {k: round(v, 3) for k, v in s["featured_flag1_fraction"].items()},
        "featureless_flag0_fraction": round(s["featureless_flag0_fraction"], 3),
        "scatter_snr100": {k: round(v["scatter_100"], 4) for k, v in s["recovery"].items()},
        "precision_over_crb": {k: round(s["precision_over_crb"][k], 2) for k in labels},
        "error_over_crb": {k: round(s["error_over_crb"][k], 2) for k in labels},
        "bias_by_true_feh": {b: {k: round(by_feh[b][f"bias_{k}"], 3) for k in ("teff", "logg", "feh")}
                             for b in FEH_BINS if b in by_feh},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="NAME=DEMO_DIR")
    ap.add_argument("--out", default="data/studies/prior_strength.json")
    args = ap.parse_args()
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        runs[name] = run_figures(Path(path))
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
