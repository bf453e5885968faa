"""Catalogue rules of docs/spec.md sec. 9 pinned with hand-made cases."""
import numpy as np
import pandas as pd
import pytest

from ddpayne_core.catalog import (
    bias_against_training_labels,
    alpha_fe,
    metal_poor_weight,
    recommended,
    recovery_by_feh,
    starid,
    uqflag,
)


def test_starid_format():
    ids = starid([10.5125, 359.99999], [-5.25, 41.2691667])
    assert ids[0] == "S0103045-051500"
    assert ids[1].startswith("S3595959+411609")
    assert all(len(s) == 15 for s in ids)


def test_uqflag_ranks_visits_by_snr():
    assert uqflag([7, 7, 7, 9], [20.0, 80.0, 50.0, 10.0]).tolist() == [3, 1, 2, 1]


def test_alpha_fe_is_inverse_variance_mean():
    v, e = alpha_fe({"mg_fe": np.array([0.2]), "si_fe": np.array([0.0]), "ca_fe": np.array([np.nan]),
                     "ti_fe": np.array([0.4])},
                    {"mg_fe": np.array([0.05]), "si_fe": np.array([0.1]), "ca_fe": np.array([0.05]),
                     "ti_fe": np.array([0.1])})
    w = np.array([400.0, 100.0, 100.0])
    assert v[0] == pytest.approx((0.2 * 400 + 0 + 0.4 * 100) / w.sum())
    assert e[0] == pytest.approx(1 / np.sqrt(w.sum()))


def test_metal_poor_blend_weights():
    np.testing.assert_allclose(metal_poor_weight([0.0, -0.6, -0.8, -1.0, -2.0]),
                               [0.0, 0.0, 0.5, 1.0, 1.0])


def test_recommended_takes_table4_sources_and_minus999():
    a = pd.DataFrame({"specid": [1, 2], "teff": [5000.0, 5100], "teff_flag": [0, 1],
                      "c_fe": [0.1, 0.2], "c_fe_err": [0.05, 0.05], "c_fe_flag": [1, 0],
                      "mg_fe": [9.0, 9.0], "mg_fe_flag": [1, 1]})
    g = pd.DataFrame({"specid": [1, 2], "mg_fe": [0.3, 0.1], "mg_fe_err": [0.02, 0.03],
                      "mg_fe_flag": [0, 1], "teff": [9999.0, 9999.0]})
    r = recommended(a, g)
    assert r["teff"].tolist() == [5000.0, 5100.0]            # APOGEE, kept despite flag 0
    assert r["c_fe"].tolist() == [0.1, -999.0] and r["c_fe_err"].tolist() == [0.05, -999.0]
    assert r["mg_fe"].tolist() == [-999.0, 0.1]              # GALAH, flag 0 -> -999
    with pytest.raises(ValueError, match="same spectra"):
        recommended(a, g.iloc[::-1])


def test_metal_poor_blend_and_table3_layout():
    from ddpayne_core.catalog import blend_metal_poor, table3

    overall = pd.DataFrame({"specid": [1, 2, 3], "feh": [0.0, -0.75, -1.5], "feh_err": [0.1] * 3,
                            "mg_fe": [0.1, 0.1, 0.1], "mg_fe_flag": [1, 1, 1]})
    poor = pd.DataFrame({"specid": [1, 2, 3], "feh": [0.2, -1.0, -1.7], "feh_err": [0.2] * 3,
                         "mg_fe": [0.3, 0.3, 0.3], "mg_fe_flag": [0, 0, 0]})
    b = blend_metal_poor(overall, poor, ["feh", "mg_fe"])
    # weights 0, 0.375, 1 from the overall [Fe/H] 0, -0.75, -1.5
    np.testing.assert_allclose(b["feh"], [0.0, 0.625 * -0.75 + 0.375 * -1.0, -1.7])
    np.testing.assert_allclose(b["mg_fe"], [0.1, 0.175, 0.3])
    assert b["mg_fe_flag"].tolist() == [1, 1, 0]
    meta = pd.DataFrame({"specid": [1, 2, 3], "ra": [10.0, 10.0, 200.0], "dec": [1.0, 1.0, -3.0],
                         "star_id": [7, 7, 8], "snr": [50.0, 80.0, 20.0], "rv": [1.0, 2.0, 3.0],
                         "filename": ["a", "b", "c"]})
    rec = pd.DataFrame({"specid": [1, 2, 3], "teff": [5000.0] * 3, "mg_fe": [0.1, -999.0, 0.2],
                        "mg_fe_err": [0.05, -999.0, 0.05], "si_fe": [0.3] * 3,
                        "si_fe_err": [0.05] * 3, "chi2": [1.0] * 3})
    t = table3(rec, meta)
    assert list(t.columns[:3]) == ["specid", "ra", "dec"] and t.columns[-1] == "filename"
    assert t["uqflag"].tolist() == [2, 1, 1]
    assert t["alpha_fe"].tolist() == pytest.approx([0.2, 0.3, 0.25])  # -999 excluded
    assert t["starid"][0] == t["starid"][1] != t["starid"][2]


def test_catalog_cli_writes_recommended_and_per_set_catalogues(tiny_store, tmp_path):
    from ddpayne_core.catalog import read_catalog_metadata, write_catalog
    from ddpayne_core.cli import main
    from ddpayne_core.io import open_store

    meta = open_store(tiny_store).meta()
    n = len(meta)
    rng = np.random.default_rng(0)
    base = {"specid": meta["specid"], "teff": meta["teff"], "teff_err": 50.0, "teff_flag": 1,
            "logg": meta["logg"], "feh": meta["feh"], "feh_err": 0.05, "feh_flag": 1}
    apogee = pd.DataFrame({**base, "c_fe": 0.1, "c_fe_err": 0.05,
                           "c_fe_flag": rng.integers(0, 2, n)})
    galah = pd.DataFrame({**base, "mg_fe": 0.2, "mg_fe_err": 0.04, "mg_fe_flag": 1})
    write_catalog(apogee, tmp_path / "a.parquet", {"synthetic": True, "model": "A"})
    write_catalog(galah, tmp_path / "g.parquet", {"synthetic": True, "model": "G"})
    out = tmp_path / "dr.parquet"
    assert main(["catalog", "--apogee", str(tmp_path / "a.parquet"), "--galah",
                 str(tmp_path / "g.parquet"), "--store", str(tiny_store), "--out", str(out)]) == 0
    rec = pd.read_parquet(out)
    assert len(rec) == n and (rec["c_fe"][apogee["c_fe_flag"] == 0] == -999).all()
    assert rec["mg_fe"].eq(0.2).all() and rec["alpha_fe"].eq(0.2).all()
    assert read_catalog_metadata(out)["synthetic"] is True
    assert (tmp_path / "dr_apogee.parquet").exists() and (tmp_path / "dr_galah.parquet").exists()


def test_bias_against_training_labels_separates_the_labels_own_bias_from_the_methods():
    rng = np.random.default_rng(1)
    n = 400
    truth = pd.DataFrame({"specid": np.arange(n), "teff": rng.uniform(4500, 6500, n),
                          "feh": rng.uniform(-1, 0.3, n)})
    # training labels biased +25 K / +0.02 dex (only the first half is trained on; the other
    # half carries a different bias that must not count)
    meta = pd.DataFrame({"specid": np.arange(n),
                         "apogee_teff": truth["teff"] + np.where(np.arange(n) < n // 2, 25.0, -80.0),
                         "apogee_feh": truth["feh"] + 0.02})
    cat = pd.DataFrame({"specid": np.arange(n), "teff": truth["teff"] + 30.0, "feh": truth["feh"] + 0.05,
                        "snr": np.where(np.arange(n) % 4 == 0, 10.0, 60.0),
                        "fit_status": 0})
    cat.loc[cat.index % 4 == 1, "teff"] += 1000.0    # low S/N rows are left out of the fitted bias
    cat.loc[cat.index % 4 == 1, "snr"] = 10.0
    out = bias_against_training_labels(cat, truth, meta, ["teff", "feh"], np.arange(n // 2), "apogee")
    assert out.loc["teff", "training_bias"] == pytest.approx(25.0)
    assert out.loc["teff", "fitted_bias"] == pytest.approx(30.0)
    assert out.loc["teff", "added_bias"] == pytest.approx(5.0)
    assert out.loc["feh", "added_bias"] == pytest.approx(0.03)
    assert out.loc["teff", "n_training"] == n // 2 and out.loc["teff", "n_fitted"] == n // 2


def test_recovery_by_feh_bins_on_true_feh_and_skips_bad_and_faint_fits():
    rng = np.random.default_rng(0)
    n = 600
    true_feh = np.repeat([-2.2, -1.2, -0.2], n // 3)
    truth = pd.DataFrame({"specid": np.arange(n), "teff": 5000.0, "feh": true_feh})
    offset = np.repeat([300.0, 100.0, 0.0], n // 3)          # Teff bias grows toward low [Fe/H]
    cat = pd.DataFrame({"specid": np.arange(n), "teff": 5000.0 + offset + rng.normal(0, 10, n),
                        "feh": true_feh + 0.3,  # binned on the true [Fe/H], not the fitted one
                        "snr": np.where(np.arange(n) % 10 == 0, 20.0, 80.0),
                        "fit_status": np.where(np.arange(n) % 25 == 1, 2, 0)})
    out = recovery_by_feh(cat, truth, ["teff", "feh"], edges=(-3.0, -2.0, -1.0, 0.0))
    assert list(out.index) == ["-3.0..-2.0", "-2.0..-1.0", "-1.0..+0.0"]
    expected_n = ((np.arange(200) % 10 != 0) & (np.arange(200) % 25 != 1)).sum()
    assert out["n"].tolist() == [expected_n] * 3
    assert out["bias_teff"].to_numpy() == pytest.approx([300.0, 100.0, 0.0], abs=3.0)
    assert out["bias_feh"].to_numpy() == pytest.approx([0.3] * 3)
    assert out["scatter_teff"].to_numpy() == pytest.approx([10.0] * 3, rel=0.2)
