"""The validation report's numbers on hand-made catalogues with known answers."""
import numpy as np
import pandas as pd

from ddpayne_core.report import markdown_table, precision_vs_snr, recovery_of_injected, validation_table


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
                         "is_binary": [False, False, True, False, True]})
    r = recovery_of_injected(cat, meta)
    assert r["bad_spectra"] == {"n_true": 2, "n_flagged": 3, "completeness": 1.0,
                                "contamination": 1 / 3}
    # Binaries among good spectra with a defined flag: rows 1 (single, flagged) and 2 (binary,
    # flagged); row 4 is undefined, rows 0 and 3 are bad spectra.
    assert r["binaries"]["n_true"] == 1 and r["binaries"]["completeness"] == 1.0
    assert r["binaries"]["contamination"] == 0.5


def test_markdown_table():
    md = markdown_table(pd.DataFrame({"a": [1.23456]}, index=["x"]))
    assert md.splitlines() == ["|  | a |", "| --- | --- |", "| x | 1.235 |"]
