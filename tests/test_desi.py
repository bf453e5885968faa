"""DESI coadds (Z24): the reader and writer in desispec's layout, resolution matrices, bad input,
the real coadds in ../shared/data/desi, the MAD chi2 flag and the label-transfer cross-match."""
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from ddpayne_core.instrument import get_instrument
from ddpayne_core.model import EmulatorModel
from ddpayne_core.io.desi import (
    CAMERAS,
    CameraData,
    apply_resolution,
    gaussian_resolution,
    read_desi_coadd,
    resolution_fwhm,
    write_desi_coadd,
)
from ddpayne_core.io.spectra import SpectrumFormatError
from ddpayne_core.paths import SHARED

REAL = sorted((SHARED / "desi").glob("coadd-*.fits"))
CAMERA_RANGES = {"B": (3600.0, 5800.0), "R": (5760.0, 7620.0), "Z": (7520.0, 9824.0)}


def fake_coadd(n=4, seed=0, morph="PSF"):
    """A small coadd with known arrays (not a simulation of stars: random numbers)."""
    rng = np.random.default_rng(seed)
    fibermap = pd.DataFrame({"TARGETID": np.arange(1000, 1000 + n, dtype=np.int64),
                             "TARGET_RA": rng.uniform(0, 360, n), "TARGET_DEC": rng.uniform(-20, 60, n),
                             "MWS_TARGET": np.zeros(n, np.int64), "MORPHTYPE": [morph] * n})
    cams = {}
    for cam, (lo, hi) in CAMERA_RANGES.items():
        wave = np.arange(lo, hi + 0.4, 0.8)
        res = np.repeat(gaussian_resolution(wave, np.full(wave.size, 1.7))[None], n, axis=0)
        cams[cam] = CameraData(wave, rng.normal(10, 1, (n, wave.size)).astype(np.float32),
                               rng.uniform(1, 2, (n, wave.size)).astype(np.float32),
                               np.zeros((n, wave.size), np.int32), res.astype(np.float32))
    return fibermap, cams


def test_coadd_round_trip_gives_the_same_arrays(tmp_path):
    fibermap, cams = fake_coadd()
    path = write_desi_coadd(tmp_path / "coadd.fits", fibermap, cams)
    coadd = read_desi_coadd(path)
    assert list(coadd.cameras) == list(CAMERAS)
    for cam in CAMERAS:
        a, b = cams[cam], coadd.cameras[cam]
        np.testing.assert_array_equal(b.wave, a.wave)
        np.testing.assert_array_equal(b.flux, a.flux)
        np.testing.assert_array_equal(b.ivar, a.ivar)
        np.testing.assert_array_equal(b.mask, a.mask)
        np.testing.assert_array_equal(b.resolution, a.resolution)
    np.testing.assert_array_equal(coadd.fibermap["targetid"], fibermap["TARGETID"])
    np.testing.assert_allclose(coadd.fibermap["ra"], fibermap["TARGET_RA"])
    assert list(coadd.problems) == [""] * len(fibermap)
    with fits.open(path) as h:   # the layout of a real coadd
        assert [x.name for x in h][:7] == ["PRIMARY", "FIBERMAP", "B_WAVELENGTH", "B_FLUX", "B_IVAR",
                                           "B_MASK", "B_RESOLUTION"]


def test_resolution_matrix_conventions():
    wave = np.arange(3600.0, 3700.0, 0.8)
    fwhm = np.linspace(1.6, 2.0, wave.size)
    res = gaussian_resolution(wave, fwhm)
    inner = slice(6, -6)
    np.testing.assert_allclose(resolution_fwhm(res, 0.8)[inner], fwhm[inner], rtol=0.02)
    flat = apply_resolution(res[None], np.ones((1, wave.size)))
    np.testing.assert_allclose(flat, 1.0, atol=1e-12)      # rows sum to one
    line = np.ones(wave.size)
    line[60] = 0.0
    blurred = apply_resolution(res[None], line[None])[0]
    assert blurred[60] > 0.3 and blurred[59] < 1 and blurred[61] < 1 and blurred[40] == 1.0
    # A spectrum's LSF variance [pixel^2]: the median of its unmasked pixels' kernels, NaN
    # without RESOLUTION matrices or without an unmasked pixel.
    from ddpayne_core.io import CameraData, lsf_variance

    flux = np.ones((3, wave.size))
    ivar = np.ones_like(flux)
    ivar[1, : wave.size // 2 + 10] = 0.0          # only the wider half counts
    ivar[2] = 0.0
    cams = {"B": CameraData(wave, flux, ivar, np.zeros(flux.shape, int), np.stack([res] * 3))}
    var = lsf_variance(cams, 0.8)
    sigma2 = (fwhm / np.sqrt(8 * np.log(2)) / 0.8) ** 2
    np.testing.assert_allclose(var[0], np.median(sigma2), rtol=0.02)
    np.testing.assert_allclose(var[1], np.median(sigma2[wave.size // 2 + 10:]), rtol=0.02)
    assert np.isnan(var[2])
    assert np.isnan(lsf_variance({"B": CameraData(wave, flux, ivar, np.zeros(flux.shape, int), None)}, 0.8)).all()


@pytest.mark.skipif(len(REAL) < 2, reason="needs ../shared/data/desi")
def test_real_coadds_read_and_are_said_not_to_be_stars():
    from ddpayne_core.io import lsf_variance

    inst = get_instrument("desi")
    for path in REAL:
        coadd = read_desi_coadd(path)
        assert set(coadd.cameras) == set(CAMERAS) and len(coadd.fibermap) == 1
        assert coadd.fibermap["targetid"].iloc[0] > 0
        assert "not a star" in coadd.problems[0], (path, coadd.problems[0])
        for cam, c in coadd.cameras.items():
            assert c.resolution.shape == (1, 11, c.wave.size)
            fwhm = resolution_fwhm(c.resolution[0], 0.8)[20:-20]
            # Measured kernels agree with the instrument's LSF (constants.DESI_LSF_FWHM_AA) to 8 %.
            np.testing.assert_allclose(np.median(fwhm), np.median(inst.fwhm(c.wave[20:-20])), rtol=0.08)
        # The fit's LSF prior reads each real spectrum's LSF variance from these matrices.
        var = lsf_variance(coadd.cameras, 0.8)[0]
        assert 0.6 < var < 1.0, (path, var)


def _rewrite(path, out, drop=(), edit=None):
    with fits.open(path) as h:
        hdus = [x.copy() for x in h if x.name not in drop]
    if edit:
        edit(hdus)
    fits.HDUList(hdus).writeto(out)
    return out


def test_bad_coadds_are_flagged_per_spectrum_or_refused_with_the_file_named(tmp_path):
    fibermap, cams = fake_coadd(n=3)
    good = write_desi_coadd(tmp_path / "good.fits", fibermap, cams)
    # A missing camera: every spectrum flagged, the others still read.
    c = read_desi_coadd(_rewrite(good, tmp_path / "noz.fits",
                                 drop={f"Z_{k}" for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")}))
    assert set(c.cameras) == {"B", "R"} and all("camera Z missing" in p for p in c.problems)
    # NaN flux in one spectrum's R camera, an all-masked B camera in another.
    cams["R"].flux[0, 10:20] = np.nan
    cams["B"].mask[1] = 1
    c = read_desi_coadd(write_desi_coadd(tmp_path / "nan.fits", fibermap, cams))
    assert "non-finite flux or ivar in R" in c.problems[0] and np.all(c.cameras["R"].ivar[0, 10:20] == 0)
    assert np.isfinite(c.cameras["R"].flux).all()
    assert "camera B all masked" in c.problems[1] and c.problems[2] == ""
    # No TARGETID: flagged, not dropped.
    c = read_desi_coadd(write_desi_coadd(tmp_path / "noid.fits", fibermap.drop(columns="TARGETID"), cams))
    assert len(c.fibermap) == 3 and all("no TARGETID" in p for p in c.problems)
    # Not a coadd, or a camera whose arrays disagree: refused, naming the file and the HDU.
    with pytest.raises(SpectrumFormatError, match="nofibermap.fits.*FIBERMAP"):
        read_desi_coadd(_rewrite(good, tmp_path / "nofibermap.fits", drop={"FIBERMAP"}))

    def shorten(hdus):
        for x in hdus:
            if x.name == "R_IVAR":
                x.data = x.data[:, :-5]
    with pytest.raises(SpectrumFormatError, match="short.fits: R_IVAR has shape"):
        read_desi_coadd(_rewrite(good, tmp_path / "short.fits", edit=shorten))
    (tmp_path / "junk.fits").write_bytes(b"not fits at all")
    with pytest.raises(SpectrumFormatError, match="junk.fits"):
        read_desi_coadd(tmp_path / "junk.fits")


def test_galaxies_are_not_stars_but_point_sources_and_mws_targets_are(tmp_path):
    fibermap, cams = fake_coadd(n=3, morph="EXP")
    fibermap.loc[1, "MORPHTYPE"] = "PSF"
    fibermap.loc[2, "MWS_TARGET"] = 4
    c = read_desi_coadd(write_desi_coadd(tmp_path / "mix.fits", fibermap, cams))
    assert "not a star" in c.problems[0] and c.problems[1] == "" and c.problems[2] == ""


def test_mad_chi2_flag_has_the_known_answer():
    """Z24 eq. 5: (chi2 - median) / (mean absolute deviation from the median) within S/N bins."""
    from ddpayne_core.flags import chi2ratio_desi, qflag_chi2_desi

    chi2 = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 10.0, 10.0, 12.0, 14.0, np.nan])
    snr = np.array([60, 60, 60, 60, 60, 150, 150, 150, 150, 150.0])
    ratio = chi2ratio_desi(chi2, snr)
    dev = (2 + 1 + 0 + 1 + 97) / 5           # bin S/N 50-80: median 3
    np.testing.assert_allclose(ratio[:5], (chi2[:5] - 3.0) / dev)
    dev2 = (1 + 1 + 1 + 3) / 4               # bin S/N 120-200: median 11
    np.testing.assert_allclose(ratio[5:9], (chi2[5:9] - 11.0) / dev2)
    assert np.isnan(ratio[9])
    np.testing.assert_array_equal(qflag_chi2_desi(ratio), [0, 0, 0, 0, 1, 0, 0, 0, 0, 1])  # 14: +2 MAD


def test_label_transfer_cross_match_takes_the_nearest_star_within_the_radius():
    from ddpayne_core.model import crossmatch

    desi = pd.DataFrame({"ra": [10.0, 20.0, 30.0], "dec": [5.0, -5.0, 45.0], "targetid": [1, 2, 3]})
    arcsec = 1 / 3600
    lamost = pd.DataFrame({"ra": [10.0 + 0.5 * arcsec, 10.0 + 2.0 * arcsec, 20.0 + 5 * arcsec, 30.0],
                           "dec": [5.0, 5.0, -5.0, 45.0 + 1.5 * arcsec],
                           "lamost_feh": [-0.5, -1.0, 0.2, -2.0]})
    out = crossmatch(desi, lamost, radius_arcsec=3.0)
    np.testing.assert_allclose(out["lamost_feh"].to_numpy(), [-0.5, np.nan, -2.0])
    np.testing.assert_allclose(out["match_sep_arcsec"].to_numpy(), [0.5 * np.cos(np.radians(5)), np.nan, 1.5],
                               rtol=1e-3)


def test_desi_reference_grid_spans_z24s_range_of_stars():
    """Z24 Fig. 1: 101 reference stars, [Fe/H] -3.0 to +0.5, dwarfs to giants and the horizontal
    branch; each stepped in Z24's 15 labels; on DESI's grid."""
    from ddpayne_core.labels import LABEL_SETS
    from ddpayne_core.theory.gradients import REFERENCE_LABELS, desi_points, grid_spec

    ref, step = desi_points()
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    teff, logg, feh = ref[:, col["teff"]], ref[:, col["logg"]], ref[:, col["feh"]]
    assert len(ref) == 101 and feh.min() == -3.0 and feh.max() == 0.5
    assert (logg < 2.0).sum() >= 8 and ((logg > 2.3) & (logg < 3.0)).sum() >= 8   # giants, HB/clump
    assert ((teff > 6000) & (logg > 3.8)).sum() >= 13                            # turn-off stars
    assert np.all(ref[feh < -1, col["mg_fe"]] > 0.2)                              # alpha-enhanced halo
    assert np.all(step[:, col["teff"]] == 200.0)
    spec = grid_spec("desi-isochrone")
    assert spec.instrument == "desi" and len(spec.points) == 101 * (1 + len(LABEL_SETS["desi"]))
    # Stepped points stay inside the atmospheres' range: [Fe/H] <= +0.5, [X/Fe] within +-0.8.
    assert spec.points[:, col["feh"]].max() <= 0.5
    xfe = [col[lab] for lab in LABEL_SETS["desi"] if lab.endswith("_fe") and lab != "feh"]
    assert np.abs(spec.points[:, xfe]).max() <= 0.85


@pytest.mark.moog
def test_desi_line_list_extends_lamosts_without_changing_it():
    """One star's truth physics is the same at both instruments: DESI's wider line list keeps
    every LAMOST-range line and its perturbed log gf, and adds the lines beyond."""
    from ddpayne_core.theory.synthesis import SYNTH_RANGE_AA, TRUTH, prepare_linelist

    lamost = prepare_linelist(TRUTH, *SYNTH_RANGE_AA["lamost"])
    desi = prepare_linelist(TRUTH, *SYNTH_RANGE_AA["desi"])
    inside = (desi.wave >= lamost.wave[0]) & (desi.wave <= lamost.wave[-1])
    np.testing.assert_array_equal(desi.wave[inside], lamost.wave)
    np.testing.assert_array_equal(desi.loggf[inside], lamost.loggf)
    assert desi.wave[0] < 3590 and desi.wave[-1] > 9830 and np.all(np.diff(desi.wave) >= 0)


def _mws(targetids, rv, spectype):
    from ddpayne_core.io.desi import write_mws_catalog  # noqa: F401  (used by callers)

    n = len(targetids)
    rvtab = pd.DataFrame({"TARGETID": np.asarray(targetids, np.int64), "TARGET_RA": np.zeros(n),
                          "TARGET_DEC": np.zeros(n), "VRAD": np.asarray(rv, float),
                          "VRAD_ERR": np.ones(n), "TEFF": np.full(n, 5000.0), "LOGG": np.full(n, 4.0),
                          "FEH": np.zeros(n), "RVS_WARN": np.zeros(n, np.int64),
                          "RR_SPECTYPE": list(spectype), "PRIMARY": np.ones(n, bool)})
    sptab = pd.DataFrame({"TARGETID": rvtab["TARGETID"], "TEFF": np.full(n, 5000.0),
                          "LOGG": np.full(n, 4.0), "FEH": np.zeros(n), "SUCCESS": np.ones(n, np.int64)})
    return rvtab, sptab


def test_ingest_desi_keeps_every_spectrum_in_order_and_names_its_problems(tmp_path):
    import shutil

    from ddpayne_core.io import open_store
    from ddpayne_core.io.desi import write_mws_catalog
    from ddpayne_core.preprocess import ingest_desi, merge_cameras

    folder = tmp_path / "coadds"
    f1, c1 = fake_coadd(n=3, seed=1)
    f2, c2 = fake_coadd(n=5, seed=2)
    f2["TARGETID"] += 100
    c2["B"].mask[4] = 1                                   # one all-masked blue camera
    write_desi_coadd(folder / "coadd-a.fits", f1, c1)
    write_desi_coadd(folder / "coadd-b.fits", f2, c2)
    (folder / "coadd-junk.fits").write_bytes(b"junk")
    for path in REAL:                                      # two real extragalactic coadds
        shutil.copy(path, folder / path.name)
    ids = list(f1["TARGETID"]) + list(f2["TARGETID"])
    rvtab, sptab = _mws(ids[:-1], np.linspace(-100, 100, len(ids) - 1),
                        ["STAR"] * (len(ids) - 2) + ["GALAXY"])
    write_mws_catalog(tmp_path / "mws.fits", rvtab, sptab)
    store = ingest_desi([folder], tmp_path / "store", mws_catalog=tmp_path / "mws.fits", chunk=3,
                        log=lambda *a: None)
    meta = open_store(tmp_path / "store").meta()
    assert len(meta) == 8 + len(REAL) and list(meta["specid"]) == list(range(len(meta)))
    mine = meta[meta["filename"].str.startswith("coadd-")  & ~meta["filename"].isin([p.name for p in REAL])]
    assert list(mine["targetid"]) == ids                   # file order, then row order
    errors = dict(zip(mine["targetid"], mine["ingest_error"]))
    assert errors[ids[0]] == "" and "camera B all masked" in errors[ids[7]]
    assert "RR_SPECTYPE GALAXY" in errors[ids[6]] and "no radial velocity" in errors[ids[7]]
    np.testing.assert_allclose(mine["rv"].iloc[:7], rvtab["VRAD"].iloc[:7])
    assert all("not a star" in e for e in meta.loc[meta["filename"].isin([p.name for p in REAL]), "ingest_error"])
    flux, ivar = store.read(0, len(meta))
    expected = np.concatenate([merge_cameras(read_desi_coadd(folder / name), get_instrument("desi"))[0]
                               for name in ("coadd-a.fits", "coadd-b.fits")])
    rows = mine.index.to_numpy()
    np.testing.assert_allclose(flux[rows], expected, rtol=1e-6)
    report = pd.read_csv(tmp_path / "store" / "ingest_report.csv")
    assert "coadd-junk.fits" in set(report["filename"]) and np.isfinite(meta["snr"].iloc[0])


@pytest.fixture(scope="module")
def desi_truth(tmp_path_factory):
    """A test 'truth' on DESI's grid (random lines, not physics), saved like a truth emulator."""
    from conftest import make_truth

    path = tmp_path_factory.mktemp("desi_truth") / "truth_desi.pt"
    make_truth(seed=11, n_lines=1200, instrument="desi").save(path)
    return path


def test_desi_synthetic_survey_reaches_the_pipeline_through_the_coadd_reader(tmp_path, desi_truth):
    """Written as coadds + MWS catalogue, read back by ingest_desi: every spectrum in its row with
    the catalogue RV of its own visit, galaxies named, shared stars carry the LAMOST stars'
    labels, the blue camera's S/N falls for cool stars, and the preprocessed spectra of clean
    single stars match the truth to their noise."""
    from conftest import TEST_LABELS

    from ddpayne_core.io import open_store
    from ddpayne_core.preprocess import ingest_desi, normalize, preprocess_batch, shift_to_rest
    from ddpayne_core.simulate import DesiSurveyConfig, simulate_desi_survey, to_velocity

    lamost_stars = pd.DataFrame({"star_id": np.arange(50), "ra": np.linspace(10, 20, 50),
                                 "dec": np.linspace(-5, 5, 50), "teff": 5000.0, "logg": 4.5,
                                 "vmic": 1.0, "feh": -0.5, "mg_fe": 0.2, "ca_fe": 0.1, "cu_fe": 0.0})
    cfg = DesiSurveyConfig(n_stars=120, spectra_per_file=50, lamost_fraction=0.25, lamost_r_mag=(15.0, 15.5),
                           galaxy_fraction=0.05, repeat_fraction=0.2, r_mag=(15.0, 17.0))
    truth_table = simulate_desi_survey(tmp_path / "desi", cfg, desi_truth, lamost_stars, log=lambda *a: None)
    coadds = sorted((tmp_path / "desi" / "coadds").glob("coadd-*.fits"))
    assert len(coadds) == truth_table["filename"].nunique() >= int(np.ceil(len(truth_table) / 50))
    assert fits.getheader(coadds[0], 0)["SYNTHETI"] is True
    store = ingest_desi([tmp_path / "desi" / "coadds"], tmp_path / "store",
                        mws_catalog=tmp_path / "desi" / "mws.fits", log=lambda *a: None)
    assert store.info["synthetic"] is True
    meta = open_store(tmp_path / "store").meta()
    m = meta.merge(truth_table, on=["targetid", "filename", "row"], suffixes=("", "_true"))
    assert len(m) == len(meta) == len(truth_table)
    good_rv = ~m["injected_bad"].to_numpy()          # injected: catalogue RV off by 400 km/s
    np.testing.assert_allclose(m.loc[good_rv, "rv"], m.loc[good_rv, "rv_true"], atol=6 * m["rv_err"].max())
    assert np.all(np.abs(m.loc[~good_rv, "rv"] - m.loc[~good_rv, "rv_true"]) > 300)
    galaxy = m["is_galaxy"].to_numpy()
    assert galaxy.any() and all("not a star" in e for e in m.loc[galaxy, "ingest_error"])
    assert (m.loc[~galaxy, "ingest_error"] == "").mean() > 0.9
    shared = m["lamost_star_id"] >= 0
    assert shared.mean() > 0.15 and np.allclose(m.loc[shared, "teff"], 5000.0)
    assert m.loc[shared, "r_mag"].between(*cfg.lamost_r_mag).all()   # LAMOST's bright stars
    # Each fibre's LSF, as its RESOLUTION matrices give it, reaches the store (the fit's prior).
    ratio = m["lsf_var"] / m["lsf_scale"] ** 2
    assert m["lsf_var"].notna().all() and ratio.std() / ratio.mean() < 0.01
    cool, hot = m["teff"] < 5000, m["teff"] > 6200
    assert (m.loc[cool, "snr_b"] / m.loc[cool, "snr_r"]).median() < (m.loc[hot, "snr_b"] / m.loc[hot, "snr_r"]).median()
    clean = ~galaxy & ~m["is_binary"].to_numpy() & ~m["injected_bad"].to_numpy()
    flux, ivar = store.read(0, len(meta))
    truth = EmulatorModel.load(desi_truth)
    inst = get_instrument("desi")
    rv, rv_true = m.loc[clean, "rv"].to_numpy(), m.loc[clean, "rv_true"].to_numpy()
    norm, norm_ivar = preprocess_batch(flux[clean], ivar[clean], rv, inst)
    true_labels = m.loc[clean, list(TEST_LABELS)].to_numpy()
    true_labels[:, TEST_LABELS.index("cu_fe")] = 0.0     # featureless: the truth sees it at 0
    # The expected spectrum: the truth moved to the star's velocity and back with the catalogue's,
    # as the data were (interpolation still smooths these barely sampled test lines a little: the
    # two shifts must be in the expectation), then normalized as the data are.
    there, _ = to_velocity(inst.wave, truth.predict(true_labels), np.ones_like(norm), rv_true,
                           inst.resampling)
    back, _ = shift_to_rest(inst.wave, there, np.ones_like(there), rv, inst.resampling)
    expected = normalize(inst.wave, back, np.ones_like(back), inst.continuum_width)[0]
    inner = (inst.wave > 3700) & (inst.wave < 9700)
    chi2 = np.sum(((norm - expected) ** 2 * norm_ivar)[:, inner], 1) / np.sum(norm_ivar[:, inner] > 0, 1)
    assert 0.7 < np.median(chi2) < 2.0, np.median(chi2)


def test_cubic_rest_frame_shift_keeps_barely_sampled_lines_and_propagates_variance():
    """DESI resamples with Keys cubic convolution: a Gaussian line of sigma 0.9 pixel (DESI's LSF)
    shifted by a fraction of a pixel keeps its depth far better than with linear interpolation;
    the propagated variance matches Monte Carlo; masked pixels fall back to linear or are masked."""
    from ddpayne_core.preprocess import shift_to_rest

    wave = 5000.0 + 0.8 * np.arange(400)
    x = np.arange(400.0)
    line = lambda at: 1 - 0.6 * np.exp(-0.5 * ((at - 200.0) / 0.9) ** 2)   # observed, at pixel 200
    flux = line(x)[None, :]
    rv = np.array([0.37 * 0.8 / wave[200] * 299792.458])                   # ~0.37 pixel
    pos = np.interp(wave * (1 + rv[0] / 299792.458), wave, x)             # where each rest pixel reads
    errs = {}
    for kind in ("linear", "cubic"):
        out, _ = shift_to_rest(wave, flux, np.ones_like(flux), rv, kind)
        errs[kind] = np.abs(out[0] - line(pos))[150:250].max()
    assert errs["cubic"] < 0.5 * errs["linear"], errs
    rng = np.random.default_rng(0)
    sigma = 0.01
    noisy = 1 + sigma * rng.normal(size=(4000, 400))
    shifted, ivar = shift_to_rest(wave, noisy, np.full_like(noisy, sigma ** -2), np.full(4000, rv[0]), "cubic")
    np.testing.assert_allclose(np.std(shifted[:, 200]), 1 / np.sqrt(ivar[0, 200]), rtol=0.05)
    masked = np.ones((1, 400))
    mask_ivar = np.ones((1, 400))
    mask_ivar[0, 100] = 0
    _, iv = shift_to_rest(wave, masked, mask_ivar, rv, "cubic")
    assert iv[0, 99] == 0 or iv[0, 100] == 0          # the masked pixel's neighbourhood
    assert iv[0, 150] > 0


def test_label_transfer_takes_good_high_snr_fits_of_the_other_survey():
    """Z24 sec. 3.2: LAMOST labels for DESI spectra of the same stars, S/N > 20 in both; one
    LAMOST row per star (its best visit), failed or bad fits never transferred."""
    from ddpayne_core.model import transfer_labels

    a = 1 / 3600
    lamost = pd.DataFrame({"ra": [10.0, 10.0, 20.0, 30.0, 40.0], "dec": [0.0, 0.0, 0.0, 0.0, 0.0],
                           "snr": [25.0, 80.0, 50.0, 15.0, 60.0], "teff": [5000.0, 5100.0, 6000.0, 4500.0, 5500.0],
                           "feh": [-1.0, -1.1, 0.0, -2.0, -0.5], "fit_status": [0, 0, 0, 0, 0],
                           "qflag_chi2": [0, 0, 0, 0, 1]})
    desi = pd.DataFrame({"ra": [10.0 + 0.5 * a, 20.0, 30.0, 40.0, 20.0 + a], "dec": [0.0] * 5,
                         "snr": [40.0, 10.0, 50.0, 50.0, 30.0]})
    out = transfer_labels(desi, lamost, ("teff", "feh"))
    np.testing.assert_allclose(out["lamost_teff"], [5100.0, np.nan, np.nan, np.nan, 6000.0])
    np.testing.assert_allclose(out["lamost_feh"], [-1.1, np.nan, np.nan, np.nan, 0.0])
    assert out["lamost_sep_arcsec"].iloc[0] == pytest.approx(0.5, rel=1e-3)


def test_desi_model_gets_the_mad_chi2_cut_and_feh_floor_flags():
    from ddpayne_core.flags import XFlagConfig, add_flags, qflag_chi2
    from conftest import make_truth, reference_from

    model = make_truth(seed=3, n_lines=300, instrument="desi")
    model.config["instrument"] = "desi"
    assert XFlagConfig.for_model(model).chi2_cuts == (3.0,) * 5
    rng = np.random.default_rng(0)
    n = 200
    table = pd.DataFrame({lab: rng.uniform(lo, hi, n) for lab, lo, hi in
                          zip(model.labels, model.scaler.lo, model.scaler.hi)})
    table["snr"] = rng.uniform(20, 100, n)
    table["chi2"] = rng.normal(7000, 100, n)
    table.loc[:4, "chi2"] = 20000.0                       # five bad fits
    add_flags(table, model, reference_from(model))
    assert table.loc[:4, "qflag_chi2"].eq(1).all() and table.loc[5:, "qflag_chi2"].mean() < 0.1
    np.testing.assert_array_equal(table["qflag_chi2"], qflag_chi2(table["chi2ratio"], table["snr"], (3.0,) * 5))
    assert ((table["feh"] < -2.0) == (table["mg_fe_below_feh_floor"] == 1)).all()
    assert "teff_below_feh_floor" not in table


def test_desi_training_uses_desis_reference_grid_and_keeps_z24s_network_available():
    """The DESI default is LAMOST's 10-neuron LM network with the DESI prior (measured better on
    the demo's training set, studies/desi_network); Z24's 40-neuron Adam network is one argument."""
    from ddpayne_core.model import TrainConfig
    from ddpayne_core.model.train import Z24_DESI_NETWORK

    desi, lamost = TrainConfig.for_instrument("desi"), TrainConfig.for_instrument("lamost")
    assert desi.reference == "desi-isochrone" and lamost == TrainConfig()
    assert desi == TrainConfig(reference="desi-isochrone", epochs=40)
    z24 = TrainConfig.for_instrument("desi", **Z24_DESI_NETWORK)
    assert (z24.n_hidden, z24.optimizer, z24.batch_size, z24.lr_start, z24.lr_end) == (40, "adam", 512, 1e-2, 1e-4)
    assert TrainConfig.for_instrument("desi", epochs=5).epochs == 5


@pytest.mark.slow
def test_desi_pipeline_end_to_end_on_a_small_synthetic_desi_survey(tmp_path, desi_truth):
    """SYNTHETIC (a test emulator on DESI's grid, not physics): coadds -> ingest -> labels of the
    shared stars -> train (DESI settings, small) -> fit and flag with the MAD chi2 cut: the
    pipeline runs on DESI's grid, recovers the labels and flags the bad fits."""
    from dataclasses import replace

    from conftest import TEST_LABELS, reference_from

    from ddpayne_core.fit import FitConfig
    from ddpayne_core.io import open_store
    from ddpayne_core.model import TrainConfig, TrainingSetConfig, select_training
    from ddpayne_core.pipeline import fit_and_flag, train_from_store
    from ddpayne_core.preprocess import ingest_desi
    from ddpayne_core.simulate import DesiSurveyConfig, simulate_desi_survey

    cfg = DesiSurveyConfig(n_stars=700, spectra_per_file=250, r_mag=(15.5, 18.0), lamost_fraction=0.0)
    truth_table = simulate_desi_survey(tmp_path / "desi", cfg, desi_truth, log=lambda *a: None)
    ingest_desi([tmp_path / "desi" / "coadds"], tmp_path / "store",
                mws_catalog=tmp_path / "desi" / "mws.fits", log=lambda *a: None)
    store = open_store(tmp_path / "store")
    meta = store.meta().merge(truth_table, on=["targetid", "filename", "row"], suffixes=("", "_true"))
    rng = np.random.default_rng(1)
    usable = (meta["ingest_error"] == "") & ~meta["is_binary"]
    for lab, noise in zip(TEST_LABELS, (50.0, 0.08, 0.1, 0.04, 0.04, 0.04, 0.04)):
        meta[f"ref_{lab}"] = np.where(usable, meta[lab] + rng.normal(0, noise, len(meta)), np.nan)
    meta["cu_fe"] = 0.0
    train = replace(TrainConfig.for_instrument("desi"), n_hidden=8, epochs=60, regularize=False)
    ts = TrainingSetConfig(survey="ref", label_set=TEST_LABELS, min_snr=15, min_snr_metal_poor=15)
    model = train_from_store(tmp_path / "store", tmp_path / "model.pt", ts, train, meta=meta,
                             log=lambda *a: None)
    assert model.config["instrument"] == "desi" and model.config["resampling"] == "cubic"
    trained_on = meta["lsf_var"].to_numpy()[select_training(meta, ts)[0]]
    assert model.config["lsf_var_ref"] == pytest.approx(np.median(trained_on))
    table = fit_and_flag(model, store, tmp_path / "catalog.parquet", replace(FitConfig(), n_candidates=16),
                         reference_from(model), log=lambda *a: None)
    t = table.merge(meta[["specid", "teff", "feh", "is_galaxy", "injected_bad"]], on="specid",
                    suffixes=("", "_true"))
    good = (t["snr"] > 30) & ~t["is_galaxy"] & ~t["injected_bad"] & (t["fit_status"] != 2)
    assert good.sum() > 100
    assert np.median(np.abs(t.loc[good, "teff"] - t.loc[good, "teff_true"])) < 150
    assert np.median(np.abs(t.loc[good, "feh"] - t.loc[good, "feh_true"])) < 0.15
    assert t.loc[t["injected_bad"] | t["is_galaxy"], "qflag_chi2"].mean() > 0.5
    assert t.loc[good, "qflag_chi2"].mean() < 0.15
    # The fitted LSF offset keeps to what the RESOLUTION matrices say (FitConfig.lsf_prior_sigma):
    # within a few prior widths, and never known worse than the prior alone knows it.
    sigma = FitConfig().lsf_prior_sigma
    expected = t.loc[good, "lsf_var"] - model.config["lsf_var_ref"]
    assert np.median(np.abs(t.loc[good, "lsf_dvar"] - expected)) < 3 * sigma
    assert (t.loc[good, "lsf_dvar_err"] <= sigma * (1 + 1e-6)).all()


@pytest.mark.slow
def test_desi_demo_end_to_end_with_labels_transferred_from_the_lamost_demo(tmp_path, desi_truth, demo_bundle,
                                                                         truth_path, monkeypatch):
    """`ddpayne demo --survey desi` on test physics (SYNTHETIC): the LAMOST demo's stars seed the
    shared footprint, its catalogue's labels train the DESI model, and the DESI catalogue and
    report are written; without the DESI truth emulator it says how to build it."""
    from dataclasses import replace

    from conftest import reference_from

    from ddpayne_core.desi_demo import run_desi_demo
    from ddpayne_core.fit import FitConfig
    from ddpayne_core.model import EmulatorModel, TrainConfig
    from ddpayne_core.simulate import DesiSurveyConfig

    with pytest.raises(FileNotFoundError, match="compute_desi_physics"):
        run_desi_demo(tmp_path / "none", demo_bundle[0], truth_path=tmp_path / "missing.pt")
    reference_from(EmulatorModel.load(desi_truth)).save(tmp_path / "reference.npz")
    config = DesiSurveyConfig(n_stars=500, spectra_per_file=250, lamost_fraction=0.8, apogee_fraction=0.3,
                              r_mag=(15.0, 17.5))
    train_config = replace(TrainConfig.for_instrument("desi"), n_hidden=6, epochs=40, regularize=False)
    summary = run_desi_demo(
        tmp_path / "desi", demo_bundle[0], config, desi_truth, train_config,
        replace(FitConfig(), n_candidates=8), reference=str(tmp_path / "reference.npz"),
        crb_stars=40, studies=True, log=lambda *a: None)
    assert summary["synthetic"] and summary["instrument"] == "desi" and summary["n_training"] > 50
    assert (tmp_path / "desi" / "catalog.parquet").exists()
    assert (tmp_path / "desi" / "report" / "summary.md").exists()
    cat = pd.read_parquet(tmp_path / "desi" / "catalog.parquet")
    assert "targetid" in cat and cat["qflag_chi2"].isin([0, 1]).all()
    # Tiny test models trained on a tiny LAMOST demo's labels: DESI's fits can only be as good as
    # the labels they learned from (the transfer's cost); the DESI physics grids give real numbers.
    from ddpayne_core.catalog import robust_bias_scatter
    from ddpayne_core.io import open_store

    lamost = pd.read_parquet(demo_bundle[0] / "catalog.parquet").merge(
        open_store(demo_bundle[0] / "survey").meta()[["specid", "teff"]], on="specid", suffixes=("", "_true"))
    good = (lamost["snr"] > 20) & (lamost["fit_status"] != 2) & (lamost["qflag_chi2"] == 0)
    label_scatter = robust_bias_scatter((lamost["teff"] - lamost["teff_true"])[good])[1]
    assert summary["recovery"]["teff"]["scatter_50"] < 1.6 * label_scatter
    both = summary["desi_vs_lamost"]
    assert both["n_desi"] > 20 and both["n_lamost"] > 20
    assert set(both["labels"]) == set(summary["labels"])
    assert all(np.isfinite(v["desi_over_lamost"]) for v in both["labels"].values())
    assert "## DESI against LAMOST on the stars both observed" in (tmp_path / "desi" / "report" / "summary.md").read_text()
    # With both surveys' truth physics at hand (the demo finds MOOG's in data/models; here the
    # tests' own), each side's Cramer-Rao bound at its spectra's own S/N says where DESI should win.
    from ddpayne_core.desi_demo import desi_vs_lamost

    store = open_store(tmp_path / "desi" / "survey")
    truth_by_spectrum = store.meta(["specid", "targetid", "filename", "row"]).merge(
        pd.read_parquet(tmp_path / "desi" / "desi" / "truth.parquet"), on=["targetid", "filename", "row"])
    physics = (EmulatorModel.load(desi_truth), config.featureless, EmulatorModel.load(truth_path), ("cu_fe",))
    with_physics = desi_vs_lamost(cat, truth_by_spectrum, demo_bundle[0], summary["labels"], physics=physics)
    for lab, row in with_physics["labels"].items():
        assert row["crb_desi"] > 0 and row["crb_lamost"] > 0, lab
        assert row["physics_desi_over_lamost"] == pytest.approx(row["crb_desi"] / row["crb_lamost"])
        assert row["desi"] == both["labels"][lab]["desi"]
    # Known answer: DESI errors equal to LAMOST's on each shared star correlate exactly (1).
    lamost_dir = tmp_path / "lamost_same_errors"
    lamost_dir.mkdir()
    (lamost_dir / "survey").symlink_to(demo_bundle[0] / "survey")
    lam = pd.read_parquet(demo_bundle[0] / "catalog.parquet").merge(
        open_store(demo_bundle[0] / "survey").meta()[["specid", "star_id", "teff"]], on="specid",
        suffixes=("", "_true"))
    star_error = pd.Series(np.linspace(-80, 80, lam["star_id"].nunique()), index=lam["star_id"].unique())
    lam["teff"] = lam["teff_true"] + star_error.loc[lam["star_id"]].to_numpy()
    lam.drop(columns=["star_id", "teff_true"]).to_parquet(lamost_dir / "catalog.parquet")
    same = cat.merge(truth_by_spectrum[["specid", "lamost_star_id", "teff"]], on="specid", suffixes=("", "_true"))
    on_lamost = same["lamost_star_id"].isin(star_error.index)
    same.loc[on_lamost, "teff"] = (same["teff_true"] + star_error.reindex(same["lamost_star_id"]).to_numpy())[on_lamost]
    inherited = desi_vs_lamost(same.drop(columns=["lamost_star_id", "teff_true"]), truth_by_spectrum, lamost_dir,
                               summary["labels"])
    assert inherited["n_pairs"] > 10 and inherited["labels"]["teff"]["error_correlation"] == pytest.approx(1.0)
    assert abs(both["labels"]["teff"]["error_correlation"]) < 0.999
    crb = summary["crb_experiment"]
    assert crb["snr"] == 100 and crb["n_stars"] > 20
    for lab, row in crb["labels"].items():    # a bound, and repeat visits that scatter about it
        assert row["crb"] > 0 and 0.2 < row["precision_noise_only_over_crb"] < 20, (lab, row)
    assert (tmp_path / "desi" / "report" / "error_over_crb.png").exists()
    cost = summary["transfer_cost"]      # 30 % APOGEE-like stars here: ~100 train the second model
    assert cost["n_train_apogee"] >= 30
    assert set(cost["combined_over_apogee_at_snr50"]) == set(summary["labels"])
    by_source = summary["n_training_by_source"]     # Z24 sec. 3.2: APOGEE overlap + LAMOST transfer
    assert by_source["apogee"] > 0 and by_source["lamost"] > 0
    assert sum(by_source.values()) == summary["n_training"]
    model = EmulatorModel.load(tmp_path / "desi" / "model.pt")
    assert model.config["lamost_model_sha256"] and model.config["desi_survey_config"]["n_stars"] == 500
    # A committed model trained on this configuration is used instead of training (a fresh clone's
    # DESI demo trains nothing); another LAMOST model would make it train.
    import ddpayne_core.desi_demo as desi_demo

    said = []
    # ... also one trained before a survey setting existed (it counts at its default).
    del model.config["desi_survey_config"]["lamost_r_mag"]
    model.save(tmp_path / "committed.pt")
    monkeypatch.setattr(desi_demo, "COMMITTED_DESI_MODEL", tmp_path / "committed.pt")
    run_desi_demo(tmp_path / "again", demo_bundle[0], config, desi_truth, train_config,
                  replace(FitConfig(), n_candidates=8), reference=str(tmp_path / "reference.npz"),
                  crb_stars=10, log=said.append)
    assert any("using the committed DESI model" in line for line in said)
    assert not (tmp_path / "again" / "model.ckpt").exists()


def test_ddpayne_ingest_desi_from_the_command_line(tmp_path):
    """`ddpayne ingest --survey desi` on the real coadds: read, ingested, said not to be stars."""
    from ddpayne_core.cli import main
    from ddpayne_core.io import open_store

    if len(REAL) < 2:
        pytest.skip("needs ../shared/data/desi")
    assert main(["ingest", "--survey", "desi", "--out", str(tmp_path / "store"), *map(str, REAL)]) == 0
    meta = open_store(tmp_path / "store").meta()
    assert len(meta) == 2 and all("not a star" in e for e in meta["ingest_error"])
    assert main(["ingest", "--mws", "x.fits", "--out", str(tmp_path / "s2"), str(REAL[0])]) == 2
    assert not (tmp_path / "s2").exists()


def test_training_labels_come_from_the_best_source_that_has_them_all():
    """Z24 sec. 3.2: the APOGEE overlap's labels where a star has all of them, else the labels
    transferred from LAMOST; a row neither source covers fully has none."""
    from ddpayne_core.model import combine_label_sources

    meta = pd.DataFrame({"apogee_teff": [5000.0, np.nan, 5200.0, np.nan],
                         "apogee_feh": [-1.0, -0.5, np.nan, np.nan],
                         "lamost_teff": [5100.0, 6000.0, 5300.0, np.nan],
                         "lamost_feh": [-1.1, 0.1, -0.3, -2.0]})
    out = combine_label_sources(meta, ("apogee", "lamost"), ("teff", "feh"))
    np.testing.assert_allclose(out["combined_teff"], [5000.0, 6000.0, 5300.0, np.nan])
    np.testing.assert_allclose(out["combined_feh"], [-1.0, 0.1, -0.3, np.nan])
    assert out["combined_source"].tolist() == ["apogee", "lamost", "lamost", ""]
    with pytest.raises(ValueError, match="'galah'.*galah_teff"):
        combine_label_sources(meta, ("galah",), ("teff",))


def test_the_metal_poor_sample_labels_only_metal_poor_stars_and_changes_nothing_else():
    """Z24 sec. 3.2's metal-poor training supplement (Li et al. 2018, [Fe/H] < -1.7): a fraction of
    the metal-poor stars carry unbiased ``metalpoor_<label>`` labels; no star above the cut by more
    than the sample's noise does, and the rest of the survey is the same whatever the fraction."""
    from dataclasses import replace

    from ddpayne_core.constants import METAL_POOR_SAMPLE_FEH
    from ddpayne_core.labels import LABEL_SETS
    from ddpayne_core.simulate import DesiSurveyConfig
    from ddpayne_core.simulate.desi import METAL_POOR_SAMPLE_NOISE, build_desi_meta

    labels = list(LABEL_SETS["desi"])
    config = DesiSurveyConfig(n_stars=4000)
    meta = build_desi_meta(config, labels)
    held = meta["metalpoor_feh"].notna()
    assert (meta.loc[held, "metalpoor_feh"] < METAL_POOR_SAMPLE_FEH).all()
    assert (meta.loc[held, "feh"] < METAL_POOR_SAMPLE_FEH + 4 * METAL_POOR_SAMPLE_NOISE["feh"]).all()
    assert meta.loc[held, [f"metalpoor_{lab}" for lab in labels]].notna().all().all()
    poor = meta["feh"] < METAL_POOR_SAMPLE_FEH - 0.3       # well below the cut: held at the fraction
    assert abs(held[poor].mean() - config.metal_poor_sample_fraction) < 0.06
    for lab in ("teff", "feh", "mg_fe"):
        diff = (meta[f"metalpoor_{lab}"] - meta[lab])[held]
        assert abs(diff.median()) < 0.25 * diff.std(), lab
    none = build_desi_meta(replace(config, metal_poor_sample_fraction=0.0), labels)
    assert none["metalpoor_feh"].isna().all()
    others = [c for c in meta.columns if not c.startswith("metalpoor_")]
    pd.testing.assert_frame_equal(meta[others], none[others])
