"""The synthetic survey: the embedded default data (docs/spec.md sec. 10). Everything it makes is
marked synthetic.

Physics: spectra come from the *truth emulator*, a network trained on MOOG spectra of the
"truth" physics (per-line log gf errors relative to the regularizing theory; see
``theory.synthesis.TRUTH``), so the truth differs from the ab initio model used for regularization.

What makes the method necessary is built in:
- a label population with astrophysical correlations: thin and thick disc alpha sequences, a halo
  and an accreted population, isochrone-shaped Kiel diagram; abundances of every element tied to
  [alpha/Fe] or [Fe/H] with scatter;
- featureless labels (default [Cu/Fe] and [Eu/Fe]): the spectra do not respond to them at all (the
  truth emulator sees them at 0), but their values correlate with [Mg/Fe];
- instrument effects: LSF varying by fibre, flux-calibration wiggles, telluric and sky residuals,
  cosmic rays, bad pixels, radial velocities, a LAMOST-like S/N distribution;
- repeat visits on different nights; unresolved binaries with Gaia-like parallaxes and photometry;
- injected bad spectra (a wrong catalogue RV, or a blend with another fibre's light);
- APOGEE-like and GALAH-like high-resolution "training labels" for overlap subsets, with their
  own noise and survey-to-survey systematics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import C_KMS, TELLURIC_BANDS_AA
from ..fit.lm import bound_from_jacobian, broaden
from ..instrument import get_instrument
from ..io.store import SpectralStore, chunk_done, create_store, write_chunk
from ..io_utils import file_digest
from ..labels import LABEL_SETS
from ..model.emulator import EmulatorModel
from ..paths import MODELS
from ..preprocess.grid import preprocess_batch, shift_to_rest
from ..progress import progress

TRUTH_EMULATOR = MODELS / "truth_emulator.pt"
DESI_TRUTH_EMULATOR = MODELS / "truth_emulator_desi.pt"
ALPHA = ("o_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe")
SKY_LINES_AA = (5578.9, 5891.6, 6302.0, 6365.5, 6865.0, 7246.0, 7913.7, 8345.0, 8829.0)  # vacuum
# High-resolution survey errors (1 sigma) and systematic offsets of the synthetic APOGEE-like and
# GALAH-like training labels, typical of APOGEE DR14 / GALAH DR2 (X19 sec. 3).
HIRES_NOISE = {"teff": 60.0, "logg": 0.08, "vmic": 0.1, "feh": 0.04, "xfe": 0.05}
HIRES_OFFSETS = {"apogee": {"teff": 25.0, "logg": 0.03, "feh": 0.02},
                 "galah": {"teff": -30.0, "logg": -0.05, "feh": -0.03}}


@dataclass(frozen=True)
class SurveyConfig:
    n_stars: int = 20000
    seed: int = 42
    repeat_fraction: float = 0.15   # stars observed on 2-3 nights
    binary_fraction: float = 0.08
    bad_fraction: float = 0.01     # injected broken spectra
    apogee_fraction: float = 0.35  # overlap with the APOGEE-like survey
    galah_fraction: float = 0.3
    snr_median: float = 45.0
    featureless: tuple = ("cu_fe", "eu_fe")
    effects: tuple = ("lsf", "calibration", "telluric", "sky", "cosmics", "badpix")
    chunk: int = 1000


def _clip(v, lo, hi):
    return np.clip(v, lo, hi)


def draw_population(n: int, labels, rng: np.random.Generator, featureless=()) -> pd.DataFrame:
    """True labels of ``n`` stars with Galactic-archaeology-like correlations."""
    from ..theory.gradients import isochrone_logg

    comp = rng.choice(4, size=n, p=[0.62, 0.2, 0.08, 0.10])  # thin, thick, halo, accreted
    feh = np.select([comp == 0, comp == 1, comp == 2],
                    [rng.normal(-0.1, 0.22, n), rng.normal(-0.55, 0.25, n),
                     rng.normal(-1.6, 0.45, n)], rng.normal(-1.25, 0.3, n))
    feh = _clip(feh, -2.45, 0.45)
    alpha = np.select([comp == 0, comp == 1, comp == 2],
                      [0.02 - 0.08 * feh, 0.3 - 0.2 * np.clip(feh + 0.5, 0, None), np.full(n, 0.32)],
                      0.12 - 0.1 * (feh + 1.25))
    alpha = _clip(alpha + rng.normal(0, 0.03, n), -0.15, 0.38)
    giant = rng.random(n) < 0.45
    teff = np.where(giant, rng.normal(4750, 300, n) + 250 * np.clip(-feh, 0, None),
                    rng.normal(5700, 550, n))
    teff = _clip(teff, 4050, 6950)
    logg = _clip(isochrone_logg(teff, feh, giant) + rng.normal(0, 0.12, n), 0.6, 4.9)
    out = {"teff": teff, "logg": logg, "feh": feh,
           "vmic": _clip(0.9 + 0.3 * (5.0 - logg) + rng.normal(0, 0.1, n), 0.6, 2.9),
           "population": np.array(["thin", "thick", "halo", "accreted"])[comp], "giant": giant}
    out.update(abundance_ratios(labels, feh, alpha, giant, rng, featureless))
    return pd.DataFrame(out)


def abundance_ratios(labels, feh: np.ndarray, alpha: np.ndarray, giant: np.ndarray,
                     rng: np.random.Generator, featureless=()) -> dict:
    """[X/Fe] (each (n,)) of every ``labels`` entry ending in _fe: alpha elements follow
    ``alpha``, the others Galactic-chemical-evolution-like trends in [Fe/H], alpha and giant
    (dredge-up C and N), 0.04 dex scatter; featureless labels correlate with [Mg/Fe]."""
    n = len(feh)
    out = {}
    trend = {"c_fe": -0.1 * giant, "n_fe": 0.25 * giant, "na_fe": 0.05 + 0 * feh,
             "al_fe": 0.5 * alpha, "mn_fe": -0.1 + 0.15 * np.clip(feh, -1.5, 0),
             "cr_fe": 0 * feh, "ni_fe": 0.05 * np.clip(feh + 1, -1, 1), "co_fe": 0.3 * alpha,
             "ba_fe": 0.1 - 0.2 * alpha, "y_fe": 0.05 - 0.2 * alpha, "li_fe": 0.2 * ~giant,
             "eu_fe": 1.0 * alpha, "cu_fe": 0.8 * alpha - 0.1}
    for lab in labels:
        if not lab.endswith("_fe"):
            continue
        base = alpha * (0.9 if lab in ALPHA else 1.0) if lab in ALPHA else trend.get(lab, 0 * feh)
        out[lab] = _clip(base + rng.normal(0, 0.04, n), -0.38, 0.38)
    for lab in featureless:
        if lab in labels:
            out[lab] = _clip(0.8 * out.get("mg_fe", alpha) + rng.normal(0, 0.05, n), -0.38, 0.38)
    return out


SHIFTED_POPULATIONS = ("independent", "accreted")


def shifted_population(kind: str, stars: pd.DataFrame, labels, rng: np.random.Generator) -> pd.DataFrame:
    """The survey's ``stars`` (metadata rows with true labels) with labels redrawn from a
    population the training set does not have, to test whether fitted labels and their flags
    stay honest when the population changes:

    - "independent": every [X/Fe] of ``labels`` uniform in [-0.3, +0.3], independent of [Fe/H]
      and of each other (Teff, logg, [Fe/H], vmic kept): no abundance correlation to lean on;
    - "accreted": a metal-poor, low-alpha, Gaia-Enceladus-like population: [Fe/H] ~ N(-1.3, 0.3)
      in [-2.2, -0.7], [alpha/Fe] ~ +0.05 (Hayes et al. 2018; Z24 Fig. 7), [Al/Fe] -0.2 (Das et
      al. 2020), [Ni/Fe] and [Na/Fe] -0.15 (Nissen & Schuster 2010), [Mn/Fe] -0.3, 0.04 dex
      scatter each; turn-off dwarfs and giants (the star's own ``giant``) on the metal-poor
      isochrone."""
    from ..theory.gradients import isochrone_logg

    out = stars.copy().reset_index(drop=True)
    n = len(out)
    abundances = [lab for lab in labels if lab.endswith("_fe")]
    if kind == "independent":
        for lab in abundances:
            out[lab] = rng.uniform(-0.3, 0.3, n)
        return out
    if kind != "accreted":
        raise ValueError(f"shifted population {kind!r}: choose from {SHIFTED_POPULATIONS}")
    giant = out["giant"].to_numpy(dtype=bool)
    feh = _clip(rng.normal(-1.3, 0.3, n), -2.2, -0.7)
    teff = _clip(np.where(giant, rng.normal(4750, 250, n) + 250 * -feh, rng.normal(5900, 350, n)),
                 4050, 6950)
    logg = _clip(isochrone_logg(teff, feh, giant) + rng.normal(0, 0.12, n), 0.6, 4.9)
    offsets = {"al_fe": -0.2, "ni_fe": -0.15, "na_fe": -0.15, "mn_fe": -0.3,
               "c_fe": -0.1 * giant, "n_fe": 0.25 * giant}
    out["teff"], out["logg"], out["feh"] = teff, logg, feh
    out["vmic"] = _clip(0.9 + 0.3 * (5.0 - logg) + rng.normal(0, 0.1, n), 0.6, 2.9)
    for lab in abundances:
        base = 0.05 if lab in ALPHA else offsets.get(lab, 0.0)
        out[lab] = _clip(base + rng.normal(0, 0.04, n), -0.38, 0.38)
    out["population"] = "accreted"
    return out


def absolute_g(teff, logg):
    """Absolute G magnitude from Teff and logg for a 1 Msun star: L = M (T/Tsun)^4 (gsun/g)."""
    log_l = 4 * np.log10(teff / 5772.0) - (logg - 4.438)
    return 4.67 - 2.5 * log_l


def lsf_blur(flux: np.ndarray, extra_pix: np.ndarray) -> np.ndarray:
    """Extra Gaussian blur of sigma ``extra_pix`` pixels per spectrum (fibre-to-fibre LSF),
    done for a few width classes at once (batched within each class)."""
    out = flux.copy()
    classes = np.round(extra_pix * 4) / 4
    for width in np.unique(classes):
        if width <= 0:
            continue
        sel = classes == width
        half = int(np.ceil(4 * width))
        k = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
        k /= k.sum()
        padded = np.pad(flux[sel], ((0, 0), (half, half)), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, k.size, axis=1)
        out[sel] = windows @ k
    return out


def to_velocity(wave, flux, ivar, v, resampling: str = "linear"):
    """Move rest-frame spectra (n_spec, n_pix) to radial velocities ``v`` (n_spec,) km/s."""
    return shift_to_rest(wave, flux, ivar, C_KMS * (1.0 / (1.0 + np.asarray(v) / C_KMS) - 1.0),
                         resampling)


def continuum(wave: np.ndarray, teff: np.ndarray, wiggle=1.0) -> np.ndarray:
    """Observed continuum (n, n_pix): a blackbody-like slope times throughput times ``wiggle``
    (flux calibration)."""
    planck = 1.0 / (wave[None, :] / 5000.0) ** 5 / np.expm1(1.4388e8 / (wave[None, :] * teff[:, None]))
    throughput = np.exp(-0.5 * ((wave - 6000.0) / 1800.0) ** 2)[None, :]
    return planck / planck.mean(1, keepdims=True) * throughput * wiggle * 1000.0


def noise_sigma(flux: np.ndarray, cont: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """Photon-like noise (n, n_pix) of S/N ``snr`` (n,) in the continuum."""
    return cont * np.sqrt(np.clip(flux / cont, 0.05, None)) / snr[:, None]


def expected_observation(norm: np.ndarray, wave: np.ndarray, meta: pd.DataFrame) -> tuple:
    """Noise-free rest-frame spectra (n, n_pix) of visits ``meta`` (teff, snr, lsf_extra_pix)
    from normalized truth spectra ``norm``: the visit's fibre LSF on the continuum, without
    calibration wiggles, sky, telluric residuals or defects; and the ivar of the visit's noise.
    The forward model of the Cramer-Rao bound (``survey_crb``)."""
    flux = lsf_blur(norm, meta["lsf_extra_pix"].to_numpy())
    cont = continuum(wave, meta["teff"].to_numpy())
    flux = flux * cont
    return flux, 1.0 / noise_sigma(flux, cont, meta["snr"].to_numpy()) ** 2


def forward_jacobian(normalized, truth: EmulatorModel, rows: pd.DataFrame, featureless, fitted,
                     rel_step: float = 0.01) -> tuple:
    """Forward differences of a forward model ``normalized(labels) -> (flux, ivar)`` (n, n_pix)
    at the true labels of ``rows`` (featureless labels at 0, as the truth sees them), with steps of
    ``rel_step`` of each ``fitted`` label's training span. Returns (flux (n, n_pix), ivar
    (n, n_pix), jacobian (n, n_pix, len(fitted)))."""
    labels = list(truth.labels)
    base = rows[labels].to_numpy(dtype=np.float64, copy=True)
    base[:, [labels.index(lab) for lab in featureless if lab in labels]] = 0.0
    flux0, ivar = normalized(base)
    jac = np.empty(flux0.shape + (len(fitted),))
    for k, lab in enumerate(fitted):
        h = rel_step * truth.scaler.span[labels.index(lab)]
        step = np.zeros(len(labels))
        step[labels.index(lab)] = h
        jac[:, :, k] = (normalized(base + step)[0] - flux0) / h
    return flux0, ivar, jac


def survey_crb(truth: EmulatorModel, visits: pd.DataFrame, featureless, fitted,
               rel_step: float = 0.01, lsf_free: bool = False) -> np.ndarray:
    """Cramer-Rao bound (n, len(fitted)) of every visit in ``visits`` (true labels, teff, snr,
    lsf_extra_pix) for a fit of the labels ``fitted`` to its *preprocessed* spectrum.

    The forward model is the whole path the pipeline's data take: truth emulator -> fibre LSF ->
    continuum -> pseudo-continuum normalization (``preprocess_batch``), differentiated by forward
    differences of ``rel_step`` of each label's training span (the bound changes by ~1% with
    central differences). The fit sees the spectrum only after the LSF and the normalization,
    so the bound is computed there and not from the truth emulator's own Jacobian.
    ``lsf_free``: the bound when the fibre's LSF width is not known but fitted too (as ddpayne's
    fit does), its derivative that of a Gaussian blur (``fit.broaden``)."""
    inst = get_instrument("lamost")
    zero_rv = np.zeros(len(visits))

    def normalized(lab):
        flux, ivar = expected_observation(truth.predict(lab), inst.wave, visits)
        return preprocess_batch(flux, ivar, zero_rv, inst)

    flux0, ivar, jac = forward_jacobian(normalized, truth, visits, featureless, fitted, rel_step)
    if lsf_free:
        h = 1e-3  # pixel^2 of LSF variance
        dlsf = (broaden(flux0, inst.wave, np.full(len(visits), h)) - flux0) / h
        jac = np.concatenate([jac, dlsf[:, :, None]], 2)
    return bound_from_jacobian(jac * np.sqrt(ivar)[:, :, None])[:, :len(fitted)]


def _observe(norm: np.ndarray, wave: np.ndarray, meta: pd.DataFrame, rng,
             effects=SurveyConfig.effects) -> tuple:
    """Turn normalized rest-frame truth spectra into observed-frame flux and ivar, with the
    instrument ``effects`` named (see SurveyConfig.effects)."""
    n, n_pix = norm.shape
    flux = lsf_blur(norm, meta["lsf_extra_pix"].to_numpy()) if "lsf" in effects else norm.copy()
    x = (wave - wave.mean()) / np.ptp(wave)
    # Flux-calibration wiggles (~2%) on the continuum.
    wiggle = 1 + ("calibration" in effects) * sum(rng.normal(0, 0.01, (n, 1)) * np.cos(np.pi * k * x[None, :] + rng.uniform(0, 6.3, (n, 1)))
                     for k in range(1, 5))
    cont = continuum(wave, meta["teff"].to_numpy(), wiggle)
    flux = flux * cont
    tell = np.zeros(n_pix)
    for lo, hi in TELLURIC_BANDS_AA:
        tell += ((wave > lo) & (wave < hi)) * 0.08 * (1 + np.sin(wave / 3.0))
    flux *= 1 - ("telluric" in effects) * tell[None, :] * rng.uniform(0.0, 1.0, (n, 1))
    sigma = noise_sigma(flux, cont, meta["snr"].to_numpy())
    sky = sum(np.exp(-0.5 * ((wave - w) / 1.5) ** 2) for w in SKY_LINES_AA)[None, :]
    flux = flux + ("sky" in effects) * sky * rng.normal(0, 3.0, (n, 1)) * sigma.mean(1, keepdims=True)
    flux = flux + rng.normal(size=(n, n_pix)) * sigma
    ivar = 1.0 / sigma ** 2
    cr = (rng.random((n, n_pix)) < 3e-4) & ("cosmics" in effects)  # unflagged spikes
    flux = np.where(cr, flux + rng.uniform(5, 30, (n, n_pix)) * sigma, flux)
    ivar = np.where((rng.random((n, n_pix)) < 2e-3) & ("badpix" in effects), 0.0, ivar)
    flux, ivar = to_velocity(wave, flux, ivar, meta["rv_true"].to_numpy())
    blend = meta["injected_bad"].to_numpy() & (meta["bad_kind"].to_numpy() == "blend")
    if blend.any():  # light of a neighbouring fibre at another velocity (cross-talk)
        other, _ = to_velocity(wave, flux[blend], ivar[blend], np.full(blend.sum(), 300.0))
        flux[blend] = 0.5 * flux[blend] + 0.5 * other
    return flux, ivar


def _fibre_lsf(rng, n: int) -> np.ndarray:
    """Extra LSF sigma [pixels] of ``n`` visits: a different fibre each time."""
    return np.clip(rng.normal(0.4, 0.15, n), 0, 0.8)


def build_meta(config: SurveyConfig, labels) -> pd.DataFrame:
    """One row per spectrum: identifiers, truth, observing conditions, training labels."""
    rng = np.random.default_rng(config.seed)
    stars = draw_population(config.n_stars, labels, rng, config.featureless)
    n = config.n_stars
    stars["star_id"] = np.arange(n)
    stars["ra"] = rng.uniform(0, 360, n)
    stars["dec"] = np.degrees(np.arcsin(rng.uniform(-0.3, 1.0, n)))
    stars["is_binary"] = rng.random(n) < config.binary_fraction
    stars["distance_kpc"] = np.exp(rng.normal(np.log(1.2), 0.6, n))
    stars["a_g"] = np.clip(rng.exponential(0.3, n), 0, 2.5)
    m_g = absolute_g(stars["teff"].to_numpy(), stars["logg"].to_numpy())
    # An equal-ish secondary adds up to 0.75 mag of light: too bright for its parallax.
    stars["binary_dmag"] = np.where(stars["is_binary"], rng.uniform(0.3, 0.75, n), 0.0)
    stars["phot_g_mean_mag"] = m_g + 5 * np.log10(stars["distance_kpc"] * 100) + stars["a_g"] \
        - stars["binary_dmag"]
    stars["parallax_error"] = 0.02 + 0.01 * np.exp((stars["phot_g_mean_mag"] - 14).clip(-5, 6) / 2)
    stars["parallax"] = 1.0 / stars["distance_kpc"] + rng.normal(0, 1, n) * stars["parallax_error"]
    for survey, frac in (("apogee", config.apogee_fraction), ("galah", config.galah_fraction)):
        has = rng.random(n) < frac
        for lab in LABEL_SETS[f"lamost-{survey}"]:
            if lab not in stars:
                continue
            noise = HIRES_NOISE.get(lab, HIRES_NOISE["xfe"])
            offset = HIRES_OFFSETS[survey].get(lab, 0.0)
            stars[f"{survey}_{lab}"] = np.where(
                has, stars[lab] + offset + rng.normal(0, noise, n), np.nan)
    visits = 1 + (rng.random(n) < config.repeat_fraction) * rng.integers(1, 3, n)
    rows = stars.loc[np.repeat(np.arange(n), visits)].reset_index(drop=True)
    m = len(rows)
    rows.insert(0, "specid", np.arange(m))
    rows["visit"] = rows.groupby("star_id").cumcount()
    rows["mjd"] = 57000 + rng.integers(0, 1500, m) + rows["visit"] * 30
    rows["snr"] = np.clip(np.exp(rng.normal(np.log(config.snr_median), 0.75, m)), 6, 900)
    rows["rv_true"] = rng.normal(0, 40, n)[rows["star_id"]] + np.where(
        rows["is_binary"], rng.normal(0, 15, m), 0.0)
    rows["rv_err"] = 2.0 + 60.0 / rows["snr"]
    rows["rv"] = rows["rv_true"] + rng.normal(0, 1, m) * rows["rv_err"]
    # Extra LSF sigma in pixels, added in quadrature to the mean LSF (sigma ~1.1 px): FWHM varies
    # by ~0.2-0.4 A between fibres ("sub-angstrom", X19 sec. 2).
    rows["lsf_extra_pix"] = _fibre_lsf(rng, m)
    rows["injected_bad"] = rng.random(m) < config.bad_fraction
    # Broken spectra: a catalogue RV off by 400 km/s (lines mis-registered) or a blend with
    # another fibre's light (cross-talk).
    rows["bad_kind"] = np.where(rows["injected_bad"],
                                np.where(rng.random(m) < 0.5, "rv", "blend"), "")
    wrong_rv = rows["bad_kind"] == "rv"
    rows.loc[wrong_rv, "rv"] += rng.choice([-400.0, 400.0], wrong_rv.sum())
    rows["filename"] = [f"synthetic-{i:08d}" for i in range(m)]
    rows["synthetic"] = True
    return rows


def simulate_survey(out: str | Path, config: SurveyConfig = SurveyConfig(),
                    truth_path: str | Path = TRUTH_EMULATOR, log=print) -> SpectralStore:
    """Write a synthetic survey store at ``out`` (resumable chunk by chunk)."""
    if not Path(truth_path).exists():
        raise FileNotFoundError(
            f"{truth_path}: the truth emulator is not built yet; it needs the truth-physics MOOG "
            "grid: `ddpayne theory gradients --grid truth-grid` then `ddpayne theory truth-emulator`")
    truth = EmulatorModel.load(truth_path)
    inst = get_instrument("lamost")
    if not np.allclose(truth.wave, inst.wave):
        raise ValueError(f"{truth_path}: truth emulator is not on the LAMOST grid")
    meta = build_meta(config, truth.labels)
    store = create_store(out, inst.wave, len(meta), meta, "lamost", config.chunk, synthetic=True,
                         provenance={"generator": "ddpayne.simulate", "config": asdict(config),
                                     "truth_emulator": str(Path(truth_path).name),
                                     "truth_emulator_sha256": file_digest(truth_path),
                                     "truth_physics": truth.config.get("physics", "truth-moog")})
    log(f"synthetic survey: {config.n_stars} stars, {len(meta)} spectra -> {out}")
    for start, stop in progress(list(store.chunks()), desc="simulating"):
        if chunk_done(store, start):
            continue
        rng = np.random.default_rng([config.seed, start])
        rows = meta.iloc[start:stop]
        norm = truth_spectra(truth, rows, config.featureless, rng)
        flux, ivar = _observe(norm, inst.wave, rows, rng, config.effects)
        write_chunk(store, start, flux, ivar)
    return store


def truth_spectra(truth: EmulatorModel, rows: pd.DataFrame, featureless, rng) -> np.ndarray:
    """Normalized rest-frame spectra (n, n_pix) of the stars in ``rows`` (true labels): the
    truth emulator at their labels, featureless labels at 0, a binary's companion (900 K cooler
    dwarf at its own velocity) added at flux ratio 0.4."""
    labels = list(truth.labels)
    lab = rows[labels].to_numpy().copy()
    for name in featureless:
        if name in labels:
            lab[:, labels.index(name)] = 0.0  # no spectral signature, by construction
    norm = truth.predict(lab)
    binary = rows["is_binary"].to_numpy()
    if binary.any():
        sec = lab[binary].copy()
        sec[:, labels.index("teff")] = np.clip(sec[:, labels.index("teff")] - 900, 4000, None)
        sec[:, labels.index("logg")] = 4.6
        f2 = truth.predict(sec)
        shifted, _ = to_velocity(truth.wave, f2, np.ones_like(f2), rng.normal(0, 40, len(f2)))
        q = 0.4
        norm[binary] = (norm[binary] + q * shifted) / (1 + q)
    return norm


def reobserve(rows: pd.DataFrame, truth_path: str | Path, config: SurveyConfig, snr: float,
              n_visits: int = 2, seed: int = 0) -> tuple:
    """New visits of the stars in ``rows`` (store metadata, true labels) at exactly ``snr``:
    each star ``n_visits`` times with fresh noise, fibre LSF, flux calibration, sky and
    telluric residuals and catalogue RV error, as the survey's own visits were made. For
    precision experiments at a fixed S/N (repeat visits in the survey are too few there).

    Returns (flux, ivar (n * n_visits, n_pix) observed frame, visits: ``rows`` repeated with
    ``visit`` and the new ``snr``, ``rv``, ``lsf_extra_pix``)."""
    truth = EmulatorModel.load(truth_path)
    rng = np.random.default_rng([config.seed, seed, 7919])
    visits = rows.loc[rows.index.repeat(n_visits)].reset_index(drop=True)
    m = len(visits)
    visits["visit"] = np.tile(np.arange(n_visits), len(rows))
    visits["snr"] = float(snr)
    visits["lsf_extra_pix"] = _fibre_lsf(rng, m)
    visits["rv_err"] = 2.0 + 60.0 / visits["snr"]
    visits["rv"] = visits["rv_true"] + rng.normal(0, 1, m) * visits["rv_err"]
    visits["injected_bad"] = False
    flux, ivar = _observe(truth_spectra(truth, visits, config.featureless, rng), truth.wave, visits,
                          rng, config.effects)
    return flux, ivar, visits
