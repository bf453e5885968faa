"""The validation report's numbers on hand-made catalogues with known answers."""
import numpy as np
import pandas as pd

from ddpayne_core.validation import (
    flag_information,
    markdown_table,
    precision_vs_snr,
    recovery_of_injected,
    validation_table,
)


def _repeat_catalogue(n_star=3000, seed=0):
    """Two visits per star on different nights at nearly equal S/N; label noise sigma = 10/(S/N)."""
    rng = np.random.default_rng(seed)
    snr = np.repeat(rng.uniform(12, 350, n_star), 2) + rng.uniform(-1, 1, 2 * n_star)
    return pd.DataFrame({"star_id": np.repeat(np.arange(n_star), 2),
                         "mjd": np.tile([58000.2, 58003.7], n_star), "snr": snr,
                         "teff": 5000 + rng.normal(0, 1, 2 * n_star) * 1000 / snr,
                         "fit_status": np.zeros(2 * n_star, int)})


def test_precision_follows_one_over_snr():
    table, slopes = precision_vs_snr(_repeat_catalogue(), ["teff"])
    assert slopes["teff"] == __import__("pytest").approx(-1.0, abs=0.1)
    # The per-bin sigma estimate is unbiased: sigma = 1000/(S/N) at the bin's S/N.
    expect = 1000 / table["snr_median"]
    assert np.all(np.abs(table["teff"] / expect - 1) < 0.2)


def test_validation_splits_training_and_other_stars():
    cat = pd.DataFrame({"specid": np.arange(6), "fit_status": [0] * 6,
                        "feh": [0.1, 0.2, 0.3, 0.0, 0.0, 0.0]})
    meta = pd.DataFrame({"specid": np.arange(6), "apogee_feh": [0.0] * 6})
    t = validation_table(cat, meta, ["feh"], training_ids=[0, 1, 2])
    assert t.loc["feh", "self_bias"] == 0.2 and t.loc["feh", "cross_bias"] == 0.0
    assert t.loc["feh", "self_n"] == 3 and t.loc["feh", "cross_n"] == 3


def test_recovery_of_injected_counts():
    cat = pd.DataFrame({"specid": np.arange(5), "qflag_chi2": [1, 1, 0, 0, 0],
                        "fit_status": [0, 0, 0, 2, 0], "qflag_singlestar": [1, 0, 0, 1, -1]})
    meta = pd.DataFrame({"specid": np.arange(5), "injected_bad": [True, False, False, True, False],
                         "bad_kind": ["rv", "", "", "blend", ""],
                         "is_binary": [False, False, True, False, True]})
    r = recovery_of_injected(cat, meta)
    # Row 1 is the one false alarm: a clean single star (rows 2 and 4 are binaries, unflagged).
    assert r["bad_spectra"] == {"n_true": 2, "n_flagged": 3, "completeness": 1.0,
                                "contamination": 1 / 3, "flagged_binaries": 0,
                                "flagged_fraction_of_clean_single_stars": 1.0,
                                "completeness_by_kind": {"blend": 1.0, "rv": 1.0}}
    # Binaries among good spectra with a defined flag: rows 1 (single, flagged) and 2 (binary,
    # flagged); row 4 is undefined, rows 0 and 3 are bad spectra.
    assert r["binaries"]["n_true"] == 1 and r["binaries"]["completeness"] == 1.0
    assert r["binaries"]["contamination"] == 0.5
    cat.loc[2, "qflag_chi2"], cat.loc[0, "qflag_chi2"] = 1, 0
    bad = recovery_of_injected(cat, meta)["bad_spectra"]
    assert bad["flagged_binaries"] == 1 and bad["completeness_by_kind"] == {"blend": 1.0, "rv": 0.0}


def test_markdown_table():
    md = markdown_table(pd.DataFrame({"a": [1.23456]}, index=["x"]))
    assert md.splitlines() == ["|  | a |", "| --- | --- |", "| x | 1.235 |"]
    md = markdown_table(pd.DataFrame({"a": [0.5], "n": [12]}, index=["x"]))
    assert md.splitlines()[-1] == "| x | 0.500 | 12 |"


def _binary_catalogue(logg_noise: float, n=4000, seed=5):
    """Dwarfs at 100-800 pc with 0.02 mas parallaxes; 10% binaries 0.5-0.75 mag too bright; the
    catalogue's logg carries ``logg_noise`` dex of error."""
    rng = np.random.default_rng(seed)
    teff, logg, feh = rng.uniform(5600, 6900, n), rng.uniform(3.8, 4.6, n), rng.uniform(-1, 0.3, n)
    abs_g = 4.7 - 2.5 * (4 * np.log10(teff / 5772) - (logg - 4.44))
    dist_pc = rng.uniform(100, 800, n)
    binary = rng.random(n) < 0.1
    dmag = np.where(binary, rng.uniform(0.5, 0.75, n), 0.0)
    cat = pd.DataFrame({"specid": np.arange(n), "teff": teff,
                        "logg": logg + rng.normal(0, logg_noise, n), "feh": feh,
                        "phot_g_mean_mag": abs_g + 5 * np.log10(dist_pc / 10) - dmag,
                        "a_g": np.zeros(n), "parallax": 1000 / dist_pc + rng.normal(0, 0.02, n),
                        "parallax_error": np.full(n, 0.02), "qflag_chi2": 0, "fit_status": 0})
    from ddpayne_core.flags import binary_flag

    cat["snr_dparallax"], cat["qflag_singlestar"] = binary_flag(
        cat["teff"], cat["logg"], cat["feh"], cat["phot_g_mean_mag"], cat["a_g"],
        cat["parallax"], cat["parallax_error"])
    meta = pd.DataFrame({"specid": np.arange(n), "injected_bad": False, "is_binary": binary,
                         "binary_dmag": dmag})
    return cat, meta


def test_binary_detectability_follows_label_precision():
    # Exact labels: a 0.5-0.75 mag excess is a 26-41% parallax offset, far above 3 sigma.
    exact = recovery_of_injected(*_binary_catalogue(0.0))["binaries"]["detectability"]
    assert exact["expected_above_cut_fraction"] > 0.95
    assert exact["completeness_expected_above_cut"] > 0.9
    # logg to 0.3 dex: the absolute-magnitude model's scatter (~0.75 mag) hides the excess.
    noisy = recovery_of_injected(*_binary_catalogue(0.3))["binaries"]["detectability"]
    assert noisy["expected_above_cut_fraction"] < 0.1
    assert noisy["expected_snr_dparallax_median"] < exact["expected_snr_dparallax_median"] / 3
    by_dmag = list(noisy["completeness_by_dmag"].values())
    assert len(by_dmag) == 3 and by_dmag[0] <= by_dmag[2]   # brighter companions are found more


def test_binary_detectability_with_one_companion_brightness():
    cat, meta = _binary_catalogue(0.0)
    meta["binary_dmag"] = np.where(meta["is_binary"], 0.6, 0.0)
    det = recovery_of_injected(cat, meta)["binaries"]["detectability"]
    assert list(det["completeness_by_dmag"]) == ["0.60-0.60 mag"]


def test_flag_information_tells_measured_from_inferred_labels():
    """[Mg/Fe] is measured (fit = truth + noise); [Cu/Fe] follows true [Mg/Fe], with which it
    correlates, but not its own variation. Its plain slope on its truth is large, its partial
    slope 0; a star outside the coverage or a binary never enters."""
    rng = np.random.default_rng(1)
    n = 4000
    mg = rng.normal(0.1, 0.1, n)
    cu = 0.8 * mg + rng.normal(0, 0.05, n)
    truth = pd.DataFrame({"specid": np.arange(n), "teff": rng.uniform(5000, 6000, n),
                          "logg": rng.uniform(4.0, 4.6, n), "feh": rng.uniform(-0.8, 0.3, n),
                          "mg_fe": mg, "cu_fe": cu, "is_binary": np.arange(n) < 10,
                          "injected_bad": np.zeros(n, bool)})
    cat = truth[["specid", "teff", "logg", "feh"]].copy()
    cat["mg_fe"] = mg + rng.normal(0, 0.02, n)
    cat["cu_fe"] = 0.8 * mg + rng.normal(0, 0.01, n)
    cat["snr"], cat["fit_status"] = 100.0, 0
    for lab in ("teff", "logg", "feh", "mg_fe"):
        cat[f"{lab}_flag"] = 1
    cat["cu_fe_flag"] = 0
    cat.loc[n - 1, "teff"] = 8000.0  # outside the training coverage
    info = flag_information(cat, truth, ["teff", "logg", "feh", "mg_fe", "cu_fe"])
    assert np.polyfit(cu, cat["cu_fe"], 1)[0] > 0.5
    assert abs(info["cu_fe"]["partial_slope_flag0"]) < 0.05
    assert info["mg_fe"]["partial_slope_flag1"] == __import__("pytest").approx(1.0, abs=0.03)
    assert info["mg_fe"]["n_flag1"] == n - 11 and info["mg_fe"]["partial_slope_flag0"] is None
