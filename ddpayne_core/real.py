"""Real LAMOST spectra end to end by label transfer (X19 sec. 3 trained on real LAMOST spectra
with high-resolution labels; Z24 sec. 3.2 transferred LAMOST labels to DESI spectra).

A folder of LAMOST files and a label table (by default the 2,323 real DR10 spectra in
``shared/data/lamost-dr10`` with the LAMOST stellar pipeline's Teff, logg, [Fe/H]) become a
spectral store with the reference labels attached, split into training and held-out *stars*;
a DD-Payne is trained on the training stars (or the committed model is taken when it was trained
on exactly these inputs), every spectrum is fitted and flagged, and the held-out stars validate
it against the reference labels, side by side with the synthetic-trained demo model.

Outputs in one folder: survey/ (store), labels.parquet (metadata + reference labels, star_id,
heldout), model.pt, catalog.parquet (every spectrum, with reference labels beside the fitted
ones), catalog_synthetic_model.parquet (held-out spectra fitted by the synthetic-trained
model) and report/ (``report.write_real_report``).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import write_catalog
from .demo import COMMITTED_MODEL
from .fit.lm import FitConfig
from .flags import model_reference
from .io.labeltable import attach_labels, heldout_split, read_label_table, star_ids
from .io.store import open_store, write_meta
from .io_utils import atomic_path, file_digest
from .model.emulator import EmulatorModel
from .model.train import TrainConfig
from .model.trainingset import TrainingSetConfig
from .paths import MODELS, SHARED
from .pipeline import fit_and_flag, train_from_store, training_outliers
from .preprocess.ingest import ingest_lamost
from .validation.report import write_real_report

SHARED_DR10 = SHARED / "lamost-dr10"
COMMITTED_REAL_MODEL = MODELS / "lamost_dr10_lasp.pt"
# Training on ~1,500 real spectra: X19's loss minimized by per-pixel Levenberg-Marquardt
# (``model.levenberg``), which reaches a least-squares fit of the training set; with X19's Adam
# (300 epochs, batches of 32) the emulator stopped short of one (mean residual of the F/G
# training stars projected on dF/dTeff gave a -75 K Teff bias on held-out stars;
# studies/real_training/lm_vs_adam.py). A 1 % model-error floor (The Cannon's scatter term)
# keeps the S/N 300 spectra, which no emulator fits to their noise, from dominating the loss
# (docs/validation.md, real spectra). batch_size applies to ``optimizer="adam"`` only. No ridge:
# this 3-label model fits reliably without one, and with it the held-out A stars came out worse
# (studies/ridge/README.md).
# No gradient prior on real spectra: with MOOG's gradients held in (X19's D 50 for [Fe/H]) the
# held-out F/G [Fe/H] scatter against LASP was 0.149 dex, 0.081 with D 5 and 0.060 without,
# Teff 76 -> 47 K, logg 0.119 -> 0.095, and A stars improved alike; the emulator's gradients
# still correlate with MOOG's at 0.73-0.83 for F/G stars (studies/real_training/feh_gap.py).
# Each pixel's model scatter (The Cannon's s^2) joins the fit's noise: the emulator does not
# describe real spectra to their noise, and where it fails most (Balmer wings, telluric bands,
# the blue end) a pixel should weigh less. Against no scatter, on the held-out F/G stars: logg
# 0.090 -> 0.079, [Fe/H] 0.056 -> 0.042, Teff 44.6 -> 46.2 K; chosen on the training stars,
# where 5 of the 6 type x label scatters fell, by up to 23 % (A-star Teff rose 6 %); estimated at
# the training spectra's fitted labels, not at LASP's, whose errors would read as model error
# where the gradients are steep (held-out F/G Teff 53 K; studies/real_training/pixel_scatter.py).
# LASP's labels have heavy tails against what a model trained on them fits (F/G training stars:
# robust scatter 43 K, standard deviation 130 K), and a least-squares emulator gives every
# training star full weight. X19 sec. 3.1 dropped binaries and spectra with bad pixels before
# training; here a first model finds the stars it cannot reproduce. Dropping those beyond 4 robust
# sigmas (~6 % of the training spectra) lowered held-out F/G Teff scatter against LASP for each of
# five training seeds, by 0.9-5.6 K (mean 46.2 -> 43.1 K), with logg, [Fe/H] and the A stars
# unchanged within the seeds' spread (studies/real_training/clean_training.py).
OUTLIER_SIGMA = 4.0
REAL_TRAIN_CONFIG = replace(TrainConfig(), epochs=300, batch_size=32, model_error=0.01, optimizer="lm",
                            lm_ridge=0.0, regularize=False, pixel_scatter=True)
# The fit adds no uniform model-error floor to the noise (beyond the model's per-pixel scatter):
# without the per-pixel scatter, floors of 0-0.01 were compared on the training stars
# (studies/real_training/fit_error_floor.py), where none gave the lowest scatter against LASP in
# 5 of 6 type x label numbers (F/G logg 0.088 against 0.090 with 1 %); formal errors are
# calibrated on repeat visits afterwards (``flags.calibrate_errors``).
REAL_FIT_CONFIG = FitConfig()


@dataclass(frozen=True)
class RealDataConfig:
    """spectra: folder of LAMOST files; labels: label table (``labeltable.read_label_table``);
    prefix: name of the reference survey (columns <prefix>_<label>); label_names: the labels
    trained; test_fraction, seed: held-out share of the *stars* (``labeltable.heldout_split``);
    min_snr: S/N(g) of the training spectra (header SNRG; 20 as the Cannon comparison of
    docs/validation.md); outlier_sigma: a first model is trained, and the training stars whose
    reference labels it cannot reproduce (fitted minus reference beyond this many robust sigmas,
    per spectral type, in any label; ``pipeline.training_outliers``) are dropped before the final
    training (None: one training on every star)."""

    spectra: str = str(SHARED_DR10 / "spectra")
    labels: str = str(SHARED_DR10 / "lasp_labels.csv")
    prefix: str = "lasp"
    label_names: tuple = ("teff", "logg", "feh")
    test_fraction: float = 0.25
    seed: int = 0
    min_snr: float = 20.0
    outlier_sigma: float | None = OUTLIER_SIGMA

    def training_set(self) -> TrainingSetConfig:
        return TrainingSetConfig(survey=self.prefix, label_set=tuple(self.label_names),
                                 min_snr=self.min_snr, min_snr_metal_poor=self.min_snr)


def prepare(out: str | Path, cfg: RealDataConfig, log=print) -> tuple:
    """Ingest ``cfg.spectra`` into ``out/survey`` (resumable) and attach the reference labels,
    star ids, the held-out split and the spectral type (first letter of the LAMOST subclass);
    written to ``out/labels.parquet``. Returns (store, meta)."""
    out = Path(out)
    store = ingest_lamost([cfg.spectra], out / "survey", log=log)
    table = read_label_table(cfg.labels, cfg.label_names)
    meta = attach_labels(store.meta(), table, cfg.label_names, cfg.prefix)
    meta["star_id"] = star_ids(meta["ra"], meta["dec"])
    meta["heldout"] = heldout_split(meta["star_id"].to_numpy(), cfg.test_fraction, cfg.seed)
    meta["spectral_type"] = meta["subclass"].fillna("").astype(str).str[:1]
    # The store's own metadata learns the star ids (fits carry them; flags.calibrate_errors pairs
    # repeat visits by them) and the training stars' labels, so that retraining from the store
    # (the app's retrain page) sees the same training set and never the held-out stars.
    write_meta(store.path, training_meta(meta, cfg), store.chunk)
    n_match = int(meta[f"{cfg.prefix}_matched"].sum())
    log(f"{n_match} of {len(meta)} spectra have {cfg.prefix} labels; {meta['star_id'].nunique()} "
        f"stars, {int(meta['heldout'].sum())} spectra of held-out stars")
    with atomic_path(out / "labels.parquet") as tmp:
        meta.to_parquet(tmp)
    return store, meta


def training_meta(meta: pd.DataFrame, cfg: RealDataConfig) -> pd.DataFrame:
    """``meta`` with the held-out stars' reference labels removed: they are never trained on."""
    m = meta.copy()
    for lab in cfg.label_names:
        m.loc[m["heldout"], f"{cfg.prefix}_{lab}"] = np.nan
    return m


def provenance(cfg: RealDataConfig, train_config: TrainConfig) -> dict:
    """What a real-data model was trained from: the label table's digest, the split, the
    training-set rules and the training configuration (a committed model is reused only when
    all match)."""
    return {"label_table_sha256": file_digest(cfg.labels), "split": [cfg.test_fraction, cfg.seed],
            "training_set": asdict(cfg.training_set()), "n_hidden": train_config.n_hidden,
            "epochs": train_config.epochs, "reference": train_config.reference,
            "batch_size": train_config.batch_size, "model_error": train_config.model_error,
            "regularize": train_config.regularize, "pixel_scatter": train_config.pixel_scatter,
            "outlier_sigma": cfg.outlier_sigma}


def real_model(out: Path, meta: pd.DataFrame, cfg: RealDataConfig, train_config: TrainConfig,
               retrain: bool = False, committed: Path = COMMITTED_REAL_MODEL,
               log=print) -> EmulatorModel:
    """``out/model.pt``: kept if present and trained as ``cfg`` and ``train_config`` say (else
    replaced: a bundle made by an older ddpayne or other settings), else the committed model when
    its provenance matches, else trained on the training stars: with ``cfg.outlier_sigma``, a first
    model (``model_first_pass.pt``) finds the training stars whose reference labels it cannot
    reproduce and the final model is trained without them (listed in its config as
    ``training_outliers``)."""
    path = out / "model.pt"
    want = json.loads(json.dumps(provenance(cfg, train_config)))
    if path.exists() and not retrain and EmulatorModel.load(path).config.get("real_provenance") != want:
        log(f"{path} was trained from other spectra, labels or settings than these; replacing it")
        path.unlink()
    if not path.exists() and not retrain and committed.exists():
        if EmulatorModel.load(committed).config.get("real_provenance") == want:
            log(f"using the committed model {committed} (trained on these spectra, labels and "
                "split; --retrain trains anew)")
            shutil.copyfile(committed, path)
    if not path.exists() or retrain:
        train_meta = training_meta(meta, cfg)
        outliers = []
        if cfg.outlier_sigma is not None:
            first = train_from_store(out / "survey", out / "model_first_pass.pt", cfg.training_set(),
                                     train_config, log=log, meta=train_meta)
            drop = training_outliers(first, open_store(out / "survey"), train_meta, cfg.training_set(),
                                     cfg.outlier_sigma, groups="spectral_type", fit_config=REAL_FIT_CONFIG)
            outliers = sorted(train_meta.loc[drop, "filename"])
            train_meta["training_outlier"] = drop
            log(f"{len(outliers)} spectra of training stars whose {cfg.prefix} labels the first model "
                f"cannot reproduce (> {cfg.outlier_sigma:g} robust sigma) are not trained on; retraining")
        model = train_from_store(out / "survey", path, cfg.training_set(), train_config,
                                 log=log, meta=train_meta)
        model.config["real_provenance"] = want
        model.config["training_outliers"] = outliers
        model.save(path)
    return EmulatorModel.load(path)


def mark_training_outliers(meta: pd.DataFrame, model: EmulatorModel) -> pd.DataFrame:
    """``meta`` with ``training_outlier``: True for the spectra of the training stars the model
    was not trained on because their reference labels were outliers (``real_model``)."""
    return meta.assign(training_outlier=meta["filename"].isin(model.config.get("training_outliers", [])))


def run_real(out: str | Path, cfg: RealDataConfig = RealDataConfig(), retrain: bool = False,
             train_config: TrainConfig = REAL_TRAIN_CONFIG, fit_config: FitConfig = REAL_FIT_CONFIG,
             synthetic_model: str | Path | None = COMMITTED_MODEL, log=print) -> dict:
    """The real-data demo: prepare, train (or reuse), fit and flag every spectrum, fit the
    held-out spectra with the synthetic-trained model too, and write the report. Returns the
    report's summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store, meta = prepare(out, cfg, log)
    model = real_model(out, meta, cfg, train_config, retrain, log=log)
    meta = mark_training_outliers(meta, model)
    # The store learns them too, so that the app's retraining leaves them out as well.
    write_meta(store.path, training_meta(meta, cfg), store.chunk)
    fits = fit_and_flag(model, store, out / "catalog.parquet", fit_config, model_reference(model), log=log,
                        refit_stale=True)
    results = with_reference_labels(fits, meta, cfg)
    catalog_meta = {"synthetic": False, "model": str(out / "model.pt"),
                    "model_config": model.config, "fit_config": asdict(fit_config),
                    "reference_labels": cfg.prefix, "label_table": str(cfg.labels),
                    "error_scale": results.attrs.pop("error_scale")}
    write_catalog(results, out / "catalog.parquet", catalog_meta)
    synthetic = None
    if synthetic_model is not None and Path(synthetic_model).exists():
        log(f"fitting the held-out spectra with the synthetic-trained model {synthetic_model}")
        other = EmulatorModel.load(synthetic_model)
        fits = fit_and_flag(other, store, out / "catalog_synthetic_model.parquet", fit_config,
                            model_reference(other), rows=meta["heldout"].to_numpy(), log=log,
                            refit_stale=True)
        synthetic = with_reference_labels(fits, meta, cfg)
        write_catalog(synthetic, out / "catalog_synthetic_model.parquet",
                      {**catalog_meta, "model": str(synthetic_model), "model_config": other.config,
                       "error_scale": synthetic.attrs.pop("error_scale")})
    return write_real_report(out / "report", results, model, cfg.prefix, synthetic=synthetic,
                             store=store, log=log)


def with_reference_labels(results: pd.DataFrame, meta: pd.DataFrame, cfg: RealDataConfig) -> pd.DataFrame:
    """Fit results (rows carry specid = store row) with the reference labels, star id, split and
    spectral type of their spectra beside the fitted labels."""
    cols = [f"{cfg.prefix}_{lab}" for lab in cfg.label_names] + ["heldout", "spectral_type", "star_id"] \
        + [c for c in ("training_outlier",) if c in meta]
    extra = meta.set_index("specid")[cols].reindex(results["specid"].to_numpy())
    results = results.drop(columns=[c for c in cols if c in results.columns])
    out = pd.concat([results.reset_index(drop=True), extra.reset_index(drop=True)], axis=1)
    out.attrs = results.attrs
    return out


def default_real_config(spectra: str | None = None, labels: str | None = None) -> RealDataConfig:
    """The default inputs, with ``spectra``/``labels`` replacing them when given."""
    cfg = RealDataConfig()
    return replace(cfg, spectra=spectra or cfg.spectra, labels=labels or cfg.labels)
