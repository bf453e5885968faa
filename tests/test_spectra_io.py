"""LAMOST readers on the two real spectra (DR5-DR7 image layout) and on DR8+ table-layout files
written here with astropy in the same layout; bad input gives errors naming the file."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ddpayne_core.instrument import get_instrument
from ddpayne_core.spectra import SpectrumFormatError, preprocess, read_lamost

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
    with pytest.raises(SpectrumFormatError, match="tworows.fits: primary image has 2 rows"):
        read_lamost(wrong)


def test_fit_real_files_skips_bad_ones(tmp_path, truth_model):
    """`ddpayne fit` on a folder of real LAMOST files plus a broken one: labels, errors and chi^2
    for the real two, the broken one skipped and reported (model: a test emulator, so the
    labels themselves mean nothing here)."""
    from ddpayne_core.survey import fit_paths

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
