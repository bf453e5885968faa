"""Retraining from the app: settings -> a background training job that reports progress and can
be cancelled -> a side-by-side comparison of the new model with the current one -> adoption
(refit and re-flag the catalogue with the new model). No UI code: the app drives this.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import robust_bias_scatter, write_catalog
from ..fit.lm import fit_spectra, fitted_spectra
from ..flags import XFlagConfig, check_number, gradcorr
from ..instrument import get_instrument
from ..labels import pretty
from ..model.emulator import EmulatorModel
from ..model.train import TrainConfig, TrainingCancelled
from ..model.trainingset import TrainingSetConfig, select_training
from ..pipeline import fit_and_flag, train_from_store
from ..preprocess.grid import preprocess_batch
from .explore import SurveyBundle, store_row


@dataclass(frozen=True)
class RetrainSettings:
    """What the app lets a user change. d_scale_params: D_scale of Teff, logg, vmic;
    d_scale_abund: D_scale of [Fe/H] and [X/Fe] (X19 sec. 2 uses 5 and 50); max_stars: cap on
    the training set (metal-poor stars always kept; None = all)."""

    d_scale_params: float = 5.0
    d_scale_abund: float = 50.0
    n_hidden: int = 10
    epochs: int = 50
    regularize: bool = True
    max_stars: int | None = None

    def __post_init__(self):
        what = "retraining settings"
        check_number(what, "D_scale of Teff, logg, vmic", self.d_scale_params, 0.0, 1e4)
        check_number(what, "D_scale of [Fe/H], [X/Fe]", self.d_scale_abund, 0.0, 1e4)
        for name, value, lo, hi in (("neurons", self.n_hidden, 1, 200),
                                    ("epochs", self.epochs, 1, 100_000)):
            if check_number(what, name, value, lo, hi) != int(value):
                raise ValueError(f"{what}: {name} must be a whole number, got {value!r}")
        if self.max_stars is not None:
            check_number(what, "training stars at most", self.max_stars, 1, 1e9)

    def train_config(self, labels) -> TrainConfig:
        d = {lab: (self.d_scale_params if lab in ("teff", "logg", "vmic") else self.d_scale_abund)
             for lab in labels}
        return replace(TrainConfig(), n_hidden=self.n_hidden, epochs=self.epochs,
                       regularize=self.regularize, d_scale=d, patience=max(self.epochs, 30))

    def training_set(self, model: EmulatorModel) -> TrainingSetConfig:
        """The current model's training-set rules with this stars cap."""
        return replace(TrainingSetConfig.of_model(model), max_stars=self.max_stars)


@dataclass
class TrainingJob:
    """A training run in a background thread. ``progress`` in [0, 1]; ``state`` one of
    running, done, cancelled, failed; ``history`` per-epoch losses; ``model`` when done."""

    out: Path
    epochs: int
    state: str = "running"
    progress: float = 0.0
    message: str = ""
    history: dict = field(default_factory=dict)
    model: EmulatorModel | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def start_training(bundle: SurveyBundle, settings: RetrainSettings, out: str | Path) -> TrainingJob:
    """Train a model on the bundle's store in a background thread (the store must hold the
    high-resolution training labels, as the synthetic survey does)."""
    if bundle.store is None:
        raise ValueError("retraining needs the spectral store the catalogue was fitted from")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    job = TrainingJob(out, settings.epochs, message="selecting the training stars and reading and "
                      "normalizing their spectra (the first epoch follows)")

    def on_epoch(epoch, history):
        job.progress = (epoch + 1) / settings.epochs
        job.history = {k: list(v) for k, v in history.items()}
        per_epoch = float(np.mean(history["seconds"]))
        left = per_epoch * (settings.epochs - epoch - 1)
        job.message = (f"epoch {epoch + 1}/{settings.epochs}: train chi2 "
                       f"{history['train_chi2'][-1]:.4g}, prior {history['train_prior'][-1]:.4g}, "
                       f"validation chi2 {history['valid_chi2'][-1]:.4g}; {per_epoch:.1f} s per "
                       f"epoch, about {left / 60:.1f} min left (early stopping may end it sooner)")

    def run():
        try:
            job.model = train_from_store(bundle.store.path, out, settings.training_set(bundle.model),
                                         settings.train_config(bundle.model.labels),
                                         log=lambda *a: None, on_epoch=on_epoch,
                                         should_stop=job._cancel.is_set)
            job.state, job.progress, job.message = "done", 1.0, f"trained -> {out}"
        except TrainingCancelled as exc:
            job.state, job.message = "cancelled", str(exc)
            out.with_suffix(".ckpt").unlink(missing_ok=True)
        except Exception as exc:  # reported in the app, never kills the server
            job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"

    job._thread = threading.Thread(target=run, name="ddpayne-retrain", daemon=True)
    job._thread.start()
    return job


def validation_scatter(bundle: SurveyBundle, models: dict, n_stars: int = 200,
                       seed: int = 1) -> pd.DataFrame:
    """Self-validation of several models on the same training-quality stars: robust scatter
    (1.4826 MAD) of fitted minus high-resolution labels. Rows labels, one column per model."""
    meta = bundle.store.meta()
    labels = bundle.model.labels
    rows, hires, _ = select_training(meta, TrainingSetConfig.of_model(bundle.model))
    pick = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n_stars])
    rows, hires = rows[pick], hires[pick]
    flux, ivar = bundle.store.read_rows(rows)
    inst = get_instrument(bundle.store.info["instrument"])
    norm, niv = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
    out = {}
    for name, model in models.items():
        fitted = fit_spectra(model, norm, niv, bundle.fit_config).labels
        out[name] = [robust_bias_scatter(col)[1] for col in (fitted - hires).T]
    return pd.DataFrame(out, index=[pretty(lab) for lab in labels])


def gradcorr_medians(bundle: SurveyBundle, model: EmulatorModel, n_stars: int = 2000,
                     seed: int = 2) -> pd.Series:
    """Median gradcorr per label of ``model`` at the catalogue's fitted labels of a random
    sample of stars (the same sample for every model compared)."""
    cat = bundle.catalog
    ok = np.nonzero(np.all(np.isfinite(cat[list(model.labels)].to_numpy(dtype=float)), axis=1))[0]
    pick = np.random.default_rng(seed).permutation(ok)[:n_stars]
    g = gradcorr(model, cat[list(model.labels)].to_numpy(dtype=np.float64)[pick], bundle.reference)
    return pd.Series(np.nanmedian(g, axis=0), index=[pretty(lab) for lab in model.labels])


def star_residuals(bundle: SurveyBundle, row: int, models: dict) -> dict:
    """Fit the spectrum of catalogue row ``row`` with each model: name -> (labels (n_label,),
    (flux - model) * sqrt(ivar) (n_pix,) with NaN where unusable)."""
    srow = store_row(bundle, row)
    meta = bundle.store.meta_rows(srow, srow + 1, ["rv"])
    flux, ivar = bundle.store.read(srow, srow + 1)
    norm, niv = preprocess_batch(flux, ivar, meta["rv"].to_numpy(),
                                 get_instrument(bundle.store.info["instrument"]))
    out = {}
    for name, model in models.items():
        fit = fit_spectra(model, norm, niv, bundle.fit_config)
        pred = fitted_spectra(model, fit.labels, fit.lsf_dvar)[0] \
            if np.all(np.isfinite(fit.labels)) else np.nan
        usable = (niv[0] > 0) & model.mask
        out[name] = (fit.labels[0], np.where(usable, (norm[0] - pred) * np.sqrt(niv[0]), np.nan))
    return out


def adopt(bundle: SurveyBundle, model_path: str | Path, config: XFlagConfig = XFlagConfig(),
          log=print) -> Path:
    """Refit the bundle's whole store with a new model, flag it and write it as the bundle's
    catalogue (the previous catalogue and model are kept as *-previous)."""
    model = EmulatorModel.load(model_path)
    d = bundle.directory
    stamp = time.strftime("%Y%m%d-%H%M%S")
    new_cat = d / f"catalog-{stamp}.parquet"
    table = fit_and_flag(model, bundle.store, new_cat, bundle.fit_config, bundle.reference,
                         config=config, log=log)
    meta = {**bundle.metadata, "model": str(model_path), "model_config": model.config,
            "flag_config": asdict(config), "error_scale": table.attrs.pop("error_scale")}
    write_catalog(table, new_cat, meta)
    for name in ("catalog.parquet", "model.pt"):
        if (d / name).exists():
            (d / name).replace(d / name.replace(".", "-previous."))
    new_cat.replace(d / "catalog.parquet")
    Path(model_path).replace(d / "model.pt")
    return d / "catalog.parquet"
