"""End to end on a small synthetic world: simulate -> training set -> train -> fit -> catalogue."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GALAH_TEST_LABELS, TEST_LABELS, make_truth, reference_from

from ddpayne_core.catalog import read_catalog_metadata, write_catalog
from ddpayne_core.fit import FitConfig, fit_store
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.model import (
    EmulatorModel,
    GradientPrior,
    TrainConfig,
    TrainingCancelled,
    TrainingSetConfig,
    select_training,
    train_emulator,
)
from ddpayne_core.preprocess import instrument_mask, preprocess_batch

QUIET = dict(log=lambda *a: None)
EPOCHS = 60


@pytest.fixture(scope="module")
def training_data(tiny_store):
    store = open_store(tiny_store)
    meta = store.meta()
    rows, labels, names = select_training(meta, TrainingSetConfig(label_set=TEST_LABELS, min_snr=30))
    flux, ivar = store.read_rows(rows)
    inst = get_instrument("lamost")
    norm, niv = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
    return norm, niv, labels, names, inst


def test_synthetic_survey_has_what_the_method_needs(tiny_store):
    store = open_store(tiny_store)
    meta = store.meta()
    assert store.info["synthetic"] and meta["synthetic"].all()
    assert meta.groupby("star_id").size().max() >= 2           # repeat visits
    assert meta["is_binary"].any() and meta["injected_bad"].any()
    assert meta["apogee_teff"].notna().any() and meta["apogee_teff"].isna().any()
    # High-resolution labels carry their own noise and offset relative to the truth.
    d = (meta["apogee_teff"] - meta["teff"]).dropna()
    assert 10 < d.mean() < 40 and 40 < d.std() < 80
    # Thick-disc stars are alpha-rich relative to thin-disc stars at the same metallicity.
    mid = meta[(meta["feh"] > -0.8) & (meta["feh"] < -0.3)]
    assert (mid.loc[mid.population == "thick", "mg_fe"].median()
            > mid.loc[mid.population == "thin", "mg_fe"].median() + 0.1)
    # The featureless label correlates with [Mg/Fe] (an astrophysical correlation only).
    assert np.corrcoef(meta["cu_fe"], meta["mg_fe"])[0, 1] > 0.7
    flux, ivar = store.read(0, 50)
    assert flux.shape == (50, get_instrument("lamost").wave.size) and np.all(np.isfinite(flux))


def test_training_set_cuts(tiny_store):
    meta = open_store(tiny_store).meta()
    rows, labels, _ = select_training(meta, TrainingSetConfig(label_set=TEST_LABELS, min_snr=30))
    chosen = meta.loc[rows]
    assert (chosen["snr"] >= 30).all() and not chosen["is_binary"].any()
    assert not chosen["injected_bad"].any() and chosen["star_id"].is_unique
    mp_rows, mp_labels, _ = select_training(
        meta, TrainingSetConfig(label_set=TEST_LABELS, min_snr=30, metal_poor=True))
    assert (mp_labels[:, TEST_LABELS.index("feh")] < -0.5).all() and len(mp_rows) < len(rows)
    with pytest.raises(ValueError, match="galah_vmic"):
        select_training(meta, TrainingSetConfig(survey="galah", label_set=TEST_LABELS))


def _train(data, truth_model, regularize, epochs=EPOCHS, batch_size=64, optimizer="adam", **kw):
    norm, niv, labels, names, inst = data
    cfg = replace(TrainConfig(), epochs=epochs, batch_size=batch_size, n_hidden=6,
                  regularize=regularize, patience=100, optimizer=optimizer, lm_patience=epochs)
    return train_emulator(norm, niv, labels, names, inst.wave, instrument_mask(inst.wave), cfg,
                          reference_from(truth_model), **QUIET, **kw)


def _gradcorr(model, reference, label):
    prior = GradientPrior.build(reference.reference_labels(), reference.steps(), reference.dflux,
                                model.scaler, np.ones(len(model.labels)), np.ones(model.net.n_pix))
    emu = prior.emulator_dflux(model.net).numpy()
    k = model.labels.index(label)
    use = model.mask
    return np.mean([np.corrcoef(emu[j, k, use], reference.dflux[j, k, use])[0, 1]
                    for j in range(emu.shape[0])])


@pytest.mark.parametrize("optimizer", ["adam", "lm"])
def test_regularization_makes_gradients_physical(training_data, truth_model, optimizer):
    """With the prior, the emulator's [Cu/Fe] gradient (no signature in the data) follows the
    ab initio one; without it, it is whatever the astrophysical correlation made it. With
    either optimizer (Levenberg-Marquardt: the same number of iterations as Adam's epochs)."""
    reg = _train(training_data, truth_model, True, optimizer=optimizer)
    free = _train(training_data, truth_model, False, optimizer=optimizer)
    ref = reference_from(truth_model)
    h = reg.history
    assert len(h["train_prior"]) == EPOCHS and all(v > 0 for v in h["train_prior"])
    assert h["train_prior"][-1] + h["train_chi2"][-1] < h["train_prior"][0] + h["train_chi2"][0]
    assert _gradcorr(reg, ref, "cu_fe") > _gradcorr(free, ref, "cu_fe") + 0.3
    # A label with real features is learned from the data either way; the prior must not hurt it.
    assert _gradcorr(reg, ref, "mg_fe") > 0.4
    assert _gradcorr(reg, ref, "mg_fe") > _gradcorr(free, ref, "mg_fe") - 0.05


def test_training_resumes_from_checkpoint(training_data, truth_model, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    with pytest.raises(TrainingCancelled):
        _train(training_data, truth_model, True, epochs=6, checkpoint=ckpt,
               should_stop=lambda: True)
    assert ckpt.exists()
    resumed = _train(training_data, truth_model, True, epochs=6, checkpoint=ckpt)
    assert resumed.history["epoch"] == list(range(6))


def test_resume_with_a_new_epoch_budget_replans_the_decay(training_data, truth_model, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    with pytest.raises(TrainingCancelled):
        _train(training_data, truth_model, False, epochs=50, checkpoint=ckpt,
               should_stop=lambda: True)
    resumed = _train(training_data, truth_model, False, epochs=4, checkpoint=ckpt)
    assert resumed.history["epoch"] == [0, 1, 2, 3]
    # The rate after the second-last epoch's step reaches lr_end, as in a fresh 4-epoch run.
    assert resumed.history["lr"][-2] == pytest.approx(TrainConfig().lr_end, rel=1e-6)


def test_fit_store_catalogue_and_resume(tiny_store, training_data, truth_model, tmp_path):
    model = _train(training_data, truth_model, True, epochs=40, batch_size=16)
    store = open_store(tiny_store)
    out = tmp_path / "cat.parquet"
    cfg = replace(FitConfig(), n_candidates=16)
    table = fit_store(model, store, out, cfg, **QUIET)
    assert len(table) == store.n_spec and table["specid"].is_unique
    meta = store.meta()
    good = (table["fit_status"] < 2) & ~meta["injected_bad"] & (meta["snr"] > 40)
    assert good.sum() > 100
    # Labels are measured: recovery well inside the spread of the population (this short
    # training leaves the emulator far from converged; the demo measures real accuracy).
    for lab, frac in (("teff", 0.5), ("feh", 0.5), ("mg_fe", 0.75)):
        d = (table.loc[good, lab] - meta.loc[good, lab]).to_numpy()
        assert 1.4826 * np.median(np.abs(d - np.median(d))) < frac * meta[lab].std(), lab
    # Injected bad spectra stand out in chi^2.
    bad = meta["injected_bad"].to_numpy()
    assert np.median(table["redchi2"][bad]) > 3 * np.median(table["redchi2"][~bad])
    # Flags: injected broken spectra are caught by qflag_chi2; every label gets gradcorr/flag.
    from ddpayne_core.flags import add_flags
    flagged = add_flags(table.copy(), model, reference_from(truth_model))
    # (With this briefly trained emulator chi^2 scatters widely at high S/N, so the broken
    # spectra stand out in rank rather than beyond the X19 cuts; the demo measures completeness.)
    ratio = flagged["chi2ratio"].to_numpy()
    assert np.median(ratio[bad]) > np.median(ratio[~bad]) + 0.5
    assert np.mean(flagged["qflag_chi2"][~bad] == 1) < 0.2
    for lab in TEST_LABELS:
        assert flagged[f"{lab}_flag"].isin([0, 1]).all()
        assert flagged[f"{lab}_gradcorr"].between(-1, 1).mean() > 0.95
    # Resume: a lost part is refitted, the others are reused, nothing duplicated.
    parts = sorted((tmp_path / "cat.parts").glob("part-*.parquet"))
    parts[1].unlink()
    again = fit_store(model, store, out, cfg, **QUIET)
    pd.testing.assert_frame_equal(again, table)
    write_catalog(again, out, {"synthetic": True, "model": "test"})
    assert read_catalog_metadata(out)["synthetic"] is True
    assert "SYNTHETIC" in read_catalog_metadata(out)["note"]
    fits_out = tmp_path / "cat.fits"
    write_catalog(again, fits_out, {"synthetic": True})
    from astropy.table import Table
    assert len(Table.read(fits_out)) == len(again)


def test_model_file_round_trip_keeps_predictions(training_data, truth_model, tmp_path):
    model = _train(training_data, truth_model, True, epochs=2)
    back = EmulatorModel.load(model.save(tmp_path / "m.pt"))
    x = training_data[2][:5]
    np.testing.assert_allclose(back.predict(x), model.predict(x))
    assert back.history["train_chi2"] == model.history["train_chi2"]


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "data" / "theory" /
                         "lamost-table1.npz").exists(), reason="reference gradients not assembled")
def test_demo_runs_end_to_end(demo_bundle):
    import json

    tmp_path, summary = demo_bundle
    assert summary["synthetic"] and summary["n_spectra"] > 400
    assert 0 <= summary["featureless_flag0_fraction"] <= 1
    assert set(summary["featured_flag1_fraction"]) == set(TEST_LABELS) - {"cu_fe"}
    assert set(summary["error_over_crb"]) == set(TEST_LABELS) - {"cu_fe"}
    assert all(v > 0 for v in summary["error_over_crb"].values())
    # At S/N 100 the error against truth holds the visit-to-visit scatter and more; the
    # instrument effects that change between visits only add to the noise-only scatter.
    exp = summary["crb_experiment"]
    assert exp["snr"] == 100 and exp["n_stars"] > 100
    rows = pd.DataFrame(exp["labels"]).T
    assert (rows["crb"] > 0).all() and (rows["precision_noise_only"] > 0).all()
    assert (rows["crb_lsf_free"] >= rows["crb"] * (1 - 1e-6)).all()
    assert (rows["accuracy"] >= rows["precision"]).mean() > 0.8
    assert rows["precision"].median() > rows["precision_noise_only"].median()
    assert summary["error_over_crb"] == pytest.approx((rows["accuracy"] / rows["crb"]).to_dict())
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert saved["recovery"]["teff"]["n_50"] >= 0
    assert set(saved["validation"]) == set(TEST_LABELS)
    assert saved["validation"]["teff"]["self_n"] > 0
    assert isinstance(saved["precision_vs_snr"], list)
    rec = saved["injected_recovery"]
    assert rec["bad_spectra"]["n_true"] > 0 and 0 <= rec["bad_spectra"]["completeness"] <= 1
    assert rec["binaries"]["n_true"] > 0
    assert 0 <= rec["binaries"]["detectability"]["expected_above_cut_fraction"] <= 1
    # The ceiling a perfect emulator would reach, for the same labels, beside the measured one.
    ceiling = saved["featured_flag1_fraction_perfect_emulator"]
    assert set(ceiling) == set(saved["featured_flag1_fraction"])
    assert all(0 <= v <= 1 for v in ceiling.values())
    assert set(saved["flag_information"]) == set(TEST_LABELS)
    shift = saved["population_shift"]           # populations the training set lacks, fitted
    assert set(shift["populations"]) == {"independent", "accreted"}
    for rows in shift["populations"].values():
        assert set(rows) == set(TEST_LABELS) - {"cu_fe"}
        assert all(0 <= r["flag1_fraction"] <= 1 and r["n"] > 100 for r in rows.values())
    assert set(shift["flag1_but_not_following_truth"]) == set(shift["populations"])
    assert "Populations the training set lacks" in (tmp_path / "report" / "summary.md").read_text()
    assert "Does X_flag mark the labels" in (tmp_path / "report" / "summary.md").read_text()
    # ... and whether the catalogue flags the same stars: counts split the sample both ways.
    agree = saved["flag_agreement_with_perfect_emulator"]
    assert set(agree) == set(ceiling)
    for lab, a in agree.items():
        n = a["n_perfect_1"] + a["n_perfect_0"]
        assert n > 0 and a["n_perfect_1"] / n == pytest.approx(ceiling[lab])
        assert all(0 <= a[k] <= 1 for k in ("flag1_where_perfect_1", "flag1_where_perfect_0")
                   if a[f"n_perfect_{k[-1]}"] > 0)
    assert "with a perfect emulator" in (tmp_path / "report" / "summary.md").read_text()
    assert "internal precision (DESI Fig. 9)" in (tmp_path / "report" / "summary.md").read_text()
    for fig in ("validation", "precision_vs_snr", "gradcorr_maps", "label_correlations",
                "density_maps", "error_over_crb"):
        assert (tmp_path / "report" / f"{fig}.png").stat().st_size > 10_000, fig
    assert "Self- and cross-validation" in (tmp_path / "report" / "summary.md").read_text()
    # Errors are scaled to the repeat-visit scatter, never made smaller than the formal ones.
    cal = saved["error_calibration"]
    assert set(cal) == set(TEST_LABELS) and all(c["median_scale"] >= 1 for c in cal.values())
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    # The metal-poor model refits the stars the blend weighs; the blended catalogue holds them.
    blended = pd.read_parquet(tmp_path / "catalog_blended.parquet")
    w = blended["metal_poor_weight"].to_numpy()
    assert np.all((w >= 0) & (w <= 1)) and np.all(w[cat["feh"] > -0.6] == 0)
    assert (w > 0).any() and saved["metal_poor_blend"]["n_stars"] >= 0
    assert set(saved["metal_poor_blend"]["featured_flag1_fraction"]) == set(TEST_LABELS) - {"cu_fe"}
    mixed = w == 1
    mp = pd.read_parquet(tmp_path / "catalog_mp.parquet").set_index("specid")
    np.testing.assert_allclose(blended.loc[mixed, "feh"], mp.loc[blended.loc[mixed, "specid"], "feh"])
    ok = cat["teff_err_formal"].notna()
    assert ok.any() and (cat.loc[ok, "teff_err"] >= cat.loc[ok, "teff_err_formal"] - 1e-9).all()
    # The GALAH-label model fits every spectrum; the recommended catalogue takes [Mg/Fe] from it
    # and [Ca/Fe] from the APOGEE-label blend (X19 Table 4), -999 where X_flag is 0.
    galah = pd.read_parquet(tmp_path / "catalog_galah.parquet")
    assert np.array_equal(galah["specid"], cat["specid"]) and "vmic" not in galah
    assert set(saved["galah"]["recovery"]) == set(GALAH_TEST_LABELS)
    rec = pd.read_parquet(tmp_path / "catalog_recommended.parquet").set_index("specid")
    kept = rec["mg_fe_flag"] == 1
    np.testing.assert_allclose(rec.loc[kept, "mg_fe"],
                               galah.set_index("specid").loc[rec.index[kept], "mg_fe"])
    kept = rec["ca_fe_flag"] == 1
    np.testing.assert_allclose(rec.loc[kept, "ca_fe"],
                               blended.set_index("specid").loc[rec.index[kept], "ca_fe"])
    assert (rec.loc[rec["ca_fe_flag"] == 0, "ca_fe"] == -999).all()
    # A second run finds the finished demo and returns at once with the same summary.
    from ddpayne_core.demo import run_demo
    assert run_demo(tmp_path, log=lambda *a: None) == saved
    assert read_catalog_metadata(tmp_path / "catalog.parquet")["synthetic"] is True
    # The fit settings travel with the catalogue (the report's refits reuse them).
    assert read_catalog_metadata(tmp_path / "catalog.parquet")["fit_config"]["n_candidates"] == 8


def test_report_cli_remakes_the_demo_report(demo_bundle, truth_path, tmp_path):
    import json
    import shutil

    from ddpayne_core.cli import main

    out, summary = demo_bundle
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "report")
    main(["report", "--dir", str(copy), "--truth", str(truth_path)])
    remade = json.loads((copy / "report" / "summary.json").read_text())
    assert remade["galah"] == summary["galah"]
    assert remade["metal_poor_blend"] == summary["metal_poor_blend"]
    assert remade["error_over_crb"] == pytest.approx(summary["error_over_crb"])


def test_models_and_stores_are_tied_to_their_truth_emulator(demo_bundle, truth_path, tmp_path):
    """A model trained on a survey from one truth emulator is not reused for another, and a
    half-made store is not resumed with a different truth."""
    from ddpayne_core.demo import _matches
    from ddpayne_core.model import TrainConfig, TrainingSetConfig
    from ddpayne_core.simulate import SurveyConfig, simulate_survey

    out, _ = demo_bundle
    survey = replace(SurveyConfig(), n_stars=400, apogee_fraction=0.5, featureless=("cu_fe",))
    train = replace(TrainConfig(), epochs=3, n_hidden=6)
    ts = TrainingSetConfig(label_set=TEST_LABELS, min_snr=20)
    assert _matches(out / "model.pt", survey, train, ts, truth_path)
    assert not _matches(out / "model.pt", replace(survey, seed=survey.seed + 1), train, ts, truth_path)
    assert not _matches(out / "model.pt", replace(survey, apogee_fraction=0.6), train, ts, truth_path)
    # the GALAH overlap draws only GALAH labels: an APOGEE-label model's training set is the same
    assert _matches(out / "model.pt", replace(survey, galah_fraction=0.1), train, ts, truth_path)
    for setting in ({"reference": "lamost-table1+lamost-isochrone"}, {"clip_sigma": 5.0},
                    {"d_scale": {"teff": 50.0}}):
        assert not _matches(out / "model.pt", survey, replace(train, **setting), ts, truth_path)
    other = make_truth(seed=8).save(tmp_path / "other_truth.pt")
    assert not _matches(out / "model.pt", survey, train, ts, other)
    stale = EmulatorModel.load(out / "model.pt")
    stale.config["continuum_weights"] = "ivar"
    assert not _matches(stale.save(tmp_path / "stale.pt"), survey, train, ts, truth_path)
    with pytest.raises(ValueError, match="made from other inputs"):
        simulate_survey(out / "survey", survey, other, log=lambda *a: None)


def test_a_model_trained_on_other_continuum_weights_is_refused(tiny_store, truth_model, tmp_path):
    """An emulator trained on spectra whose pseudo-continuum was weighted otherwise (the papers'
    ivar weights, or any model from before the choice was recorded) would bias every label: the
    fit refuses it and says what to do."""
    stale = replace(truth_model, config={**truth_model.config, "continuum_weights": "ivar"})
    legacy = replace(truth_model, config={"physics": "recorded no continuum weights"})
    for model in (stale, legacy):
        with pytest.raises(ValueError, match="'ivar' continuum weights.*retrain"):
            fit_store(model, open_store(tiny_store), tmp_path / "refused.parquet", FitConfig(),
                      **QUIET)


def test_a_resumed_fit_never_mixes_two_models(tiny_store, truth_model, tmp_path):
    """Parts left by a fit are resumed only by the same model, fit configuration and selection of
    spectra; anything else is refused, naming the folder, instead of joining two fits."""
    store, out, cfg = open_store(tiny_store), tmp_path / "fit.parquet", replace(FitConfig(), n_candidates=8)
    rows = np.zeros(store.n_spec, bool)
    rows[:5] = True
    fit_store(truth_model, store, out, cfg, rows=rows, **QUIET)
    assert len(fit_store(truth_model, store, out, cfg, rows=rows, **QUIET)) == 5
    other = make_truth(seed=8)
    other.config = dict(truth_model.config)
    for model, config, selection in ((other, cfg, rows), (truth_model, replace(cfg, fit_lsf=False), rows),
                                     (truth_model, cfg, None)):
        with pytest.raises(ValueError, match="fit.parts: holds fits made with another model"):
            fit_store(model, store, out, config, rows=selection, **QUIET)
    # a demo's own folder (refit_stale) fits afresh with the new model: no part of the old one stays
    fresh = fit_store(other, store, out, cfg, rows=rows, refit_stale=True, **QUIET)
    alone = fit_store(other, store, tmp_path / "alone.parquet", cfg, rows=rows, **QUIET)
    assert len(fresh) == 5
    np.testing.assert_array_equal(fresh["teff"].to_numpy(), alone["teff"].to_numpy())


def test_a_demo_folder_from_an_older_pipeline_is_made_again(truth_model, tmp_path):
    """Models trained on spectra normalized otherwise are removed with every fit, catalogue and
    report made from them; the survey stays. A current folder is left alone."""
    from ddpayne_core.demo import _clear_older_pipeline

    for name in ("survey/store.json", "catalog.parquet", "catalog.parts/part-0000000000.parquet",
                 "report/summary.json", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    truth_model.save(tmp_path / "model.pt")
    _clear_older_pipeline(tmp_path, log=lambda *a: None)
    assert (tmp_path / "catalog.parquet").exists() and (tmp_path / "report").exists()
    replace(truth_model, config={"physics": "before session 15"}).save(tmp_path / "model_mp.pt")
    _clear_older_pipeline(tmp_path, log=lambda *a: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "survey"]


def test_dask_fit_equals_in_process_and_resumes(tiny_store, truth_model, tmp_path):
    from ddpayne_core.fit import fit_store_dask

    store = open_store(tiny_store)
    model_path = truth_model.save(tmp_path / "truth.pt")
    cfg = replace(FitConfig(), n_candidates=8, batch=64)
    local = fit_store(truth_model, store, tmp_path / "local.parquet", cfg, **QUIET)
    dask = fit_store_dask(model_path, store, tmp_path / "dask.parquet", n_workers=2, config=cfg,
                          **QUIET)
    labels = list(TEST_LABELS)
    assert np.nanmax(np.abs(dask[labels].to_numpy() - local[labels].to_numpy())
                     / truth_model.scaler.span) < 1e-4
    # Kill simulation: lose two parts, rerun: same rows, no duplicates.
    for part in sorted((tmp_path / "dask.parts").glob("part-*"))[1:3]:
        part.unlink()
    again = fit_store_dask(model_path, store, tmp_path / "dask.parquet", n_workers=2, config=cfg,
                           **QUIET)
    assert again["specid"].is_unique and len(again) == store.n_spec
    assert np.nanmax(np.abs(again[labels].to_numpy() - dask[labels].to_numpy())) == 0


def test_crossmatch_and_x19_cuts():
    from ddpayne_core.model import crossmatch, training_summary

    survey = pd.DataFrame({"specid": [0, 1, 2, 3], "star_id": [0, 1, 2, 3],
                           "ra": [10.0, 20.0, 30.0, 40.0], "dec": [5.0, 5.0, 5.0, 5.0],
                           "snr": [60.0, 40.0, 40.0, 60.0]})
    hires = pd.DataFrame({"ra": [10.0 + 1 / 3600, 20.0, 30.0, 50.0], "dec": [5.0, 5.0, 5.0, 5.0],
                          "apogee_teff": [5000.0, 5100, 5200, 5300],
                          "apogee_feh": [0.0, -1.0, 0.0, 0.0], "apogee_mg_fe": [0.1, 0.3, 0.0, 0.0]})
    merged = crossmatch(survey, hires)
    assert merged["apogee_teff"].tolist()[:3] == [5000.0, 5100.0, 5200.0]
    assert np.isnan(merged["apogee_teff"][3])             # nothing within 3 arcsec
    assert merged["match_sep_arcsec"][0] == pytest.approx(1.0 * np.cos(np.radians(5)), rel=1e-3)
    big = pd.concat([merged] * 10, ignore_index=True)
    big["star_id"] = np.arange(len(big))
    big.loc[big.index % 4 == 2, "apogee_mg_fe"] = -0.4     # unrealistic [Mg/Fe]: removed
    cfg = TrainingSetConfig(label_set=("teff", "feh", "mg_fe"))
    rows, labels, _ = select_training(big, cfg)
    chosen = big.loc[rows]
    # S/N 40 passes only where [Fe/H] < -0.6 (relaxed cut); [Mg/Fe] > -0.3 everywhere.
    assert set(chosen["specid"]) == {0, 1}
    assert (chosen["apogee_mg_fe"] > -0.3).all()
    summary = training_summary(big, cfg)
    assert summary["training_stars"].iloc[0] == len(rows) == 20


def test_fit_cli_fits_the_lsf_width_unless_told_not_to(demo_bundle, tmp_path):
    from ddpayne_core.cli import main

    out, _ = demo_bundle
    cat = pd.read_parquet(out / "catalog.parquet")
    fitted = cat["fit_status"] != 2
    assert np.isfinite(cat.loc[fitted, "lsf_dvar"]).all() and cat.loc[fitted, "lsf_dvar"].std() > 0
    path = tmp_path / "fixed.parquet"
    assert main(["fit", "--model", str(out / "model.pt"), "--out", str(path), "--fixed-lsf",
                 str(out / "survey")]) == 0
    fixed = pd.read_parquet(path)
    assert len(fixed) == len(cat) and fixed["lsf_dvar"].isna().all()
    assert read_catalog_metadata(path)["fit_config"]["fit_lsf"] is False


def test_every_entry_point_composes_the_pipeline_stages_from_one_place():
    """The command line, the demos and the app's retraining train and fit-and-flag through
    ddpayne_core.pipeline, and no module outside it composes fit_store + add_flags itself."""
    import inspect

    from ddpayne_core import cli, demo, pipeline, real
    from ddpayne_core.app import retrain
    for module in (demo, real, retrain):
        src = inspect.getsource(module)
        assert "fit_and_flag(" in src or "train_from_store(" in src, module.__name__
        assert "add_flags(" not in src and "calibrate_errors(" not in src, module.__name__
    assert "flag_catalog(" in inspect.getsource(cli) and "train_from_store(" in inspect.getsource(cli)
    assert "add_flags(" not in inspect.getsource(cli)
    assert demo.train_from_store is pipeline.train_from_store
    for module in (cli, demo):   # the recommended catalogue, assembled in one place
        src = inspect.getsource(module)
        assert "recommended_catalog(" in src and "table3(" not in src, module.__name__


def test_quick_demo_fits_once_and_full_adds_the_studies(truth_path, tmp_path):
    """`ddpayne demo` (studies=False) fits the survey once with the overall model and writes the
    catalogue and report; `--full` on the same folder adds the other models, the recommended
    catalogue and the Cramer-Rao study without refitting the catalogue."""
    from ddpayne_core.demo import run_demo
    from ddpayne_core.simulate import SurveyConfig

    kw = dict(n_stars=400, truth_path=truth_path,
              train_config=replace(TrainConfig(), epochs=2, n_hidden=4),
              fit_config=replace(FitConfig(), n_candidates=8),
              training_set=TrainingSetConfig(label_set=TEST_LABELS, min_snr=20),
              galah_training_set=TrainingSetConfig(survey="galah", label_set=GALAH_TEST_LABELS,
                                                   min_snr=20),
              survey_config=replace(SurveyConfig(), apogee_fraction=0.5, galah_fraction=0.5),
              log=lambda *a: None)
    quick = run_demo(tmp_path, studies=False, **kw)
    assert quick["studies"] is False and "crb_experiment" not in quick and quick["recovery"]
    assert (tmp_path / "catalog.parquet").exists() and (tmp_path / "report" / "summary.md").exists()
    assert not list(tmp_path.glob("model_*.pt")) and not (tmp_path / "catalog_galah.parquet").exists()
    fitted = pd.read_parquet(tmp_path / "catalog.parquet")
    same = run_demo(tmp_path, studies=False, **kw)    # finished: returns at once
    assert json.dumps(same, sort_keys=True) == json.dumps(quick, sort_keys=True)   # NaN == NaN
    full = run_demo(tmp_path, studies=True, **kw)
    assert full["studies"] is True and "crb_experiment" in full
    assert (tmp_path / "catalog_galah.parquet").exists() and (tmp_path / "catalog_recommended.parquet").exists()
    again = pd.read_parquet(tmp_path / "catalog.parquet")
    np.testing.assert_array_equal(again["teff"], fitted["teff"])   # resumed, not refitted
