"""Peer benchmark on the SYNTHETIC demo survey: The Cannon against the DD-Payne on exactly the
DD-Payne's training set and preprocessing, the same held-out single-star spectra, fitted minus
TRUE labels, in one run.

The Cannon: TheCannon 0.7.3 from PyPI (a benchmark-only dependency), quadratic in all labels of
the model, trained on the demo model's training spectra (``pipeline.training_spectra``: the
APOGEE-like labels, rest frame, normalization and pixel weights the DD-Payne was trained with).
The DD-Payne: a committed or given model (default ``data/models/demo_emulator.pt``, trained on
that set) fitted with the default fit settings. Test spectra: single stars never trained on
(no binaries, no injected defects), up to ``--per-bin`` of them in each S/N bin 10-20, 20-35,
35-70, > 70, drawn with a fixed seed.

Prints, per label and S/N bin, the robust scatter (1.4826 MAD) and median bias of both, the
DD-Payne / Cannon scatter ratio, the fraction of the sample whose DD-Payne label carries X_flag 1
(``flags.add_flags`` on the test stars' fits, against the model's own reference stars: a label
is "featured" where it is measured from its own spectral features) and the scatter ratio over
those stars alone; the same for metal-poor stars (true [Fe/H] < -1, S/N >= 35); how many of
the featured rows (X_flag 1 for at least half the sample) the DD-Payne wins; both methods'
test-step speeds (spectra/s in this process); and writes the rows to
``<demo>/report/peer_cannon.json``, which the next ``ddpayne report`` shows.

Memory: The Cannon's training holds ~18 GB for the full 3,504 x 3,909 set; ``--every K`` trains
and fits both on every K-th pixel.
``--quick``: a 2,500-star simulated survey, every 8th pixel, a 3-iteration model trained here
(a check that the benchmark runs, not a measurement).
Usage: python benchmarks/bench_peer_cannon.py [--demo data/demo] [--model M.pt] [--per-bin 600]
       [--every K] [--quick]
"""
import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import cannon

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import FitConfig, fit_spectra
from ddpayne_core.flags import add_flags, model_reference
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig, TrainingSetConfig, select_training
from ddpayne_core.paths import DEMO_OUT, MODELS
from ddpayne_core.pipeline import train_from_store, training_spectra
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.simulate import SurveyConfig, simulate_survey

SNR_BINS = ((10, 20), (20, 35), (35, 70), (70, np.inf))
QUIET = dict(log=lambda *a: None)
MIN_FLAGGED = 20   # stars with X_flag 1 a sample needs for the flagged-only ratio


def test_rows(meta: pd.DataFrame, trained_stars, per_bin: int, seed: int = 0) -> np.ndarray:
    """Store rows of single stars never trained on, up to ``per_bin`` per S/N bin (sorted)."""
    ok = (~meta["is_binary"] & ~meta["injected_bad"] & ~meta["star_id"].isin(trained_stars)).to_numpy()
    rng, rows = np.random.default_rng(seed), []
    for lo, hi in SNR_BINS:
        cand = np.flatnonzero(ok & (meta["snr"] >= lo).to_numpy() & (meta["snr"] < hi).to_numpy())
        rows.append(rng.choice(cand, size=min(per_bin, cand.size), replace=False))
    return np.sort(np.concatenate(rows))


def x_flags(model: EmulatorModel, fit, snr: np.ndarray) -> np.ndarray:
    """(n_spec, n_label) X_flag of the DD-Payne's fits ``fit`` (``flags.add_flags``, binned over
    these spectra, against the model's own reference stars); 0 where a fit failed."""
    ok = np.isfinite(fit.labels).all(1)
    table = pd.DataFrame(fit.labels[ok], columns=list(model.labels))
    table["chi2"], table["snr"] = fit.chi2[ok], snr[ok]
    add_flags(table, model, model_reference(model))
    flags = np.zeros(fit.labels.shape, np.int8)
    flags[ok] = table[[f"{lab}_flag" for lab in model.labels]].to_numpy()
    return flags


def compare(fitted: dict, truth: pd.DataFrame, names, xflag: np.ndarray) -> pd.DataFrame:
    """Rows (label, sample, n, per method bias and scatter of fitted minus true, their ratio, the
    fraction of the sample with the DD-Payne's X_flag 1 (``xflag``: (n_spec, n_label)) and the
    ratio over those stars alone)."""
    samples = {f"S/N {lo}-{hi:g}" if np.isfinite(hi) else f"S/N > {lo}":
               ((truth["snr"] >= lo) & (truth["snr"] < hi)).to_numpy() for lo, hi in SNR_BINS}
    samples["[Fe/H] < -1, S/N >= 35"] = ((truth["feh"] < -1) & (truth["snr"] >= 35)).to_numpy()
    rows = []
    for k, lab in enumerate(names):
        error = {method: values[:, k] - truth[lab].to_numpy() for method, values in fitted.items()}
        for sample, sel in samples.items():
            row = {"label": lab, "sample": sample, "n": int(sel.sum())}
            for method, e in error.items():
                row[f"{method} bias"], row[f"{method} scatter"] = robust_bias_scatter(e[sel])
            row["DD-Payne / Cannon"] = row["DD-Payne scatter"] / row["The Cannon scatter"]
            row["X_flag 1 fraction"] = float(np.mean(xflag[sel, k] == 1))
            # the same comparison over the stars whose label the DD-Payne flags as measured
            flagged = sel & (xflag[:, k] == 1)
            row["DD-Payne / Cannon, X_flag 1"] = np.nan if flagged.sum() < MIN_FLAGGED else (
                robust_bias_scatter(error["DD-Payne"][flagged])[1]
                / robust_bias_scatter(error["The Cannon"][flagged])[1])
            rows.append(row)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=DEMO_OUT)
    ap.add_argument("--model", type=Path, default=MODELS / "demo_emulator.pt")
    ap.add_argument("--per-bin", type=int, default=600)
    ap.add_argument("--every", type=int, default=1, help="use every K-th pixel (both methods)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        work = Path(tmp.name)
        simulate_survey(work / "survey", replace(SurveyConfig(), n_stars=2500, seed=3, chunk=300), **QUIET)
        args.model = work / "model.pt"
        train_from_store(work / "survey", args.model, config=replace(TrainConfig(), epochs=3), **QUIET)
        store, args.every, args.per_bin = open_store(work / "survey"), 8, 60
    elif not (args.demo / "survey").exists():
        raise SystemExit(f"{args.demo / 'survey'}: no demo survey; run `ddpayne demo` first")
    else:
        store = open_store(args.demo / "survey")
    model = EmulatorModel.load(args.model)
    meta = store.meta()
    ts = TrainingSetConfig.of_model(model)
    trained_rows = select_training(meta, ts)[0]
    flux, ivar, labels, names = training_spectra(store, ts, meta)
    if list(names) != list(model.labels):
        raise SystemExit(f"{args.model}: labels {model.labels} are not the training set's {names}")
    rows = test_rows(meta, meta["star_id"].to_numpy()[trained_rows], args.per_bin)
    truth = meta.iloc[rows].reset_index(drop=True)
    test_flux, test_ivar = preprocess_batch(*store.read_rows(rows), truth["rv"].to_numpy(),
                                            get_instrument(store.info["instrument"]))
    pix = np.arange(0, flux.shape[1], args.every)
    print(f"{len(flux)} training spectra (the model's own set), {len(rows)} held-out single-star "
          f"test spectra, {len(pix)} pixels, {len(names)} labels"
          + ("; QUICK run: checks that the benchmark runs, measures nothing" if args.quick else ""))

    test_ivar_ours = np.zeros_like(test_ivar)
    test_ivar_ours[:, pix] = test_ivar[:, pix]        # the DD-Payne sees the Cannon's pixels
    t0 = time.perf_counter()
    ours = fit_spectra(model, test_flux, test_ivar_ours, FitConfig())
    t_ours = time.perf_counter() - t0
    theirs, t_train, t_test = cannon(flux[:, pix], ivar[:, pix], labels, test_flux[:, pix],
                                     test_ivar[:, pix], model.wave[pix], names)
    table = compare({"DD-Payne": ours.labels, "The Cannon": theirs}, truth, names,
                    x_flags(model, ours, truth["snr"].to_numpy()))
    timing = {"DD-Payne": {"test_spectra_per_s": len(rows) / t_ours, "torch_threads": torch.get_num_threads()},
              "The Cannon": {"train_s": t_train, "test_spectra_per_s": len(rows) / t_test}}
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    wins = (table["DD-Payne / Cannon"] < 1).mean()
    print(f"DD-Payne scatter below The Cannon's in {wins:.0%} of the {len(table)} label x sample rows")
    featured = table[table["X_flag 1 fraction"] >= 0.5]
    print(f"featured rows (X_flag 1 for at least half the sample): {len(featured)}; DD-Payne below "
          f"The Cannon in {(featured['DD-Payne / Cannon'] < 1).sum()} over all their stars, in "
          f"{(featured['DD-Payne / Cannon, X_flag 1'] < 1).sum()} over their X_flag 1 stars")
    for name, t in timing.items():
        print(f"speed, {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in t.items()))
    print(f"test_speed_ratio_vs_cannon={timing['DD-Payne']['test_spectra_per_s'] / timing['The Cannon']['test_spectra_per_s']:.2f}")
    if not args.quick:
        out = args.demo / "report" / "peer_cannon.json"
        atomic_write_text(out, json.dumps({"synthetic": True, "model": str(args.model),
                                           "every_pixel": args.every, "rows": table.to_dict(orient="records"),
                                           "timing": timing}, indent=1, default=float))
        print(f"-> {out} (the next `ddpayne report` shows it)")


if __name__ == "__main__":
    main()
