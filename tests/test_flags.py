"""Every threshold of docs/spec.md sec. 8 pinned with small hand-made cases."""
import numpy as np
import pytest

from ddpayne_core.flags import XFlagConfig, chi2ratio, nearest_reference, qflag_chi2, x_flag


def test_nearest_reference_uses_x19_metric():
    # 100 K in Teff weighs as 0.2 in logg and 0.1 dex in [Fe/H].
    ref_teff, ref_logg, ref_feh = np.array([5000, 5300.0]), np.array([4.0, 4.0]), np.array([0.0, 0.0])
    assert nearest_reference([5140.0], [4.0], [0.0], ref_teff, ref_logg, ref_feh)[0] == 0
    assert nearest_reference([5160.0], [4.0], [0.0], ref_teff, ref_logg, ref_feh)[0] == 1
    # 0.15 dex of [Fe/H] (D = 1.5) outweighs 120 K (D = 1.2).
    idx = nearest_reference([5000.0], [4.0], [0.15], np.array([5000, 5120.0]), np.array([4.0, 4.0]),
                            np.array([0.3, 0.15]))
    assert idx[0] == 1


def test_xflag_bin_median_cutoff_and_snr_limit():
    n = 9
    teff, logg, feh = np.full(n, 5100.0), np.full(n, 4.5), np.full(n, -0.1)
    snr = np.array([50, 50, 50, 50, 50, 10, 10, 10, 10.0])
    g = np.array([0.6, 0.6, 0.7, 0.4, 0.55, 0.0, 0.0, 0.0, 0.0])
    # median of the S/N > 30 stars = 0.6 > 0.5: every star of the bin passes, low S/N included.
    assert x_flag(g, teff, logg, feh, snr).tolist() == [1] * n
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(cutoff=0.6)).tolist() == [0] * n
    # Without the S/N limit the median is 0.0: the bin fails.
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(snr_min=0)).sum() == 0


def test_xflag_needs_the_label_median_response():
    n = 6
    teff, logg, feh, snr = np.full(n, 5100.0), np.full(n, 4.5), np.full(n, -0.1), np.full(n, 50.0)
    g = np.full(n, 0.9)
    response = np.array([0.9, 0.9, 0.9, 0.3, 0.3, np.nan])   # median 0.9 (NaN left out)
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(), response).tolist() == [1] * n
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(response_min=0.95), response).sum() == 0
    # Without a response (Teff, logg, vmic, [Fe/H]) only gradcorr decides: X19's flag.
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(response_min=0.95)).tolist() == [1] * n
    # Stars below the S/N limit do not enter the label's median.
    low = np.array([0.9, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert x_flag(g, teff, logg, feh, np.array([50, 10, 10, 10, 10, 10.0]), XFlagConfig(), low).sum() == n
    assert x_flag(g, teff, logg, feh, snr, XFlagConfig(), low).sum() == 0
    with pytest.raises(ValueError, match="response_min"):
        XFlagConfig(response_min=-0.1)


def test_response_is_one_for_the_physics_and_the_fraction_a_model_keeps(truth_model):
    """X_response = d fitted / d true: 1 where the emulator's gradients are the ab initio ones,
    half as much where the ab initio change is half what the emulator reads."""
    from dataclasses import replace

    from conftest import TEST_LABELS, reference_from

    from ddpayne_core.flags import label_response, response_reference

    ref = reference_from(truth_model)
    assert response_reference(truth_model, ref) is ref     # other physics: measured on its own stars
    at_ref = ref.reference_labels() + 0.01 * ref.steps()
    r = label_response(truth_model, at_ref, ref)
    assert r.shape == (len(at_ref), len(TEST_LABELS))
    mg, ca = TEST_LABELS.index("mg_fe"), TEST_LABELS.index("ca_fe")
    # (not exactly 1: the reference spectra are normalized after the step, the emulator is not)
    np.testing.assert_allclose(r[:, [0, 3, mg, ca]], 1.0, atol=0.15)
    # Half the ab initio Mg signal: the fit would return half of a true [Mg/Fe] change.
    half = replace(ref, dflux=ref.dflux.copy())
    half.dflux[:, mg] *= 0.5
    r_half = label_response(truth_model, at_ref, half)
    np.testing.assert_allclose(r_half[:, mg], 0.5 * r[:, mg], rtol=1e-6)
    np.testing.assert_allclose(r_half[:, ca], r[:, ca], atol=1e-6)
    bad = at_ref.copy()
    bad[0, 0] = np.nan
    assert np.all(np.isnan(label_response(truth_model, bad, ref)[0]))


def test_response_grid_leaves_out_the_prior_grid():
    from types import SimpleNamespace

    from ddpayne_core.flags import response_grid, response_reference
    from ddpayne_core.theory.gradients import load_reference_gradients

    assert response_grid("lamost", "lamost-table1-galactic") == "lamost-isochrone+lamost-table1"
    assert response_grid("desi", "desi-isochrone") == "desi-isochrone"
    lamost = SimpleNamespace(config={"instrument": "lamost"})
    held_out = response_reference(lamost, load_reference_gradients("lamost-table1-galactic"))
    assert held_out.name == "lamost-isochrone+lamost-table1"
    # grids of separate runs agree to rounding only (~1e-12 A): they still join
    assert response_reference(lamost, load_reference_gradients("lamost-table1")).dflux.shape[0] == 36


def test_xflag_dwarfs_and_giants_apart_and_out_of_range_stars():
    teff = np.array([5100.0, 5100.0, 7600.0, 4400.0, 4400.0])
    logg = np.array([4.5, 2.5, 4.0, 4.6, 2.0])
    feh = np.zeros(5)
    g = np.array([0.9, 0.1, 0.9, 0.9, 0.9])
    flags = x_flag(g, teff, logg, feh, np.full(5, 100.0))
    # dwarf passes, giant of the same Teff/[Fe/H] fails; Teff > 7500 K and cool dwarfs are 0;
    # a cool giant is allowed.
    assert flags.tolist() == [1, 0, 0, 0, 1]


def test_xflag_handles_nan_on_millions_of_rows():
    rng = np.random.default_rng(0)
    n = 2_000_000
    g = rng.uniform(-1, 1, n)
    g[:10] = np.nan
    args = (rng.uniform(4000, 7000, n), rng.uniform(1, 5, n), rng.uniform(-2.5, 0.5, n),
            rng.uniform(5, 300, n))
    flags = x_flag(g, *args)
    assert flags[:10].sum() == 0 and set(np.unique(flags)) <= {0, 1}


def test_qflag_chi2_tiers():
    snr = np.array([100, 100, 250, 250, 350, 350, 450, 450, 600, 600.0])
    ratio = np.array([4.9, 5.1, 7.4, 7.6, 9.9, 10.1, 12.4, 12.6, 14.9, 15.1])
    assert qflag_chi2(ratio, snr).tolist() == [0, 1] * 5
    assert qflag_chi2([np.nan], [100.0]).tolist() == [1]


def test_chi2ratio_finds_outliers_against_snr_trend():
    rng = np.random.default_rng(1)
    n = 3000
    snr = rng.uniform(10, 400, n)
    teff, feh = rng.uniform(4600, 7400, n), rng.uniform(-1.5, 0.4, n)
    logg = np.where(rng.random(n) < 0.5, 4.3, 2.5)
    typical = 3900 * (1 + (snr / 100) ** 1.5)          # chi^2 grows with S/N (unmodelled noise)
    chi2 = typical + rng.normal(0, 1, n) * 0.05 * typical
    chi2[:20] *= 3                                       # bad fits
    r = chi2ratio(chi2, snr, teff, logg, feh)
    assert np.all(r[:20] > 5) and np.mean(np.abs(r[20:]) < 3) > 0.97


def test_chi2ratio_centred_at_high_snr_where_chi2_rises_steeply():
    """As in a survey: log-normal S/N (few stars above 300) and chi^2 = n_pix (1 + (S/N eps)^2),
    the model's systematic error eps growing with S/N^2 in chi^2. Typical stars must stay
    typical at every S/N, not only where most stars are."""
    rng = np.random.default_rng(2)
    n = 20000
    snr = np.clip(np.exp(rng.normal(np.log(50), 0.75, n)), 6, 900)
    teff, feh = rng.uniform(4600, 7400, n), rng.uniform(-1.5, 0.4, n)
    logg = np.where(rng.random(n) < 0.5, 4.3, 2.5)
    chi2 = 3000 * (1 + (snr / 60) ** 2) * np.exp(rng.normal(0, 0.1, n))
    r = chi2ratio(chi2, snr, teff, logg, feh)
    high = snr > 300
    assert high.sum() > 100
    assert abs(np.median(r[high])) < 1 and np.mean(qflag_chi2(r[high], snr[high])) < 0.02
    assert abs(np.median(r[~high])) < 0.5


def test_chi2ratio_holds_the_dwarf_model_at_its_edge_beyond_its_teff_range():
    """Real A stars (8000-10000 K) lie beyond the 4500-7500 K the dwarfs' chi^2 model is fitted
    on. Where chi^2 falls toward 7500 K, the cubic extrapolated to 10000 K falls much further and
    would call typical A-star fits bad; they are compared with the model at 7500 K instead, and a
    truly bad A-star fit is still flagged."""
    rng = np.random.default_rng(4)
    n = 4000
    snr = rng.uniform(20, 300, n)
    teff, feh = rng.uniform(4600, 7400, n), rng.uniform(-1.0, 0.4, n)
    logg = np.full(n, 4.3)
    typical = lambda t, s: 3000 * (1 + (s / 100) ** 2) * np.exp(-((t - 4500) / 1500) ** 2)
    chi2 = typical(teff, snr) * np.exp(rng.normal(0, 0.1, n))
    hot = rng.uniform(8000, 10000, 200)
    hot_snr = rng.uniform(20, 300, 200)
    hot_chi2 = typical(7500, hot_snr) * np.exp(rng.normal(0, 0.1, 200))
    hot_chi2[:10] *= 5                                   # bad fits
    r = chi2ratio(np.r_[chi2, hot_chi2], np.r_[snr, hot_snr], np.r_[teff, hot],
                  np.r_[logg, np.full(200, 4.0)], np.r_[feh, np.zeros(200)])
    q = qflag_chi2(r, np.r_[snr, hot_snr])
    assert np.mean(q[n + 10:]) < 0.05 and np.all(q[n:n + 10] == 1)
    assert np.mean(q[:n]) < 0.02


def test_gradcorr_high_for_physical_model_low_for_scrambled(truth_model):
    from conftest import TEST_LABELS, reference_from

    from ddpayne_core.flags import gradcorr

    ref = reference_from(truth_model)
    at_ref = ref.reference_labels() + 0.01 * ref.steps()
    g = gradcorr(truth_model, at_ref, ref)
    assert g.shape == (len(at_ref), len(TEST_LABELS))
    assert np.all(g[:, [0, 3, 4]] > 0.9)          # Teff, [Fe/H], [Mg/Fe]
    # Another 'emulator' whose pixels are shuffled keeps its flux statistics but not the physics.
    import copy

    import torch
    scrambled = copy.deepcopy(truth_model)
    perm = torch.as_tensor(np.random.default_rng(0).permutation(truth_model.net.n_pix))
    with torch.no_grad():
        for p in scrambled.net.parameters():
            p.copy_(p[perm])
    assert np.all(np.abs(gradcorr(scrambled, at_ref, ref)[:, [0, 3, 4]]) < 0.3)
    bad = at_ref.copy()
    bad[0, 0] = np.nan
    assert np.all(np.isnan(gradcorr(truth_model, bad, ref)[0]))
    # A reference stepped in some labels only (as lamost-isochrone) serves those labels alone.
    some = [TEST_LABELS[k] for k in (0, 1, 3, 4)]
    part = gradcorr(truth_model, at_ref, ref.select_labels(some), which=some)
    np.testing.assert_allclose(part, g[:, [0, 1, 3, 4]], rtol=1e-6)
    with pytest.raises(ValueError):
        gradcorr(truth_model, at_ref, ref.select_labels(some))


def test_binary_flag_finds_overluminous_stars_and_respects_undefined_region():
    from ddpayne_core.flags import binary_flag

    rng = np.random.default_rng(3)
    n = 4000
    teff, logg, feh = rng.uniform(5600, 6900, n), rng.uniform(3.8, 4.6, n), rng.uniform(-1, 0.3, n)
    abs_g = 4.7 - 2.5 * (4 * np.log10(teff / 5772) - (logg - 4.44))
    dist_pc = rng.uniform(100, 800, n)
    binary = rng.random(n) < 0.1
    app = abs_g + 5 * np.log10(dist_pc / 10) - 0.75 * binary      # equal-mass twin: 0.75 mag
    plx_err = np.full(n, 0.02)
    plx = 1000 / dist_pc + rng.normal(0, 1, n) * plx_err
    snr_dp, single = binary_flag(teff, logg, feh, app, np.zeros(n), plx, plx_err)
    assert np.mean(single[binary] == 0) > 0.9       # completeness
    assert np.mean(single[~binary] == 0) < 0.02     # contamination
    t2 = teff.copy()
    t2[:3] = [5000, 7200, 5000]
    l2 = logg.copy()
    l2[:3] = [3.0, 4.0, 4.5]
    _, s2 = binary_flag(t2, l2, feh, app, np.zeros(n), plx, plx_err)
    assert s2[:2].tolist() == [-1, -1] and s2[2] in (0, 1)


def test_repeat_precision_pairs_rules():
    from ddpayne_core.flags import repeat_precision

    star = np.array([1, 1, 1, 2, 2, 3, 3])
    mjd = np.array([100, 100.2, 130, 200, 260, 300, 310])
    snr = np.array([50, 52, 53, 40, 60, 20, 22])
    vals = np.array([0.0, 0.1, 0.2, 0.0, 0.5, 1.0, 1.3])
    psnr, disp = repeat_precision(star, mjd, snr, vals)
    # star 1: visits on night 100 are the same night (no pair); 100.2 -> 130 pairs (dS/N 1);
    # star 2: dS/N 20 (no pair); star 3: pairs.
    np.testing.assert_allclose(psnr, [52.5, 21.0])
    np.testing.assert_allclose(disp[:, 0], [0.1 / np.sqrt(2), 0.3 / np.sqrt(2)])


def test_error_scale_model_recovers_snr_dependent_underestimate():
    from ddpayne_core.flags import error_scale_model

    rng = np.random.default_rng(5)
    m = 20000
    snr = rng.uniform(20, 300, m)
    teff, feh = rng.uniform(4800, 6500, m), rng.uniform(-1, 0.3, m)
    formal = 1.0 / snr
    true_scale = 1.2 + 2.8 * (snr - 20) / 280             # X19: ~1.2 at S/N 20, ~4 at S/N 200+
    disp = np.abs(rng.normal(0, 1, m)) * formal * true_scale   # |N(0, s)| = |v1 - v2| / sqrt 2
    scale = error_scale_model(snr, teff, feh, disp, formal)
    for s in (30.0, 100.0, 250.0):
        expected = 1.2 + 2.8 * (s - 20) / 280
        assert abs(scale(np.array([s]), np.array([5500.0]), np.array([0.0]))[0] / expected - 1) < 0.1


def test_calibrate_errors_scales_to_repeat_scatter_per_group():
    """Dwarfs whose repeats scatter 3x their formal errors get errors 3x larger; giants with
    too few pairs keep the formal ones; a second call starts again from the formal errors."""
    import pandas as pd

    from ddpayne_core.flags import calibrate_errors

    rng = np.random.default_rng(3)
    n_dwarf, n_giant = 3000, 20                 # stars, two visits each on different nights
    n = n_dwarf + n_giant
    snr = np.repeat(rng.uniform(20, 200, n), 2) + np.tile([0.0, 1.0], n)
    formal = 1.0 / snr
    true = np.repeat(rng.normal(0, 0.2, n), 2)
    value = true + rng.normal(0, 1, 2 * n) * 3.0 * formal
    giant = np.repeat(np.arange(n) >= n_dwarf, 2)
    table = pd.DataFrame({"star_id": np.repeat(np.arange(n), 2), "mjd": np.tile([100.0, 200.0], n),
                          "snr": snr, "teff": np.repeat(rng.uniform(4800, 6500, n), 2),
                          "logg": np.where(giant, 2.5, 4.4), "feh": np.repeat(rng.uniform(-1, 0.3, n), 2),
                          "mg_fe": value, "mg_fe_err": formal})
    report = calibrate_errors(table, ["mg_fe"])
    assert report["mg_fe"]["dwarfs"] == n_dwarf and report["mg_fe"]["giants"] == n_giant
    ratio = table["mg_fe_err"] / table["mg_fe_err_formal"]
    assert abs(np.median(ratio[~giant]) / 3.0 - 1) < 0.1
    assert np.all(ratio[giant] == 1.0)
    again = table.copy()
    calibrate_errors(again, ["mg_fe"])
    np.testing.assert_allclose(again["mg_fe_err"], table["mg_fe_err"])


def test_model_reference_is_the_grid_the_model_was_trained_with(truth_model):
    """X_gradcorr compares with the reference stars that regularized the model (X19 Table 1's
    when the model does not say)."""
    from dataclasses import replace

    from ddpayne_core.flags import model_reference

    named = replace(truth_model, config={**truth_model.config, "reference": "lamost-table1-truth"})
    unnamed = replace(truth_model, config={k: v for k, v in truth_model.config.items()
                                           if k != "reference"})
    assert model_reference(named).name == "lamost-table1-truth"
    assert model_reference(unnamed).name == "lamost-table1"


def test_chi2ratio_flags_bad_fits_crowded_where_good_stars_are_few():
    """Wrong-RV spectra are fitted at the lowest [Fe/H], where good stars hardly are: a cubic in
    (S/N, Teff, [Fe/H]) fitted with them bends to pass them as typical unless they are cleaned
    out first."""
    rng = np.random.default_rng(3)
    n, n_bad = 4000, 60
    snr = np.clip(np.exp(rng.normal(np.log(50), 0.6, n)), 8, 400)
    teff = rng.uniform(4600, 7400, n)
    feh = np.concatenate([rng.uniform(-2.5, -2.2, n_bad), rng.uniform(-1.5, 0.4, n - n_bad)])
    logg = np.where(rng.random(n) < 0.5, 4.3, 2.5)
    chi2 = 3000 * (1 + (snr / 60) ** 2) * np.exp(rng.normal(0, 0.1, n))
    chi2[:n_bad] *= np.exp(rng.uniform(1.5, 3.5, n_bad))  # 4.5-33 times the typical chi^2
    flagged = qflag_chi2(chi2ratio(chi2, snr, teff, logg, feh), snr).astype(bool)
    assert flagged[:n_bad].mean() > 0.95
    assert flagged[n_bad:].mean() < 0.01


def test_out_of_coverage_marks_fits_far_from_every_training_star():
    import pandas as pd

    from ddpayne_core.flags import add_coverage
    from ddpayne_core.labels import Scaler
    from ddpayne_core.model import Emulator, EmulatorModel

    rng = np.random.default_rng(0)
    # Training stars on a thin main-sequence-like strip in (Teff, logg).
    teff = rng.uniform(5000, 7000, 500)
    train = np.column_stack([teff, 4.5 - (teff - 5000) / 2000 * 0.5 + rng.normal(0, 0.03, 500)])
    model = EmulatorModel(Emulator(2, 10, 4), ("teff", "logg"), Scaler.fit(train),
                          np.linspace(4000, 5000, 10), np.ones(10, bool), training_labels=train)
    fits = pd.DataFrame({"teff": [6000.0, 6000.0, 5200.0, np.nan], "logg": [4.25, 2.5, 4.45, 4.0]})
    add_coverage(fits, model)
    # On the strip: covered; a giant at the same Teff (inside the label *ranges*): not; a failed
    # fit: not.
    assert fits["out_of_coverage"].tolist() == [False, True, False, True]
    # About 1 % of the training stars themselves are beyond the cut (COVERAGE_QUANTILE).
    own = add_coverage(pd.DataFrame(train, columns=["teff", "logg"]), model)
    assert 0.0 < own["out_of_coverage"].mean() < 0.03
    # A model without training labels adds nothing.
    model.training_labels = None
    assert "out_of_coverage" not in add_coverage(pd.DataFrame({"teff": [6000.0], "logg": [4.0]}), model)
