"""The science behind the app (ddpayne_core.app.explore and .retrain), checked without a browser."""
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ddpayne_core.app import (
    RetrainSettings,
    adopt,
    density_map,
    feature_windows,
    find_rows,
    flag_counts,
    gradcorr_medians,
    gradient_comparison,
    histogram,
    load_bundle,
    repeat_rows,
    robust_range,
    save_flag_config,
    selection,
    spectrum_table,
    star_residuals,
    star_view,
    start_training,
    step_row,
    validation_scatter,
)
from ddpayne_core.constants import CLICK_RADIUS_PX
from ddpayne_core.fit import fitted_spectra
from ddpayne_core.flags import FlagTuner, XFlagConfig, qflag_chi2, x_flag


@pytest.fixture(scope="module")
def bundle(demo_bundle):
    return load_bundle(demo_bundle[0])


def test_bundle_loads_catalogue_model_and_store(bundle):
    assert bundle.synthetic and bundle.store is not None
    assert len(bundle.catalog) == bundle.store.n_spec
    assert "mg_fe" in bundle.abundance_labels and "teff" not in bundle.abundance_labels


def test_missing_catalogue_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalog.parquet.*ddpayne demo"):
        load_bundle(tmp_path)


def test_click_selects_the_nearest_star_on_screen_or_none(bundle):
    cat = bundle.catalog
    allowed = selection(cat, snr_min=40)
    x, y = cat["teff"].to_numpy(), cat["logg"].to_numpy()
    pixel = (5.0, 0.01)   # K and dex per screen pixel
    for tx, ty in ((5000.0, 3.0), (6200.0, 4.3), (4300.0, 1.5)):
        d2 = ((x - tx) / pixel[0]) ** 2 + ((y - ty) / pixel[1]) ** 2
        d2[~allowed | ~np.isfinite(d2)] = np.inf
        best = int(np.argmin(d2))
        # A click right beside a star picks it; its neighbours in data units do not matter.
        near = (x[best] + 3 * pixel[0], y[best] - 2 * pixel[1])
        d2n = ((x - near[0]) / pixel[0]) ** 2 + ((y - near[1]) / pixel[1]) ** 2
        d2n[~allowed | ~np.isfinite(d2n)] = np.inf
        assert bundle.nearest_row(*near, "teff", "logg", pixel, allowed) == int(np.argmin(d2n))
        expect = best if d2[best] <= CLICK_RADIUS_PX ** 2 else None
        assert bundle.nearest_row(tx, ty, "teff", "logg", pixel, allowed) == expect
    # Empty sky: far from every star on screen, nothing is selected.
    assert bundle.nearest_row(9000.0, -1.0, "teff", "logg", pixel, allowed) is None
    assert bundle.nearest_row(5000, 3, "teff", "logg", pixel, np.zeros(len(cat), bool)) is None


def test_flag_tuner_reproduces_x_flag_and_qflag(bundle):
    cat = bundle.catalog
    tuner = FlagTuner(cat, bundle.model.labels)
    assert "mg_fe_response" in cat and "teff_response" not in cat
    for cfg in (XFlagConfig(), XFlagConfig(cutoff=0.8), XFlagConfig(cutoff=0.2, snr_min=10,
                                                                      teff_bin=400, feh_bin=0.5),
                XFlagConfig(response_min=0.0), XFlagConfig(response_min=1.5)):
        for lab in ("mg_fe", "cu_fe", "teff"):
            expect = x_flag(cat[f"{lab}_gradcorr"], cat["teff"], cat["logg"], cat["feh"],
                            cat["snr"], cfg, cat.get(f"{lab}_response"))
            assert np.array_equal(tuner.flag(lab, cfg), expect), (lab, cfg)
            counted = tuner.count_flagged(cfg, np.ones(len(cat), bool))[lab]
            assert counted == int(expect.sum()), (lab, cfg)
    # A higher least response can only remove abundance flags; Teff has no response test.
    strict, loose = XFlagConfig(response_min=2.0), XFlagConfig(response_min=0.0)
    assert tuner.flag("mg_fe", strict).sum() < tuner.flag("mg_fe", loose).sum()
    assert np.all(tuner.flag("mg_fe", strict) <= tuner.flag("mg_fe", loose))
    assert np.array_equal(tuner.flag("teff", strict), tuner.flag("teff", loose))
    cuts = (1.0, 2.0, 3.0, 4.0, 5.0)
    assert np.array_equal(tuner.qflag_chi2(XFlagConfig(chi2_cuts=cuts)),
                          qflag_chi2(cat["chi2ratio"], cat["snr"], cuts))
    # A higher cutoff can only remove X_flag=1 stars.
    keep = np.ones(len(cat), bool)
    lo = flag_counts(tuner, XFlagConfig(cutoff=0.1), keep)["X_flag = 1"].to_numpy()
    hi = flag_counts(tuner, XFlagConfig(cutoff=0.9), keep)["X_flag = 1"].to_numpy()
    assert np.all(hi <= lo) and lo.sum() > hi.sum()
    some = selection(cat, snr_min=30)
    counts = flag_counts(tuner, XFlagConfig(cutoff=0.4), some)["X_flag = 1"].to_numpy()
    assert list(counts) == [int((tuner.flag(lab, XFlagConfig(cutoff=0.4))[some] == 1).sum())
                            for lab in bundle.model.labels]


def test_flag_counts_with_labels_of_different_eligible_rows(bundle):
    """Counts are cached per set of eligible rows: a label with NaN gradcorr in some rows must
    not reuse another label's bin counts."""
    cat = bundle.catalog.copy()
    cat.loc[cat.index[::3], "mg_fe_gradcorr"] = np.nan
    tuner = FlagTuner(cat, bundle.model.labels)
    untouched = FlagTuner(bundle.catalog, bundle.model.labels)
    keep = selection(cat, snr_min=20)
    for cut in (0.3, 0.6):
        cfg = XFlagConfig(cutoff=cut)
        counts = tuner.count_flagged(cfg, keep)
        for lab in ("mg_fe", "ca_fe"):
            assert counts[lab] == int((tuner.flag(lab, cfg)[keep] == 1).sum())
        before = untouched.count_flagged(cfg, keep)
        assert counts["ca_fe"] == before["ca_fe"] and 0 < counts["mg_fe"] < before["mg_fe"]


def test_density_map_counts_and_means_the_kept_rows():
    x = np.array([0.1, 0.1, 0.9, 0.6, 5.0])
    y = np.array([0.1, 0.1, 0.9, 0.6, 0.5])
    v = np.array([1.0, 3.0, 7.0, 100.0, 9.0])
    keep = np.array([True, True, True, False, True])
    # Axis order does not matter (inverted axes); row 0 is the low y; x = 5 is off the map.
    counts = density_map(x, y, keep, (1, 0), (0, 1), shape=(2, 2), max_spread=0)
    assert np.array_equal(np.nan_to_num(counts), [[2, 0], [0, 1]])
    means = density_map(x, y, keep, (0, 1), (0, 1), shape=(2, 2), values=v, max_spread=0)
    assert means[0, 0] == 2.0 and means[1, 1] == 7.0 and np.isnan(means[0, 1])
    # A lone star is spread so that it stays visible; a dense map is not spread.
    lone = density_map(np.array([0.5]), np.array([0.5]), np.array([True]), (0, 1), (0, 1),
                       shape=(21, 21))
    assert np.isfinite(lone).sum() > 1
    rng = np.random.default_rng(0)
    dense = density_map(rng.random(20_000), rng.random(20_000), np.ones(20_000, bool), (0, 1),
                        (0, 1), shape=(20, 20))
    assert np.nansum(dense) == 20_000


def test_robust_range_ignores_outliers():
    values = np.concatenate([np.linspace(0, 1, 10_000), [1e6, np.nan]])
    lo, hi = robust_range(values, pad=0.0)
    assert -0.01 < lo < 0.01 and 0.99 < hi < 1.01


def test_gradcorr_map_bins_are_the_flag_bins(bundle):
    tuner = FlagTuner(bundle.catalog, bundle.model.labels)
    cfg = XFlagConfig()
    m = pd.concat([tuner.gradcorr_map("mg_fe", cfg, g) for g in (False, True)])
    assert len(m) == len(tuner.bin_medians("mg_fe", cfg)[0])
    assert np.all((m["teff"] / cfg.teff_bin - 0.5) % 1 < 1e-9)
    assert m["median"].between(-1, 1).all()


def test_gradient_comparison_is_the_catalogue_gradcorr(bundle):
    cat = bundle.catalog
    row = int(np.nonzero((cat["fit_status"] < 2).to_numpy())[0][0])
    for lab in ("mg_fe", "teff"):
        g = gradient_comparison(bundle, row, lab)
        assert g.corr == pytest.approx(cat[f"{lab}_gradcorr"].iloc[row], abs=1e-4)
        assert g.emulator.shape == g.ab_initio.shape == bundle.model.wave.shape
        assert 1 <= len(g.windows) <= 3


def test_feature_windows_avoid_the_pixels_a_star_does_not_use(bundle):
    row = 3
    v = star_view(bundle, row)
    g = gradient_comparison(bundle, row, "mg_fe")
    masked = v.masked.copy()
    centre = int(np.argmin(np.abs(bundle.model.wave - np.mean(g.windows[0]))))
    masked[centre - 40:centre + 40] = True    # the star loses the strongest feature's pixels
    moved = gradient_comparison(bundle, row, "mg_fe", masked=masked)
    for lo, hi in moved.windows:
        assert not masked[int(np.argmin(np.abs(bundle.model.wave - (lo + hi) / 2)))]
    assert moved.windows != g.windows and moved.corr == g.corr   # gradcorr is the catalogue's


def test_feature_windows_find_the_strongest_features():
    wave = np.linspace(4000, 5000, 1001)
    d = np.zeros_like(wave)
    d[100], d[500], d[505], d[900] = -0.3, 0.2, -0.25, 0.05
    win = feature_windows(wave, d, n=2, half_width=10)
    assert win == [(4090.0, 4110.0), (4495.0, 4515.0)]


def test_star_view_model_and_residuals(bundle):
    v = star_view(bundle, 3)
    labels = bundle.catalog.iloc[3][list(bundle.model.labels)].to_numpy(dtype=float)
    # The model shown is the fit's: the emulator broadened by the fitted LSF offset.
    dvar = bundle.catalog.iloc[3]["lsf_dvar"]
    assert np.isfinite(dvar) and dvar != 0
    assert np.allclose(v.model, fitted_spectra(bundle.model, labels[None], np.array([dvar]))[0])
    plain = bundle.model.predict(labels[None])[0]
    assert not np.allclose(v.model[bundle.model.mask], plain[bundle.model.mask])
    assert np.all(v.masked[~bundle.model.mask])
    ok = ~v.masked
    assert np.allclose(v.resid_sigma[ok], (v.flux[ok] - v.model[ok]) / v.error[ok])
    assert list(v.labels["label"])[:3] == ["Teff [K]", "logg [dex]", "vmic [km/s]"]
    # A synthetic bundle shows each fitted label beside its true value from the store.
    truth = bundle.store.meta_rows(3, 4).iloc[0]
    assert np.allclose(v.labels["true (synthetic)"].to_numpy(dtype=float),
                       [truth[lab] for lab in bundle.model.labels])


def test_star_residuals_refit_the_catalogue_row(bundle):
    # The retrain page's comparison refits one store row: same labels as the catalogue's fit
    # (for a converged fit off the bounds: a label pinned at a bound leaves a flat direction in
    # which batched and single fits may stop at different points).
    cat = bundle.catalog
    row = int(np.nonzero((~cat["at_bound"] & (cat["fit_status"] == 0)).to_numpy())[0][5])
    labels, resid = star_residuals(bundle, row, {"current": bundle.model})["current"]
    expect = bundle.catalog.iloc[row][list(bundle.model.labels)].to_numpy(dtype=float)
    assert np.allclose(labels, expect, rtol=1e-4, atol=1e-4)
    assert resid.shape == bundle.model.wave.shape
    assert np.all(np.isnan(resid[~bundle.model.mask])) and np.isfinite(resid[bundle.model.mask]).mean() > 0.9


def test_flag_config_round_trip_and_cli_apply(bundle, tmp_path):
    cfg = XFlagConfig(cutoff=0.95, snr_min=5.0, chi2_cuts=(2.0, 3.0, 4.0, 5.0, 6.0))
    path = save_flag_config(cfg, tmp_path, "flags")
    assert path == tmp_path / "flag_configs" / "flags.json"
    assert XFlagConfig.from_json(path.read_text()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        XFlagConfig.from_json(json.dumps({"cutof": 0.3}))
    cat_path = tmp_path / "catalog.parquet"
    shutil.copy(bundle.directory / "catalog.parquet", cat_path)
    subprocess.run([sys.executable, "-m", "ddpayne_core.cli", "flag", "--catalog", str(cat_path), "--config",
                    str(path), "--reflag-only"], check=True, capture_output=True)
    new = pd.read_parquet(cat_path)
    tuner = FlagTuner(bundle.catalog, bundle.model.labels)
    assert np.array_equal(new["mg_fe_flag"].to_numpy(), tuner.flag("mg_fe", cfg))
    assert np.array_equal(new["qflag_chi2"].to_numpy(), tuner.qflag_chi2(cfg))


@pytest.mark.parametrize("name", ["../x", "/tmp/evil.json", "", "  ", ".hidden", "a/b.json",
                                  "..", "x" * 80, "con\x00.json"])
def test_flag_config_is_saved_only_inside_the_bundle_under_a_plain_name(tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        save_flag_config(XFlagConfig(), tmp_path / "bundle", name)
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("field, value", [("cutoff", -0.1), ("cutoff", float("nan")),
                                          ("snr_min", None), ("teff_bin", "abc"),
                                          ("feh_bin", 1e308), ("chi2_cuts", (5.0, -5.0, 10, 12, 15)),
                                          ("chi2_cuts", (5.0, float("nan"), 10, 12, 15))])
def test_flag_configuration_refuses_values_out_of_range(field, value):
    with pytest.raises(ValueError, match=field.split("[")[0]):
        XFlagConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("d_scale_params", -1.0), ("d_scale_abund", float("nan")),
                                          ("epochs", None), ("epochs", 2.5), ("n_hidden", 0),
                                          ("max_stars", 0)])
def test_retraining_settings_refuse_values_out_of_range(field, value):
    with pytest.raises(ValueError, match="retraining settings"):
        RetrainSettings(**{field: value})


def test_export_writes_every_format_readably(bundle, tmp_path):
    from astropy.table import Table

    from ddpayne_core.app import EXPORT_FORMATS, export_table
    rows = bundle.catalog.head(7)[["teff", "logg", "feh", "snr"]]
    for fmt, ext in EXPORT_FORMATS.items():
        path = tmp_path / f"x{ext}"
        path.write_bytes(export_table(rows, fmt).read())
        back = {"CSV": pd.read_csv, "Parquet": pd.read_parquet,
                "FITS": lambda p: Table.read(p).to_pandas()}[fmt](path)
        assert np.allclose(back["teff"].to_numpy(), rows["teff"].to_numpy()), fmt


def test_retraining_job_cancels_and_finishes(bundle, tmp_path):
    fast = RetrainSettings(epochs=200, n_hidden=4, max_stars=60)
    job = start_training(bundle, fast, tmp_path / "cancelled.pt")
    job.cancel()
    job.wait(120)
    assert job.state == "cancelled" and not (tmp_path / "cancelled.pt").exists(), job.message
    job = start_training(bundle, replace(fast, epochs=2, regularize=False), tmp_path / "new.pt")
    job.wait(120)
    assert job.state == "done", job.message
    assert job.progress == 1.0 and len(job.history["epoch"]) == 2
    assert job.model.config["regularize"] is False and job.model.net.n_hidden == 4
    scatter = validation_scatter(bundle, {"current": bundle.model, "new": job.model}, n_stars=20)
    assert list(scatter.columns) == ["current", "new"] and (scatter.to_numpy() > 0).all()
    med = gradcorr_medians(bundle, job.model, n_stars=50)
    assert med.between(-1, 1).all()


def test_adopt_refits_and_keeps_the_previous_catalogue(demo_bundle, tmp_path):
    src = demo_bundle[0]
    d = tmp_path / "bundle"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("*.parts"))
    b = load_bundle(d)
    shutil.copy(d / "model.pt", tmp_path / "candidate.pt")
    adopt(b, tmp_path / "candidate.pt", XFlagConfig(cutoff=0.7), log=lambda *a: None)
    assert (d / "catalog-previous.parquet").exists() and (d / "model-previous.pt").exists()
    new = load_bundle(d)
    assert len(new.catalog) == len(b.catalog)
    assert new.metadata["synthetic"] is True
    # The same model refitted: the same labels up to the optimizer's tolerance.
    assert np.nanmedian(np.abs(new.catalog["teff"] - b.catalog["teff"])) < 1.0
    assert new.metadata["flag_config"]["cutoff"] == 0.7


def test_find_rows_by_identifier_row_and_file_name():
    table = pd.DataFrame({"specid": [10, 11, 12], "star_id": [11, 11, 7],
                          "filename": ["spec-A_sp01-001.fits.gz", "spec-B_sp02-002.fits.gz",
                                       "spec-C_sp01-003.fits.gz"]})
    rows, how = find_rows(table, "11")
    assert list(rows) == [1] and how == "specid"         # specid wins over star_id
    rows, how = find_rows(table, "7")
    assert list(rows) == [2] and how == "star_id"
    rows, how = find_rows(table, "SPEC-B_sp02-002.fits.gz")
    assert list(rows) == [1] and how == "filename"
    rows, how = find_rows(table, "_sp01-")
    assert list(rows) == [0, 2] and how == "part of the file name"
    assert list(find_rows(table, "#2")[0]) == [2]
    for nothing in ("#3", "#x", "", "zzz"):
        assert len(find_rows(table, nothing)[0]) == 0


def test_step_row_walks_the_shown_rows_and_wraps():
    keep = np.array([False, True, False, True, True, False])
    assert step_row(keep, -1, +1) == 1 and step_row(keep, -1, -1) == 4
    assert step_row(keep, 1, +1) == 3 and step_row(keep, 2, +1) == 3   # from a hidden row too
    assert step_row(keep, 4, +1) == 1 and step_row(keep, 1, -1) == 4    # wraps round
    assert step_row(keep, 3, -1) == 1 and step_row(keep, 5, -1) == 4
    assert step_row(np.zeros(4, bool), 0, 1) is None


def test_repeat_rows_are_the_other_visits_in_date_order():
    table = pd.DataFrame({"star_id": [1, 2, 1, 1, 3], "mjd": [300, 1, 100, 200, 5]})
    assert list(repeat_rows(table, 0)) == [2, 3]
    assert list(repeat_rows(table, 2, limit=1)) == [3]
    assert len(repeat_rows(table, 1)) == 0
    assert len(repeat_rows(table.drop(columns="star_id"), 0)) == 0


def test_spectrum_table_is_the_inspected_spectrum(bundle):
    v = star_view(bundle, 3)
    t = spectrum_table(v)
    assert len(t) == bundle.model.wave.size
    assert np.array_equal(t["used_in_fit"].to_numpy(), ~v.masked)
    assert np.allclose(t["flux_normalized"], v.flux, equal_nan=True)
    assert np.allclose(t["model"], v.model, equal_nan=True)


def test_histogram_counts_the_kept_finite_values():
    v = np.array([0.0, 0.5, 1.0, np.nan, 0.7, 9.0])
    keep = np.array([True, True, True, True, True, False])
    counts, edges = histogram(v, keep, bins=2, value_range=(0.0, 1.0))
    assert list(counts) == [1, 3] and list(edges) == [0.0, 0.5, 1.0]
    counts, _ = histogram(v, np.zeros(6, bool), bins=4)
    assert counts.sum() == 0 and len(counts) == 4


def test_flag_counts_say_when_no_star_is_kept(bundle):
    tuner = FlagTuner(bundle.catalog, bundle.model.labels)
    table = flag_counts(tuner, XFlagConfig(), np.zeros(len(bundle.catalog), bool))
    assert (table["X_flag = 1"] == 0).all() and (table["share"] == "-").all()
    keep = selection(bundle.catalog, snr_min=20)
    share = flag_counts(tuner, XFlagConfig(), keep).set_index("label").loc["[Mg/Fe]"]
    assert share["share"] == f"{100 * share['X_flag = 1'] / keep.sum():.1f} %"
