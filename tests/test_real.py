"""Real LAMOST spectra end to end (ddpayne demo --real) on files of ../shared/data, and label
tables: joins, stars, the split by star, and bad tables."""
import numpy as np
import pandas as pd
import pytest

from ddpayne_core.catalog import read_catalog_metadata
from ddpayne_core.io import attach_labels, heldout_split, open_store, read_label_table, star_ids


def test_real_bundle_carries_reference_labels_flags_and_a_report(real_bundle):
    out, summary = real_bundle
    cat = pd.read_parquet(out / "catalog.parquet")
    meta = read_catalog_metadata(out / "catalog.parquet")
    assert meta["synthetic"] is False and meta["reference_labels"] == "lasp"
    assert len(cat) == 160 and cat["specid"].is_unique
    # Every spectrum fitted or failed with a status; none lost.
    assert cat["fit_status"].isin([0, 1, 2]).all()
    for col in ("lasp_teff", "lasp_logg", "lasp_feh", "heldout", "spectral_type", "teff_at_bound",
                "at_bound", "out_of_coverage", "coverage_dist", "teff_flag", "qflag_chi2"):
        assert col in cat, col
    # A label pinned at its bound is always flagged so.
    assert (cat["at_bound"] == cat[["teff_at_bound", "logg_at_bound", "feh_at_bound",
                                     "lsf_at_bound"]].any(axis=1)).all()
    # Held-out stars were never trained on: no spectrum of a held-out star shares a star id
    # with a training spectrum.
    labels = pd.read_parquet(out / "labels.parquet")
    held = set(labels.loc[labels["heldout"], "star_id"])
    assert held and not held & set(labels.loc[~labels["heldout"], "star_id"])
    # The store carries the training stars' labels (retraining from it sees the same training
    # set) and none of the held-out stars'.
    stored = open_store(out / "survey").meta()
    assert stored.loc[stored["heldout"], "lasp_teff"].isna().all()
    assert stored.loc[~stored["heldout"], "lasp_teff"].notna().any()
    assert (out / "report" / "summary.md").exists() and (out / "report" / "real_validation.png").exists()
    assert summary["flags"]["problem_fits_with_nothing_set"] == 0
    assert {r["type"] for r in summary["validation"]} == {"A", "F/G"}
    # The model learned its own per-pixel scatter on the real training spectra (REAL_TRAIN_CONFIG
    # does so too): none outside its mask, some where it was trained.
    from ddpayne_core.model import EmulatorModel
    model = EmulatorModel.load(out / "model.pt")
    s = model.pixel_scatter
    assert s is not None and np.all(np.isfinite(s)) and np.all(s >= 0) and np.all(s[~model.mask] == 0)
    assert np.median(s[model.mask]) > 0
    # The training stars a first model could not reproduce are listed by the model, marked in the
    # catalogue and the store (the app's retraining leaves them out too), and all are training
    # stars; the first model stays beside the final one.
    assert (out / "model_first_pass.pt").exists()
    assert sorted(cat.loc[cat["training_outlier"], "filename"]) == model.config["training_outliers"]
    assert not cat.loc[cat["training_outlier"], "heldout"].any()
    assert (stored["training_outlier"].to_numpy() == cat.set_index("specid").loc[
        stored["specid"], "training_outlier"].to_numpy()).all()


def test_label_table_joins_by_obsid_or_file_and_groups_repeat_visits(tmp_path):
    meta = pd.DataFrame({"filename": ["spec-a.fits.gz", "spec-b.fits.gz", "spec-c.fits.gz"],
                         "obsid": [None, None, None], "ra": [10.0, 10.0 + 1 / 3600, 50.0],
                         "dec": [5.0, 5.0, -3.0]})
    table = pd.DataFrame({"file": ["spectra/spec-b.fits.gz", "spectra/spec-a.fits.gz"],
                          "teff": [5000.0, 6000.0], "logg": [4.0, 2.5], "feh": [0.0, -1.0]})
    table.to_csv(tmp_path / "t.csv", index=False)
    t = read_label_table(tmp_path / "t.csv", ("teff", "logg", "feh"))
    joined = attach_labels(meta, t, ("teff", "logg", "feh"), "ref")
    assert joined["ref_teff"].tolist()[:2] == [6000.0, 5000.0] and np.isnan(joined["ref_teff"][2])
    assert joined["ref_matched"].tolist() == [True, True, False]
    ids = star_ids(meta["ra"], meta["dec"])
    assert ids[0] == ids[1] != ids[2]
    held = heldout_split(np.array([0, 0, 1, 1, 2, 3, 4, 5]), 0.5, seed=1)
    assert held[0] == held[1] and held[2] == held[3] and 3 <= held.sum() <= 5


@pytest.mark.parametrize("content, message", [
    ("obsid,teff,logg,feh\n1,5000,4,0\n1,5100,4,0\n", "obsid repeated in 2 rows"),
    ("obsid,teff,logg,feh\n1,5000,4,0\n,5100,4,0\n", "1 row\\(s\\) without obsid, e.g. table row\\(s\\) \\[3\\]"),
    ("obsid,teff,logg\n1,5000,4\n", "missing label column\\(s\\) \\['feh'\\]"),
    ("name,teff,logg,feh\nx,5000,4,0\n", "no id column"),
])
def test_bad_label_tables_name_the_problem(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_label_table(path, ("teff", "logg", "feh"))


def test_a_non_numeric_label_is_not_trained_on(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("obsid,teff,logg,feh\n1,5000,4,abc\n2,5100,4.1,-0.2\n")
    t = read_label_table(path, ("teff", "logg", "feh"))
    assert np.isnan(t["feh"][0]) and t["feh"][1] == -0.2


def test_a_bundle_model_trained_otherwise_is_replaced_by_the_matching_committed_one(tmp_path, truth_model):
    """A real-data bundle made by an older ddpayne (or other settings) must not keep its model
    silently: it is replaced by the committed model when that one matches the settings now."""
    import json
    from dataclasses import replace

    from ddpayne_core.real import REAL_TRAIN_CONFIG, RealDataConfig, provenance, real_model

    table = tmp_path / "labels.csv"
    table.write_text("obsid,teff\n1,5000\n")
    cfg = RealDataConfig(labels=str(table))
    want = json.loads(json.dumps(provenance(cfg, REAL_TRAIN_CONFIG)))
    replace(truth_model, config={**truth_model.config, "real_provenance": want}).save(tmp_path / "committed.pt")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    stale = replace(truth_model, config={**truth_model.config, "real_provenance": {**want, "regularize": True}})
    stale.save(bundle / "model.pt")
    said = []
    model = real_model(bundle, None, cfg, REAL_TRAIN_CONFIG, committed=tmp_path / "committed.pt", log=said.append)
    assert model.config["real_provenance"] == want
    assert any("replacing it" in s for s in said) and any("using the committed model" in s for s in said)
    said.clear()
    assert real_model(bundle, None, cfg, REAL_TRAIN_CONFIG, committed=tmp_path / "committed.pt",
                      log=said.append).config["real_provenance"] == want
    assert said == []       # a bundle model trained as asked is kept


def test_training_outliers_are_found_per_group_and_drop_every_visit_of_their_star(monkeypatch):
    """A first model's fits of 400 training stars (two types, the hot one scattering 5x more):
    the stars placed 8 sigma off in one label are found in either type, the hot type's ordinary
    stars are not (its own scale), a failed fit is an outlier, every visit of an outlier star is
    marked, and select_training then leaves them all out."""
    from dataclasses import replace

    from ddpayne_core import pipeline
    from ddpayne_core.model.trainingset import TrainingSetConfig, select_training

    rng = np.random.default_rng(3)
    n = 400
    hot = np.arange(n) < 150
    meta = pd.DataFrame({"specid": np.arange(n), "star_id": np.arange(n), "snr": 50.0, "rv": 0.0,
                         "spectral_type": np.where(hot, "A", "F"),
                         "lasp_teff": rng.uniform(5000, 9000, n), "lasp_logg": rng.uniform(3.5, 4.5, n),
                         "lasp_feh": rng.uniform(-1, 0.3, n)})
    # A second visit of star 5 (an outlier below), at lower S/N: it must be marked too.
    meta = pd.concat([meta, meta.iloc[[5]].assign(specid=n, snr=30.0)], ignore_index=True)
    ts = replace(TrainingSetConfig(), survey="lasp", label_set=("teff", "logg", "feh"), min_snr=20.0)
    rows, labels, _ = select_training(meta, ts)
    sigma = np.array([40.0, 0.08, 0.05]) * np.where(meta["spectral_type"].to_numpy()[rows] == "A", 5.0, 1.0)[:, None]
    fitted = labels + np.clip(rng.normal(0, 1, labels.shape), -3, 3) * sigma   # no 4-sigma draws
    off = {5: 0, 200: 1, 300: 2, 20: 2}                 # star -> label set 8 sigma off
    for star, lab in off.items():
        fitted[rows == star, lab] += 8 * sigma[rows == star, lab]
    fitted[rows == 250] = np.nan                        # a failed fit

    class Fit:
        labels = fitted
    monkeypatch.setattr(pipeline, "preprocessed_rows", lambda store, m, r: (None, None))
    monkeypatch.setattr(pipeline, "fit_spectra", lambda model, flux, ivar, cfg: Fit)
    grouped = pipeline.training_outliers(None, None, meta, ts, 4.0, groups="spectral_type")
    assert set(meta.loc[grouped, "star_id"]) == set(off) | {250}
    assert grouped[n]                                   # star 5's other visit
    # Pooled over both types the hot stars' ordinary scatter reads as outliers.
    pooled = pipeline.training_outliers(None, None, meta, ts, 4.0)
    assert pooled[:150].sum() > 10
    kept, _, _ = select_training(meta.assign(training_outlier=grouped), ts)
    assert not set(meta["star_id"].to_numpy()[kept]) & (set(off) | {250})
    assert len(kept) == n - len(off) - 1
