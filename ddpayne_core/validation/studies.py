"""Validation studies of a synthetic survey, where the truth is known: label recovery of the
metal-poor blend and the GALAH-label model, error calibration, flag fractions, the Cramer-Rao
experiment (Z24 Fig. 9), the flags a perfect emulator would give and the labels of populations
the training set lacks (``population_shift``). Each returns a dict for the report's
summary.json."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..catalog import recovery_scatter, robust_bias_scatter
from ..fit.lm import FitConfig, fit_result_table, fit_spectra, lsf_dvar_expected
from ..flags import add_flags, gradcorr, model_reference, reflag
from ..instrument import get_instrument
from ..io.desi import DesiCoadd, lsf_variance
from ..model.emulator import EmulatorModel
from ..preprocess.grid import merge_cameras, preprocess_batch
from ..simulate.desi import desi_crb, fibre_lsf_scale, observe_desi
from ..simulate.survey import (
    SHIFTED_POPULATIONS,
    SurveyConfig,
    reobserve,
    shifted_population,
    survey_crb,
    truth_spectra,
)
from .report import inside_training_coverage


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
        j = model.labels.index(lab)
        row = crb_row(labels[:, j].reshape(n, 2), labels_noise[:, j].reshape(n, 2),
                      stars[lab].to_numpy(dtype=np.float64), fit.errors[:, j], crb[:, k])
        row["crb_lsf_free"] = float(np.nanmedian(crb_lsf_free[:, k]))
        row["precision_over_crb_lsf_free"] = row["precision"] / row["crb_lsf_free"]
        out["labels"][lab] = row
    return out


def crb_row(visits: np.ndarray, visits_noise: np.ndarray, true: np.ndarray, formal: np.ndarray,
            crb: np.ndarray) -> dict:
    """One label's line of a Cramer-Rao experiment: visits, visits_noise (n, 2) fitted values of
    two visits with all effects and with noise alone; true (n,); formal (2n,) formal errors; crb
    (2n,) bounds. precision = robust scatter of (visit 2 - visit 1) / sqrt 2, accuracy = against
    truth, slope = d fitted / d true, and each over the median bound."""
    ok = np.all(np.isfinite(visits), axis=1) & np.all(np.isfinite(visits_noise), axis=1)
    row = {"crb": float(np.nanmedian(crb)),
           "formal_over_crb": float(np.nanmedian(formal / crb)),
           "precision": robust_bias_scatter((visits[ok, 1] - visits[ok, 0]) / np.sqrt(2))[1],
           "precision_noise_only": robust_bias_scatter((visits_noise[ok, 1] - visits_noise[ok, 0]) / np.sqrt(2))[1],
           "accuracy": robust_bias_scatter((visits[ok] - true[ok, None]).ravel())[1],
           "slope": float(np.polyfit(true[ok], visits[ok].mean(1), 1)[0])}
    for key in ("precision", "precision_noise_only"):
        row[f"{key}_over_crb"] = row[key] / row["crb"]
    row["error_over_crb"] = row["accuracy"] / row["crb"]
    return {key: float(val) for key, val in row.items()}


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


def population_shift(store, model: EmulatorModel, truth_path, fit_config: FitConfig = FitConfig(),
                     n_stars: int = 1500, snr: float = 50.0, seed: int = 0) -> dict:
    """Labels and flags when the population changes: ``n_stars`` single stars of the survey,
    their labels redrawn as each of ``simulate.SHIFTED_POPULATIONS`` (every [X/Fe] independent
    and wide; a metal-poor, low-alpha accreted population), observed once at ``snr`` with the
    survey's instrument effects, fitted and flagged (X_flag binned over the shifted stars
    themselves, as a survey of that population would be).

    Per population and label: n, flag1_fraction, and for all stars and for those flagged 1,
    slope (d fitted / d true, least squares), bias and scatter (robust) of fitted - true. A label
    stays honest where its flag-1 stars follow their truth (slope near 1, small bias) or where
    the flag drops."""
    cfg = SurveyConfig(**store.info["provenance"]["config"])
    featured = [lab for lab in model.labels if lab not in cfg.featureless]
    meta = store.meta()
    single = meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]]
    stars = single.sample(min(n_stars, len(single)), random_state=seed)
    truth_labels = EmulatorModel.load(truth_path).labels
    inst, reference = get_instrument(store.info["instrument"]), model_reference(model)
    out = {"snr": snr, "n_stars": int(len(stars)), "populations": {}}
    for k, kind in enumerate(SHIFTED_POPULATIONS):
        rows = shifted_population(kind, stars, truth_labels, np.random.default_rng([seed, k]))
        flux, ivar, visits = reobserve(rows, truth_path, cfg, snr, 1, seed)
        norm, norm_ivar = preprocess_batch(flux, ivar, visits["rv"].to_numpy(), inst)
        table = fit_result_table(model, fit_spectra(model, norm, norm_ivar, fit_config))
        table["snr"] = snr
        add_flags(table, model, reference)
        good = table["fit_status"].to_numpy() != 2
        out["populations"][kind] = {lab: shift_row(table.loc[good, lab].to_numpy(),
                                                   visits.loc[good, lab].to_numpy(dtype=np.float64),
                                                   table.loc[good, f"{lab}_flag"].to_numpy() == 1)
                                    for lab in featured}
    out["flag1_but_not_following_truth"] = shift_failures(out)
    return out


def shift_failures(shift: dict) -> dict:
    """Per population of a ``population_shift`` result, the labels whose flag says "measured"
    (X_flag 1 in >= constants.SHIFT_FLAG_FRACTION of the stars) while the fit does not follow
    the truth: slope < SHIFT_MIN_SLOPE among the flagged stars where the [X/Fe] are independent
    (Teff, logg, [Fe/H], vmic keep the survey's values there and are not judged), |bias| above
    SHIFT_MAX_BIAS in the accreted population."""
    out = {}
    for kind, rows in shift["populations"].items():
        bad = []
        for lab, r in rows.items():
            if r["flag1_fraction"] < C.SHIFT_FLAG_FRACTION or r["flag1"]["bias"] is None:
                continue
            if kind == "independent" and lab.endswith("_fe"):
                bad += [lab] if r["flag1"]["slope"] < C.SHIFT_MIN_SLOPE else []
            elif kind == "accreted":
                limit = C.SHIFT_MAX_BIAS.get(lab, C.SHIFT_MAX_BIAS["default"])
                bad += [lab] if abs(r["flag1"]["bias"]) > limit else []
        out[kind] = bad
    return out


def shift_row(fitted: np.ndarray, true: np.ndarray, flag1: np.ndarray) -> dict:
    """One label's line of ``population_shift``: fitted, true (n,), flag1 (n,) bool."""
    def stats(sel):
        if sel.sum() < 10:
            return {"slope": None, "bias": None, "scatter": None}
        bias, scatter = robust_bias_scatter(fitted[sel] - true[sel])
        return {"slope": float(np.polyfit(true[sel], fitted[sel], 1)[0]), "bias": bias, "scatter": scatter}
    return {"n": int(len(fitted)), "flag1_fraction": float(flag1.mean()),
            "all": stats(np.ones(len(fitted), dtype=bool)), "flag1": stats(flag1)}


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


def desi_crb_experiment(truth_table: pd.DataFrame, model: EmulatorModel, truth_path,
                        config, fit_config: FitConfig = FitConfig(), snr: float = 100.0,
                        n_stars: int = 200, seed: int = 0) -> dict:
    """DESI's precision and accuracy against the Cramer-Rao bound at S/N ``snr`` per pixel in
    the R camera (Z24 abstract and Fig. 9: within a factor of two). ``n_stars`` single stars of
    the DESI synthetic survey (``truth_table``) are observed twice more through the cameras
    (``simulate.desi.observe_desi``: fresh noise, each visit on its own fibre with its own LSF
    recorded in its RESOLUTION matrices, sky, telluric residuals), and
    twice with noise alone, merged and preprocessed as ingest does, and fitted. Same keys as
    ``crb_experiment`` (so the report draws it alike)."""
    inst = get_instrument("desi")
    truth = EmulatorModel.load(truth_path)
    single = truth_table[(truth_table["visit"] == 0) & ~truth_table["is_binary"]
                         & ~truth_table["injected_bad"] & ~truth_table["is_galaxy"]]
    stars = single.sample(min(n_stars, len(single)), random_state=seed)
    visits = stars.loc[stars.index.repeat(2)].reset_index(drop=True)
    visits["snr_r_true"] = float(snr)
    n = len(stars)
    fitted = [lab for lab in model.labels if lab not in config.featureless]

    def fit_visits(effects, salt):
        rng = np.random.default_rng([seed, salt])
        v = visits.copy()
        v["rv"] = v["rv_true"] + rng.normal(0, 1, len(v)) * v["rv_err"]
        v["lsf_scale"] = fibre_lsf_scale(rng, len(v))   # each visit on its own fibre
        cams = observe_desi(truth_spectra(truth, v, config.featureless, rng), v, rng, effects)
        coadd = DesiCoadd(Path("crb"), v, cams)
        flux, ivar = merge_cameras(coadd, inst)
        norm, norm_ivar = preprocess_batch(flux, ivar, v["rv"].to_numpy(), inst)
        return fit_spectra(model, norm, norm_ivar, fit_config,
                           lsf_dvar_expected(model, lsf_variance(cams, C.DESI_PIXEL_AA)))

    fit, fit_noise = fit_visits(config.effects, 1), fit_visits((), 2)
    crb = desi_crb(truth, visits, config.featureless, fitted)
    out = {"snr": snr, "n_stars": n, "instrument": "desi", "labels": {}}
    for k, lab in enumerate(fitted):
        j = model.labels.index(lab)
        out["labels"][lab] = crb_row(fit.labels[:, j].reshape(n, 2), fit_noise.labels[:, j].reshape(n, 2),
                                     stars[lab].to_numpy(dtype=np.float64), fit.errors[:, j], crb[:, k])
    return out
