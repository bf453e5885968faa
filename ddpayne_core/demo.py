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

from . import constants as C
from .catalog import bias_against_training_labels, recovery_by_feh, recovery_scatter, write_catalog
from .fit.lm import FitConfig
from .flags import model_reference
from .io.store import open_store
from .io_utils import file_digest
from .labels import get_label_set
from .model.emulator import EmulatorModel
from .model.train import TrainConfig
from .model.trainingset import TrainingSetConfig, select_training
from .paths import DEMO_OUT, MODELS
from .pipeline import fit_and_flag, metal_poor_blend, recommended_catalog, train_from_store
from .simulate.survey import TRUTH_EMULATOR, SurveyConfig, simulate_survey
from .theory.gradients import load_reference_gradients
from .validation.report import flag_information, write_report
from .validation.studies import (
    blend_recovery,
    crb_experiment,
    error_calibration,
    flag_fractions,
    galah_recovery,
    perfect_emulator_flags,
    population_shift,
)

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
                           log=log, refit_stale=True)
    meta = {"synthetic": True, "model": str(out / "model.pt"), "model_config": model.config,
            "fit_config": asdict(fit_config),
            "survey": store.info["provenance"], "error_scale": results.attrs.pop("error_scale")}
    write_catalog(results, out / "catalog.parquet", meta)
    blended = galah = None
    if "model_mp" in models:
        blended = metal_poor_blend(results, models["model_mp"], store, out, fit_config, meta, log)
    if "model_galah" in models:
        galah = fit_and_flag(models["model_galah"], store, out / "catalog_galah.parquet", fit_config,
                             model_reference(models["model_galah"]), log=log, refit_stale=True)
        write_catalog(galah, out / "catalog_galah.parquet",
                      {**meta, "model": str(out / "model_galah.pt"), "training_set": "galah",
                       "model_config": models["model_galah"].config,
                       "error_scale": galah.attrs.pop("error_scale")})
        recommended_catalog(results if blended is None else blended, galah, store.meta(),
                            out / "catalog_recommended.parquet",
                            {**meta, "model_galah": str(out / "model_galah.pt"),
                             "apogee_catalog": "catalog.parquet" if blended is None
                             else "catalog_blended.parquet"})
        log(f"recommended catalogue (X19 Table 4) -> {out / 'catalog_recommended.parquet'}")
    return report_demo(out, results, store, model, truth_path, blended=blended, galah=galah,
                       galah_model=models.get("model_galah"), fit_config=fit_config,
                       studies=studies, log=log)


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
    ts = TrainingSetConfig.of_model(model)
    meta = store.meta()
    rows, _, _ = select_training(meta, ts)
    training_ids = meta["specid"].to_numpy()[rows]
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
        summary["bias_vs_training_labels"] = training_label_bias(results, truth, meta, model.labels,
                                                                 training_ids, ts.survey, log)
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
            summary["population_shift"] = population_shift(store, model, truth_path, fit_config)
            log("populations the training set lacks: labels flagged measured that do not follow "
                "their truth: " + "; ".join(
                    f"{kind} {', '.join(labs) or 'none'}"
                    for kind, labs in summary["population_shift"]["flag1_but_not_following_truth"].items()))
        if galah is not None:
            summary["galah"] = galah_recovery(galah, store, galah_model.labels, featureless)
            summary["galah"].update(perfect_emulator_flags(galah, store, galah_model, truth_path,
                                                           featureless))
            log("GALAH-label model, robust scatter against truth at S/N 50: " + ", ".join(
                f"{lab} {r['scatter_50']:.3f}" for lab, r in summary["galah"]["recovery"].items()))
    summary = write_report(Path(out) / "report", results, meta, model.labels, training_ids,
                           ts.survey, summary)
    log(f"validation report -> {Path(out) / 'report'}")
    return summary


def training_label_bias(results, truth, meta, labels, training_ids, survey: str, log=print) -> dict:
    """``catalog.bias_against_training_labels`` (S/N > 30) for the report, logged for Teff,
    logg and [Fe/H]: the bias the method adds to its training labels' own."""
    table = bias_against_training_labels(results, truth, meta, labels, training_ids, survey)
    log("median bias against truth (S/N > 30): fitted [training labels' own] " + ", ".join(
        f"{lab} {table.loc[lab, 'fitted_bias']:+.3f} [{table.loc[lab, 'training_bias']:+.3f}]"
        for lab in ("teff", "logg", "feh") if lab in table.index))
    return json.loads(table.to_json(orient="index"))


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
        and cfg.get("param_prior_feh_min") == train_config.param_prior_feh_min \
        and cfg.get("prior_weighting", "absolute") == train_config.prior_weighting \
        and cfg.get("prior_shape_only", False) == train_config.prior_shape_only \
        and cfg.get("optimizer", "adam") == train_config.optimizer \
        and cfg.get("continuum_weights", "ivar") == C.CONTINUUM_WEIGHTS \
        and cfg.get("training_set") == json.loads(json.dumps(asdict(ts)))
