"""The DESI demo (SYNTHETIC; Z24): ``ddpayne demo --survey desi``.

The DESI synthetic survey from an empty folder (coadds + MWS catalogue, ``simulate.desi``), read
back through the DESI coadd reader (``ingest_desi``), trained as Z24 sec. 3.2 on the stars DESI
shares with APOGEE and, by label transfer, on those it shares with the LAMOST demo's catalogue
(S/N > 20 in both), fitted and flagged with DESI's settings; writes ``DIR/catalog.parquet`` and
``DIR/report``. The committed DESI model (``data/models/demo_emulator_desi.pt``, trained by this
same code) is used when it was trained on this survey configuration from the same LAMOST model,
so a first run does not train; ``retrain`` trains anew. Every step is skipped when its output
exists, so an interrupted run resumes.

It needs the DESI-resolution physics: the DESI truth emulator and the desi-isochrone reference
grid (``bash tools/compute_desi_physics.sh``); it says so when they are missing.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .catalog import recovery_by_feh, recovery_scatter, robust_bias_scatter, write_catalog
from .demo import run_demo, training_label_bias
from .fit.lm import FitConfig
from .io.store import open_store
from .io_utils import file_digest
from .labels import LABEL_SETS
from .model.emulator import EmulatorModel
from .model.train import TrainConfig
from .model.trainingset import (
    TRANSFER_MIN_SNR,
    TrainingSetConfig,
    combine_label_sources,
    select_training,
    transfer_labels,
)
from .paths import DEMO_OUT, DESI_DEMO_OUT, MODELS
from .pipeline import fit_and_flag, train_from_store
from .preprocess.ingest import ingest_desi
from .simulate.desi import DesiSurveyConfig, desi_crb, simulate_desi_survey
from .simulate.survey import DESI_TRUTH_EMULATOR, survey_crb
from .theory.gradients import load_reference_gradients
from .validation.report import write_report
from .validation.studies import desi_crb_experiment

COMMITTED_DESI_MODEL = MODELS / "demo_emulator_desi.pt"
# Z24 sec. 3.2: the APOGEE overlap's labels where a star has them, then the metal-poor sample's
# (LAMOST DR9's training set added Li et al. 2018's metal-poor stars), else the LAMOST ones.
LABEL_SOURCES = ("apogee", "metalpoor", "lamost")
REFERENCE_SOURCES = ("apogee", "metalpoor")    # label catalogues cross-matched, not transferred


def lamost_demo_stars(lamost_demo: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The LAMOST demo's single stars (first visits: star_id, ra, dec and true labels) for the
    shared footprint, and its catalogue (ra, dec, snr, fitted labels, flags) for the transfer."""
    meta = open_store(lamost_demo / "survey").meta()
    single = meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]]
    catalog = pd.read_parquet(lamost_demo / "catalog.parquet")
    if not {"ra", "dec"} <= set(catalog.columns):
        catalog = catalog.merge(meta[["specid", "ra", "dec"]], on="specid")
    return single.reset_index(drop=True), catalog


def run_desi_demo(out: str | Path = DESI_DEMO_OUT, lamost_demo: str | Path = DEMO_OUT,
                  config: DesiSurveyConfig = DesiSurveyConfig(),
                  truth_path: str | Path = DESI_TRUTH_EMULATOR,
                  train_config: TrainConfig = TrainConfig.for_instrument("desi"),
                  fit_config: FitConfig = FitConfig(), reference: str | None = None,
                  crb_stars: int = 200, studies: bool = False, retrain: bool = False,
                  log=print) -> dict:
    """Run the DESI demo into ``out``; returns the report's summary. ``lamost_demo``: a finished
    ``ddpayne demo`` folder (made first when missing); ``reference``: the reference grid for the
    prior and X_flag (default ``train_config.reference``: desi-isochrone); ``studies``: also the
    cost of transferred labels against APOGEE-like ones (``transfer_cost``; one more training);
    ``retrain``: train a model (when ``out`` has none) even where the committed one matches."""
    out, lamost_demo = Path(out), Path(lamost_demo)
    done = out / "report" / "summary.json"
    if done.exists():
        log(f"DESI demo already complete in {out}; delete {done} to redo it")
        return json.loads(done.read_text())
    reference_name = reference or train_config.reference
    if not Path(truth_path).exists():
        raise FileNotFoundError(
            f"{truth_path}: the DESI truth emulator is not built yet; it needs the DESI-resolution "
            "MOOG grids: `bash tools/compute_desi_physics.sh` (about 4.5 h on two cores, resumable)")
    ref = load_reference_gradients(reference_name)      # says how to compute it when missing
    if not (lamost_demo / "report" / "summary.json").exists():
        log(f"the DESI training labels come from the LAMOST demo's catalogue: running it in {lamost_demo}")
        run_demo(lamost_demo, studies=False, log=log)
    lamost_stars, lamost_catalog = lamost_demo_stars(lamost_demo)
    truth = simulate_desi_survey(out / "desi", config, truth_path, lamost_stars, log=log)
    store_path = out / "survey"
    if not _store_complete(store_path):
        ingest_desi([out / "desi" / "coadds"], store_path, mws_catalog=out / "desi" / "mws.fits", log=log)
    store = open_store(store_path)
    labels = [lab for lab in LABEL_SETS["desi"] if lab in lamost_catalog.columns
              and lab in EmulatorModel.load(truth_path).labels]
    truth_by_spectrum = store.meta(["specid", "targetid", "filename", "row"]).merge(
        truth, on=["targetid", "filename", "row"])
    meta, rows, ts = desi_training_set(store, truth_by_spectrum, lamost_catalog, labels)
    n_by_source = meta["combined_source"].iloc[rows].value_counts().to_dict()
    log(f"training set (Z24 sec. 3.2): {len(rows)} DESI spectra with S/N > {TRANSFER_MIN_SNR:.0f}: "
        f"{n_by_source.get('apogee', 0)} with APOGEE-like labels, {n_by_source.get('metalpoor', 0)} "
        f"from the metal-poor sample, {n_by_source.get('lamost', 0)} with labels transferred from "
        "the LAMOST demo's good fits (S/N > 20 there too)")
    model_path = out / "model.pt"
    provenance = {"desi_survey_config": json.loads(json.dumps(asdict(config))),
                  "truth_emulator_sha256": file_digest(truth_path),
                  "lamost_model_sha256": file_digest(lamost_demo / "model.pt")}
    train_config = replace(train_config, reference=reference_name)
    if not model_path.exists():
        if not retrain and _matches(COMMITTED_DESI_MODEL, provenance, train_config, ts):
            log(f"using the committed DESI model {COMMITTED_DESI_MODEL} (trained on this survey "
                "configuration; `ddpayne demo --survey desi --retrain` trains anew)")
            shutil.copyfile(COMMITTED_DESI_MODEL, model_path)
        else:
            trained = train_from_store(store_path, model_path, ts, train_config, meta=meta, log=log)
            trained.config.update(provenance)
            trained.save(model_path)
    model = EmulatorModel.load(model_path)
    results = fit_and_flag(model, store, out / "catalog.parquet", fit_config, ref, log=log, refit_stale=True)
    write_catalog(results, out / "catalog.parquet",
                  {"synthetic": True, "instrument": "desi", "model": str(model_path),
                   "model_config": model.config, "fit_config": asdict(fit_config),
                   "survey": store.info["provenance"], "training_labels": "APOGEE-like labels of the "
                   "APOGEE overlap, then the metal-poor sample's, else transferred from the LAMOST demo catalogue "
                   f"{lamost_demo / 'catalog.parquet'} (Z24 sec. 3.2)",
                   "error_scale": results.attrs.pop("error_scale", None)})
    summary = {"synthetic": True, "instrument": "desi", "n_spectra": int(len(results)),
               "n_training": int(len(rows)), "n_training_by_source": n_by_source, "labels": labels,
               "recovery": json.loads(recovery_scatter(results, truth_by_spectrum[["specid"] + labels],
                                                       labels).to_json(orient="index"))}
    summary["bias_vs_training_labels"] = training_label_bias(
        results, truth_by_spectrum[["specid"] + labels], meta, labels, meta["specid"].to_numpy()[rows],
        "combined", log)
    summary["recovery_by_feh"] = {"overall": json.loads(recovery_by_feh(
        results, truth_by_spectrum[["specid"] + labels], labels).to_json(orient="index"))}
    lamost_truth = lamost_truth_emulator(lamost_demo)
    physics = None if lamost_truth is None else (EmulatorModel.load(truth_path), config.featureless) + lamost_truth
    summary["desi_vs_lamost"] = desi_vs_lamost(results, truth_by_spectrum, lamost_demo, labels, physics=physics)
    log("Cramer-Rao experiment: survey stars observed twice more at S/N 100 and fitted")
    summary["crb_experiment"] = desi_crb_experiment(truth, model, truth_path, config, fit_config,
                                                    n_stars=crb_stars)
    if studies:
        log("transfer cost: a second DESI model trained on the APOGEE-like labels directly")
        summary["transfer_cost"] = transfer_cost(store, meta, truth_by_spectrum, labels, results,
                                                 train_config, fit_config, ref, out, log)
    report_meta = meta.merge(truth_by_spectrum[["specid", "injected_bad", "is_binary"]], on="specid")
    summary = write_report(out / "report", results, report_meta, labels,
                           meta["specid"].to_numpy()[rows], "combined", summary)
    log(f"DESI validation report -> {out / 'report'}")
    return summary


def desi_training_set(store, truth_by_spectrum: pd.DataFrame, lamost_catalog: pd.DataFrame, labels):
    """The DESI training set (Z24 sec. 3.2): every spectrum's labels from the first of
    LABEL_SOURCES that has them all (``combined_<label>``, ``combined_source``), and the rows
    that pass the cuts (S/N > 20). Returns (meta, rows, TrainingSetConfig)."""
    meta = with_reference_labels(store.meta(), truth_by_spectrum, labels, REFERENCE_SOURCES)
    meta = transfer_labels(meta, lamost_catalog, labels, prefix="lamost", min_snr=TRANSFER_MIN_SNR)
    meta.loc[meta["ingest_error"] != "", [f"lamost_{lab}" for lab in labels]] = float("nan")
    meta = combine_label_sources(meta, LABEL_SOURCES, labels)
    ts = TrainingSetConfig(survey="combined", label_set=tuple(labels), min_snr=TRANSFER_MIN_SNR,
                           min_snr_metal_poor=TRANSFER_MIN_SNR)
    return meta, select_training(meta, ts)[0], ts


def with_reference_labels(meta: pd.DataFrame, truth_by_spectrum: pd.DataFrame, labels,
                          sources=("apogee",)) -> pd.DataFrame:
    """``meta`` with the labels ``<source>_<label>`` of the survey's stars in the reference
    catalogues ``sources`` ("apogee": APOGEE-like; "metalpoor": the metal-poor sample; the
    simulation's stand-in for cross-matches with APOGEE DR17 and Li et al. 2018); NaN elsewhere
    and for spectra that failed ingestion."""
    cols = [f"{source}_{lab}" for source in sources for lab in labels]
    out = meta.drop(columns=[c for c in cols if c in meta.columns]).merge(
        truth_by_spectrum[["specid"] + cols], on="specid", how="left")
    out.loc[out["ingest_error"] != "", cols] = float("nan")
    return out


def _matches(committed: Path, provenance: dict, train_config: TrainConfig, ts: TrainingSetConfig) -> bool:
    """Whether the committed DESI model was trained on this DESI survey configuration, simulated
    from this truth emulator, with labels transferred from the same LAMOST model's fits, with
    these settings."""
    if not committed.exists():
        return False
    cfg = dict(EmulatorModel.load(committed).config)
    if isinstance(cfg.get("desi_survey_config"), dict):
        # A survey setting added after the model was trained counts at its default, which
        # reproduces the survey as it was.
        defaults = json.loads(json.dumps(asdict(DesiSurveyConfig())))
        cfg["desi_survey_config"] = {**defaults, **cfg["desi_survey_config"]}
    return all(cfg.get(k) == v for k, v in provenance.items()) \
        and all(cfg.get(k) == getattr(train_config, k) for k in
                ("n_hidden", "optimizer", "reference", "regularize", "lm_ridge", "d_scale",
                 "param_prior_feh_min")) \
        and cfg.get("training_set") == json.loads(json.dumps(asdict(ts)))


def _store_complete(path: Path) -> bool:
    """Whether a finished store is at ``path`` (else ingest, which resumes a partial one)."""
    try:
        open_store(path)
    except (FileNotFoundError, ValueError):
        return False
    return True


def desi_vs_lamost(desi: pd.DataFrame, truth_by_spectrum: pd.DataFrame, lamost_demo: Path, labels,
                   snr_min: float = 30.0, physics: tuple | None = None) -> dict:
    """DESI against LAMOST on the same stars (the shared footprint; ``truth_by_spectrum``: the
    DESI spectra's truth with lamost_star_id): per label, the robust scatter of fitted minus true
    labels of each survey's good fits (S/N > ``snr_min``, fit not failed, qflag_chi2 0) of the
    stars both observed, and their ratio (below 1: DESI measures the label better); each side's
    median S/N; ``error_correlation``: the rank correlation of the two surveys' errors on the same
    star (one spectrum a side): error the two share, which DESI's resolution cannot remove, learned
    from labels transferred from LAMOST's catalogue (Z24 sec. 3.2) or common to both methods.
    ``physics``: (DESI truth emulator, its featureless labels, LAMOST truth emulator, its
    featureless labels); then also each side's median Cramer-Rao bound at every spectrum's
    own S/N for a fit of ``labels`` (``simulate.desi_crb``, ``simulate.survey_crb``) and their
    ratio ``physics_desi_over_lamost``: where it is below 1 the physics says DESI should win."""
    shared = truth_by_spectrum[truth_by_spectrum["lamost_star_id"] >= 0]
    ok = lambda t: (t["snr"] > snr_min) & (t["fit_status"] != 2) & (t["qflag_chi2"] == 0)
    d = desi.merge(shared[["specid", "lamost_star_id"] + list(labels)], on="specid", suffixes=("", "_true"))
    d = d[ok(d)]
    lamost = pd.read_parquet(lamost_demo / "catalog.parquet")
    lmeta = open_store(lamost_demo / "survey").meta()
    lam = lamost.merge(lmeta[["specid", "star_id"] + list(labels)], on="specid", suffixes=("", "_true"))
    lam = lam[ok(lam) & lam["star_id"].isin(d["lamost_star_id"])]
    # One spectrum per star on each side, paired by star, for the errors' correlation.
    pairs = d.drop_duplicates("lamost_star_id").merge(lam.drop_duplicates("star_id"), left_on="lamost_star_id",
                                                      right_on="star_id", suffixes=("", "_lamost"))
    out = {"n_desi": int(len(d)), "n_lamost": int(len(lam)), "n_pairs": int(len(pairs)), "snr_min": snr_min,
           "snr_median_desi": float(d["snr"].median()), "snr_median_lamost": float(lam["snr"].median()),
           "labels": {}}
    for lab in labels:
        s_desi = robust_bias_scatter(d[lab] - d[f"{lab}_true"])[1]
        s_lamost = robust_bias_scatter(lam[lab] - lam[f"{lab}_true"])[1]
        corr = spearmanr(pairs[lab] - pairs[f"{lab}_true"], pairs[f"{lab}_lamost"] - pairs[f"{lab}_true"])[0] \
            if len(pairs) > 2 else float("nan")
        out["labels"][lab] = {"desi": s_desi, "lamost": s_lamost,
                              "desi_over_lamost": s_desi / s_lamost if s_lamost > 0 else float("nan"),
                              "error_correlation": float(corr)}
    if physics is not None and len(d) and len(lam):
        desi_truth, desi_featureless, lamost_truth, lamost_featureless = physics
        fitted = list(labels)
        crb_d = _median_crb(desi_crb, desi_truth, truth_by_spectrum.set_index("specid").loc[d["specid"]],
                            desi_featureless, fitted)
        crb_l = _median_crb(survey_crb, lamost_truth, lmeta.set_index("specid").loc[lam["specid"]],
                            lamost_featureless, fitted)
        for k, lab in enumerate(fitted):
            out["labels"][lab].update({"crb_desi": float(crb_d[k]), "crb_lamost": float(crb_l[k]),
                                       "physics_desi_over_lamost": float(crb_d[k] / crb_l[k])})
    return out


def _median_crb(bound, truth: EmulatorModel, rows: pd.DataFrame, featureless, fitted,
                max_rows: int = 150, chunk: int = 75):
    """Median (len(fitted),) of the Cramer-Rao bound ``bound(truth, rows, featureless, fitted)``
    (``desi_crb`` or ``survey_crb``) over at most ``max_rows`` of ``rows`` (a fixed random subset:
    the median moves by a few per cent, the cost by minutes), in chunks to bound the Jacobian's
    memory."""
    rows = rows.sample(min(max_rows, len(rows)), random_state=0).reset_index(drop=True)
    crb = [bound(truth, rows.iloc[i:i + chunk], featureless, fitted) for i in range(0, len(rows), chunk)]
    return np.median(np.concatenate(crb), axis=0)


def lamost_truth_emulator(lamost_demo: Path) -> tuple | None:
    """The LAMOST demo survey's truth emulator and featureless labels, when the emulator its
    store names (in ``data/models``) is the very file it was simulated from; else None."""
    prov = open_store(lamost_demo / "survey").info.get("provenance") or {}
    path = MODELS / str(prov.get("truth_emulator", ""))
    if not prov.get("truth_emulator") or not path.is_file() or file_digest(path) != prov.get("truth_emulator_sha256"):
        return None
    return EmulatorModel.load(path), tuple(prov.get("config", {}).get("featureless", ()))


def transfer_cost(store, meta: pd.DataFrame, truth_by_spectrum: pd.DataFrame, labels,
                  transferred: pd.DataFrame, train_config: TrainConfig, fit_config: FitConfig,
                  reference, out: Path, log=print) -> dict:
    """What the label transfer buys or costs (Z24 sec. 3.2 added the LAMOST overlap because DESI
    and APOGEE share only ~500 stars): a second DESI model trained on the survey's APOGEE-like
    labels alone (its ``apogee_fraction`` of the stars, S/N > 20), fitted to the same spectra
    (``out/catalog_apogee.parquet``);
    robust scatter against truth at S/N 20/50/100 of the demo's model (APOGEE overlap plus
    transferred LAMOST labels, ``transferred``) and of this one, and per label their ratio at
    S/N 50. Skipped (with the reason) when too few APOGEE-like stars would train."""
    apogee = with_reference_labels(meta, truth_by_spectrum, labels)
    ts = TrainingSetConfig(survey="apogee", label_set=tuple(labels), min_snr=TRANSFER_MIN_SNR,
                           min_snr_metal_poor=TRANSFER_MIN_SNR)
    n_apogee = len(select_training(apogee, ts)[0])
    if n_apogee < 30:
        return {"skipped": f"only {n_apogee} APOGEE-like training spectra"}
    path = out / "model_apogee.pt"
    model = EmulatorModel.load(path) if path.exists() else \
        train_from_store(out / "survey", path, ts, train_config, meta=apogee, log=log)
    direct = fit_and_flag(model, store, out / "catalog_apogee.parquet", fit_config, reference, log=log,
                          refit_stale=True)
    write_catalog(direct, out / "catalog_apogee.parquet",
                  {"synthetic": True, "instrument": "desi", "model": str(path),
                   "training_labels": "APOGEE-like labels of the APOGEE overlap only"})
    truth = truth_by_spectrum[["specid"] + list(labels)]
    rec_t, rec_a = recovery_scatter(transferred, truth, labels), recovery_scatter(direct, truth, labels)
    return {"n_train_apogee": int(n_apogee),
            "recovery_combined": json.loads(rec_t.to_json(orient="index")),
            "recovery_apogee": json.loads(rec_a.to_json(orient="index")),
            "combined_over_apogee_at_snr50": {lab: float(rec_t.loc[lab, "scatter_50"] / rec_a.loc[lab, "scatter_50"])
                                                 for lab in labels}}
