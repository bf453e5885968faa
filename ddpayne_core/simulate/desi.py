"""The DESI synthetic survey (SYNTHETIC; Z24 sec. 2 and 4 as the model of what it should look
like): a Milky Way Survey-like population observed through DESI's three cameras, written as
DESI coadd files and an MWS catalogue, so that it reaches the pipeline through the same reader a
real coadd goes through (``io.desi.read_desi_coadd``, ``preprocess.ingest_desi``).

- Population: mostly halo-ward dwarfs and turn-off stars (r 16-20), a metal-poor tail to
  [Fe/H] -3, horizontal-branch stars, few red giants; abundances as the LAMOST synthetic
  survey's (``survey.abundance_ratios``). A fraction of the stars are stars of the LAMOST
  synthetic survey (same labels, positions within ~0.5"): the shared footprint over which DESI
  training labels are transferred from the LAMOST catalogue (Z24 sec. 3.2).
- Observation: the truth emulator at DESI resolution, a fibre-to-fibre LSF spread recorded in
  each spectrum's RESOLUTION matrix, the star's continuum through each camera's throughput,
  photon noise per camera from the r magnitude (the blue camera limits cool stars), sky lines
  and telluric residuals, cosmic rays, masked bad pixels, radial velocities, repeat visits,
  unresolved binaries, a few galaxies among the targets (RR_SPECTYPE GALAXY) and spectra with a
  wrong catalogue RV.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import DESI_TELLURIC_BANDS_AA, METAL_POOR_SAMPLE_FEH
from ..fit.lm import bound_from_jacobian
from ..instrument import desi_camera_fwhm, desi_camera_wave, get_instrument
from ..io.desi import (
    CAMERAS,
    CameraData,
    DesiCoadd,
    gaussian_resolution,
    write_desi_coadd,
    write_mws_catalog,
)
from ..io_utils import atomic_path, file_digest
from ..labels import LABEL_SETS
from ..model.emulator import EmulatorModel
from ..preprocess.grid import merge_cameras, preprocess_batch
from ..progress import progress
from .survey import (
    HIRES_NOISE,
    SKY_LINES_AA,
    abundance_ratios,
    forward_jacobian,
    lsf_blur,
    to_velocity,
    truth_spectra,
)

# Ours: smooth camera throughputs (centre, width [A]) falling toward the dichroic edges; the R
# camera's median S/N per 0.8 A pixel at r = 16 (MWS-like exposures reach S/N ~5-10 at r ~ 19-20,
# Z24 sec. 4); an r = 16 star's flux density at 6200 A [1e-17 erg/s/cm2/A] (AB zero point).
THROUGHPUT_AA = {"B": (4800.0, 1100.0), "R": (6700.0, 1200.0), "Z": (8600.0, 1300.0)}
SNR_R_AT_R16 = 70.0
FLUX_R16 = 112.0
GALAXY_LINES_AA = (3727.1, 4862.7, 5008.2, 6564.6)   # [O II], H beta, [O III], H alpha (vacuum)


@dataclass(frozen=True)
class DesiSurveyConfig:
    """n_stars: distinct targets; lamost_fraction: stars shared with the LAMOST synthetic survey
    (when its stars are given), at r magnitudes ``lamost_r_mag`` (None: ``r_mag``);
    apogee_fraction: stars with APOGEE-like labels (few, as in Z24 sec. 3.2);
    metal_poor_sample_fraction: stars below [Fe/H] -1.7 with labels from a dedicated
    metal-poor sample (``metalpoor_<label>``; Z24 sec. 3.2's Li et al. 2018 stars); coadd files of
    ``spectra_per_file`` spectra."""

    n_stars: int = 8000
    seed: int = 2024
    repeat_fraction: float = 0.1
    binary_fraction: float = 0.05
    bad_fraction: float = 0.01
    galaxy_fraction: float = 0.005
    lamost_fraction: float = 0.3
    # None: the shared stars are as faint as the rest (r_mag). studies/desi_training_size puts
    # them at LAMOST's bright end (r 16-17) for a training set of Z24 sec. 3.2's size.
    lamost_r_mag: tuple | None = None
    apogee_fraction: float = 0.05
    metal_poor_sample_fraction: float = 0.3
    r_mag: tuple = (16.0, 20.0)
    spectra_per_file: int = 500
    featureless: tuple = ("cu_fe", "eu_fe")
    effects: tuple = ("lsf", "telluric", "sky", "cosmics", "badpix")


def draw_desi_population(n: int, labels, rng: np.random.Generator, featureless=()) -> pd.DataFrame:
    """True labels of ``n`` Milky Way Survey-like stars: halo 45 %, thick disc 25 %, thin disc
    25 %, accreted 5 %; 62 % dwarfs and turn-off stars, 15 % subgiants, 15 % giants, 8 %
    horizontal-branch stars (only below [Fe/H] -1; dwarfs above)."""
    from ..theory.gradients import isochrone_logg, turnoff_teff

    comp = rng.choice(4, size=n, p=[0.25, 0.25, 0.45, 0.05])   # thin, thick, halo, accreted
    feh = np.select([comp == 0, comp == 1, comp == 2],
                    [rng.normal(-0.15, 0.22, n), rng.normal(-0.6, 0.25, n),
                     rng.normal(-1.7, 0.5, n)], rng.normal(-1.3, 0.3, n))
    feh = np.clip(feh, -3.0, 0.45)
    alpha = np.select([comp == 0, comp == 1, comp == 2],
                      [0.02 - 0.08 * feh, 0.3 - 0.2 * np.clip(feh + 0.5, 0, None), np.full(n, 0.32)],
                      0.12 - 0.1 * (feh + 1.25))
    alpha = np.clip(alpha + rng.normal(0, 0.03, n), -0.15, 0.38)
    kind = rng.choice(4, size=n, p=[0.62, 0.15, 0.15, 0.08])    # dwarf/turn-off, subgiant, giant, HB
    kind = np.where((kind == 3) & (feh > -1.0), 0, kind)
    to = turnoff_teff(feh)
    teff = np.select([kind == 0, kind == 1, kind == 2],
                     [np.minimum(rng.normal(to - 500, 500), to + 150), rng.uniform(to - 700, to - 200),
                      rng.normal(4800, 300, n) + 150 * np.clip(-feh, 0, None)],
                     rng.uniform(5500, 7000, n))
    teff = np.clip(teff, 4100, 7000)
    giant = kind >= 2
    logg = np.select([kind == 0, kind == 1, kind == 2],
                     [isochrone_logg(teff, feh, np.zeros(n, bool)), rng.uniform(3.5, 4.0, n),
                      isochrone_logg(teff, feh, np.ones(n, bool))], rng.uniform(2.4, 3.2, n))
    logg = np.clip(logg + rng.normal(0, 0.1, n), 0.6, 4.9)
    out = {"teff": teff, "logg": logg, "feh": feh,
           "vmic": np.clip(0.9 + 0.3 * (5.0 - logg) + rng.normal(0, 0.1, n), 0.6, 2.9),
           "population": np.array(["thin", "thick", "halo", "accreted"])[comp],
           "kind": np.array(["dwarf", "subgiant", "giant", "hb"])[kind], "giant": giant}
    out.update(abundance_ratios(labels, feh, alpha, giant, rng, featureless))
    return pd.DataFrame(out)


# Label noise of the metal-poor sample (ours, assumed): a dedicated analysis of faint, weak-lined
# stars, twice as noisy as the APOGEE-like labels (HIRES_NOISE) but, like them, unbiased.
METAL_POOR_SAMPLE_NOISE = {"teff": 100.0, "logg": 0.15, "vmic": 0.2, "feh": 0.08, "xfe": 0.10}


def metal_poor_sample_labels(stars: pd.DataFrame, config: DesiSurveyConfig) -> pd.DataFrame:
    """Labels ``metalpoor_<label>`` (true + METAL_POOR_SAMPLE_NOISE) of the stars a metal-poor
    sample holds: a ``metal_poor_sample_fraction`` of those whose sample [Fe/H] is below
    METAL_POOR_SAMPLE_FEH (Z24 sec. 3.2 added Li et al. 2018's LAMOST metal-poor stars to reach
    the halo); NaN elsewhere. Drawn from their own random stream, so the rest of the survey does
    not change with the fraction."""
    rng = np.random.default_rng([config.seed, 17])
    n = len(stars)
    noise = lambda lab: METAL_POOR_SAMPLE_NOISE.get(lab, METAL_POOR_SAMPLE_NOISE["xfe"])
    noisy = {lab: stars[lab].to_numpy() + rng.normal(0, noise(lab), n) for lab in LABEL_SETS["desi"] if lab in stars}
    held = (rng.random(n) < config.metal_poor_sample_fraction) & (noisy["feh"] < METAL_POOR_SAMPLE_FEH)
    return pd.DataFrame({f"metalpoor_{lab}": np.where(held, v, np.nan) for lab, v in noisy.items()},
                        index=stars.index)


def build_desi_meta(config: DesiSurveyConfig, labels,
                    lamost_stars: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per spectrum: targetid, position, true labels, r magnitude, S/N, RVs, fibre LSF,
    coadd file and row. ``lamost_stars`` (star_id, ra, dec and true labels of the LAMOST synthetic
    survey): the shared footprint's stars are taken from it (``lamost_star_id``; -1 if not)."""
    rng = np.random.default_rng(config.seed)
    n = config.n_stars
    stars = draw_desi_population(n, labels, rng, config.featureless)
    stars["ra"] = rng.uniform(0, 360, n)
    stars["dec"] = np.degrees(np.arcsin(rng.uniform(-0.3, 1.0, n)))
    stars["lamost_star_id"] = -1
    if lamost_stars is not None and config.lamost_fraction > 0 and len(lamost_stars):
        shared = np.nonzero(rng.random(n) < config.lamost_fraction)[0][: len(lamost_stars)]
        src = lamost_stars.iloc[rng.choice(len(lamost_stars), len(shared), replace=False)]
        for col in [c for c in labels if c in src.columns] + ["giant"]:
            if col in src.columns:
                stars.loc[shared, col] = src[col].to_numpy()
        jitter = rng.normal(0, 0.3 / 3600, (len(shared), 2))      # astrometric noise [deg]
        stars.loc[shared, "ra"] = (src["ra"].to_numpy() + jitter[:, 0]) % 360
        stars.loc[shared, "dec"] = src["dec"].to_numpy() + jitter[:, 1]
        stars.loc[shared, "lamost_star_id"] = src["star_id"].to_numpy()
    stars["targetid"] = 39_627_000_000_000_000 + np.arange(n, dtype=np.int64) * 7919
    stars["is_binary"] = rng.random(n) < config.binary_fraction
    stars["is_galaxy"] = rng.random(n) < config.galaxy_fraction
    stars["r_mag"] = rng.uniform(*config.r_mag, n)
    if config.lamost_r_mag is not None:
        shared = (stars["lamost_star_id"] >= 0).to_numpy()
        stars.loc[shared, "r_mag"] = rng.uniform(*config.lamost_r_mag, int(shared.sum()))
    has = rng.random(n) < config.apogee_fraction
    for lab in [lab for lab in LABEL_SETS["desi"] if lab in stars]:
        noise = HIRES_NOISE.get(lab, HIRES_NOISE["xfe"])
        stars[f"apogee_{lab}"] = np.where(has, stars[lab] + rng.normal(0, noise, n), np.nan)
    stars = stars.join(metal_poor_sample_labels(stars, config))
    visits = 1 + (rng.random(n) < config.repeat_fraction)
    rows = stars.loc[np.repeat(np.arange(n), visits)].reset_index(drop=True)
    m = len(rows)
    rows["star_id"] = np.repeat(np.arange(n), visits)
    rows["visit"] = rows.groupby("star_id").cumcount()
    rows["mjd"] = 59200 + rng.integers(0, 600, m) + 40 * rows["visit"]
    rows["snr_r_true"] = SNR_R_AT_R16 * 10 ** (-0.48 * (rows["r_mag"] - 16.0)) * rng.lognormal(0, 0.15, m)
    rows["rv_true"] = rng.normal(-20, 120, n)[rows["star_id"]] + np.where(
        rows["is_binary"], rng.normal(0, 15, m), 0.0)
    rows["rv_err"] = 1.0 + 30.0 / np.clip(rows["snr_r_true"], 1, None)
    rows["rv"] = rows["rv_true"] + rng.normal(0, 1, m) * rows["rv_err"]
    rows["injected_bad"] = rng.random(m) < config.bad_fraction
    rows.loc[rows["injected_bad"], "rv"] += rng.choice([-400.0, 400.0], int(rows["injected_bad"].sum()))
    rows["lsf_scale"] = fibre_lsf_scale(rng, m)
    # A coadd holds one spectrum per target (desispec combines a target's exposures): repeat
    # visits go to later files than first ones.
    rows = rows.sort_values(["visit", "star_id"], kind="stable").reset_index(drop=True)
    first = (rows["visit"] == 0).to_numpy()
    n_first_files = int(np.ceil(first.sum() / config.spectra_per_file))
    slot = np.where(first, np.cumsum(first) - 1, np.cumsum(~first) - 1)
    file_index = slot // config.spectra_per_file + np.where(first, 0, n_first_files)
    rows["filename"] = [f"coadd-synthetic-{k:04d}.fits" for k in file_index]
    rows["row"] = slot % config.spectra_per_file
    rows["synthetic"] = True
    return rows


def stellar_continuum(wave: np.ndarray, teff: np.ndarray, r_mag: np.ndarray) -> np.ndarray:
    """Flux-calibrated continuum (n, n_wave) [1e-17 erg/s/cm2/A] of stars of ``teff`` and
    ``r_mag``: a blackbody slope scaled to the r magnitude (coadds are flux calibrated, so the
    cameras join without a step)."""
    planck = (wave[None, :] / 6200.0) ** -5 / np.expm1(1.4388e8 / (wave[None, :] * teff[:, None]))
    at_r = 1.0 / np.expm1(1.4388e8 / (6200.0 * teff))        # the same at 6200 A
    return FLUX_R16 * 10 ** (-0.4 * (r_mag[:, None] - 16.0)) * planck / at_r[:, None]


def camera_snr(rows: pd.DataFrame, conts: dict) -> dict:
    """Continuum S/N per pixel (n, n_cam) of each camera: photon noise, so S/N goes as the root
    of the detected photons (continuum x wavelength x the camera's throughput), scaled so that
    the R camera's median is the spectrum's ``snr_r_true``. The blue camera limits cool stars."""
    photons = {}
    for cam, c in conts.items():
        wave = desi_camera_wave(cam)
        centre, width = THROUGHPUT_AA[cam]
        photons[cam] = c * wave[None, :] * np.exp(-0.5 * ((wave - centre) / width) ** 2)[None, :]
    ref = np.median(photons["R"], axis=1, keepdims=True)
    return {cam: rows["snr_r_true"].to_numpy()[:, None] * np.sqrt(p / ref) for cam, p in photons.items()}


def camera_signal(norm: np.ndarray, rows: pd.DataFrame) -> dict:
    """Each camera's noise-free flux-calibrated spectra of normalized spectra ``norm`` (n, n_pix)
    on DESI's merged grid: camera -> (wave (n_cam,), flux (n, n_cam), continuum (n, n_cam),
    continuum S/N (n, n_cam)). Camera pixels fall on the merged grid's."""
    inst = get_instrument("desi")
    teff, r_mag = rows["teff"].to_numpy(), rows["r_mag"].to_numpy()
    conts = {cam: stellar_continuum(desi_camera_wave(cam), teff, r_mag) for cam in CAMERAS}
    snrs = camera_snr(rows, conts)
    out = {}
    for cam in CAMERAS:
        wave = desi_camera_wave(cam)
        idx = np.rint((wave - inst.wave[0]) / (inst.wave[1] - inst.wave[0])).astype(int)
        out[cam] = (wave, norm[:, idx] * conts[cam], conts[cam], snrs[cam])
    return out


def fibre_lsf_scale(rng: np.random.Generator, n: int) -> np.ndarray:
    """LSF width of n fibres over the nominal one (DESI_LSF_FWHM_AA): 1 + |N(0, 0.03)| (ours; the
    two real coadds' RESOLUTION matrices differ by up to 2.6 % per camera from the nominal)."""
    return 1.0 + np.abs(rng.normal(0, 0.03, n))


def observe_desi(norm: np.ndarray, rows: pd.DataFrame, rng: np.random.Generator,
                 effects=DesiSurveyConfig.effects) -> dict[str, CameraData]:
    """Normalized rest-frame truth spectra (n, n_pix) on DESI's merged grid -> the three cameras'
    observed flux, ivar, mask and resolution matrices, with the ``effects`` named."""
    inst = get_instrument("desi")
    n = len(rows)
    flux = norm.copy()
    if "lsf" in effects:   # extra blur of the wider fibres, in merged-grid pixels
        sigma_pix = inst.fwhm(inst.wave).mean() / np.sqrt(8 * np.log(2)) / (inst.wave[1] - inst.wave[0])
        flux = lsf_blur(flux, sigma_pix * np.sqrt(rows["lsf_scale"].to_numpy() ** 2 - 1.0))
    flux, _ = to_velocity(inst.wave, flux, np.ones_like(flux), rows["rv_true"].to_numpy(),
                          inst.resampling)
    cams = {}
    for cam, (wave, f, cont, snr) in camera_signal(flux, rows).items():
        if "telluric" in effects:
            for lo, hi in DESI_TELLURIC_BANDS_AA:   # residuals of the telluric correction
                band = (wave > lo) & (wave < hi)
                f[:, band] *= 1 - 0.03 * rng.uniform(0, 1, (n, 1)) * (1 + np.sin(wave[band] / 2.0))
        sigma = cont * np.sqrt(np.clip(f / cont, 0.05, None)) / snr
        if "sky" in effects:                 # sky-subtraction residuals at the strong lines
            sky = sum(np.exp(-0.5 * ((wave - w) / 1.0) ** 2) for w in SKY_LINES_AA)[None, :]
            f = f + sky * rng.normal(0, 3.0, (n, 1)) * sigma.mean(1, keepdims=True)
        f = f + rng.normal(size=f.shape) * sigma
        ivar = 1.0 / sigma ** 2
        mask = np.zeros(f.shape, np.int32)
        if "cosmics" in effects:             # unflagged spikes
            cr = rng.random(f.shape) < 2e-4
            f = np.where(cr, f + rng.uniform(5, 30, f.shape) * sigma, f)
        if "badpix" in effects:              # flagged bad pixels: MASK set, IVAR 0 (desispec)
            bad = rng.random(f.shape) < 2e-3
            mask[bad], ivar[bad] = 1, 0.0
        scales = rows["lsf_scale"].to_numpy() if "lsf" in effects else np.ones(n)
        res = np.stack([gaussian_resolution(wave, desi_camera_fwhm(cam, wave) * s) for s in scales])
        cams[cam] = CameraData(wave, f.astype(np.float32), ivar.astype(np.float32), mask,
                               res.astype(np.float32))
    return cams


def _galaxy_spectra(n: int, rng) -> np.ndarray:
    """Normalized 'spectra' of galaxies at z ~ 0.1: a flat continuum and emission lines."""
    wave = get_instrument("desi").wave
    z = rng.uniform(0.05, 0.3, n)[:, None]
    lines = sum(np.exp(-0.5 * ((wave[None, :] - w * (1 + z)) / 3.0) ** 2) for w in GALAXY_LINES_AA)
    return 1.0 + rng.uniform(0.5, 3.0, (n, 1)) * lines


def simulate_desi_survey(out: str | Path, config: DesiSurveyConfig, truth_path: str | Path,
                         lamost_stars: pd.DataFrame | None = None, log=print) -> pd.DataFrame:
    """Write the DESI synthetic survey into ``out``: ``coadds/coadd-synthetic-NNNN.fits`` (one
    per ``spectra_per_file`` spectra; a file already written is kept, so a run resumes),
    ``mws.fits`` (the MWS catalogue: RV, redrock class, rough RVS labels) and ``truth.parquet``
    (every spectrum's true labels by targetid, file and row; APOGEE-like labels). Returns the
    truth table. SYNTHETIC: every file says so in its header."""
    truth = EmulatorModel.load(truth_path)
    inst = get_instrument("desi")
    if truth.wave.size != inst.wave.size or not np.allclose(truth.wave, inst.wave):
        raise ValueError(f"{truth_path}: the truth emulator is not on the DESI grid")
    out = Path(out)
    rows = build_desi_meta(config, truth.labels, lamost_stars)
    header = {"SYNTHETI": True, "COMMENT": "SYNTHETIC: ddpayne DESI synthetic survey, not observed data",
              "TRUTHEMU": file_digest(truth_path)}
    log(f"DESI synthetic survey: {config.n_stars} stars, {len(rows)} spectra -> {out}")
    for name, part in progress(list(rows.groupby("filename", sort=True)), desc="simulating DESI"):
        path = out / "coadds" / name
        if path.exists():
            continue
        rng = np.random.default_rng([config.seed, int(name[-9:-5])])
        norm = truth_spectra(truth, part, config.featureless, rng)
        galaxy = part["is_galaxy"].to_numpy()
        if galaxy.any():
            norm[galaxy] = _galaxy_spectra(int(galaxy.sum()), rng)
        cams = observe_desi(norm, part, rng, config.effects)
        fibermap = pd.DataFrame({
            "TARGETID": part["targetid"].to_numpy(np.int64), "TARGET_RA": part["ra"].to_numpy(),
            "TARGET_DEC": part["dec"].to_numpy(), "MWS_TARGET": np.where(galaxy, 0, 1).astype(np.int64),
            "MORPHTYPE": np.where(galaxy, "EXP", "PSF"), "COADD_FIBERSTATUS": np.zeros(len(part), np.int32),
            "FLUX_R": (10 ** (-0.4 * (part["r_mag"].to_numpy() - 22.5))).astype(np.float32),
            "MEAN_MJD": part["mjd"].to_numpy(np.float64)})
        write_desi_coadd(path, fibermap, cams, header)
    rng = np.random.default_rng([config.seed, 99])
    m = len(rows)
    rvtab = pd.DataFrame({
        "TARGETID": rows["targetid"].to_numpy(np.int64), "TARGET_RA": rows["ra"], "TARGET_DEC": rows["dec"],
        "VRAD": rows["rv"], "VRAD_ERR": rows["rv_err"],
        "TEFF": rows["teff"] + rng.normal(0, 150, m), "LOGG": rows["logg"] + rng.normal(0, 0.3, m),
        "FEH": rows["feh"] + rng.normal(0, 0.2, m), "RVS_WARN": np.zeros(m, np.int64),
        "RR_SPECTYPE": np.where(rows["is_galaxy"], "GALAXY", "STAR"),
        "PRIMARY": (rows["visit"] == 0).to_numpy(), "COADD_FILE": rows["filename"]})
    sptab = pd.DataFrame({"TARGETID": rvtab["TARGETID"], "TEFF": rvtab["TEFF"], "LOGG": rvtab["LOGG"],
                          "FEH": rvtab["FEH"], "SUCCESS": np.ones(m, np.int64)})
    write_mws_catalog(out / "mws.fits", rvtab, sptab, header)
    truth_table = rows.drop(columns=["rv"]).copy()
    truth_table.attrs["config"] = asdict(config)
    with atomic_path(out / "truth.parquet") as tmp:
        truth_table.to_parquet(tmp)
    return truth_table


def expected_desi_observation(norm: np.ndarray, rows: pd.DataFrame) -> tuple:
    """Noise-free rest-frame observation of normalized truth spectra ``norm`` (n, n_pix) on
    DESI's merged grid: each camera's continuum and photon-noise ivar (``camera_snr``), merged as
    ``preprocess.merge_cameras`` merges data. Returns (flux, ivar) (n, n_pix): the forward model
    of the Cramer-Rao bound (``desi_crb``)."""
    cams = {}
    for cam, (wave, f, cont, snr) in camera_signal(norm, rows).items():
        sigma = cont * np.sqrt(np.clip(f / cont, 0.05, None)) / snr
        cams[cam] = CameraData(wave, f, 1.0 / sigma ** 2, np.zeros(f.shape, np.int32))
    return merge_cameras(DesiCoadd(Path("expected"), rows.reset_index(drop=True), cams),
                         get_instrument("desi"))


def desi_crb(truth: EmulatorModel, rows: pd.DataFrame, featureless, fitted, rel_step: float = 0.01) -> np.ndarray:
    """Cramer-Rao bound (n, len(fitted)) of each spectrum in ``rows`` (true labels, teff, r_mag,
    snr_r_true) for a fit of ``fitted`` to its preprocessed DESI spectrum: the forward model is
    truth emulator -> cameras -> merge -> pseudo-continuum normalization, differentiated by
    forward differences of ``rel_step`` of each label's training span (as ``survey.survey_crb``
    for LAMOST)."""
    inst = get_instrument("desi")
    zero_rv = np.zeros(len(rows))

    def normalized(lab):
        flux, ivar = expected_desi_observation(truth.predict(lab), rows)
        return preprocess_batch(flux, ivar, zero_rv, inst)

    _, ivar, jac = forward_jacobian(normalized, truth, rows, featureless, fitted, rel_step)
    return bound_from_jacobian(jac * np.sqrt(ivar)[:, :, None])
