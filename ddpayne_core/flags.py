"""Quality flags (X19 sec. 5.4; docs/spec.md sec. 8): which labels are measured from real spectral
features (X_gradcorr, X_flag) and which fits are bad (chi2ratio, qflag_chi2).

Flags are recomputed from stored per-star columns with vectorized binning only, so a slider can
re-flag millions of rows interactively.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from pandas.errors import PerformanceWarning

from . import constants as C
from .emulator import EmulatorModel
from .theory.gradients import ReferenceGradients, load_reference_gradients


def check_number(what: str, name: str, value, lo: float, hi: float) -> float:
    """``value`` as a float if it is a finite number in [lo, hi], else a ValueError naming
    ``what``, the field ``name``, the range and the value given (widgets and JSON files alike
    can hand over None, NaN, text or 1e308)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = np.nan
    if isinstance(value, bool) or not (np.isfinite(number) and lo <= number <= hi):
        raise ValueError(f"{what}: {name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class XFlagConfig:
    """cutoff: bin-median gradcorr above which a bin passes; snr_min: stars entering the medians;
    teff_bin [K], feh_bin [dex]: bin sizes; giant_logg: dwarfs/giants split; chi2_cuts: the
    chi2ratio cut of each S/N tier of C.CHI2RATIO_TIERS (qflag_chi2)."""

    cutoff: float = C.GRADCORR_CUTOFF
    snr_min: float = C.GRADCORR_MIN_SNR
    teff_bin: float = 250.0
    feh_bin: float = 0.25
    giant_logg: float = C.GIANT_LOGG
    chi2_cuts: tuple = tuple(cut for _, cut in C.CHI2RATIO_TIERS)

    # Allowed ranges (inclusive). A chi2ratio cut below 1 would call a typical fit bad; a
    # gradcorr cutoff is a correlation coefficient; bins narrower than these hold a few stars.
    LIMITS = {"cutoff": (0.0, 1.0), "snr_min": (0.0, 1000.0), "teff_bin": (50.0, 3000.0),
              "feh_bin": (0.02, 3.0), "giant_logg": (0.0, 6.0), "chi2_cuts": (1.0, 1000.0)}

    def __post_init__(self):
        values = asdict(self)
        cuts = values.pop("chi2_cuts")
        if len(cuts) != len(C.CHI2RATIO_TIERS):
            raise ValueError(f"flag configuration: chi2_cuts needs {len(C.CHI2RATIO_TIERS)} "
                             "values, one per S/N tier")
        values.update({f"chi2_cuts[{i}]": c for i, c in enumerate(cuts)})
        for name, value in values.items():
            check_number("flag configuration", name, value, *self.LIMITS[name.split("[")[0]])

    @classmethod
    def from_json(cls, text: str) -> "XFlagConfig":
        """A configuration saved by ``to_json`` (e.g. from the app); unknown keys are an error."""
        values = json.loads(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"flag configuration: unknown keys {sorted(unknown)}")
        if "chi2_cuts" in values:
            values["chi2_cuts"] = tuple(values["chi2_cuts"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def nearest_reference(teff, logg, feh, ref_teff, ref_logg, ref_feh) -> np.ndarray:
    """Index of the nearest reference star under X19's metric
    D = sqrt((dTeff/100 K)^2 + (dlogg/0.2)^2 + (d[Fe/H]/0.1)^2). Inputs (n,) and (n_ref,)."""
    s = C.GRADCORR_METRIC_SCALES
    d2 = ((np.asarray(teff)[:, None] - np.asarray(ref_teff)[None]) / s["teff"]) ** 2 \
        + ((np.asarray(logg)[:, None] - np.asarray(ref_logg)[None]) / s["logg"]) ** 2 \
        + ((np.asarray(feh)[:, None] - np.asarray(ref_feh)[None]) / s["feh"]) ** 2
    return np.argmin(d2, axis=1)


def emulator_dflux(model: EmulatorModel, labels: np.ndarray, steps: np.ndarray,
                   columns=None) -> np.ndarray:
    """The emulator's finite differences F(l + step_k e_k) - F(l) on all pixels, for the labels
    k at ``columns`` (default all). labels: (n, n_label) physical; steps: (n, n_step) physical,
    one per column -> (n, n_step, n_pix)."""
    n, k = labels.shape
    unit = np.eye(k) if columns is None else np.eye(k)[list(columns)]
    stepped = labels[:, None, :] + steps[:, :, None] * unit[None]
    x = model.scaler.scale(np.concatenate([labels, stepped.reshape(-1, k)]))
    with torch.no_grad():
        f = model.net(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return f[n:].reshape(n, len(unit), -1) - f[:n, None, :]


def centred(a: np.ndarray):
    a = a - a.mean(-1, keepdims=True)
    return a, np.sqrt((a ** 2).sum(-1))


def gradcorr(model: EmulatorModel, labels: np.ndarray, reference, batch: int | None = None,
             which=None) -> np.ndarray:
    """X_gradcorr: Pearson correlation over the model's unmasked pixels between the emulator's
    finite difference at the fitted labels (the nearest reference star's steps) and that star's
    ab initio finite difference, for the labels named in ``which`` (default all of the model's;
    the reference must hold them). labels: (n, n_label) physical -> (n, len(which)); NaN where
    the labels are not finite."""
    names = list(model.labels)
    which = list(names if which is None else which)
    ref = reference.select_labels(which)
    idx = nearest_reference(labels[:, names.index("teff")], labels[:, names.index("logg")],
                            labels[:, names.index("feh")], ref.stars["teff"], ref.stars["logg"],
                            ref.stars["feh"])
    steps = ref.steps()[idx]                                           # (n, k)
    ab, ab_norm = centred(ref.dflux[:, :, model.mask])                # (n_ref, k, p)
    columns = [names.index(lab) for lab in which]
    out = np.full((len(labels), len(which)), np.nan)
    rows = np.nonzero(np.all(np.isfinite(labels), axis=1))[0]
    if batch is None:  # a hidden layer of the batch's (1 + n_label) spectra stays under 32 MB,
        # so the batch's memory is reused from the heap, not page-faulted afresh (memory.py)
        net = model.net
        batch = max(1, (32 << 20) // (4 * net.n_pix * net.n_hidden * (net.n_label + 1)))
    for a in range(0, len(rows), batch):
        r = rows[a:a + batch]
        emu, emu_norm = centred(emulator_dflux(model, labels[r], steps[r], columns)[:, :, model.mask])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = (emu * ab[idx[r]]).sum(-1) / (emu_norm * ab_norm[idx[r]])
    return out


def bin_index(teff, feh, giant, config: XFlagConfig):
    """One integer per (dwarf/giant, Teff bin, [Fe/H] bin)."""
    t = np.floor(np.asarray(teff) / config.teff_bin).astype(np.int64)
    f = np.floor((np.asarray(feh) + 10.0) / config.feh_bin).astype(np.int64)
    return (giant.astype(np.int64) * 10_000 + t) * 10_000 + f


def group_medians(keys: np.ndarray, values: np.ndarray):
    """Median of ``values`` per unique key (vectorized: one sort). Returns (keys, medians)."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    uniq, start, counts = np.unique(k, return_index=True, return_counts=True)
    lo = start + (counts - 1) // 2
    hi = start + counts // 2
    return uniq, 0.5 * (v[lo] + v[hi])


def xflag_eligible(gradcorr_values, teff, logg, feh) -> np.ndarray:
    """Rows that may carry X_flag = 1 at all (X19 sec. 5.4.2): finite gradcorr and labels, and
    neither Teff > 7500 K nor a cool dwarf (Teff < 4500 K, logg > 3.8). (n,) bool."""
    g, teff, logg, feh = (np.asarray(a, dtype=np.float64) for a in (gradcorr_values, teff, logg, feh))
    cool_teff, cool_logg = C.XFLAG_COOL_DWARF
    return np.isfinite(g) & np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh) \
        & ~((teff > C.XFLAG_TEFF_MAX) | ((teff < cool_teff) & (logg > cool_logg)))


def medians_at(uniq: np.ndarray, medians: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The median of each of ``keys``' bins from ``group_medians``' (uniq, medians); NaN for a
    bin no star entered."""
    out = np.full(len(keys), np.nan)
    if len(uniq):
        pos = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
        hit = uniq[pos] == keys
        out[hit] = medians[pos[hit]]
    return out


def xflag_rule(bin_median: np.ndarray, eligible: np.ndarray, cutoff: float) -> np.ndarray:
    """X_flag from each row's bin-median gradcorr: 1 where it exceeds ``cutoff`` and the row is
    eligible, else 0 (X19 sec. 5.4.2). The one rule that flags.x_flag and the app's live
    re-flagging (explore.FlagTuner) both apply. (n,) int8."""
    return ((bin_median > cutoff) & eligible).astype(np.int8)


def x_flag(gradcorr_values, teff, logg, feh, snr, config: XFlagConfig = XFlagConfig()):
    """X_flag per star (X19 sec. 5.4.2): 1 if the median gradcorr of its (dwarf/giant, Teff,
    [Fe/H]) bin, computed from stars with S/N > snr_min, exceeds the cutoff; 0 otherwise, and 0
    outside ``xflag_eligible``. Inputs (n,); returns (n,) int8."""
    g = np.asarray(gradcorr_values, dtype=np.float64)
    teff, logg, feh, snr = (np.asarray(a, dtype=np.float64) for a in (teff, logg, feh, snr))
    eligible = xflag_eligible(g, teff, logg, feh)
    keys = bin_index(np.nan_to_num(teff), np.nan_to_num(feh), logg < config.giant_logg, config)
    use = np.isfinite(g) & np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh) & (snr > config.snr_min)
    uniq, med = group_medians(keys[use], g[use]) if use.any() else (np.zeros(0, np.int64), np.zeros(0))
    return xflag_rule(medians_at(uniq, med, keys), eligible, config.cutoff)


def _poly_design(snr, teff, feh, degree: int = 3) -> np.ndarray:
    """All monomials of (log S/N, Teff/1000, [Fe/H]) up to total ``degree``: (n, n_terms)."""
    x = np.column_stack([np.log10(np.clip(snr, 1, None)), np.asarray(teff) / 1000.0, feh])
    cols = [np.ones(len(x))]
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            for k in range(degree + 1 - i - j):
                if 0 < i + j + k:
                    cols.append(x[:, 0] ** i * x[:, 1] ** j * x[:, 2] ** k)
    return np.column_stack(cols)


def _clipped_lstsq(design, y, use, n_iter: int = 5, n_sigma: float = 4.0):
    """Least squares of y on design (n, n_terms) over ``use`` (n,) bool, iteratively dropping
    points more than n_sigma robust sigma off; a point outside ``use`` never enters. Returns
    (coefficients, the points kept)."""
    keep = use
    for _ in range(n_iter):
        coef, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
        resid = y - design @ coef
        sig = 1.4826 * np.median(np.abs(resid[keep]))
        keep = use & (np.abs(resid) < n_sigma * sig)
    return coef, keep


def _robust_poly(chi2, snr, teff, feh, fit_mask):
    """Third-order polynomial models of the median and the scatter of ``chi2`` (here log10 chi^2)
    versus (S/N, Teff, [Fe/H]): an iteratively clipped least-squares fit, then one of |residual|
    (x 1.2533 for a Gaussian sigma). Returns the (median, sigma) model for every star.

    The stars it is fitted to are first cleaned against a quadratic in log S/N alone: a cubic in
    three labels bends to follow bad fits where they crowd a corner of label space that good
    stars hardly reach (on the demo survey, spectra with a wrong RV are fitted at [Fe/H] < -2.2,
    where 80 of 83 stars are such; fitted with them, the cubic passed half of them as good)."""
    y = np.asarray(chi2, dtype=np.float64)
    log_snr = np.log10(np.clip(snr, 1, None))
    _, use = _clipped_lstsq(np.column_stack([np.ones_like(log_snr), log_snr, log_snr ** 2]), y,
                            fit_mask & np.isfinite(y))
    design = _poly_design(snr, teff, feh)
    coef, use = _clipped_lstsq(design, y, use)
    med = design @ coef
    scoef, *_ = np.linalg.lstsq(design[use], np.abs(y - med)[use], rcond=None)
    return med, np.clip(design @ scoef * 1.2533, 1e-6, None)


def chi2ratio(chi2, snr, teff, logg, feh, giant_logg: float = C.GIANT_LOGG) -> np.ndarray:
    """(chi^2 - median model) / sigma model, dwarfs and giants modelled apart, dwarfs fitted on
    4500-7500 K (X19 sec. 5.4.1). Inputs (n,); returns (n,).

    The polynomial models are fitted to log10 chi^2 and converted back (median 10^m, sigma
    10^m ln10 s): chi^2 rises as S/N^2 once the model's systematic error exceeds the noise,
    and a cubic in log S/N fitted to chi^2 itself falls short of the median where stars are
    few (on the demo survey, median chi2ratio +3.8 above S/N 300 and 20 % of clean single
    stars flagged there; 0 % in log)."""
    chi2, snr, teff, logg, feh = (np.asarray(a, dtype=np.float64) for a in (chi2, snr, teff, logg, feh))
    out = np.full(chi2.shape, np.nan)
    ok = np.isfinite(chi2) & (chi2 > 0) & np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh)
    log_chi2 = np.log10(np.where(ok, chi2, 1.0))
    lo, hi = C.CHI2_DWARF_TEFF_RANGE
    for giant in (False, True):
        members = ok & ((logg < giant_logg) == giant)
        fit_on = members if giant else members & (teff > lo) & (teff < hi)
        if fit_on.sum() < 30:
            continue
        log_med, log_sig = _robust_poly(log_chi2, snr, teff, feh, fit_on)
        # A scatter model fitted to few or identical chi2 can reach 0: floor it (constants).
        log_sig = np.maximum(log_sig, C.CHI2_LOG_SCATTER_FLOOR)
        med = 10 ** log_med
        out[members] = ((chi2 - med) / (med * np.log(10) * log_sig))[members]
    return out


def qflag_chi2(ratio, snr, cuts=None) -> np.ndarray:
    """1 = bad fit where chi2ratio exceeds the cut of the star's S/N tier (X19 sec. 5.4.1);
    0 = good. Non-finite ratios are bad. ``cuts``: one per tier of C.CHI2RATIO_TIERS (default
    the paper's). Inputs (n,); returns (n,) int8."""
    ratio = np.asarray(ratio, dtype=np.float64)
    edges = np.array([e for e, _ in C.CHI2RATIO_TIERS])
    cuts = np.array([c for _, c in C.CHI2RATIO_TIERS] if cuts is None else cuts, dtype=np.float64)
    cut = cuts[np.searchsorted(edges, np.asarray(snr, dtype=np.float64), side="right").clip(0, len(cuts) - 1)]
    return (~(ratio <= cut)).astype(np.int8)


def absolute_magnitude_model(teff, logg, feh, abs_mag, fit_mask):
    """A data-driven absolute-magnitude model: third-order polynomial of (Teff, logg, [Fe/H])
    fitted (with 4-sigma clipping) to stars whose parallaxes are precise. Returns (prediction for
    every star, robust scatter [mag])."""
    x = np.column_stack([np.asarray(teff) / 1000.0, logg, feh])
    cols = [np.ones(len(x))]
    for i in range(4):
        for j in range(4 - i):
            for k in range(4 - i - j):
                if 0 < i + j + k:
                    cols.append(x[:, 0] ** i * x[:, 1] ** j * x[:, 2] ** k)
    design = np.column_stack(cols)
    use = fit_mask & np.all(np.isfinite(design), axis=1) & np.isfinite(abs_mag)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(design[use], abs_mag[use], rcond=None)
        resid = abs_mag - design @ coef
        sig = 1.4826 * np.median(np.abs(resid[use]))
        use = use & (np.abs(resid) < 4 * sig)
    return design @ coef, sig


def spectroscopic_parallax(teff, logg, feh, app_mag, extinction, parallax, parallax_error,
                           min_parallax_snr: float = 10.0):
    """Parallax from the labels (X19 sec. 5.4.3): the absolute magnitude of a model calibrated on
    stars with parallax/error > min_parallax_snr, with the apparent magnitude and extinction.
    Inputs (n,) [K, dex, dex, mag, mag, mas, mas]; returns (w_sp, s_sp) (n,) [mas], s_sp from the
    model's robust scatter in magnitudes."""
    teff, logg, feh, app_mag, extinction, parallax, parallax_error = (
        np.asarray(a, dtype=np.float64) for a in (teff, logg, feh, app_mag, extinction, parallax,
                                                  parallax_error))
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_obs = app_mag - extinction + 5 * np.log10(parallax / 100.0)
        precise = parallax / parallax_error > min_parallax_snr
    model, scatter = absolute_magnitude_model(teff, logg, feh, abs_obs, precise)
    w_sp = 10 ** ((model - app_mag + extinction + 10.0) / 5.0)
    return w_sp, w_sp * np.log(10) / 5.0 * scatter


def binary_flag(teff, logg, feh, app_mag, extinction, parallax, parallax_error,
                min_parallax_snr: float = 10.0):
    """Spectroscopic versus astrometric parallax (X19 sec. 5.4.3): snr_dparallax =
    (w_sp - w_Gaia) / sqrt(s_sp^2 + s_Gaia^2) with ``spectroscopic_parallax``.
    qflag_singlestar: 1 = consistent with a single star, 0 = not single (snr_dparallax > 3),
    -1 = not given (Teff < 5500 K and logg < 3.6, or Teff > 7000 K). Returns both (n,).
    """
    teff, logg = np.asarray(teff, dtype=np.float64), np.asarray(logg, dtype=np.float64)
    w_sp, s_sp = spectroscopic_parallax(teff, logg, feh, app_mag, extinction, parallax,
                                        parallax_error, min_parallax_snr)
    parallax, parallax_error = np.asarray(parallax, float), np.asarray(parallax_error, float)
    snr_dp = (w_sp - parallax) / np.sqrt(s_sp ** 2 + parallax_error ** 2)
    single = np.where(snr_dp > C.BINARY_DPARALLAX_CUT, 0, 1).astype(np.int8)
    (cool_teff, cool_logg), hot = C.BINARY_UNDEFINED
    undefined = ((teff < cool_teff) & (logg < cool_logg)) | (teff > hot) | ~np.isfinite(snr_dp)
    single[undefined] = -1
    return snr_dp, single


def _repeat_pairs(star_id, mjd, snr, max_dsnr: float = 5.0):
    """Row indices (i, j) of repeat pairs (X19 sec. 5.3): consecutive visits of the same star
    from different nights with |dS/N| < max_dsnr."""
    star_id, night, snr = np.asarray(star_id), np.floor(np.asarray(mjd)), np.asarray(snr, float)
    order = np.lexsort((night, star_id))
    s, m, q = star_id[order], night[order], snr[order]
    # Every star's visits are adjacent after sorting.
    pair = (s[1:] == s[:-1]) & (m[1:] != m[:-1]) & (np.abs(q[1:] - q[:-1]) < max_dsnr)
    k = np.nonzero(pair)[0]
    return order[k], order[k + 1]


def repeat_precision(star_id, mjd, snr, values, max_dsnr: float = 5.0):
    """Precision from repeat visits (X19 sec. 5.3): each pair of ``_repeat_pairs`` gives
    |v1 - v2| / sqrt(2) at the pair's mean S/N. values: (n,) or (n, n_label). Returns
    (pair_snr (m,), pair_dispersion (m, n_label))."""
    i, j = _repeat_pairs(star_id, mjd, snr, max_dsnr)
    snr = np.asarray(snr, float)
    values = np.atleast_2d(np.asarray(values, dtype=np.float64).T).T
    return 0.5 * (snr[i] + snr[j]), np.abs(values[j] - values[i]) / np.sqrt(2.0)


def error_scale_model(pair_snr, pair_teff, pair_feh, pair_dispersion, pair_formal):
    """Scale factor of formal errors (X19 sec. 5.3): the ratio of repeat-visit dispersion to
    the formal error, modelled as a third-order polynomial of (S/N, Teff, [Fe/H]) by least
    squares on per-pair ratios. Fit dwarfs and giants by calling it on each.

    pair_*: (m,) per repeat pair of one label. Returns a function (snr, teff, feh) -> scale (n,),
    at least 1 (repeats never make errors smaller than the formal ones); its inputs are clipped
    to the range the pairs cover, so the polynomial is never extrapolated.
    """
    ratio = np.asarray(pair_dispersion, float) / np.asarray(pair_formal, float)
    ok = np.isfinite(ratio) & np.isfinite(pair_teff) & np.isfinite(pair_feh)
    x = [np.asarray(a, float)[ok] for a in (pair_snr, pair_teff, pair_feh)]
    design = _poly_design(*x)
    # |v1 - v2|/sqrt(2) of one pair estimates sigma with mean sigma*sqrt(2/pi): undo that bias.
    coef, *_ = np.linalg.lstsq(design, ratio[ok] * np.sqrt(np.pi / 2), rcond=None)
    lims = [(a.min(), a.max()) for a in x]

    def scale(snr, teff, feh):
        clipped = [np.clip(np.asarray(a, float), lo, hi) for a, (lo, hi) in zip((snr, teff, feh), lims)]
        return np.clip(_poly_design(*clipped) @ coef, 1.0, None)
    return scale


def calibrate_errors(table, labels, giant_logg: float = C.GIANT_LOGG,
                     min_pairs: int = C.ERROR_SCALE_MIN_PAIRS) -> dict:
    """Scale every <label>_err to the repeat-visit scatter (X19 sec. 5.3, docs/spec.md sec. 8), in place:
    the formal error is kept as <label>_err_formal (and reused when called again), the scale
    model of ``error_scale_model`` is fitted to the repeat pairs of dwarfs and giants apart and
    applied to every row of the group. A group with fewer than ``min_pairs`` usable pairs keeps
    its formal errors (scale 1). Needs star_id, mjd, snr, teff, logg, feh.

    Returns per label {"dwarfs"/"giants": number of pairs, "median_scale": median factor}."""
    i, j = _repeat_pairs(table["star_id"], table["mjd"], table["snr"])
    snr, teff, logg, feh = (table[c].to_numpy(dtype=np.float64) for c in ("snr", "teff", "logg", "feh"))
    giant = logg < giant_logg
    report = {}
    with warnings.catch_warnings():
        # In place, so the wide catalogue cannot be rebuilt; pandas' fragmentation warning is
        # about its earlier inserts and costs milliseconds here.
        warnings.simplefilter("ignore", PerformanceWarning)
        for lab in labels:
            if f"{lab}_err_formal" not in table:
                table[f"{lab}_err_formal"] = table[f"{lab}_err"]
    for lab in labels:
        formal = table[f"{lab}_err_formal"].to_numpy(dtype=np.float64)
        v = table[lab].to_numpy(dtype=np.float64)
        factor = np.ones(len(table))
        report[lab] = {}
        for name, rows in (("dwarfs", ~giant), ("giants", giant)):
            use = rows[i] & rows[j] & np.isfinite(v[i] + v[j] + formal[i] + formal[j])
            report[lab][name] = int(use.sum())
            if use.sum() < min_pairs:
                continue
            a, b = i[use], j[use]
            model = error_scale_model(0.5 * (snr[a] + snr[b]), 0.5 * (teff[a] + teff[b]),
                                      0.5 * (feh[a] + feh[b]), np.abs(v[a] - v[b]) / np.sqrt(2),
                                      np.sqrt(0.5 * (formal[a] ** 2 + formal[b] ** 2)))
            factor[rows] = model(snr[rows], teff[rows], feh[rows])
        table[f"{lab}_err"] = formal * factor
        report[lab]["median_scale"] = float(np.nanmedian(factor[np.isfinite(formal)])) \
            if np.isfinite(formal).any() else float("nan")
    return report


def reflag(table, labels, config: XFlagConfig = XFlagConfig()):
    """Recompute every <label>_flag from stored <label>_gradcorr columns, and qflag_chi2 (and the
    Na-window flag) from stored chi2ratio columns (fast: binning only)."""
    for lab in labels:
        table[f"{lab}_flag"] = x_flag(table[f"{lab}_gradcorr"], table["teff"], table["logg"],
                                      table["feh"], table["snr"], config)
    for ratio, flag in (("chi2ratio", "qflag_chi2"), ("chi2ratio_na", "qflag_chi2na")):
        if ratio in table:
            table[flag] = qflag_chi2(table[ratio], table["snr"], config.chi2_cuts)
    return table


def model_reference(model: EmulatorModel) -> ReferenceGradients:
    """The reference gradients ``model`` was regularized with: its X_gradcorr compares with them.
    (Models saved before the grid was recorded were all regularized with X19 Table 1's.)"""
    return load_reference_gradients(model.config.get("reference", C.TABLE1_GRID))


def coverage_distance(model: EmulatorModel, labels: np.ndarray, k: int = C.COVERAGE_K):
    """Distance of each fit's labels (n, n_label) physical to its k-th nearest training star
    in the model's min-max scaled space of constants.COVERAGE_LABELS (all labels when it has
    none of them), and the same for the training stars themselves
    (their own k-th neighbour, not counting themselves). Returns ((n,), (n_train,)), or None
    when the model carries no training labels."""
    if model.training_labels is None:
        return None
    from scipy.spatial import cKDTree

    cols = [i for i, lab in enumerate(model.labels) if lab in C.COVERAGE_LABELS] or \
        list(range(len(model.labels)))
    train = model.scaler.scale(np.asarray(model.training_labels, np.float64))[:, cols]
    tree = cKDTree(train)
    kk = min(k, len(train) - 1)
    x = model.scaler.scale(np.asarray(labels, np.float64))[:, cols]
    ok = np.all(np.isfinite(x), axis=1)
    dist = np.full(len(x), np.nan)
    dist[ok] = tree.query(x[ok], k=[kk])[0][:, 0]
    own = tree.query(train, k=[kk + 1])[0][:, 0]
    return dist, own


def add_coverage(table, model: EmulatorModel, quantile: float = C.COVERAGE_QUANTILE):
    """Add coverage_dist and out_of_coverage (True where the fit lies farther from the training
    set than ``quantile`` of the training stars lie from theirs; see constants.COVERAGE_K) to
    a catalogue table of fits made with ``model``; nothing when the model has no training
    labels."""
    found = coverage_distance(model, table[list(model.labels)].to_numpy(dtype=np.float64))
    if found is None:
        return table
    dist, own = found
    table["coverage_dist"] = dist
    table["out_of_coverage"] = ~(dist <= np.quantile(own, quantile))   # NaN (failed fit): out
    return table


def add_flags(table, model: EmulatorModel, reference, config: XFlagConfig = XFlagConfig()):
    """Add <label>_gradcorr, <label>_flag, chi2ratio, qflag_chi2, the Na-window trio,
    coverage_dist and out_of_coverage (``add_coverage``) and, where the table carries Gaia-like
    astrometry (phot_g_mean_mag, a_g, parallax, parallax_error), snr_dparallax and
    qflag_singlestar, to a catalogue table of fits made with ``model``
    (columns <label>, chi2, chi2_na, snr)."""
    g = gradcorr(model, table[list(model.labels)].to_numpy(dtype=np.float64), reference)
    for k, lab in enumerate(model.labels):
        table[f"{lab}_gradcorr"] = g[:, k]
    args = (table["snr"], table["teff"], table["logg"], table["feh"])
    table["chi2ratio"] = chi2ratio(table["chi2"], *args)
    if "chi2_na" in table:
        table["chi2ratio_na"] = chi2ratio(table["chi2_na"], *args)
    astrometry = ("phot_g_mean_mag", "a_g", "parallax", "parallax_error")
    if all(c in table for c in astrometry):
        table["snr_dparallax"], table["qflag_singlestar"] = binary_flag(
            table["teff"], table["logg"], table["feh"], *(table[c] for c in astrometry))
    add_coverage(table, model)
    return reflag(table, model.labels, config)


def chi2ratio_desi(chi2, snr, snr_edges=(0, 10, 20, 30, 50, 80, 120, 200, np.inf)) -> np.ndarray:
    """DESI variant (Z24): (chi^2 - median) / MAD within S/N bins. Inputs (n,); returns (n,)."""
    chi2 = np.asarray(chi2, dtype=np.float64)
    b = np.digitize(np.asarray(snr, dtype=np.float64), snr_edges)
    ok = np.isfinite(chi2)
    out = np.full(chi2.shape, np.nan)
    keys, med = group_medians(b[ok], chi2[ok])
    pos = np.searchsorted(keys, b[ok])
    dev = np.abs(chi2[ok] - med[pos])
    _, mad = group_medians(b[ok], dev)
    out[ok] = (chi2[ok] - med[pos]) / np.where(mad[pos] > 0, mad[pos], np.inf)
    return out


def qflag_chi2_desi(ratio) -> np.ndarray:
    """DESI variant: bad (1) where (chi^2 - median)/MAD > 3 (Z24), or not finite."""
    return (~(np.asarray(ratio, dtype=np.float64) <= C.DESI_CHI2_MAD_CUT)).astype(np.int8)
