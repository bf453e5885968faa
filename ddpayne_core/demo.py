"""The demo job on the embedded default data: simulate -> train -> fit -> catalogue.

Every step is resumable and skipped when its output exists. ``data/models/demo_emulator.pt``
(committed, trained by this same code on the default synthetic survey) is used when the survey
configuration matches, so a first run does not have to train; ``--retrain`` trains anyway.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import constants as C
from .catalog import (blend_metal_poor, recommended, recovery_by_feh, recovery_scatter,
                      robust_bias_scatter, table3, write_catalog)
from .emulator import EmulatorModel
from .flags import gradcorr, model_reference, reflag
from .fit import FitConfig, fit_spectra
from .instrument import get_instrument
from .io_utils import file_digest
from .labels import get_label_set
from .paths import DEMO_OUT, MODELS
from .pipeline import fit_and_flag, train_from_store
from .report import flag_information, inside_training_coverage, write_report
from .simulate import SurveyConfig, TRUTH_EMULATOR, reobserve, simulate_survey, survey_crb
from .spectra import preprocess_batch
from .store import open_store
from .theory.gradients import load_reference_gradients
from .train import TrainConfig
from .trainingset import TrainingSetConfig, select_training

DEFAULT_OUT = DEMO_OUT
COMMITTED_MODEL = MODELS / "demo_emulator.pt"
COMMITTED_MP_MODEL = MODELS / "demo_emulator_mp.pt"
COMMITTED_GALAH_MODEL = MODELS / "demo_emulator_galah.pt"
GALAH_TRAINING_SET = TrainingSetConfig(survey="galah", label_set="lamost-galah")


def run_demo(out: str | Path = DEFAULT_OUT, n_stars: int = 20000, retrain: bool = False,
             train_config: TrainConfig = TrainConfig(), fit_config: FitConfig = FitConfig(),
             truth_path: str | Path = TRUTH_EMULATOR,
             training_set: TrainingSetConfig = TrainingSetConfig(),
             galah_training_set: TrainingSetConfig = GALAH_TRAINING_SET,
             galah_train_config: TrainConfig | None = None,
             survey_config: SurveyConfig = SurveyConfig(), studies: bool = True,
             log=print) -> dict:
    """Run the demo; returns a summary with label-recovery scatter against truth.

    Always: the survey, the APOGEE-label overall model's fit and flags (``catalog.parquet``) and
    the validation report. With ``studies`` also the metal-poor model (blended), the GALAH-label
    model and the recommended catalogue that takes each label from the training set X19 Table 4
    names, the Cramer-Rao experiment and the perfect-emulator flags: three more fits. The
    GALAH-label model is trained with ``galah_train_config``, by default ``train_config`` (with
    the default reference grid where ``train_config``'s is not stepped in every GALAH label)."""
    out = Path(out)
    _clear_older_pipeline(out, log)
    done = out / "report" / "summary.json"
    if done.exists() and not retrain:
        summary = json.loads(done.read_text())
        if summary.get("studies", True) or not studies:
            log(f"demo already complete in {out} (catalog.parquet, report/); delete {done} to redo it")
            return summary
        log(f"adding the studies to the quick demo in {out}")
    survey_cfg = replace(survey_config, n_stars=n_stars)
    store_path = out / "survey"
    simulate_survey(store_path, survey_cfg, truth_path, log=log)
    store = open_store(store_path)
    galah_train_config = galah_train_config or replace(
        train_config, reference=_reference_for(train_config.reference, galah_training_set.label_set))
    models = {}
    for name, ts, committed, cfg in (
            ("model", training_set, COMMITTED_MODEL, train_config),
            ("model_mp", replace(training_set, metal_poor=True), COMMITTED_MP_MODEL, train_config),
            ("model_galah", galah_training_set, COMMITTED_GALAH_MODEL, galah_train_config))[:3 if studies else 1]:
        path = out / f"{name}.pt"
        if not path.exists():
            if not retrain and _matches(committed, survey_cfg, cfg, ts, truth_path):
                log(f"using the committed model {committed} (trained on this survey configuration; "
                    "`ddpayne demo --retrain` trains anew)")
                shutil.copyfile(committed, path)
            else:
                try:
                    train_from_store(store_path, path, ts, cfg, log=log)
                except ValueError as exc:  # too few training stars: only the optional ones may go
                    if name == "model":
                        raise
                    log(f"no {name}: {exc}")
                    continue
        models[name] = EmulatorModel.load(path)
        if models[name].training_labels is None:   # committed before models carried them
            models[name].training_labels = select_training(store.meta(), ts)[1]
    model = models["model"]
    results = fit_and_flag(model, store, out / "catalog.parquet", fit_config, model_reference(model),
                           log=log)
    meta = {"synthetic": True, "model": str(out / "model.pt"), "model_config": model.config,
            "fit_config": asdict(fit_config),
            "survey": store.info["provenance"], "error_scale": results.attrs.pop("error_scale")}
    write_catalog(results, out / "catalog.parquet", meta)
    blended = galah = None
    if "model_mp" in models:
        blended = metal_poor_blend(results, models["model_mp"], store, out, fit_config, meta, log)
    if "model_galah" in models:
        galah = fit_and_flag(models["model_galah"], store, out / "catalog_galah.parquet", fit_config,
                             model_reference(models["model_galah"]), log=log)
        write_catalog(galah, out / "catalog_galah.parquet",
                      {**meta, "model": str(out / "model_galah.pt"), "training_set": "galah",
                       "model_config": models["model_galah"].config,
                       "error_scale": galah.attrs.pop("error_scale")})
        rec = table3(recommended(results if blended is None else blended, galah), store.meta())
        write_catalog(rec, out / "catalog_recommended.parquet",
                      {**meta, "recommended": "X19 Table 4", "model_galah": str(out / "model_galah.pt"),
                       "apogee_catalog": "catalog.parquet" if blended is None else "catalog_blended.parquet"})
        log(f"recommended catalogue (X19 Table 4) -> {out / 'catalog_recommended.parquet'}")
    return report_demo(out, results, store, model, truth_path, blended=blended, galah=galah,
                       galah_model=models.get("model_galah"), fit_config=fit_config,
                       studies=studies, log=log)


def metal_poor_blend(results: pd.DataFrame, model_mp: EmulatorModel, store, out: Path,
                     fit_config: FitConfig, meta: dict, log=print) -> pd.DataFrame:
    """Refit with the metal-poor model the spectra the blend gives it weight (overall [Fe/H] <
    -0.6), write catalog_mp.parquet and catalog_blended.parquet; returns the blended table."""
    poor = (results["feh"] < C.METAL_POOR_BLEND_FEH[1]).to_numpy()
    log(f"metal-poor model: fitting the {poor.sum()} spectra with overall [Fe/H] < "
        f"{C.METAL_POOR_BLEND_FEH[1]}")
    mp = fit_and_flag(model_mp, store, out / "catalog_mp.parquet", fit_config,
                      model_reference(model_mp), rows=poor, log=log)
    write_catalog(mp, out / "catalog_mp.parquet",
                  {**meta, "model": str(out / "model_mp.pt"), "model_config": model_mp.config,
                   "error_scale": mp.attrs["error_scale"],
                   "rows": f"spectra with overall [Fe/H] < {C.METAL_POOR_BLEND_FEH[1]}"})
    blended = blend_subset(results, mp, poor, model_mp.labels)
    write_catalog(blended, out / "catalog_blended.parquet",
                  {**meta, "model_mp": str(out / "model_mp.pt"), "error_scale_mp": mp.attrs["error_scale"],
                   "blend": f"metal-poor model below [Fe/H] {C.METAL_POOR_BLEND_FEH[0]}, overall "
                            f"above {C.METAL_POOR_BLEND_FEH[1]}, linear between (docs/spec.md sec. 9)"})
    return blended


def blend_subset(overall: pd.DataFrame, metal_poor: pd.DataFrame, rows: np.ndarray, labels) -> pd.DataFrame:
    """The overall catalogue with the rows ``rows`` (n,) bool replaced by their blend with the
    metal-poor model's fits of those rows (catalog.blend_metal_poor); metal_poor_weight column."""
    out = overall.copy()
    out["metal_poor_weight"] = 0.0
    idx = np.nonzero(rows)[0]
    if len(idx):
        mixed = blend_metal_poor(overall.iloc[idx].reset_index(drop=True), metal_poor, labels)
        for col in mixed.columns:
            values = out[col].to_numpy().copy()
            values[idx] = mixed[col].to_numpy()
            out[col] = values
    return out


def report_demo(out: str | Path, results, store, model: EmulatorModel,
                truth_path: str | Path = TRUTH_EMULATOR, blended=None, galah=None,
                galah_model: EmulatorModel | None = None, fit_config: FitConfig = FitConfig(),
                studies: bool = True, log=print) -> dict:
    """Label recovery against truth (S/N 20, 50, 100), flag fractions and, with ``studies``,
    error over the Cramer-Rao bound and the perfect-emulator flags (synthetic surveys only: they
    need the truth; both refit spectra) and the validation report of a fitted, flagged catalogue
    -> ``out/report/`` (summary.json, summary.md, figures). With the GALAH-label model's
    catalogue ``galah``, its recovery and flag fractions too."""
    summary = {"n_spectra": int(len(results)), "synthetic": bool(store.info.get("synthetic")),
               "failed_fits": int((results["fit_status"] == 2).sum()), "studies": studies}
    if summary["synthetic"]:
        truth = store.meta(["specid"] + list(model.labels))
        table = recovery_scatter(results, truth, model.labels)
        log("label recovery against truth (SYNTHETIC survey): robust scatter [bias] at S/N 20, 50, 100")
        for lab, row in table.iterrows():
            log(f"  {lab:>7s}: " + "  ".join(
                f"S/N {s}: {row[f'scatter_{s}']:.3f} [{row[f'bias_{s}']:+.3f}] (n={int(row[f'n_{s}'])})"
                for s in (20, 50, 100)))
        if studies:
            crb = crb_experiment(store, model, truth_path, fit_config)
            summary["crb_experiment"] = crb
            for key in ("error_over_crb", "precision_over_crb"):
                summary[key] = {lab: r[key] for lab, r in crb["labels"].items()}
            log("at S/N 100, accuracy (against truth) / precision (repeat visits) over the "
                "Cramer-Rao bound: " + ", ".join(f"{lab} {r['error_over_crb']:.2f}/"
                                                 f"{r['precision_over_crb']:.2f}"
                                                 for lab, r in crb["labels"].items()))
        summary["recovery"] = json.loads(table.to_json(orient="index"))
        by_feh = {"overall": recovery_by_feh(results, truth, model.labels)}
        if blended is not None:
            by_feh["blended"] = recovery_by_feh(blended, truth, model.labels)
        summary["recovery_by_feh"] = {k: json.loads(v.to_json(orient="index")) for k, v in by_feh.items()}
        log("bias against truth (S/N > 30) by true [Fe/H], Teff / logg / [Fe/H]: " + ", ".join(
            f"{feh} {row['bias_teff']:+.0f} K / {row['bias_logg']:+.2f} / {row['bias_feh']:+.2f}"
            for feh, row in by_feh.get("blended", by_feh["overall"]).iterrows()))
        summary["error_calibration"] = error_calibration(results, truth, model.labels)
        featureless = store.info["provenance"]["config"]["featureless"]
        if blended is not None:
            summary["metal_poor_blend"] = {**blend_recovery(results, blended, truth, model.labels),
                                           **flag_fractions(blended, model.labels, featureless)}
            log("metal-poor stars, robust scatter against truth, overall -> blended: "
                + ", ".join(f"{lab} {r['overall']:.3f} -> {r['blended']:.3f}"
                            for lab, r in summary["metal_poor_blend"]["scatter"].items()))
        summary.update(flag_fractions(results, model.labels, featureless))
        summary["flag_information"] = flag_information(results, store.meta(), model.labels)
        if studies:
            summary.update(perfect_emulator_flags(results, store, model, truth_path, featureless))
        if galah is not None:
            summary["galah"] = galah_recovery(galah, store, galah_model.labels, featureless)
            summary["galah"].update(perfect_emulator_flags(galah, store, galah_model, truth_path,
                                                           featureless))
            log("GALAH-label model, robust scatter against truth at S/N 50: " + ", ".join(
                f"{lab} {r['scatter_50']:.3f}" for lab, r in summary["galah"]["recovery"].items()))
    ts = TrainingSetConfig.of_model(model)
    meta = store.meta()
    rows, _, _ = select_training(meta, ts)
    summary = write_report(Path(out) / "report", results, meta, model.labels,
                           meta["specid"].to_numpy()[rows], ts.survey, summary)
    log(f"validation report -> {Path(out) / 'report'}")
    return summary


def crb_experiment(store, model: EmulatorModel, truth_path, fit_config: FitConfig = FitConfig(),
                   snr: float = 100.0, n_stars: int = 400, seed: int = 0) -> dict:
    """Measured error against the Cramer-Rao bound at exactly ``snr`` (DESI Fig. 9).

    ``n_stars`` random single, unbroken stars of the survey are observed twice more at ``snr``
    (``simulate.reobserve``: fresh noise, fibre LSF, calibration, sky, RV error), and twice with
    noise alone, and fitted. Per label with a spectral signature:
    - crb: median Cramer-Rao bound of the survey's forward model at the true labels
      (``simulate.survey_crb``: truth emulator, fibre LSF, pseudo-continuum normalization), for
      a fit that knew each fibre's LSF; crb_lsf_free: for one that fits it too, as ours does;
    - precision: robust scatter of (visit 2 - visit 1) / sqrt 2, the internal precision the
      papers compare with the bound (their repeat observations); precision_noise_only: the
      same without the instrument effects that change from visit to visit (fibre LSF above all);
    - accuracy: robust scatter of fitted - true over both visits, which a real survey cannot
      measure: it adds the emulator's systematic error and the training labels' noise;
    - slope: d(fitted)/d(true) over the stars. Below 1 the fit shrinks the label toward the
      training-set mean, which lets the precision fall below the bound of an unbiased estimator;
    - formal_over_crb: median formal error over the bound, below 1 where the emulator's spectrum
      responds to the label more strongly than the truth's (locally, even at a slope of 1);
    - precision_over_crb, precision_noise_only_over_crb, error_over_crb (= accuracy / crb),
      precision_over_crb_lsf_free.
    """
    cfg = SurveyConfig(**store.info["provenance"]["config"])
    fitted = [lab for lab in model.labels if lab not in cfg.featureless]
    meta = store.meta()
    single = meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]]
    stars = single.sample(min(n_stars, len(single)), random_state=seed)
    n, inst = len(stars), get_instrument(store.info["instrument"])

    def fit_visits(config):
        flux, ivar, visits = reobserve(stars, truth_path, config, snr, 2, seed)
        norm, norm_ivar = preprocess_batch(flux, ivar, visits["rv"].to_numpy(), inst)
        return fit_spectra(model, norm, norm_ivar, fit_config), visits

    fit, visits = fit_visits(cfg)
    labels, labels_noise = fit.labels, fit_visits(replace(cfg, effects=()))[0].labels
    truth = EmulatorModel.load(truth_path)
    crb = survey_crb(truth, visits, cfg.featureless, fitted)
    crb_lsf_free = survey_crb(truth, visits, cfg.featureless, fitted, lsf_free=True)
    out = {"snr": snr, "n_stars": n, "labels": {}}
    for k, lab in enumerate(fitted):
        v, vn = (a[:, model.labels.index(lab)].reshape(n, 2) for a in (labels, labels_noise))
        t = stars[lab].to_numpy(dtype=np.float64)
        ok = np.all(np.isfinite(v), axis=1) & np.all(np.isfinite(vn), axis=1)
        row = {"crb": float(np.nanmedian(crb[:, k])),
               "crb_lsf_free": float(np.nanmedian(crb_lsf_free[:, k])),
               "formal_over_crb": float(np.nanmedian(fit.errors[:, model.labels.index(lab)] / crb[:, k])),
               "precision": robust_bias_scatter((v[ok, 1] - v[ok, 0]) / np.sqrt(2))[1],
               "precision_noise_only": robust_bias_scatter((vn[ok, 1] - vn[ok, 0]) / np.sqrt(2))[1],
               "accuracy": robust_bias_scatter((v[ok] - t[ok, None]).ravel())[1],
               "slope": float(np.polyfit(t[ok], v[ok].mean(1), 1)[0])}
        for key in ("precision", "precision_noise_only"):
            row[f"{key}_over_crb"] = row[key] / row["crb"]
        row["error_over_crb"] = row["accuracy"] / row["crb"]
        row["precision_over_crb_lsf_free"] = row["precision"] / row["crb_lsf_free"]
        out["labels"][lab] = {key: float(val) for key, val in row.items()}
    return out


def perfect_emulator_flags(results, store, model: EmulatorModel, truth_path, featureless,
                           max_spectra: int = 4000, seed: int = 0) -> dict:
    """The flags had the emulator learned the survey perfectly: X_gradcorr of the truth emulator
    that made the spectra (at the true labels, on the model's pixels) in place of the trained
    emulator's, binned and flagged as the catalogue is. On a random ``max_spectra`` of the
    catalogue: the truth emulator's gradients cost minutes per ten thousand spectra on a CPU.

    Returns ``featured_flag1_fraction_perfect_emulator`` (label -> fraction; the ceiling of the
    measured fraction: below it the emulator costs X_flag, at it the physics does, features that
    fade, e.g. O in hot dwarfs) and ``flag_agreement_with_perfect_emulator`` (label -> the
    catalogue's X_flag 1 fraction among stars inside the training coverage where the perfect
    emulator's flag is 1, ``flag1_where_perfect_1``, and where it is 0, ``flag1_where_perfect_0``,
    with their counts; None where there are none): whether the flag says "measured" for the right stars, not just how often."""
    if len(results) > max_spectra:
        results = results.sample(max_spectra, random_state=seed)
    reference = model_reference(model)
    truth = EmulatorModel.load(truth_path)
    true_labels = store.meta(["specid"] + list(truth.labels)).set_index("specid")
    x = true_labels.loc[results["specid"], list(truth.labels)].to_numpy(dtype=np.float64, copy=True)
    x[:, [truth.labels.index(lab) for lab in featureless if lab in truth.labels]] = 0.0
    featured = [lab for lab in model.labels if lab not in featureless]
    # Only the model's labels: a reference grid may be stepped in those alone.
    g = gradcorr(replace(truth, mask=model.mask), x, reference, which=featured)
    table = results[["teff", "logg", "feh", "snr"]].copy()
    for k, lab in enumerate(featured):
        table[f"{lab}_gradcorr"] = g[:, k]
    perfect = reflag(table, featured)
    inside = inside_training_coverage(results)
    agreement = {}
    for lab in featured:
        ours, ideal = results.loc[inside, f"{lab}_flag"] == 1, perfect.loc[inside, f"{lab}_flag"] == 1
        agreement[lab] = {"flag1_where_perfect_1": float(ours[ideal].mean()) if ideal.any() else None,
                          "flag1_where_perfect_0": float(ours[~ideal].mean()) if (~ideal).any() else None,
                          "n_perfect_1": int(ideal.sum()), "n_perfect_0": int((~ideal).sum())}
    return {"featured_flag1_fraction_perfect_emulator":
            flag_fractions(perfect, featured, ())["featured_flag1_fraction"],
            "flag_agreement_with_perfect_emulator": agreement}


def galah_recovery(galah: pd.DataFrame, store, labels, featureless) -> dict:
    """The GALAH-label model's recovery against truth (robust scatter and bias at S/N 20, 50,
    100) and its flag fractions (as for the APOGEE-label model)."""
    truth = store.meta(["specid"] + list(labels))
    table = recovery_scatter(galah, truth, labels)
    return {"recovery": json.loads(table.to_json(orient="index")),
            **flag_fractions(galah, labels, featureless)}


def blend_recovery(overall, blended, truth, labels, feh_max: float = C.METAL_POOR_BLEND_FEH[0],
                   snr_min: float = 30.0) -> dict:
    """Robust scatter against truth of the overall model and of the metal-poor blend, for stars
    with true [Fe/H] < ``feh_max`` and S/N > ``snr_min`` (good fits)."""
    out = {"n_stars": 0, "scatter": {}}
    for name, table in (("overall", overall), ("blended", blended)):
        m = table.merge(truth, on="specid", suffixes=("", "_true"))
        m = m[(m["feh_true"] < feh_max) & (m["snr"] > snr_min) & (m["fit_status"] != 2)]
        out["n_stars"] = int(len(m))
        for lab in labels:
            out["scatter"].setdefault(lab, {})[name] = robust_bias_scatter(m[lab] - m[f"{lab}_true"])[1]
    return out


def error_calibration(results, truth, labels) -> dict:
    """Per label: the median factor applied to the formal errors (flags.calibrate_errors) and the
    robust scatter of (fitted - true) / error with the formal and the scaled errors (1 = errors
    that describe the actual error; repeat visits see the noise, not the emulator's systematic
    error, so values above 1 remain). Good fits only."""
    m = results.merge(truth, on="specid", suffixes=("", "_true"))
    m = m[m["fit_status"] != 2]
    out = {}
    for lab in labels:
        if f"{lab}_err_formal" not in m:
            continue
        d = m[lab] - m[f"{lab}_true"]
        out[lab] = {"median_scale": float(np.nanmedian(m[f"{lab}_err"] / m[f"{lab}_err_formal"])),
                    "pull_formal": robust_bias_scatter(d / m[f"{lab}_err_formal"])[1],
                    "pull_scaled": robust_bias_scatter(d / m[f"{lab}_err"])[1]}
    return out


def flag_fractions(results, labels, featureless) -> dict:
    """Fractions the flags issue promises: featureless labels with X_flag 0 (all stars) and
    labels with real features with X_flag 1 (stars inside the training coverage: 4500-7000 K
    dwarfs, 4000-5600 K giants, [Fe/H] > -2.0)."""
    inside = inside_training_coverage(results)
    flat = [lab for lab in labels if lab in featureless]
    featured = [lab for lab in labels if lab not in featureless]
    out = {"featureless_labels": flat}
    if flat:
        out["featureless_flag0_fraction"] = float(np.mean([(results[f"{l}_flag"] == 0).mean()
                                                           for l in flat]))
    out["featured_flag1_fraction"] = {l: float((results.loc[inside, f"{l}_flag"] == 1).mean())
                                      for l in featured}
    return out


def _reference_for(reference: str, label_set: str) -> str:
    """``reference`` if that grid is stepped in every label of ``label_set``, else the default
    grid (stepped in every label of both sets)."""
    covered = set(get_label_set(label_set)) <= set(load_reference_gradients(reference).labels)
    return reference if covered else C.REFERENCE_GRID


DEMO_OUTPUTS = ("model*.pt", "model*.ckpt", "catalog*.parquet", "catalog*.parts", "report")


def _clear_older_pipeline(out: Path, log=print) -> None:
    """A demo folder whose models were trained on spectra normalized otherwise than this ddpayne
    normalizes them (an older ddpayne made it) keeps only its survey, which no model touched:
    its models, fits, catalogues and report are removed, to be made again."""
    stale = []
    for path in sorted(out.glob("model*.pt")):
        try:
            EmulatorModel.load(path).check_preprocessing(str(path))
        except ValueError:
            stale.append(path.name)
    if not stale:
        return
    log(f"{out}: {', '.join(stale)} trained on spectra normalized otherwise than this ddpayne "
        "does; models, fits and report are made again (the survey is kept)")
    for pattern in DEMO_OUTPUTS:
        for item in out.glob(pattern):
            shutil.rmtree(item) if item.is_dir() else item.unlink()


def _matches(committed: Path, survey_cfg: SurveyConfig, train_config: TrainConfig,
             ts: TrainingSetConfig, truth_path: str | Path) -> bool:
    """Whether a committed model was trained on this survey configuration, simulated from this
    truth emulator, with these settings. The overlap fraction of the *other* high-resolution
    survey is not compared: it draws only that survey's labels, so the model's training set
    does not depend on it."""
    if not committed.exists():
        return False
    cfg = EmulatorModel.load(committed).config

    def own(survey_config: dict | None) -> dict | None:
        other = "galah" if ts.survey == "apogee" else "apogee"
        return survey_config and {k: v for k, v in survey_config.items() if k != f"{other}_fraction"}

    return own(cfg.get("survey_config")) == own(json.loads(json.dumps(asdict(survey_cfg)))) \
        and cfg.get("truth_emulator_sha256") == file_digest(truth_path) \
        and cfg.get("n_hidden") == train_config.n_hidden \
        and cfg.get("regularize") == train_config.regularize \
        and cfg.get("reference", C.TABLE1_GRID) == train_config.reference \
        and cfg.get("clip_sigma", 0.0) == train_config.clip_sigma \
        and cfg.get("d_scale", {}) == train_config.d_scale \
        and cfg.get("prior_weighting", "absolute") == train_config.prior_weighting \
        and cfg.get("prior_shape_only", False) == train_config.prior_shape_only \
        and cfg.get("continuum_weights", "ivar") == C.CONTINUUM_WEIGHTS \
        and cfg.get("training_set") == json.loads(json.dumps(asdict(ts)))
