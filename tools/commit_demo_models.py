"""Copy the demo models (the overall one, and with --studies the metal-poor and GALAH ones) that `ddpayne demo --retrain --out DIR` trained into data/models/,
each with a provenance JSON (training set size, epochs, wall time, validation chi2, the truth
emulator the survey came from), so that `ddpayne demo` reuses them; with --real, the model that
`ddpayne demo --real --retrain --out DIR` trained on real LAMOST spectra; with --desi, the DESI
demo's model (`ddpayne demo --survey desi --retrain --out DIR`).

Usage: python tools/commit_demo_models.py DIR --made-by "ddpayne demo --retrain --out DIR"
       python tools/commit_demo_models.py DIR --real --made-by "ddpayne demo --real --retrain --out DIR"
       python tools/commit_demo_models.py DIR --desi --made-by "ddpayne demo --survey desi --retrain --out DIR"
"""
import argparse
import datetime
import json
import shutil
from pathlib import Path

from ddpayne_core.demo import COMMITTED_GALAH_MODEL, COMMITTED_MODEL, COMMITTED_MP_MODEL
from ddpayne_core.desi_demo import COMMITTED_DESI_MODEL
from ddpayne_core.io_utils import atomic_path, atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.real import COMMITTED_REAL_MODEL

MODELS = {
    "model": (COMMITTED_MODEL, "DD-Payne emulator of the embedded default SYNTHETIC survey "
                               "(LAMOST-APOGEE labels)"),
    "model_mp": (COMMITTED_MP_MODEL, "DD-Payne metal-poor emulator of the embedded default SYNTHETIC "
                                     "survey (LAMOST-APOGEE labels, training stars with APOGEE-like "
                                     "[Fe/H] < -0.5); blended with the overall model (docs/spec.md sec. 9)"),
    "model_galah": (COMMITTED_GALAH_MODEL, "DD-Payne emulator of the embedded default SYNTHETIC "
                                           "survey (LAMOST-GALAH labels)"),
}


def provenance(model: EmulatorModel, what: str, made_by: str, machine: str) -> dict:
    h = model.history
    return {"what": what, "made_by": made_by, "date": datetime.date.today().isoformat(),
            "machine": machine, "training_wall_hours": round(sum(h["seconds"]) / 3600, 2),
            "optimizer": model.config.get("optimizer", "adam"),
            "n_train": model.config["n_train"], "n_valid": model.config["n_valid"],
            "labels": list(model.labels), "epochs_planned": model.config["epochs"],
            "epochs_run": len(h["epoch"]),
            # chi2 per spectrum and used pixel (masked pixels excluded): 1 = the training noise
            "valid_chi2_per_used_pixel_best": round(h["valid_chi2_best"] / int(model.mask.sum()), 3),
            "truth_emulator_sha256": model.config.get("truth_emulator_sha256"),
            "real_provenance": model.config.get("real_provenance"),
            "synthetic": bool(model.config.get("synthetic", True))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--made-by", required=True)
    ap.add_argument("--machine", default="2 CPU cores")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--real", action="store_true", help="commit DIR/model.pt as the real-data model")
    which.add_argument("--desi", action="store_true", help="commit DIR/model.pt as the DESI demo's model")
    args = ap.parse_args()
    if args.real:
        models = {"model": (COMMITTED_REAL_MODEL, "DD-Payne emulator trained on REAL LAMOST DR10 spectra "
                                                  "with the LAMOST pipeline's Teff, logg, [Fe/H] (label "
                                                  "transfer; held-out stars never trained on)")}
    elif args.desi:
        models = {"model": (COMMITTED_DESI_MODEL, "DD-Payne emulator of the DESI demo's SYNTHETIC survey "
                                                  "(Z24 sec. 3.2: APOGEE-like labels of its APOGEE overlap, "
                                                  "then its metal-poor sample's, labels transferred from "
                                                  "the LAMOST demo's catalogue elsewhere)")}
    else:
        models = MODELS
    for name, (dest, what) in models.items():
        if not (args.dir / f"{name}.pt").exists():   # the demo without --studies trains one model
            print(f"{args.dir / name}.pt: not there; {dest} left as it is")
            continue
        model = EmulatorModel.load(args.dir / f"{name}.pt")
        info = provenance(model, what, args.made_by, args.machine)
        with atomic_path(dest) as tmp:
            shutil.copyfile(args.dir / f"{name}.pt", tmp)
        atomic_write_text(dest.with_suffix(".json"), json.dumps(info, indent=2))
        print(f"{dest}: {info}")


if __name__ == "__main__":
    main()
