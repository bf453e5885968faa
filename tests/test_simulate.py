"""The synthetic survey's instruments for precision experiments: new visits at a chosen S/N
and the Cramer-Rao bound of the survey's own forward model."""
from dataclasses import replace

import numpy as np
import pytest

from ddpayne_core.io import open_store
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import SurveyConfig, reobserve, survey_crb


@pytest.fixture(scope="module")
def stars(tiny_store):
    meta = open_store(tiny_store).meta()
    return meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]].head(40)


def test_reobserve_makes_fresh_visits_at_the_requested_snr(stars, truth_path):
    cfg = replace(SurveyConfig(), effects=())
    at_rest = stars.assign(rv_true=0.0)  # no resampling to a velocity: pixels stay independent
    flux, ivar, visits = reobserve(at_rest, truth_path, cfg, snr=60.0, n_visits=2, seed=1)
    assert flux.shape == ivar.shape == (80, flux.shape[1])
    assert (visits["snr"] == 60.0).all() and visits["visit"].tolist()[:4] == [0, 1, 0, 1]
    assert np.array_equal(visits["star_id"].to_numpy()[::2], stars["star_id"].to_numpy())
    # Continuum pixels (the brightest tenth of each spectrum) carry S/N 60.
    snr = flux * np.sqrt(ivar)
    assert np.median(np.percentile(snr, 95, axis=1)) == pytest.approx(60.0, rel=0.1)
    # The two visits of a star differ by noise alone: unit scatter of the normalized difference.
    a, b = flux[0::2], flux[1::2]
    z = (a - b) / np.sqrt(1 / ivar[0::2] + 1 / ivar[1::2])
    assert np.std(z[np.isfinite(z)]) == pytest.approx(1.0, abs=0.05)
    again, _, _ = reobserve(at_rest, truth_path, cfg, snr=60.0, n_visits=2, seed=1)
    np.testing.assert_array_equal(again, flux)


def test_survey_crb_scales_as_one_over_snr_and_grows_with_the_lsf(stars, truth_path):
    truth = EmulatorModel.load(truth_path)
    fitted = [lab for lab in truth.labels if lab != "cu_fe"]
    visits = stars.assign(snr=50.0, lsf_extra_pix=0.0)
    crb = survey_crb(truth, visits, ("cu_fe",), fitted)
    assert crb.shape == (len(stars), len(fitted)) and np.all(crb > 0)
    np.testing.assert_allclose(survey_crb(truth, visits.assign(snr=100.0), ("cu_fe",), fitted),
                               crb / 2, rtol=1e-4)
    # A broader line-spread function blurs the lines: less information, a larger bound.
    blurred = survey_crb(truth, visits.assign(lsf_extra_pix=0.8), ("cu_fe",), fitted)
    assert np.all(np.median(blurred, axis=0) > np.median(crb, axis=0))
    # Not knowing the LSF width costs information: never a smaller bound, larger for some label.
    free = survey_crb(truth, visits, ("cu_fe",), fitted, lsf_free=True)
    assert np.all(free >= crb * (1 - 1e-9)) and np.any(free > crb * 1.05)


def test_a_larger_overlap_only_adds_labelled_stars():
    """``apogee_fraction`` draws which stars carry APOGEE-like labels and nothing else: a larger
    overlap keeps every star, visit and label of the smaller one (the training-set-size study
    relies on it) and labels more stars."""
    from ddpayne_core.simulate import build_meta

    labels = ("teff", "logg", "vmic", "feh", "mg_fe", "cu_fe")
    small = build_meta(replace(SurveyConfig(), n_stars=500), labels)
    large = build_meta(replace(SurveyConfig(), n_stars=500, apogee_fraction=0.7), labels)
    apogee = [c for c in small.columns if c.startswith("apogee_")]
    other = [c for c in small.columns if c not in apogee]
    assert apogee and small[other].equals(large[other])
    had = small["apogee_teff"].notna()
    assert large.loc[had, apogee].equals(small.loc[had, apogee])
    assert large["apogee_teff"].notna().sum() > 1.6 * had.sum()


def test_shifted_populations_break_the_training_sets_correlations():
    """The population-shift study's populations: "independent" keeps Teff, logg, [Fe/H] and
    draws every [X/Fe] uniformly and uncorrelated; "accreted" is metal-poor and low-alpha."""
    from ddpayne_core.simulate import SurveyConfig, build_meta, shifted_population

    labels = ("teff", "logg", "vmic", "feh", "mg_fe", "si_fe", "ni_fe", "al_fe")
    stars = build_meta(SurveyConfig(n_stars=3000), labels)
    stars = stars[stars["visit"] == 0]
    rng = np.random.default_rng(0)
    ind = shifted_population("independent", stars, labels, rng)
    np.testing.assert_array_equal(ind["teff"], stars["teff"])
    assert ind[["mg_fe", "si_fe", "ni_fe", "al_fe"]].abs().max().max() <= 0.3
    assert abs(np.corrcoef(ind["mg_fe"], ind["si_fe"])[0, 1]) < 0.1            # alpha elements
    assert abs(np.corrcoef(stars["mg_fe"], stars["si_fe"])[0, 1]) > 0.5        # were correlated
    assert abs(np.corrcoef(ind["mg_fe"], ind["feh"])[0, 1]) < 0.1
    acc = shifted_population("accreted", stars, labels, rng)
    assert acc["feh"].between(-2.2, -0.7).all() and abs(acc["mg_fe"].median() - 0.05) < 0.02
    assert acc["al_fe"].median() < -0.15 and (acc["population"] == "accreted").all()
    with pytest.raises(ValueError, match="'thin'.*independent"):
        shifted_population("thin", stars, labels, rng)


def test_shift_failures_name_flagged_labels_that_do_not_follow_their_truth():
    from ddpayne_core.validation.studies import shift_failures

    def row(flag1_fraction, slope, bias):
        return {"flag1_fraction": flag1_fraction, "flag1": {"slope": slope, "bias": bias, "scatter": 0.05}}

    shift = {"populations": {
        "independent": {"mg_fe": row(0.95, 0.95, 0.0), "ti_fe": row(0.95, 0.5, 0.0),
                        "ni_fe": row(0.5, 0.3, 0.0), "teff": row(1.0, 0.5, 10.0)},
        "accreted": {"teff": row(1.0, 1.0, 150.0), "feh": row(1.0, 1.0, 0.05),
                     "al_fe": row(0.95, 0.6, -0.12), "mn_fe": row(0.6, 0.2, -0.3)}}}
    # ni_fe, mn_fe: the flag dropped (honest); teff in "independent": kept from the survey.
    assert shift_failures(shift) == {"independent": ["ti_fe"], "accreted": ["teff", "al_fe"]}
