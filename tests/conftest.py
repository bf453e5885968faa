"""Shared fixtures: a small synthetic world built from a random 'truth' emulator (no MOOG)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpayne_core.constants import CONTINUUM_WEIGHTS
from ddpayne_core.instrument import get_instrument
from ddpayne_core.labels import Scaler
from ddpayne_core.model import Emulator, EmulatorModel
from ddpayne_core.preprocess import normalize
from ddpayne_core.theory import ReferenceGradients

TEST_LABELS = ("teff", "logg", "vmic", "feh", "mg_fe", "ca_fe", "cu_fe")
# The GALAH-like labels of the test world (GALAH gives no vmic, X19 Table 4).
GALAH_TEST_LABELS = ("teff", "logg", "feh", "mg_fe", "ca_fe", "cu_fe")
LO = np.array([4000.0, 0.5, 0.5, -2.5, -0.4, -0.4, -0.4])
HI = np.array([7000.0, 5.0, 3.0, 0.5, 0.4, 0.4, 0.4])


def make_truth(seed=7, n_lines=500, instrument="lamost") -> EmulatorModel:
    """A test 'truth' on the LAMOST grid shaped like a spectrum: ~500 absorption lines with a
    Gaussian profile (sigma 1.5 pixels, like an R~1800 LSF). Each line belongs to one element
    (Fe, Mg, Ca or Cu); its depth rises monotonically with [Fe/H] and its element's [X/Fe], falls
    with Teff, and depends mildly on logg and vmic, like real lines. Written in the emulator's
    own form (one active hidden unit per pixel), so an emulator can represent it exactly.
    ``instrument="desi"``: the same on DESI's grid (about twice the lines, for its range)."""
    inst = get_instrument(instrument)
    n_pix = inst.wave.size
    rng = np.random.default_rng(seed)
    centers = np.sort(rng.uniform(0, n_pix, n_lines))
    nearest = np.clip(np.searchsorted(centers, np.arange(n_pix)), 0, n_lines - 1)
    profile = np.exp(-0.5 * ((np.arange(n_pix) - centers[nearest]) / 1.5) ** 2)
    element = rng.choice(["feh", "mg_fe", "ca_fe", "cu_fe"], n_lines, p=[0.55, 0.15, 0.15, 0.15])
    sens = np.zeros((n_lines, len(TEST_LABELS)))
    sens[:, 0] = rng.uniform(-4, -1.5, n_lines)          # Teff
    sens[:, 1] = rng.uniform(-1.5, 1.5, n_lines)         # logg
    sens[:, 2] = rng.uniform(0.2, 1.0, n_lines)          # vmic
    sens[:, 3] = rng.uniform(2, 4, n_lines)              # [Fe/H]
    for k, lab in enumerate(TEST_LABELS[4:], start=4):
        sens[element == lab, k] = rng.uniform(2, 4, (element == lab).sum())
    net = Emulator(len(TEST_LABELS), n_pix, 6, seed=seed)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.W1[:, 0, :] = torch.as_tensor(sens[nearest], dtype=torch.float32)
        net.W2[:, 0, 0] = 5.0
        net.b2[:, 0] = -2.5
        depth = rng.uniform(0.15, 0.7, n_lines)[nearest] * profile
        net.w[:, 0] = -torch.as_tensor(depth / 0.75, dtype=torch.float32)
        net.fbar.fill_(1.0)
    return EmulatorModel(net, TEST_LABELS, Scaler(LO, HI), inst.wave, np.ones(n_pix, bool),
                         # an exact model of spectra normalized as this ddpayne normalizes them
                         {"physics": "test truth", "continuum_weights": CONTINUUM_WEIGHTS})


def reference_from(truth: EmulatorModel, n_ref=6, seed=3) -> ReferenceGradients:
    """'Ab initio' gradients taken from the truth itself at a few reference stars."""
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    ref = LO + (HI - LO) * rng.uniform(0.25, 0.75, (n_ref, len(TEST_LABELS)))
    steps = np.tile([200.0, 0.25, 1.0, 0.5, 0.5, 0.5, 0.5], (n_ref, 1))
    inst = next(get_instrument(name) for name in ("lamost", "desi")
                if get_instrument(name).wave.size == truth.wave.size)

    def spectra(labels):  # normalized like ab initio spectra (theory.synthesis.to_instrument)
        flux = truth.predict(labels)
        return normalize(inst.wave, flux, np.ones_like(flux), inst.continuum_width)[0]
    base = spectra(ref)
    stepped = spectra((ref[:, None, :] + steps[:, :, None] * np.eye(len(TEST_LABELS)))
                      .reshape(-1, len(TEST_LABELS))).reshape(n_ref, len(TEST_LABELS), -1)
    stars = Table({"star": np.arange(1, n_ref + 1)})
    for k, lab in enumerate(TEST_LABELS):
        stars[lab] = ref[:, k]
        stars[f"d_{lab}"] = steps[:, k]
    return ReferenceGradients("test", truth.wave, TEST_LABELS, stars, base,
                              stepped - base[:, None, :], {})


@pytest.fixture(scope="session")
def truth_model():
    return make_truth()


@pytest.fixture(scope="session")
def truth_path(tmp_path_factory, truth_model):
    return truth_model.save(tmp_path_factory.mktemp("truth") / "truth.pt")


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, truth_path):
    from ddpayne_core.simulate import SurveyConfig, simulate_survey

    cfg = replace(SurveyConfig(), n_stars=800, chunk=250, apogee_fraction=0.6, snr_median=80.0,
                  featureless=("cu_fe",))
    path = tmp_path_factory.mktemp("survey") / "survey"
    simulate_survey(path, cfg, truth_path, log=lambda *a: None)
    return path


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory, truth_path):
    """A small demo run (survey, model, flagged catalogue, summary) on the test truth: the
    directory and the summary run_demo returned."""
    from ddpayne_core.demo import run_demo
    from ddpayne_core.fit import FitConfig
    from ddpayne_core.model import TrainConfig, TrainingSetConfig
    from ddpayne_core.simulate import SurveyConfig

    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(out, n_stars=400, truth_path=truth_path,
                       train_config=replace(TrainConfig(), epochs=3, n_hidden=6, pixel_scatter=True),
                       fit_config=replace(FitConfig(), n_candidates=8),
                       training_set=TrainingSetConfig(label_set=TEST_LABELS, min_snr=20),
                       galah_training_set=TrainingSetConfig(survey="galah", label_set=GALAH_TEST_LABELS,
                                                            min_snr=20),
                       survey_config=replace(SurveyConfig(), apogee_fraction=0.5,
                                             featureless=("cu_fe",)), log=lambda *a: None)
    return out, summary


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def real_bundle(tmp_path_factory):
    """``ddpayne demo --real`` on 160 real LAMOST DR10 spectra of ../shared/data (links to the
    files) with the LASP labels, a 3-epoch model and a short fit: the real-data path end to end
    (the model is too small to mean anything)."""
    from ddpayne_core.fit import FitConfig
    from ddpayne_core.model import TrainConfig
    from ddpayne_core.real import RealDataConfig, run_real

    cfg = RealDataConfig()
    work = tmp_path_factory.mktemp("real")
    folder = work / "spectra"
    folder.mkdir()
    for f in sorted(Path(cfg.spectra).glob("spec-*.fits*"))[:160]:
        (folder / f.name).symlink_to(f)
    out = work / "bundle"
    summary = run_real(out, replace(cfg, spectra=str(folder)),
                       train_config=replace(TrainConfig(), epochs=3, n_hidden=6, pixel_scatter=True),
                       fit_config=replace(FitConfig(), n_candidates=8), synthetic_model=None,
                       log=lambda *a: None)
    return out, summary


@pytest.fixture(scope="session")
def desi_bundle(tmp_path_factory):
    """A small DESI bundle (SYNTHETIC: a test emulator on DESI's grid, not physics): simulated
    coadds read through ingest_desi, a small DESI model, the fitted and flagged catalogue, the
    store as survey/ and a reference grid file taken from the test truth."""
    from dataclasses import replace

    from ddpayne_core.catalog import write_catalog
    from ddpayne_core.fit import FitConfig
    from ddpayne_core.io import open_store
    from ddpayne_core.model import EmulatorModel, TrainConfig, TrainingSetConfig
    from ddpayne_core.pipeline import fit_and_flag, train_from_store
    from ddpayne_core.preprocess import ingest_desi
    from ddpayne_core.simulate import DesiSurveyConfig, simulate_desi_survey

    root = tmp_path_factory.mktemp("desi_bundle")
    truth = make_truth(seed=11, n_lines=1200, instrument="desi")
    truth.save(root / "truth.pt")
    cfg = DesiSurveyConfig(n_stars=300, spectra_per_file=150, r_mag=(15.5, 17.5), lamost_fraction=0.0)
    table = simulate_desi_survey(root / "sim", cfg, root / "truth.pt", log=lambda *a: None)
    ingest_desi([root / "sim" / "coadds"], root / "survey", mws_catalog=root / "sim" / "mws.fits",
                log=lambda *a: None)
    store = open_store(root / "survey")
    meta = store.meta().merge(table, on=["targetid", "filename", "row"], suffixes=("", "_true"))
    usable = (meta["ingest_error"] == "") & ~meta["is_binary"]
    for lab in TEST_LABELS:
        meta[f"ref_{lab}"] = np.where(usable, meta[lab], np.nan)
    reference = reference_from(truth)
    reference.save(root / "reference.npz")
    train = replace(TrainConfig.for_instrument("desi"), n_hidden=6, epochs=20, regularize=False)
    model = train_from_store(root / "survey", root / "model.pt",
                             TrainingSetConfig(survey="ref", label_set=TEST_LABELS, min_snr=10,
                                               min_snr_metal_poor=10), train, meta=meta,
                             log=lambda *a: None)
    model.config["reference"] = str(root / "reference.npz")
    model.save(root / "model.pt")
    model = EmulatorModel.load(root / "model.pt")
    cat = fit_and_flag(model, store, root / "catalog.parquet", replace(FitConfig(), n_candidates=8),
                       reference, log=lambda *a: None)
    write_catalog(cat, root / "catalog.parquet", {"synthetic": True, "model": str(root / "model.pt"),
                                                  "instrument": "desi"})
    return root
