"""Error calibration: the formal errors scaled to the scatter of repeat visits of the same
star, as a function of S/N, Teff and [Fe/H] (X19 sec. 5.3)."""
from __future__ import annotations

import warnings

import numpy as np
from pandas.errors import PerformanceWarning

from .. import constants as C
from .chi2 import poly_design


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
    design = poly_design(*x)
    # |v1 - v2|/sqrt(2) of one pair estimates sigma with mean sigma*sqrt(2/pi): undo that bias.
    coef, *_ = np.linalg.lstsq(design, ratio[ok] * np.sqrt(np.pi / 2), rcond=None)
    lims = [(a.min(), a.max()) for a in x]

    def scale(snr, teff, feh):
        clipped = [np.clip(np.asarray(a, float), lo, hi) for a, (lo, hi) in zip((snr, teff, feh), lims)]
        return np.clip(poly_design(*clipped) @ coef, 1.0, None)
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
