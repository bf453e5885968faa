"""High-resolution catalogue readers on small files in the real APOGEE allStar / GALAH DR3
layouts (column names, flags, sentinel values)."""
import numpy as np
import pytest
from astropy.table import Table

from ddpayne_core.io import SpectrumFormatError, read_apogee_allstar, read_galah, read_payne_apogee


def test_apogee_allstar_flags_and_sentinels(tmp_path):
    t = Table({"APOGEE_ID": ["2M000", "2M001", "2M002"], "RA": [1.0, 2.0, 3.0],
               "DEC": [10.0, 20.0, 30.0], "TEFF": [4800.0, -9999.0, 5500.0],
               "TEFF_ERR": [80.0, 80.0, 90.0], "LOGG": [2.5, 2.6, 4.4], "FE_H": [-0.2, 0.0, 0.1],
               "MG_FE": [0.2, 0.1, 0.05], "MG_FE_ERR": [0.03, 0.03, 0.04],
               "MG_FE_FLAG": [0, 1, 0], "ASPCAPFLAG": [0, 0, 1 << 23]})
    t.write(tmp_path / "allStar.fits")
    df = read_apogee_allstar(tmp_path / "allStar.fits")
    assert df["apogee_teff"].tolist()[:2] == [4800.0, pytest.approx(np.nan, nan_ok=True)]
    assert np.isnan(df["apogee_mg_fe"][1])              # element flag set
    assert df[["apogee_teff", "apogee_feh", "apogee_mg_fe"]].iloc[2].isna().all()  # STAR_BAD
    assert df["apogee_mg_fe_err"][0] == 0.03 and "apogee_c_fe" not in df


def test_payne_apogee_catalogue_in_the_astra_layout(tmp_path):
    """astraAllStarThePayne: an empty BOSS table first, APOGEE results in the second HDU."""
    from astropy.io import fits

    t = Table({"sdss_id": [11, 12, 13], "sdss4_apogee_id": ["2M1", "2M2", "2M3"],
               "ra": [1.0, 2.0, 3.0], "dec": [-1.0, -2.0, -3.0], "teff": [4800.0, 5200.0, 6000.0],
               "e_teff": [30.0, 40.0, 50.0], "logg": [2.4, 3.1, 4.2], "e_logg": [0.05, 0.05, 0.06],
               "v_turb": [1.5, 1.2, 1.1], "fe_h": [-0.5, 0.1, -1.2], "e_fe_h": [0.03, 0.04, 0.05],
               "mg_h": [-0.2, 0.15, -0.9], "e_mg_h": [0.04, 0.03, 0.05],
               "result_flags": [0, 1, 16]})
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"sdss_id": [1]}), name="BOSS"),
                  fits.BinTableHDU(t, name="APOGEE")]).writeto(tmp_path / "payne.fits")
    df = read_payne_apogee(tmp_path / "payne.fits")
    assert df["apogee_id"].tolist() == ["2M1", "2M2", "2M3"]
    assert df["apogee_mg_fe"][0] == pytest.approx(0.3)          # [Mg/H] - [Fe/H]
    assert df["apogee_mg_fe_err"][0] == pytest.approx(0.05)     # 0.04 (+) 0.03
    assert df["apogee_vmic"][0] == 1.5 and "apogee_c_fe" not in df
    assert df.iloc[1][["apogee_teff", "apogee_feh"]].isna().all()   # fitting failure
    assert df["apogee_teff"][2] == 6000.0                             # a warning only
    assert np.isnan(read_payne_apogee(tmp_path / "payne.fits", drop_warnings=True)["apogee_teff"][2])
    Table({"teff": [1.0]}).write(tmp_path / "other.fits")
    with pytest.raises(SpectrumFormatError, match="other.fits: missing column.*result_flags"):
        read_payne_apogee(tmp_path / "other.fits")
    (tmp_path / "cut.fits").write_bytes((tmp_path / "payne.fits").read_bytes()[:4000])
    with pytest.raises(SpectrumFormatError, match="cut.fits"):
        read_payne_apogee(tmp_path / "cut.fits")


def test_galah_dr3_flags(tmp_path):
    t = Table({"sobject_id": [1, 2], "ra_dr2": [5.0, 6.0], "dec_dr2": [-5.0, -6.0],
               "teff": [5800.0, 4700.0], "e_teff": [70.0, 60.0], "logg": [4.3, 2.4],
               "fe_h": [0.0, -1.0], "flag_fe_h": [0, 0], "mg_fe": [0.0, 0.3],
               "e_mg_fe": [0.05, 0.06], "flag_mg_fe": [0, 1], "flag_sp": [0, 0]})
    t.write(tmp_path / "galah.fits")
    df = read_galah(tmp_path / "galah.fits")
    assert df["galah_teff"].tolist() == [5800.0, 4700.0]
    assert df["galah_mg_fe"][0] == 0.0 and np.isnan(df["galah_mg_fe"][1])
    Table({"x": [1]}).write(tmp_path / "other.fits")
    with pytest.raises(SpectrumFormatError, match="other.fits: not a GALAH catalogue"):
        read_galah(tmp_path / "other.fits")
    with pytest.raises(SpectrumFormatError, match="other.fits: missing column"):
        read_apogee_allstar(tmp_path / "other.fits")


def _mws_file(path, mismatch=False):
    """A DESI MWS catalogue in the mwsAll layout (RVTAB + row-matched SPTAB)."""
    from astropy.io import fits

    ids = np.array([101, 102, 103], np.int64)
    rv = Table({"TARGETID": ids, "TARGET_RA": [10.0, 11.0, 12.0], "TARGET_DEC": [-5.0, -6.0, -7.0],
                "VRAD": [12.5, -80.0, 3.0], "VRAD_ERR": [1.0, 2.0, 1.5], "TEFF": [5800.0, 4700.0, 6100.0],
                "TEFF_ERR": [50.0, 60.0, 70.0], "LOGG": [4.3, 2.4, 4.1], "FEH": [-0.2, -1.1, 0.1],
                "ALPHAFE": [0.05, 0.3, 0.0], "RVS_WARN": [0, 4, 0],
                "PRIMARY": [True, True, False]})
    sp = Table({"SUCCESS": [1, 1, 0], "TARGETID": ids[::-1] if mismatch else ids,
                "TEFF": [5750.0, 4720.0, 6000.0], "LOGG": [4.4, 2.5, 4.0], "FEH": [-0.25, -1.0, 0.0],
                "ALPHAFE": [0.04, 0.28, 0.01], "LOG10MICRO": [0.1, 0.3, 0.2]})
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(rv, name="RVTAB"),
                  fits.BinTableHDU(sp, name="SPTAB")]).writeto(path)


def test_desi_mws_catalogue(tmp_path):
    from ddpayne_core.io import read_desi_mws

    _mws_file(tmp_path / "mwsAll.fits")
    df = read_desi_mws(tmp_path / "mwsAll.fits")
    assert df["targetid"].tolist() == [101, 102]                # PRIMARY only
    assert df["rv"].iloc[0] == 12.5 and np.isnan(df["rv"].iloc[1])  # RVS_WARN set
    assert df["sp_teff"].tolist() == [5750.0, 4720.0]
    assert df["sp_vmic"].iloc[1] == pytest.approx(10 ** 0.3)
    assert len(read_desi_mws(tmp_path / "mwsAll.fits", primary_only=False)) == 3
    _mws_file(tmp_path / "bad.fits", mismatch=True)
    with pytest.raises(SpectrumFormatError, match="bad.fits.*row by row"):
        read_desi_mws(tmp_path / "bad.fits")
    with pytest.raises(SpectrumFormatError, match="allStar.fits: no HDU 'RVTAB'"):
        Table({"A": [1]}).write(tmp_path / "allStar.fits")
        read_desi_mws(tmp_path / "allStar.fits")
