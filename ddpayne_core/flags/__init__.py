"""Flags (X19 sec. 5.4-5.5, Z24 sec. 3.3; docs/flags.md): which labels are measured from real
spectral features (``xflag``), which fits are bad (``chi2``), which stars are binaries
(``binary``), how far a fit lies from the training set (``coverage``), and the formal errors
scaled to repeat visits (``errors``). In: a catalogue of fits (labels, chi2, snr) and the model
that made them; out: the same table with the flag columns. ``reflag`` recomputes the flags from
stored columns with binning only, so a slider can re-flag millions of rows interactively.
"""
from __future__ import annotations

import numpy as np

from .. import constants as C
from ..model.emulator import EmulatorModel
from .binary import absolute_magnitude_model, binary_flag, spectroscopic_parallax
from .chi2 import chi2ratio, chi2ratio_desi, qflag_chi2, qflag_chi2_desi
from .coverage import add_coverage, coverage_distance
from .errors import calibrate_errors, error_scale_model, repeat_precision
from .response import label_response, response_grid, response_reference
from .tuner import FlagTuner
from .xflag import (
    XFlagConfig,
    bin_index,
    centred,
    check_number,
    emulator_dflux,
    gradcorr,
    group_medians,
    medians_at,
    model_reference,
    nearest_reference,
    paired_dflux,
    x_flag,
    xflag_eligible,
    xflag_rule,
)

__all__ = ["FlagTuner", "XFlagConfig", "absolute_magnitude_model", "add_coverage", "add_flags",
           "bin_index", "binary_flag", "calibrate_errors", "centred", "check_number", "chi2ratio",
           "chi2ratio_desi", "coverage_distance", "emulator_dflux", "error_scale_model",
           "gradcorr", "group_medians", "label_response", "medians_at", "model_reference",
           "nearest_reference", "qflag_chi2", "qflag_chi2_desi", "reflag", "repeat_precision",
           "paired_dflux", "response_grid", "response_reference", "spectroscopic_parallax",
           "x_flag", "xflag_eligible", "xflag_rule"]


def reflag(table, labels, config: XFlagConfig = XFlagConfig()):
    """Recompute every <label>_flag from stored <label>_gradcorr (and, where stored,
    <label>_response) columns, and qflag_chi2 (and the Na-window flag) from stored chi2ratio
    columns (fast: binning only)."""
    for lab in labels:
        table[f"{lab}_flag"] = x_flag(table[f"{lab}_gradcorr"], table["teff"], table["logg"],
                                      table["feh"], table["snr"], config, table.get(f"{lab}_response"))
    for ratio, flag in (("chi2ratio", "qflag_chi2"), ("chi2ratio_na", "qflag_chi2na")):
        if ratio in table:
            table[flag] = qflag_chi2(table[ratio], table["snr"], config.chi2_cuts)
    return table


def add_flags(table, model: EmulatorModel, reference, config: XFlagConfig | None = None):
    """Add <label>_gradcorr (against ``reference``), <label>_response (the abundances, against
    ``response_reference(model, reference)``; flags/response.py), <label>_flag, chi2ratio,
    qflag_chi2, the Na-window trio, coverage_dist and out_of_coverage (``add_coverage``) and,
    where the table carries Gaia-like astrometry (phot_g_mean_mag, a_g, parallax,
    parallax_error), snr_dparallax and qflag_singlestar, to a catalogue table of fits made with
    ``model`` (columns <label>, chi2, chi2_na, snr). A DESI model's chi2ratio is Z24's MAD-scaled one and
    its abundances get <label>_below_feh_floor (Z24 Fig. 8's [Fe/H] limits: flags, the values
    stay). ``config``: by default ``XFlagConfig.for_model(model)``."""
    config = config or XFlagConfig.for_model(model)
    desi = model.config.get("instrument") == "desi"
    labels = table[list(model.labels)].to_numpy(dtype=np.float64)
    g = gradcorr(model, labels, reference)
    abundances = any(lab.endswith("_fe") for lab in model.labels)
    response = label_response(model, labels, response_reference(model, reference)) if abundances else None
    for k, lab in enumerate(model.labels):
        table[f"{lab}_gradcorr"] = g[:, k]
        if lab.endswith("_fe"):
            table[f"{lab}_response"] = response[:, k]
    args = (table["snr"], table["teff"], table["logg"], table["feh"])
    ratio = (lambda chi2: chi2ratio_desi(chi2, table["snr"])) if desi else (lambda chi2: chi2ratio(chi2, *args))
    table["chi2ratio"] = ratio(table["chi2"])
    if "chi2_na" in table:
        table["chi2ratio_na"] = ratio(table["chi2_na"])
    if desi:
        feh = table["feh"].to_numpy(dtype=np.float64)
        for lab in model.labels:
            if lab.endswith("_fe"):
                floor = C.DESI_FEH_FLOORS.get(lab, C.DESI_FEH_FLOORS["default"])
                table[f"{lab}_below_feh_floor"] = (~(feh >= floor)).astype(np.int8)
    astrometry = ("phot_g_mean_mag", "a_g", "parallax", "parallax_error")
    if all(c in table for c in astrometry):
        table["snr_dparallax"], table["qflag_singlestar"] = binary_flag(
            table["teff"], table["logg"], table["feh"], *(table[c] for c in astrometry))
    add_coverage(table, model)
    return reflag(table, model.labels, config)
