"""Can the training labels' noise be averaged down with the spectra themselves (errors in
variables)? The training labels (APOGEE-like, 60 K / 0.08 dex / 0.04 dex noise) are the first
part of the accuracy excess over the Cramer-Rao bound (studies/accuracy_floor). Each training
spectrum is a second, independent measurement of its star's labels: the committed model's fit of
it. Their inverse-variance mean is a less noisy label, and a second emulator trained on it should
be more accurate.

Steps (SYNTHETIC survey, `ddpayne demo`):
1. fit every training spectrum with the committed model;
2. per label, the fit's error: its formal error times one scale s, chosen so that the fit minus
   reference label has the variance it should, sigma_ref^2 + s^2 formal^2 (robustly, 1.4826 MAD);
   sigma_ref is the reference survey's stated error (``HIRES_NOISE``). No truth is used;
3. refined label = (ref / sigma_ref^2 + fit / sigma_fit^2) / (1 / sigma_ref^2 + 1 / sigma_fit^2);
4. train the same emulator (the committed model's settings) on the refined labels; optionally
   repeat from step 1 with it (``--rounds``), each round combining the ORIGINAL reference labels
   with the newest model's fit (combining with the previous round's refined labels would count
   the spectra twice);
5. every model through ``crb_experiment`` (200 stars observed twice at S/N 100), and the refined
   labels' own scatter and bias against truth (a synthetic survey's privilege).

Resumable: the trained models are kept in --work.

Usage: python studies/label_refinement/run.py [--demo data/demo] [--work /tmp/label_refinement]
       [--rounds 1] [--only mg_fe,si_fe,...] [--seed K] [--stars 200]
       [--result studies/label_refinement/label_refinement.json]
"""
import importlib.util
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit.lm import fit_spectra
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.model.trainingset import select_training
from ddpayne_core.pipeline import preprocessed_rows, train_from_store
from ddpayne_core.simulate import HIRES_NOISE

# studies/accuracy_floor: the same command line and Cramer-Rao loop (loaded by path: both are run.py)
_spec = importlib.util.spec_from_file_location(
    "accuracy_floor", Path(__file__).resolve().parent.parent / "accuracy_floor" / "run.py")
accuracy_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy_floor)


def refine(model, store, meta, ts, sigma_ref):
    """Refined training labels (n_train, n_label) of ``select_training(meta, ts)``'s rows, the
    fit's error scale s per label, the fitted labels and the rows."""
    rows, ref, names = select_training(meta, ts)
    fit = fit_spectra(model, *preprocessed_rows(store, meta, rows))
    ok = np.isfinite(fit.labels).all(1) & np.isfinite(fit.errors).all(1)
    var_diff = np.array([robust_bias_scatter(d)[1] for d in (fit.labels[ok] - ref[ok]).T]) ** 2
    scale = np.sqrt(np.maximum(var_diff - sigma_ref ** 2, 0.0)
                    / np.median(fit.errors[ok] ** 2, axis=0))
    w_ref = 1.0 / sigma_ref ** 2
    w_fit = np.where(ok[:, None], 1.0 / np.maximum(scale * fit.errors, 1e-12) ** 2, 0.0)
    refined = (w_ref * ref + w_fit * np.nan_to_num(fit.labels)) / (w_ref + w_fit)
    return refined, dict(zip(names, scale)), fit.labels, rows


def main():
    args, store, committed, ts, config = accuracy_floor.retraining_study(
        "label_refinement", Path(__file__).with_name("label_refinement.json"),
        [("--rounds", int, 1), ("--only", str, ""), ("--seed", int, None)])
    if args.seed is not None:       # another training draw of the same setting
        config = replace(config, seed=args.seed)
    # --only: refine these labels (comma-separated), keep the reference values of the others
    only = [lab for lab in args.only.split(",") if lab] or list(committed.labels)
    tag = ("" if args.only == "" else "_" + "_".join(only)) + ("" if args.seed is None else f"_seed{args.seed}")
    sigma_ref = np.array([HIRES_NOISE.get(lab, HIRES_NOISE["xfe"]) for lab in committed.labels])
    base = store.meta()
    models, out = {"committed (APOGEE-like labels)": committed}, {"label_scatter": {}}
    model = committed
    for k in range(1, args.rounds + 1):
        refined, scale, fitted, rows = refine(model, store, base, ts, sigma_ref)
        apogee = base[[f"{ts.survey}_{lab}" for lab in committed.labels]].to_numpy()[rows]
        kept = [j for j, lab in enumerate(committed.labels) if lab not in only]
        refined[:, kept] = apogee[:, kept]
        meta = base.copy()
        for j, lab in enumerate(committed.labels):   # same rows; only their labels change
            meta[f"{ts.survey}_{lab}"] = np.nan
            meta.loc[meta.index[rows], f"{ts.survey}_{lab}"] = refined[:, j]
        truth = base[list(committed.labels)].to_numpy()[rows]
        out["label_scatter"][f"round {k}"] = {lab: {"fit_error_scale": float(scale[lab])}
                                              for lab in committed.labels}
        for j, lab in enumerate(committed.labels):
            row = out["label_scatter"][f"round {k}"][lab]
            for name, values in (("reference", apogee), ("refined", refined), ("fit", fitted)):
                row[f"{name}_bias"], row[f"{name}_scatter"] = robust_bias_scatter(values[:, j] - truth[:, j])
        print(f"round {k}: refined / fitted / reference label scatter against truth: "
              + ", ".join(f"{lab} {r['refined_scatter']:.3g}/{r['fit_scatter']:.3g}/{r['reference_scatter']:.3g}"
                          for lab, r in out["label_scatter"][f"round {k}"].items()), flush=True)
        path = args.work / f"refined_round{k}{tag}.pt"
        if not path.exists():
            t0 = time.time()
            train_from_store(args.demo / "survey", path, ts, config, meta=meta)
            print(f"trained round {k} in {time.time() - t0:.0f} s", flush=True)
        model = models[f"refined labels, round {k}"] = EmulatorModel.load(path)
    out.update(accuracy_floor.crb_experiments(store, models, args.stars))
    atomic_write_text(args.result, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
