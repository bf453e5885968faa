"""Bad-fit flags from the chi^2 of the fit: chi2ratio over its polynomial in S/N, Teff and
[Fe/H] (X19 sec. 5.4) and the DESI variant, (chi^2 - median) / MAD in S/N bins (Z24 eq. 5)."""
from __future__ import annotations

import numpy as np

from .. import constants as C
from .xflag import group_medians


def poly_design(snr, teff, feh, degree: int = 3) -> np.ndarray:
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
    design = poly_design(snr, teff, feh)
    coef, use = _clipped_lstsq(design, y, use)
    med = design @ coef
    scoef, *_ = np.linalg.lstsq(design[use], np.abs(y - med)[use], rcond=None)
    return med, np.clip(design @ scoef * 1.2533, 1e-6, None)


def chi2ratio(chi2, snr, teff, logg, feh, giant_logg: float = C.GIANT_LOGG) -> np.ndarray:
    """(chi^2 - median model) / sigma model, dwarfs and giants modelled apart, dwarfs fitted on
    4500-7500 K (X19 sec. 5.4.1) and compared with the model at the nearer edge outside it.
    Inputs (n,); returns (n,).

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
        # Dwarfs beyond the fitted Teff range (real A stars above 7500 K) are compared with the
        # model at its edge: the cubic extrapolated to 7500-10000 K called 30 % of the real A
        # stars' fits bad (studies/real_training/README.md, per-pixel model scatter).
        t = teff if giant else np.clip(teff, lo, hi)
        log_med, log_sig = _robust_poly(log_chi2, snr, t, feh, fit_on)
        # A scatter model fitted to few or identical chi2 can reach 0: floor it (constants).
        log_sig = np.maximum(log_sig, C.CHI2_LOG_SCATTER_FLOOR)
        # Evaluated on the members only: the cubic extrapolated to the others can overflow.
        med = 10 ** log_med[members]
        out[members] = (chi2[members] - med) / (med * np.log(10) * log_sig[members])
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


def chi2ratio_desi(chi2, snr, snr_edges=C.DESI_CHI2_SNR_EDGES) -> np.ndarray:
    """Z24 eq. 5: (chi^2 - median) / chi^2_mad within S/N bins, chi^2_mad being "the mean absolute
    deviation from the median" (Z24 sec. 3.3) of the bin. chi2, snr: (n,); returns (n,), NaN
    where chi2 is not finite."""
    chi2 = np.asarray(chi2, dtype=np.float64)
    b = np.digitize(np.asarray(snr, dtype=np.float64), snr_edges)
    ok = np.isfinite(chi2)
    out = np.full(chi2.shape, np.nan)
    keys, med = group_medians(b[ok], chi2[ok])
    pos = np.searchsorted(keys, b[ok])
    dev = np.abs(chi2[ok] - med[pos])
    mad = np.bincount(pos, dev, minlength=len(keys)) / np.bincount(pos, minlength=len(keys))
    out[ok] = (chi2[ok] - med[pos]) / np.where(mad[pos] > 0, mad[pos], np.inf)
    return out


def qflag_chi2_desi(ratio) -> np.ndarray:
    """DESI variant: bad (1) where (chi^2 - median)/MAD > 3 (Z24), or not finite."""
    return (~(np.asarray(ratio, dtype=np.float64) <= C.DESI_CHI2_MAD_CUT)).astype(np.int8)
