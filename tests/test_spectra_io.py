"""LAMOST readers on the two real spectra (DR5-DR7 image layout) and on DR8+ table-layout files
written here with astropy in the same layout; bad input gives errors naming the file."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import SpectrumFormatError, read_lamost
from ddpayne_core.preprocess import preprocess

DATA = Path(__file__).resolve().parents[1] / "data" / "lamost"
REAL = sorted(DATA.glob("spec-*.fits*"))


def test_two_real_spectra_are_present():
    assert len(REAL) == 2


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name[:20])
def test_read_real_lamost_spectrum(path):
    raw = read_lamost(path)
    assert raw.wave.size == 3909 and raw.flux.shape == raw.ivar.shape == raw.wave.shape
    assert 3690 < raw.wave[0] < 3710 and 9000 < raw.wave[-1] < 9110
    assert raw.meta["ra"] is not None and np.isfinite(raw.meta["rv"])
    assert abs(raw.meta["rv"]) < 500 and raw.meta["snr_g"] > 0
    flux, ivar = preprocess(raw, get_instrument("lamost"))
    assert np.all(np.isfinite(flux)) and np.all(ivar >= 0)
    good = ivar > 0
    assert good.sum() > 2500
    assert 0.9 < np.median(flux[good]) < 1.1   # normalized


def _dr8_table_file(src: Path, dst: Path):
    raw = read_lamost(src)
    with fits.open(src) as hdul:
        header = hdul[0].header.copy()
    cols = [fits.Column(name=n, format=f"{raw.wave.size}E", array=a[None, :])
            for n, a in (("FLUX", raw.flux), ("IVAR", raw.ivar), ("WAVELENGTH", raw.wave),
                         ("ANDMASK", np.zeros(raw.wave.size)), ("ORMASK", np.zeros(raw.wave.size)))]
    fits.HDUList([fits.PrimaryHDU(header=header),
                  fits.BinTableHDU.from_columns(cols, name="COADD")]).writeto(dst)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LAYOUTS = {"dr1-image": sorted((SHARED / "lamost-formats" / "dr1-image").glob("spec-*.fits*")),
           "dr8-image": sorted((SHARED / "lamost-formats" / "dr8-image").glob("spec-*.fits*")),
           "dr10-table": sorted((SHARED / "lamost-dr10" / "spectra").glob("spec-*.fits*"))[:5]}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_real_lamost_layout_reads_and_normalizes(layout):
    """The real files of each LAMOST layout in ../shared/data (DR1-DR4 image with log-linear
    COEFF0/COEFF1 wavelengths, DR8-pipeline image, DR10 table) read onto 3700-9100 A and
    normalize near 1."""
    files = LAYOUTS[layout]
    assert files, f"no {layout} files under {SHARED}"
    for path in files:
        raw = read_lamost(path)
        assert np.all(np.diff(raw.wave) > 0), path
        assert 3690 < raw.wave[0] < 3710 and 9000 < raw.wave[-1] < 9110, path
        # LAMOST's pixels are log-linear, 1e-4 dex (69 km/s) wide.
        assert np.allclose(np.diff(np.log10(raw.wave)), 1e-4, rtol=0.02), path
        assert raw.meta["snr_g"] > 0 and abs(raw.meta["rv"]) < 1000, path
        flux, ivar = preprocess(raw, get_instrument("lamost"))
        good = ivar > 0
        assert good.sum() > 2000 and 0.85 < np.median(flux[good]) < 1.15, path


def test_image_without_wavelength_row_or_coefficients_is_refused(tmp_path):
    data = np.ones((5, 100), dtype=np.float32)
    header = fits.Header({"EXTEN0": "Flux Inverse Subcontinuum Andmask Ormask"})
    fits.PrimaryHDU(data, header).writeto(tmp_path / "spec-x.fits")
    with pytest.raises(SpectrumFormatError, match="spec-x.fits: no wavelength row and no COEFF0"):
        read_lamost(tmp_path / "spec-x.fits")


def test_dr8_table_layout_reads_like_the_image_layout(tmp_path):
    dst = tmp_path / "spec-dr8.fits"
    _dr8_table_file(REAL[0], dst)
    a, b = read_lamost(REAL[0]), read_lamost(dst)
    np.testing.assert_allclose(a.flux, b.flux, rtol=1e-6)
    np.testing.assert_allclose(a.wave, b.wave, rtol=1e-7)
    assert a.meta["rv"] == b.meta["rv"]


def test_bad_files_give_errors_naming_the_file(tmp_path):
    trunc = tmp_path / "truncated.fits"
    raw = open(REAL[1], "rb").read() if not REAL[1].name.endswith(".gz") else gzip.open(REAL[1]).read()
    trunc.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(SpectrumFormatError, match="truncated.fits"):
        read_lamost(trunc)
    text = tmp_path / "notfits.fits"
    text.write_text("hello")
    with pytest.raises(SpectrumFormatError, match="notfits.fits"):
        read_lamost(text)
    with pytest.raises(SpectrumFormatError, match="missing.fits: no such file"):
        read_lamost(tmp_path / "missing.fits")
    wrong = tmp_path / "tworows.fits"
    fits.PrimaryHDU(np.ones((2, 100), np.float32)).writeto(wrong)
    with pytest.raises(SpectrumFormatError, match="tworows.fits: no wavelength row"):
        read_lamost(wrong)


def test_fit_real_files_skips_bad_ones(tmp_path, truth_model):
    """`ddpayne fit` on a folder of real LAMOST files plus a broken one: labels, errors and chi^2
    for the real two, the broken one skipped and reported (model: a test emulator, so the
    labels themselves mean nothing here)."""
    from ddpayne_core.fit import fit_paths

    folder = tmp_path / "lamost"
    folder.mkdir()
    for p in REAL:
        shutil.copy(p, folder / p.name)
    (folder / "spec-broken.fits").write_text("garbage")
    table, info = fit_paths(truth_model, [folder], tmp_path / "out.parquet", log=lambda *a: None)
    assert len(table) == 2 and info["n_skipped"] == 1
    assert "spec-broken.fits" in info["skipped"][0][0]
    assert table["fit_status"].max() < 2
    assert np.all(np.isfinite(table[["teff", "teff_err", "chi2", "redchi2"]].to_numpy()))


def _desi_coadd(path, n=3, broken=False):
    """A small DESI coadd in the real layout (HDU names, columns, units: vacuum A)."""
    rng = np.random.default_rng(0)
    hdus = [fits.PrimaryHDU()]
    fmap = fits.BinTableHDU.from_columns(
        [fits.Column(name="TARGETID", format="K", array=np.arange(n) + 39627),
         fits.Column(name="TARGET_RA", format="D", array=rng.uniform(0, 360, n)),
         fits.Column(name="TARGET_DEC", format="D", array=rng.uniform(-10, 60, n))], name="FIBERMAP")
    hdus.append(fmap)
    for cam, (lo, hi) in {"B": (3600.0, 5930.0), "R": (5660.0, 7720.0), "Z": (7470.0, 9824.0)}.items():
        wave = np.arange(lo, hi + 0.4, 0.8)
        flux = np.tile(100 + 0.01 * wave, (n, 1))
        ivar = np.full_like(flux, 4.0)
        mask = np.zeros(flux.shape, dtype=np.int32)
        mask[:, 10] = 1
        hdus += [fits.ImageHDU(wave, name=f"{cam}_WAVELENGTH"),
                 fits.ImageHDU(flux if not (broken and cam == "R") else flux[:, :-5], name=f"{cam}_FLUX"),
                 fits.ImageHDU(ivar, name=f"{cam}_IVAR"), fits.ImageHDU(mask, name=f"{cam}_MASK")]
    fits.HDUList(hdus).writeto(path)


def test_desi_coadd_cameras_merge_onto_the_desi_grid(tmp_path):
    from ddpayne_core.io import read_desi_coadd
    from ddpayne_core.preprocess import merge_cameras

    _desi_coadd(tmp_path / "coadd.fits")
    inst = get_instrument("desi")
    coadd = read_desi_coadd(tmp_path / "coadd.fits")
    flux, ivar = merge_cameras(coadd, inst)
    assert flux.shape == (3, inst.wave.size) and list(coadd.fibermap["targetid"]) == [39627, 39628, 39629]
    inside = (inst.wave > 3605) & (inst.wave < 9820) & (ivar[0] > 0)
    assert inside.sum() > inst.wave.size - 20
    np.testing.assert_allclose(flux[:, inside], np.tile(100 + 0.01 * inst.wave[inside], (3, 1)),
                               rtol=1e-9)
    overlap = (inst.wave > 5770) & (inst.wave < 5790)
    assert np.allclose(ivar[:, overlap], 8.0)          # two cameras add inverse variances
    assert np.all(ivar[:, np.argmin(np.abs(inst.wave - 3608.0))] == 0)  # masked pixel


def test_desi_coadd_errors_name_file_and_hdu(tmp_path):
    from ddpayne_core.io import read_desi_coadd

    _desi_coadd(tmp_path / "bad.fits", broken=True)
    with pytest.raises(SpectrumFormatError, match="bad.fits: R_FLUX"):
        read_desi_coadd(tmp_path / "bad.fits")
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "empty.fits")
    with pytest.raises(SpectrumFormatError, match="empty.fits: not a DESI coadd"):
        read_desi_coadd(tmp_path / "empty.fits")


def test_ingest_folder_into_store_and_fit(tmp_path, truth_model):
    from ddpayne_core.fit import fit_paths
    from ddpayne_core.io import open_store
    from ddpayne_core.preprocess import ingest_lamost

    folder = tmp_path / "lamost"
    folder.mkdir()
    for p in REAL:
        shutil.copy(p, folder / p.name)
    (folder / "spec-zzz-broken.fits").write_text("garbage")
    store = ingest_lamost([folder], tmp_path / "store", chunk=2, workers=1, log=lambda *a: None)
    meta = open_store(store.path).meta()
    assert len(meta) == 3 and not store.info["synthetic"]
    assert (meta["ingest_error"] != "").tolist() == [False, False, True]
    flux, ivar = store.read(0, 3)
    assert ivar[0].sum() > 0 and ivar[2].sum() == 0
    report = (tmp_path / "store" / "ingest_report.csv").read_text()
    assert "spec-zzz-broken.fits" in report
    # Resumable: a second call finds every chunk done.
    again = ingest_lamost([folder], tmp_path / "store", chunk=2, workers=1, log=lambda *a: None)
    assert again.info["done_chunks"] == [0, 2]
    table, info = fit_paths(truth_model, [tmp_path / "store"], tmp_path / "fit.parquet",
                            log=lambda *a: None)
    assert table["fit_status"].tolist()[2] == 2 and table["fit_status"].max() == 2
    assert (table["fit_status"][:2] < 2).all() and info["synthetic"] is False


def test_store_metadata_rows_read_only_their_row_groups(tmp_path):
    import pyarrow.parquet as pq

    from ddpayne_core.io import create_store, write_meta

    meta = pd.DataFrame({"specid": np.arange(35), "rv": np.arange(35) * 0.5,
                         "name": [f"s{i}" for i in range(35)]})
    store = create_store(tmp_path / "s", np.linspace(4000, 5000, 8), 35, meta, "lamost", chunk=10)
    assert pq.ParquetFile(store.path / "meta.parquet").num_row_groups == 4   # one per chunk
    for start, stop in ((0, 10), (8, 23), (30, 35), (34, 35)):
        got = store.meta_rows(start, stop, ["specid", "rv", "not_a_column"])
        pd.testing.assert_frame_equal(got, meta[["specid", "rv"]].iloc[start:stop].reset_index(drop=True))
    # Stores written before row groups (one group) give the same rows.
    meta.to_parquet(store.path / "meta.parquet")
    pd.testing.assert_frame_equal(store.meta_rows(8, 23), meta.iloc[8:23].reset_index(drop=True))
    write_meta(store.path, meta, 7)
    pd.testing.assert_frame_equal(store.meta_rows(13, 29), meta.iloc[13:29].reset_index(drop=True))


def test_real_repeat_visits_agree_with_their_preprocessed_errors():
    """Real LAMOST DR10 spectra of the same star (positions within 3 arcsec in ../shared/data):
    after the rest-frame shift and normalization, the difference of two visits scatters as their
    inverse variances predict (robust std / predicted within 15 %, median over pairs)."""
    from ddpayne_core.io import star_ids
    from ddpayne_core.preprocess import preprocess_batch, to_grid

    labels = pd.read_csv(SHARED / "lamost-dr10" / "lasp_labels.csv")
    labels["star"] = star_ids(labels["ra"], labels["dec"])
    repeat = labels[labels["star"].duplicated(keep=False)]
    assert repeat["star"].nunique() >= 10
    inst = get_instrument("lamost")
    ratios = []
    for _, pair in repeat.groupby("star"):
        raws = [read_lamost(SHARED / "lamost-dr10" / f) for f in pair["file"].iloc[:2]]
        grid = [to_grid(r, inst) for r in raws]
        f, iv = preprocess_batch(np.stack([g[0] for g in grid]), np.stack([g[1] for g in grid]),
                                 np.array([r.meta["rv"] for r in raws]), inst)
        ok = (iv[0] > 0) & (iv[1] > 0)
        z = (f[0] - f[1])[ok] / np.sqrt(1 / iv[0][ok] + 1 / iv[1][ok])
        ratios.append(1.4826 * np.median(np.abs(z - np.median(z))))
    assert 0.85 < np.median(ratios) < 1.15, np.round(ratios, 2)
