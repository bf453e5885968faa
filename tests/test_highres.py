"""High-resolution catalogue readers on small files in the real APOGEE allStar / GALAH DR3
layouts (column names, flags, sentinel values)."""
import numpy as np
import pytest
from astropy.table import Table

from ddpayne_core.highres import read_apogee_allstar, read_galah
from ddpayne_core.spectra import SpectrumFormatError


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
