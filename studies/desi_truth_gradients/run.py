"""Is the DESI synthetic survey's [O/Fe] Cramer-Rao bound physical? (SYNTHETIC DESI demo)

The DESI demo's precision for [O/Fe] stays at 2.6-3x its Cramer-Rao bound, which is computed with
the survey's truth emulator (``data/models/truth_emulator_desi.pt``, a network trained on the
desi-truth-grid MOOG spectra). This study compares that emulator's gradient spectra with the
truth physics itself:

1. At 10 DESI reference stars (``theory.gradients.desi_points``, those inside the truth
   emulator's label range), MOOG with the truth physics (``theory.synthesis.TRUTH``) at DESI
   resolution, each star and each star stepped in [O/Fe], [N/Fe], [Mg/Fe] (cached in
   data/theory/work/truth-moog like every grid point), against the truth emulator's finite
   differences over the same steps: the norms of both and the emulator's projection on MOOG.
2. The demo's Cramer-Rao experiment (``validation.studies.desi_crb_experiment``) on cool
   (Teff < 5200 K) and warm (Teff > 5800 K) stars separately: precision over the bound per class.

    python studies/desi_truth_gradients/run.py [--demo data/demo_desi] [--workers 2]
      -> studies/desi_truth_gradients/desi_truth_gradients.json (about 15 min on 2 cores, 7 with
         the MOOG spectra cached)
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import DesiSurveyConfig
from ddpayne_core.simulate.survey import DESI_TRUTH_EMULATOR
from ddpayne_core.theory.gradients import REFERENCE_LABELS, GridSpec, _compute_point, desi_points
from ddpayne_core.theory.synthesis import TRUTH
from ddpayne_core.validation.studies import desi_crb_experiment

HERE = Path(__file__).resolve().parent
STEPPED = ("o_fe", "n_fe", "mg_fe")
TEFF_CLASSES = {"cool (Teff < 5200 K)": (0.0, 5200.0), "warm (Teff > 5800 K)": (5800.0, 1e5)}


def gradient_comparison(truth: EmulatorModel, n_stars: int, workers: int) -> list[dict]:
    """Per reference star: labels and, per stepped label, |dF| of MOOG (truth physics) and of
    the truth emulator over the model's pixels, and the emulator's projection on MOOG."""
    ref, step = desi_points()
    full = np.zeros((len(ref), len(truth.labels)))
    for j, lab in enumerate(truth.labels):
        full[:, j] = ref[:, REFERENCE_LABELS.index(lab)]
    inside = np.nonzero(np.all((full >= truth.scaler.lo) & (full <= truth.scaler.hi), axis=1))[0]
    pick = inside[np.linspace(0, len(inside) - 1, n_stars).astype(int)]
    points = []
    for s in pick:
        points.append(ref[s])
        for lab in STEPPED:
            p = ref[s].copy()
            p[REFERENCE_LABELS.index(lab)] += step[s, REFERENCE_LABELS.index(lab)]
            points.append(p)
    spec = GridSpec("desi-truth-gradient-check", TRUTH, "desi", np.array(points))
    with ProcessPoolExecutor(workers) as ex:
        files = list(ex.map(_compute_point, [(spec, p) for p in points]))
    rows = []
    for i, s in enumerate(pick):
        if files[i * (1 + len(STEPPED))] is None:
            continue
        base = np.load(files[i * (1 + len(STEPPED))])
        row = {lab: float(ref[s, REFERENCE_LABELS.index(lab)]) for lab in ("teff", "logg", "feh")}
        for k, lab in enumerate(STEPPED):
            f = files[i * (1 + len(STEPPED)) + 1 + k]
            if f is None:
                continue
            moog = (np.load(f) - base)[truth.mask]
            xs = full[s].copy()
            xs[truth.labels.index(lab)] += step[s, REFERENCE_LABELS.index(lab)]
            emu = (truth.predict(xs[None]) - truth.predict(full[s][None]))[0][truth.mask]
            row[lab] = {"moog_norm": float(np.sqrt(moog @ moog)), "emulator_norm": float(np.sqrt(emu @ emu)),
                        "emulator_on_moog": float(emu @ moog / (moog @ moog))}
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("data/demo_desi"))
    ap.add_argument("--stars", type=int, default=10)
    ap.add_argument("--crb-stars", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "desi_truth_gradients.json")
    args = ap.parse_args(argv)
    truth = EmulatorModel.load(DESI_TRUTH_EMULATOR)
    result = {"synthetic": True, "gradients": gradient_comparison(truth, args.stars, args.workers),
              "crb_by_teff": {}}
    table = pd.read_parquet(args.demo / "desi" / "truth.parquet")
    model = EmulatorModel.load(args.demo / "model.pt")
    for name, (lo, hi) in TEFF_CLASSES.items():
        part = table[(table["teff"] >= lo) & (table["teff"] < hi)]
        labels = desi_crb_experiment(part, model, DESI_TRUTH_EMULATOR, DesiSurveyConfig(),
                                     n_stars=args.crb_stars)["labels"]
        result["crb_by_teff"][name] = {lab: {k: r[k] for k in ("crb", "precision", "precision_over_crb")}
                                      for lab, r in labels.items()}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    for row in result["gradients"]:
        print(f"Teff {row['teff']:.0f} logg {row['logg']:.2f} [Fe/H] {row['feh']:+.2f}: " + "; ".join(
            f"{lab} MOOG {row[lab]['moog_norm']:.3f} emulator {row[lab]['emulator_norm']:.3f} "
            f"(projection {row[lab]['emulator_on_moog']:.2f})" for lab in STEPPED if lab in row))
    print(pd.DataFrame({name: {lab: r["precision_over_crb"] for lab, r in rows.items()}
                        for name, rows in result["crb_by_teff"].items()}).round(2).to_string())


if __name__ == "__main__":
    main()
