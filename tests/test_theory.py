"""Ab initio physics: atmospheres, line lists, MOOG syntheses and the committed reference
gradient spectra, checked against known answers."""
import io
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

from ddpayne_core.instrument import get_instrument
from ddpayne_core.theory import linelist as ll
from ddpayne_core.theory.atmosphere import _ArraysOnlyUnpickler, model_atmosphere
from ddpayne_core.theory.gradients import DATA_DIR, load_reference_gradients
from ddpayne_core.theory.moog import moog_binary

needs_moog = pytest.mark.skipif(not moog_binary().exists(),
                                reason="MOOG not built (run `ddpayne theory build`)")
needs_table1 = pytest.mark.skipif(not (DATA_DIR / "lamost-table1.npz").exists(),
                                  reason="reference gradients not assembled yet")


def test_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        _ArraysOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_solar_atmosphere_is_hydrostatic_and_hot_inside():
    sun = model_atmosphere(5777.0, 4.438, 0.0)
    rhox, temp, pres = sun.deck[:, 0], sun.deck[:, 1], sun.deck[:, 2]
    deep = rhox > np.median(rhox)
    np.testing.assert_allclose(pres[deep] / (10 ** 4.438 * rhox[deep]), 1.0, atol=0.05)
    assert np.all(np.diff(rhox) > 0) and temp[0] < 5000 < temp[-1]


def test_atmosphere_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="outside atmosnet range"):
        model_atmosphere(9000.0, 4.0, 0.0)


def test_perturbed_loggf_only_changes_loggf():
    raw = np.array([f"{5000.0 + i:10.3f}{26.0:10.1f}{2.0:10.3f}{-1.0:10.3f}" for i in range(200)]
                   + [f"{6562.797:10.3f}{1.0:10.1f}{10.191:10.3f}{0.710:10.3f}"], dtype=object)
    lines = ll.LineList(np.array([float(r[:10]) for r in raw]), np.array([26.0] * 200 + [1.0]),
                        np.full(201, 2.0), np.array([-1.0] * 200 + [0.71]), raw)
    pert = ll.perturb_loggf(lines, 0.1, seed=1)
    assert 0.07 < np.std(pert.loggf[:200] - lines.loggf[:200]) < 0.13
    assert pert.loggf[200] == lines.loggf[200]  # hydrogen untouched
    assert all(p[:30] == r[:30] for p, r in zip(pert.raw, lines.raw))
    np.testing.assert_allclose([float(r[30:40]) for r in pert.raw], pert.loggf, atol=6e-4)


@needs_moog
def test_solar_mg_b_triplet_and_linearity_of_small_steps():
    from ddpayne_core.theory import synthesize

    sun = {"teff": 5777.0, "logg": 4.44, "vmic": 1.0, "feh": 0.0}
    w, f0 = synthesize(sun, wmin=5160.0, wmax=5195.0)
    for line in (5168.76, 5174.12, 5185.05):  # Mg b in vacuum
        assert f0[np.argmin(np.abs(w - line))] < 0.25
    _, f1 = synthesize({**sun, "mg_fe": 0.02}, wmin=5160.0, wmax=5195.0)
    _, f2 = synthesize({**sun, "mg_fe": 0.04}, wmin=5160.0, wmax=5195.0)
    d1, d2 = f1 - f0, f2 - f0
    strong = np.abs(d2) > 0.2 * np.abs(d2).max()
    ratio = d2[strong] / d1[strong]
    assert np.median(ratio) == pytest.approx(2.0, abs=0.15)  # near-linear response


@needs_moog
def test_cli_synthesizes_solar_spectrum_in_under_a_minute(tmp_path):
    out = tmp_path / "sun.txt"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ddpayne_core.cli", "theory", "synthesize",
                    "--out", str(out)], check=True, capture_output=True)
    assert time.perf_counter() - t0 < 60
    wave, flux = np.loadtxt(out, unpack=True)
    assert wave.size == get_instrument("lamost").wave.size
    core = lambda lam: flux[np.argmin(np.abs(wave - lam))]
    assert core(3934.8) < 0.5 and core(8544.4) < 0.8  # Ca II K and the Ca triplet


def _peak_wavelengths(wave, d, n=5, sep=8.0):
    order = np.argsort(-np.abs(d))
    peaks = []
    for i in order:
        if all(abs(wave[i] - p) > sep for p in peaks):
            peaks.append(wave[i])
        if len(peaks) == n:
            break
    return np.array(peaks)


@needs_table1
def test_reference_gradients_load_with_documented_shapes():
    ref = load_reference_gradients("lamost-table1")
    n_star, n_lab, n_pix = ref.dflux.shape
    assert n_star == 16 and n_pix == ref.wavelength.size == ref.flux.shape[1]
    assert n_lab == len(ref.labels) and len(ref.stars) == 16
    from ddpayne_core.labels import LABEL_SETS
    assert set(LABEL_SETS["lamost-apogee"]) | set(LABEL_SETS["lamost-galah"]) <= set(ref.labels)
    assert ref.stars["teff"][0] == 5778 and ref.stars["d_logg"][0] == -0.25


def test_isochrone_reference_stars_follow_table1_conventions():
    """lamost-isochrone: 20 stars between Table 1's metallicities, on the dwarf and giant
    sequences, each stepped once in every LAMOST-APOGEE label with Table 1's steps and signs."""
    from ddpayne_core.labels import LABEL_SETS
    from ddpayne_core.theory.gradients import REFERENCE_LABELS, grid_spec, isochrone_points

    ref, step = isochrone_points()
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    teff, logg, feh = ref[:, col["teff"]], ref[:, col["logg"]], ref[:, col["feh"]]
    dwarf = logg > 3.8
    assert len(ref) == 20 and dwarf.sum() == 16 and np.all((feh >= -1.75) & (feh <= -0.25))
    assert np.all(logg[dwarf] > 4.0) and np.all((logg[~dwarf] > 1.0) & (logg[~dwarf] < 2.5))
    # Hotter dwarfs sit higher on the main sequence (lower logg); metal-poor giants of one Teff
    # are more luminous (lower logg), as on real isochrones.
    assert np.all(np.diff(logg[dwarf & (feh == -0.75)][np.argsort(teff[dwarf & (feh == -0.75)])]) < 0)
    assert np.all(np.diff(logg[~dwarf][np.argsort(feh[~dwarf])]) > 0)
    assert np.all(step[:, col["teff"]] == 200) and np.all(step[dwarf, col["logg"]] == -0.25)
    assert np.all(step[~dwarf, col["logg"]] == 0.5) and np.all(step[:, col["mg_fe"]] == 0.5)
    points = grid_spec("lamost-isochrone").points
    assert points.shape == (20 * (1 + len(LABEL_SETS["lamost-apogee"])), len(REFERENCE_LABELS))
    galah_only = [col[lab] for lab in REFERENCE_LABELS if lab not in LABEL_SETS["lamost-apogee"]]
    assert np.all(points[:, galah_only] == 0.0)


def test_galactic_xfe_follows_the_milky_way_trends():
    """Solar-metallicity dwarfs at [X/Fe] 0; the alpha elements +0.3 from [Fe/H] -1 down, half
    of that at -0.5; Mn and Cu on their plateaus from -1.5; dredged-up C and N in giants only."""
    from ddpayne_core import constants as C
    from ddpayne_core.theory.gradients import galactic_xfe

    feh = np.array([0.3, 0.0, -0.5, -1.0, -1.5, -2.5])
    dwarf = galactic_xfe(feh, np.full(feh.size, 4.5))
    assert np.allclose(dwarf["mg_fe"], [0, 0, 0.15, 0.3, 0.3, 0.3])
    assert np.allclose(dwarf["o_fe"], dwarf["ti_fe"]) and np.allclose(dwarf["al_fe"], dwarf["mg_fe"] / 2)
    assert np.allclose(dwarf["mn_fe"], [0, 0, -0.35 / 3, -0.35 * 2 / 3, -0.35, -0.35])
    assert np.allclose(dwarf["cu_fe"][[1, 4, 5]], [0, C.GALACTIC_CU_PLATEAU, C.GALACTIC_CU_PLATEAU])
    assert np.all(dwarf["n_fe"] == 0) and np.all(dwarf["c_fe"] == 0)
    giant = galactic_xfe(feh, np.full(feh.size, 2.0))
    assert np.all(giant["n_fe"] == 0.3) and np.all(giant["c_fe"] == -0.2)
    assert np.array_equal(giant["mg_fe"], dwarf["mg_fe"])


def test_galactic_reference_stars_are_table1_at_galactic_abundances():
    """lamost-table1-galactic: Table 1's Teff, logg, [Fe/H], vmic and their steps; [X/Fe] from
    the Galactic trends, stepped 0.5 dex towards solar, so every stepped [X/Fe] lies within
    +-0.5; a solar-metallicity dwarf is Table 1's star exactly (the same cached spectra)."""
    from ddpayne_core.labels import LABEL_SETS
    from ddpayne_core.theory.gradients import (
        REFERENCE_LABELS,
        galactic_points,
        grid_spec,
        point_file,
        table1_points,
    )

    ref, step = galactic_points()
    t1, t1_step = table1_points()
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    params = [col[lab] for lab in ("teff", "logg", "vmic", "feh")]
    assert np.array_equal(ref[:, params], t1[:, params])
    assert np.array_equal(step[:, params], t1_step[:, params])
    xfe = [col[lab] for lab in LABEL_SETS["lamost-apogee"] if lab.endswith("_fe") and lab != "feh"]
    stepped = ref[:, xfe] + step[:, xfe]
    assert np.all(np.abs(step[:, xfe]) == 0.5) and np.all(np.abs(stepped) <= 0.5 + 1e-9)
    metal_poor = ref[:, col["feh"]] <= -1.0
    assert np.all(ref[metal_poor, col["mg_fe"]] == 0.3) and np.all(step[metal_poor, col["mg_fe"]] == -0.5)
    assert np.all(ref[metal_poor, col["mn_fe"]] < -0.2) and np.all(step[metal_poor, col["mn_fe"]] == 0.5)
    sun = 0  # Table 1 star 1: the Sun, a solar-metallicity dwarf
    assert np.array_equal(ref[sun], t1[sun]) and np.array_equal(step[sun], t1_step[sun])
    spec, table1 = grid_spec("lamost-table1-galactic"), grid_spec("lamost-table1")
    assert spec.points.shape == (16 * (1 + len(REFERENCE_LABELS)), len(REFERENCE_LABELS))
    assert point_file(spec, spec.points[0]) == point_file(table1, table1.points[0])

def test_reference_grids_join_with_plus():
    """"a+b" holds a's stars then b's, with the labels both have; the gradients are the parts'."""
    table1 = load_reference_gradients("lamost-table1")
    iso = load_reference_gradients("lamost-isochrone")
    both = load_reference_gradients("lamost-table1+lamost-isochrone")
    assert both.labels == iso.labels and len(both.stars) == 36 == both.dflux.shape[0]
    assert list(both.stars["star"]) == list(range(1, 37))
    k = table1.labels.index("mn_fe")
    assert np.array_equal(both.dflux[:16, both.labels.index("mn_fe")], table1.dflux[:, k])
    assert np.array_equal(both.dflux[16:], iso.dflux)
    assert np.array_equal(both.reference_labels()[16:], iso.reference_labels())
    with pytest.raises(FileNotFoundError, match="no-such-grid"):
        load_reference_gradients("lamost-table1+no-such-grid")


def test_truth_physics_gradients_are_alike_but_not_equal():
    """lamost-table1-truth: the same 16 stars and steps with the synthetic survey's perturbed
    physics (log gf errors): every label of both label sets, gradients that correlate closely
    with the regularizing physics' (same lines) without being equal to them."""
    truth = load_reference_gradients("lamost-table1-truth")
    reg = load_reference_gradients("lamost-table1")
    assert truth.dflux.shape[:2] == (16, 25) and {"na_fe", "ba_fe", "mg_fe"} <= set(truth.labels)
    use = (truth.wavelength > 3900) & (truth.wavelength < 8880)
    for lab in ("mg_fe", "ca_fe", "teff"):
        a = truth.dflux[:, truth.labels.index(lab)][:, use]
        b = reg.dflux[:, reg.labels.index(lab)][:, use]
        corr = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]
        assert min(corr) > 0.9 and np.abs(a - b).max() > 1e-3, lab


@needs_table1
def test_mg_and_ca_gradients_peak_at_their_lines():
    ref = load_reference_gradients("lamost-table1")
    wave = ref.wavelength
    use = (wave > 3900) & (wave < 8880)
    mg = ref.dflux[0, ref.labels.index("mg_fe")] * use
    peaks = _peak_wavelengths(wave, mg, n=3)
    assert np.any((peaks > 5160) & (peaks < 5195))  # Mg b triplet
    ca = ref.dflux[0, ref.labels.index("ca_fe")] * use
    peaks = _peak_wavelengths(wave, ca, n=4)
    near = lambda lines: np.any([np.abs(peaks - l).min() < 15 for l in lines])
    assert near((3934.8, 3969.6)) or near((8500.4, 8544.4, 8664.5)) or near((4227.9,))


@needs_table1
def test_galah_only_gradients_peak_at_their_lines():
    """The GALAH-only labels of the regularizing grid (vacuum wavelengths): [Na/Fe] at Na D
    (5891.6, 5897.6 A), [Li/Fe] at Li I 6709.7 A, [Ba/Fe] at Ba II 4555.3 A (strongest line of
    reference star 1, the Sun)."""
    ref = load_reference_gradients("lamost-table1")
    wave = ref.wavelength
    use = (wave > 3900) & (wave < 8880)
    for lab, lines in (("na_fe", (5891.6, 5897.6)), ("li_fe", (6709.7,)), ("ba_fe", (4555.3,))):
        peak = _peak_wavelengths(wave, ref.dflux[0, ref.labels.index(lab)] * use, n=1)[0]
        assert min(abs(peak - l) for l in lines) < 5, (lab, peak)


@needs_table1
@needs_moog
def test_teff_logg_gradients_nonzero_and_abundance_gradients_local():
    ref = load_reference_gradients("lamost-table1")
    wave = ref.wavelength
    use = (wave > 3900) & (wave < 8880)
    metal_rich = np.asarray(ref.stars["feh"]) >= -1.5
    for lab in ("teff", "logg"):
        d = np.abs(ref.dflux[:, ref.labels.index(lab)][:, use])
        # Non-zero across the spectrum: every 500 A stretch responds for [Fe/H] >= -1.5; the
        # hottest, most metal-poor stars have line-free stretches where normalized flux cannot
        # respond, but most stretches still do.
        responds = np.array([d[:, (wave[use] >= lo) & (wave[use] < lo + 500)].max(axis=1) > 1e-3
                             for lo in range(3900, 8400, 500)]).T      # (n_star, n_window)
        assert responds[metal_rich].all(), lab
        assert responds.mean(axis=1).min() >= 0.5, lab  # (no Stark wings: weak Balmer logg response)
    # [Cu/Fe] of the Sun: Cu I lines only; far (>150 A) from every Cu line of the line list
    # nothing moves (150 A: beyond the reach of the 50-A continuum kernel's weights).
    from ddpayne_core.instrument import air_to_vacuum
    from ddpayne_core.theory.synthesis import REGULARIZING, prepare_linelist
    lines = prepare_linelist(REGULARIZING)
    cu_lines = air_to_vacuum(lines.wave[np.isclose(lines.species, 29.0)])
    d = ref.dflux[0, ref.labels.index("cu_fe")]
    far = use & (np.abs(wave[:, None] - cu_lines[None, :]).min(axis=1) > 150)
    near = use & (np.abs(wave[:, None] - cu_lines[None, :]).min(axis=1) < 3)
    assert np.abs(d[far]).max() < 0.25 * np.abs(d[near]).max()
    assert np.abs(d[far]).max() < 2e-3


def test_atmosphere_keeps_only_monotone_depths():
    # atmosnet's deepest layers turn over for this hot metal-poor dwarf (X19 Table 1 star 16
    # stepped in Teff); the kept part is monotone and still reaches deep layers.
    atm = model_atmosphere(7259.0, 4.19, -2.5)
    assert 50 <= len(atm.deck) < 80
    assert np.all(np.diff(atm.deck[:, 0]) > 0) and np.all(np.diff(atm.deck[:, 2]) > 0)


def test_convert_atmosnet_pickle_round_trip(tmp_path):
    """A pickle in atmosnet's layout (a list of per-column dicts of arrays) converts to the npz
    the atmosphere code reads; the committed weights were made this way."""
    from ddpayne_core.theory.atmosphere import convert_atmosnet_pickle

    rng = np.random.default_rng(0)
    cols = [{"column": c, "w_array_0": rng.normal(size=(3, 4)), "w_array_1": rng.normal(size=(3, 3)),
             "w_array_2": rng.normal(size=(80, 3)), "b_array_0": np.zeros(3), "b_array_1": np.zeros(3),
             "b_array_2": np.zeros(80), "x_min": np.zeros(4), "x_max": np.ones(4),
             "ranges": np.array([[2500, 8000], [-1, 5.5], [-4, 1.5], [-0.2, 0.6]], float),
             "labels": ["TEFF", "LOGG", "FE_H", "ALPHA_FE"]} for c in range(8)]
    src = tmp_path / "atmosnet.pkl"
    src.write_bytes(pickle.dumps(cols))
    out = convert_atmosnet_pickle(src, tmp_path / "w.npz")
    with np.load(out) as f:
        np.testing.assert_array_equal(f["w_array_2_7"], cols[7]["w_array_2"])
        assert f["labels"].tolist() == ["TEFF", "LOGG", "FE_H", "ALPHA_FE"]


def test_reference_grid_without_a_label_says_which_and_the_demo_falls_back():
    """A grid stepped in some labels only names the missing ones; the demo's GALAH-label model
    takes the requested grid where it covers the GALAH labels and the default grid otherwise."""
    from ddpayne_core import constants as C
    from ddpayne_core.demo import _reference_for

    with pytest.raises(ValueError, match="'lamost-isochrone' is not stepped in ba_fe, eu_fe"):
        load_reference_gradients("lamost-isochrone").select_labels(["teff", "ba_fe", "eu_fe"])
    assert _reference_for("lamost-table1+lamost-isochrone", "lamost-galah") == C.REFERENCE_GRID
    assert _reference_for("lamost-table1+lamost-isochrone", "lamost-apogee") \
        == "lamost-table1+lamost-isochrone"
    assert _reference_for("lamost-table1", "lamost-galah") == "lamost-table1"


def test_a_point_moog_cannot_synthesize_is_recorded_and_its_star_left_out(tmp_path, monkeypatch):
    # Three reference stars stepped in Teff and logg; MOOG "fails" at star 2's logg step.
    from ddpayne_core.theory import gradients as G

    ref = np.tile(np.array(G.table1_points()[0][0]), (3, 1))
    ref[:, 0] = [4500.0, 4800.0, 5100.0]
    steps = np.ones_like(ref) * 0.1
    monkeypatch.setitem(G.REFERENCE_GRIDS, "test-grid", (lambda: (ref, steps), ("teff", "logg")))
    monkeypatch.setattr(G, "WORK_DIR", tmp_path / "work")
    monkeypatch.setattr(G, "DATA_DIR", tmp_path)
    bad = ref[1] + 0.1 * np.eye(len(G.REFERENCE_LABELS))[1]

    def synthesize(labels, physics, w0, w1):
        if np.allclose([labels["teff"], labels["logg"]], bad[:2]):
            raise RuntimeError("MOOG returned unphysical depths at 3642.9-3729.1 A")
        return (labels["teff"] + 10 * labels["logg"],)

    monkeypatch.setattr(G, "synthesize", synthesize)
    monkeypatch.setattr(G, "to_instrument", lambda x, inst: np.full(inst.wave.size, x / 1e4))
    spec = G.grid_spec("test-grid")
    results = [G._compute_point((spec, p)) for p in spec.points]
    assert sum(r is None for r in results) == 1 and G.failure_file(spec, bad).exists()
    out = G.assemble("test-grid")
    grid = load_reference_gradients(str(out))
    assert list(grid.stars["teff"]) == [4500.0, 5100.0]          # star 2 left out, not waited for
    assert np.allclose(grid.dflux[:, 1], 10 * 0.1 / 1e4, rtol=1e-3)  # logg steps of the kept stars (float32)
    left = grid.provenance["left_out_stars"]
    assert [row["star"] for row in left] == [2] and "unphysical depths" in left[0]["failed_points"][0]["reason"]
    # A point neither computed nor failed is still waited for.
    G.point_file(spec, spec.points[0]).unlink()
    with pytest.raises(RuntimeError, match="not all computed yet"):
        G.assemble("test-grid")
