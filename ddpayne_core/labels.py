"""Label sets (docs/spec.md sec. 2) as configuration, and min-max scaling.

Label names are lowercase catalogue column names: teff [K], logg [cgs], vmic [km/s], feh
(= [Fe/H]) and <x>_fe (= [X/Fe]) [dex].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import ATOMIC_NUMBER

_APOGEE_ELEMENTS = ("C", "N", "O", "Mg", "Al", "Si", "Ca", "Ti", "Cr", "Mn", "Ni", "Cu")
_GALAH_ELEMENTS = ("Li", "C", "O", "Na", "Mg", "Al", "Si", "Ca", "Sc", "Ti", "V", "Cr", "Mn",
                   "Co", "Ni", "Cu", "Zn", "Y", "Ba", "Eu")
_DESI_ELEMENTS = ("C", "N", "O", "Mg", "Al", "Si", "Ca", "Ti", "Cr", "Mn", "Ni")


def _xfe(elements):
    return tuple(f"{el.lower()}_fe" for el in elements)


LABEL_SETS = {
    "lamost-apogee": ("teff", "logg", "vmic", "feh") + _xfe(_APOGEE_ELEMENTS),
    "lamost-galah": ("teff", "logg", "feh") + _xfe(_GALAH_ELEMENTS),
    "desi": ("teff", "logg", "vmic", "feh") + _xfe(_DESI_ELEMENTS),
}

_SYMBOL_BY_LOWER = {s.lower(): s for s in ATOMIC_NUMBER}

# Human-readable names for plots and tables.
def pretty(label: str) -> str:
    """'teff' -> 'Teff', 'mg_fe' -> '[Mg/Fe]'."""
    fixed = {"teff": "Teff", "logg": "logg", "vmic": "vmic", "feh": "[Fe/H]"}
    if label in fixed:
        return fixed[label]
    el = element_of(label)
    return f"[{el}/Fe]" if el else label


# Units of catalogue columns, for axis titles and tables (logg is log10 of g in cm s^-2).
UNITS = {"teff": "K", "logg": "dex", "vmic": "km/s", "snr": "", "chi2ratio": ""}
_COLUMN_NAMES = {"snr": "S/N", "chi2ratio": "chi2 / typical chi2 at this S/N",
                 "redchi2": "reduced chi2"}


def with_unit(column: str) -> str:
    """A column's human name with its unit: 'teff' -> 'Teff [K]', 'mg_fe' -> '[Mg/Fe] [dex]',
    'teff_gradcorr' -> 'Teff gradient correlation'."""
    if column.endswith("_gradcorr"):
        return f"{pretty(column[:-len('_gradcorr')])} gradient correlation"
    if column in _COLUMN_NAMES:
        return _COLUMN_NAMES[column]
    unit = UNITS.get(column, "dex" if column == "feh" or column.endswith("_fe") else "")
    return f"{pretty(column)} [{unit}]" if unit else pretty(column)


def element_of(label: str) -> str | None:
    """Element symbol of an abundance label: 'mg_fe' -> 'Mg', 'feh' -> 'Fe', else None."""
    if label == "feh":
        return "Fe"
    if label.endswith("_fe"):
        sym = _SYMBOL_BY_LOWER.get(label[:-3])
        if sym is None:
            raise ValueError(f"label {label!r} names no known element")
        return sym
    return None


def get_label_set(name_or_labels) -> tuple[str, ...]:
    """A label set by name (see LABEL_SETS) or an explicit sequence of label names."""
    if isinstance(name_or_labels, str):
        if name_or_labels not in LABEL_SETS:
            raise ValueError(f"unknown label set {name_or_labels!r}; known: {sorted(LABEL_SETS)}")
        return LABEL_SETS[name_or_labels]
    labels = tuple(name_or_labels)
    for lab in labels:
        if lab not in ("teff", "logg", "vmic"):
            element_of(lab)
    return labels


@dataclass(frozen=True)
class Scaler:
    """Min-max scaling of labels to [-0.5, 0.5] (The Payne's convention).

    lo, hi: (n_label,) training-set minimum and maximum of each label.
    """

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, labels: np.ndarray) -> "Scaler":
        """labels: (n_star, n_label)."""
        lo, hi = np.nanmin(labels, axis=0), np.nanmax(labels, axis=0)
        if np.any(hi <= lo):
            raise ValueError("every label needs a range in the training set (min < max)")
        return cls(lo.astype(np.float64), hi.astype(np.float64))

    def scale(self, labels):
        return (labels - self.lo) / (self.hi - self.lo) - 0.5

    def unscale(self, scaled):
        return (scaled + 0.5) * (self.hi - self.lo) + self.lo

    @property
    def span(self) -> np.ndarray:
        return self.hi - self.lo
