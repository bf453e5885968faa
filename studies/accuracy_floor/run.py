"""How much of the accuracy over the Cramer-Rao bound at S/N 100 (issue: <= 2 for every featured
label) is the training labels' noise, and how much the gradient prior? The committed demo model
against the same emulator trained on the same training stars with their TRUE labels instead of
the APOGEE-like ones (same settings, same spectra), and once more with true labels and no prior
(``VARIANTS``), all put through ``validation.studies.crb_experiment`` (the same stars observed
twice more at S/N 100). SYNTHETIC survey (`ddpayne demo`). Resumable: the trained models are
kept in --work.

Usage: python studies/accuracy_floor/run.py [--demo data/demo] [--work /tmp/accuracy_floor]
       [--stars 200] [--result studies/accuracy_floor/accuracy_floor.json]
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.model.train import TrainConfig
from ddpayne_core.model.trainingset import TrainingSetConfig
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.pipeline import train_from_store
from ddpayne_core.simulate.survey import TRUTH_EMULATOR
from ddpayne_core.validation.studies import crb_experiment

# Trained on the committed model's training stars with their true labels: file stem, changes to
# the committed model's TrainConfig.
VARIANTS = {"true labels": ("true_labels", {}),
            "true labels, no prior": ("true_labels_no_prior", {"regularize": False})}


def retraining_study(name: str, result: Path, extra=()):
    """The command line of a study that retrains the committed demo model (--demo, --work,
    --stars, --result and ``extra``: (flag, type, default) triples) and what it starts from:
    (args, store, committed model, its TrainingSetConfig, its TrainConfig)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=DEMO_OUT)
    ap.add_argument("--work", type=Path, default=Path(f"/tmp/{name}"))
    ap.add_argument("--stars", type=int, default=200)
    ap.add_argument("--result", type=Path, default=result)
    for flag, kind, default in extra:
        ap.add_argument(flag, type=kind, default=default)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    committed = EmulatorModel.load(args.demo / "model.pt")
    return (args, open_store(args.demo / "survey"), committed, TrainingSetConfig.of_model(committed),
            TrainConfig.of_model(committed))


def main():
    args, store, committed, ts, config = retraining_study(
        "accuracy_floor", Path(__file__).with_name("accuracy_floor.json"))
    meta = store.meta()
    for lab in committed.labels:        # the training stars keep their rows; only labels change
        col = f"{ts.survey}_{lab}"
        meta[col] = meta[lab].where(meta[col].notna())
    models = {"committed (APOGEE-like labels)": committed}
    for name, (stem, changes) in VARIANTS.items():
        path = args.work / f"{stem}.pt"
        if not path.exists():
            t0 = time.time()
            train_from_store(args.demo / "survey", path, ts, replace(config, **changes), meta=meta)
            print(f"trained '{name}' in {time.time() - t0:.0f} s", flush=True)
        models[name] = EmulatorModel.load(path)
    atomic_write_text(args.result, json.dumps(crb_experiments(store, models, args.stars), indent=1, default=float))


def crb_experiments(store, models: dict, n_stars: int) -> dict:
    """name -> ``crb_experiment`` of each model (the same stars), each printed as it ends."""
    out = {}
    for name, model in models.items():
        t0 = time.time()
        exp = out[name] = crb_experiment(store, model, TRUTH_EMULATOR, n_stars=n_stars)
        print(f"{name} ({time.time() - t0:.0f} s): accuracy / precision over the bound at S/N 100: "
              + ", ".join(f"{lab} {r['error_over_crb']:.2f}/{r['precision_over_crb']:.2f}"
                          for lab, r in exp["labels"].items()), flush=True)
    return out


if __name__ == "__main__":
    main()
