"""What the survey explorer shows, computed without any UI: a catalogue bundle, row filters,
the catalogue row nearest to a click (a k-d tree, not a scan), the star inspector's arrays, the
emulator-versus-ab-initio gradient spectra of one star, and flag tuning with cached bin medians
so that moving a cutoff re-flags millions of rows in well under a second.

The Panel app (``apps/``) only lays these out.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .. import constants as C
from ..catalog import read_catalog_metadata
from ..fit.lm import FitConfig, fitted_spectra
from ..flags import FlagTuner, XFlagConfig, emulator_dflux, model_reference, nearest_reference
from ..instrument import get_instrument
from ..io.store import SpectralStore, open_store
from ..io_utils import atomic_write_text
from ..labels import pretty, with_unit
from ..model.emulator import EmulatorModel
from ..paths import DEMO_OUT
from ..preprocess.grid import preprocess_batch
from ..theory.gradients import ReferenceGradients, load_reference_gradients

DEFAULT_BUNDLE = DEMO_OUT

# Axis scales of the k-d trees that answer clicks (a Kiel map spans ~3000 K by ~5 dex, an
# [X/Fe]-[Fe/H] map ~3 dex by ~1 dex), so that the trees' balls are not needlessly elongated.
FLAG_CONFIG_DIR = "flag_configs"
FLAG_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,58}\.json")
CLICK_SCALES = {"teff": 3000.0, "logg": 5.0, "feh": 3.0, "xfe": 1.0}


@dataclass
class SurveyBundle:
    """A fitted catalogue with what produced it.

    catalog: one row per spectrum (row i = store row i when a store is present); model: the
    emulator; reference: ab initio reference gradients; store: the spectra (None for a catalogue
    without them); metadata: the catalogue's ddpayne metadata.
    """

    catalog: pd.DataFrame
    model: EmulatorModel
    reference: ReferenceGradients
    store: SpectralStore | None
    metadata: dict
    directory: Path
    _trees: dict = field(default_factory=dict, repr=False)
    _ranges: dict = field(default_factory=dict, repr=False)

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic"))

    @property
    def fit_config(self) -> FitConfig:
        """The settings the catalogue was fitted with (defaults where it records none), so that
        a refit of one star reproduces its catalogue row."""
        return FitConfig(**self.metadata.get("fit_config", {}))

    @property
    def abundance_labels(self) -> list:
        return [lab for lab in self.model.labels if lab.endswith("_fe")]

    def nearest_row(self, x: float, y: float, xcol: str, ycol: str, pixel: tuple[float, float],
                    allowed: np.ndarray | None = None,
                    radius_px: float = C.CLICK_RADIUS_PX) -> int | None:
        """Catalogue row nearest to a click at (x, y) on the map of ``ycol`` against ``xcol``,
        among rows where ``allowed`` (n_row,) bool is True, or None when no such star lies within
        ``radius_px`` screen pixels. pixel: (data units per screen pixel along x, along y), so
        that "near" means near on the screen at the current zoom. A k-d tree per map finds the
        candidates in a ball enclosing that pixel ellipse; no scan of the catalogue."""
        tree, rows = self._tree(xcol, ycol)
        px, py = abs(float(pixel[0])), abs(float(pixel[1]))
        if len(rows) == 0 or not (px > 0 and py > 0):
            return None
        sx, sy = _scale(xcol), _scale(ycol)
        ball = radius_px * max(px / sx, py / sy)
        cand = rows[np.asarray(tree.query_ball_point([x / sx, y / sy], ball), dtype=int)]
        if allowed is not None:
            cand = cand[allowed[cand]]
        if len(cand) == 0:
            return None
        d2 = ((self.catalog[xcol].to_numpy()[cand] - x) / px) ** 2 \
            + ((self.catalog[ycol].to_numpy()[cand] - y) / py) ** 2
        best = int(np.argmin(d2))
        return int(cand[best]) if d2[best] <= radius_px ** 2 else None

    def axis_range(self, col: str) -> tuple[float, float]:
        """A map axis covering ``col`` (robust_range of the whole catalogue), cached: a
        percentile over millions of rows costs ~0.1 s, once per server."""
        if col not in self._ranges:
            self._ranges[col] = robust_range(self.catalog[col].to_numpy())
        return self._ranges[col]

    def _tree(self, xcol: str, ycol: str):
        if (xcol, ycol) not in self._trees:
            xy = self.catalog[[xcol, ycol]].to_numpy(dtype=np.float64)
            rows = np.nonzero(np.all(np.isfinite(xy), axis=1))[0]
            pts = xy[rows] / np.array([_scale(xcol), _scale(ycol)])
            self._trees[(xcol, ycol)] = (cKDTree(pts), rows)
        return self._trees[(xcol, ycol)]


def _scale(col: str) -> float:
    return CLICK_SCALES.get(col, CLICK_SCALES["xfe"])


def robust_range(values: np.ndarray, pad: float = 0.03) -> tuple[float, float]:
    """(lo, hi) covering the 0.1-99.9 percentiles of the finite ``values`` plus ``pad`` of that
    span on each side: outliers do not squash a plot."""
    lo, hi = np.nanpercentile(np.asarray(values, dtype=np.float64), [0.1, 99.9])
    span = hi - lo if hi > lo else 1.0
    return float(lo - pad * span), float(hi + pad * span)


def density_map(x: np.ndarray, y: np.ndarray, keep: np.ndarray, x_range, y_range,
                shape: tuple[int, int] = (420, 520), values: np.ndarray | None = None,
                max_spread: int = 3) -> np.ndarray:
    """Datashaded map of the rows in ``keep``: (ny, nx) float64 image over ``x_range`` x
    ``y_range`` (each (lo, hi) in either order; row 0 at the low y), holding the number of rows
    per pixel, or the mean of ``values`` (n_row,) when given; NaN where no row falls.

    x, y, keep: (n_row,). Dropped rows get a NaN coordinate, which datashader skips, so no
    catalogue column is copied. Isolated pixels are spread by up to ``max_spread`` pixels
    (display only, as datashader's dynspread) so that sparse catalogues stay visible."""
    import datashader as ds  # imported here: numba start-up is slow and only maps need it

    cols = {"x": np.where(keep, x, np.nan), "y": y}
    if values is not None:
        cols["v"] = values
    canvas = ds.Canvas(plot_width=shape[1], plot_height=shape[0],
                       x_range=tuple(sorted(map(float, x_range))),
                       y_range=tuple(sorted(map(float, y_range))))
    agg = canvas.points(pd.DataFrame(cols, copy=False), "x", "y",
                        ds.count() if values is None else ds.mean("v"))
    if values is None:
        agg = agg.where(agg > 0)
    return _dynspread(agg, max_spread).to_numpy().astype(np.float64)


def _dynspread(agg, max_px: int, threshold: float = 0.5):
    """Spread by the smallest radius (0..max_px) at which at least ``threshold`` of the
    non-empty pixels touch another non-empty pixel (datashader's dynspread rule)."""
    import datashader.transfer_functions as tf

    for px in range(max_px + 1):
        out = tf.spread(agg, px=px, how="max") if px else agg
        filled = np.isfinite(out.to_numpy())
        n = filled.sum()
        if n == 0:
            return out
        padded = np.pad(filled, 1)
        neighbours = sum(np.roll(np.roll(padded, dy, 0), dx, 1)
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)[1:-1, 1:-1]
        if (filled & (neighbours > 0)).sum() >= threshold * n:
            return out
    return out


def load_bundle(directory: str | Path = DEFAULT_BUNDLE, catalog: str | Path | None = None,
                model: str | Path | None = None, store: str | Path | None = None,
                reference: str | None = None) -> SurveyBundle:
    """Load ``<directory>/catalog.parquet``, ``model.pt`` and ``survey/`` (each overridable).
    The reference gradients are the ones the model was trained against unless named."""
    directory = Path(directory)
    catalog = Path(catalog or directory / "catalog.parquet")
    model = Path(model or directory / "model.pt")
    for path, what in ((catalog, "catalogue"), (model, "emulator")):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no {what}; run `ddpayne demo` (or point the app at "
                                    "a catalogue with DDPAYNE_CATALOG / DDPAYNE_MODEL)")
    store_path = Path(store) if store else directory / "survey"
    emulator = EmulatorModel.load(model)
    emulator.check_preprocessing(str(model))
    table = pd.read_parquet(catalog)
    missing = [c for c in ("teff", "logg", "feh", "snr") if c not in table]
    if missing:
        raise ValueError(f"{catalog}: catalogue lacks columns {missing}")
    return SurveyBundle(
        catalog=table, model=emulator,
        reference=load_reference_gradients(reference) if reference else model_reference(emulator),
        store=open_store(store_path) if (store_path / "store.json").exists() else None,
        metadata=read_catalog_metadata(catalog), directory=directory)


def selection(table: pd.DataFrame, snr_min: float = 0.0, good_chi2: bool = False,
              single_only: bool = False, xflag_label: str | None = None,
              flags: dict | None = None) -> np.ndarray:
    """Rows passing the explorer's filters: (n_row,) bool. ``xflag_label``: keep only stars
    whose <label>_flag is 1. ``flags``: column name -> (n_row,) array used instead of the
    table's column (e.g. flags re-tuned in the app), so nothing is copied."""
    flags = flags or {}
    col = lambda c: flags[c] if c in flags else (table[c].to_numpy() if c in table else None)
    keep = table["snr"].to_numpy() >= snr_min
    if good_chi2 and col("qflag_chi2") is not None:
        keep &= col("qflag_chi2") == 0
    if single_only and col("qflag_singlestar") is not None:
        keep &= col("qflag_singlestar") == 1
    if xflag_label:
        keep &= col(f"{xflag_label}_flag") == 1
    return keep


@dataclass
class StarView:
    """One star in the inspector. wave (n_pix,) [A]; flux, model, error (n_pix,) normalized;
    resid_sigma: (flux - model) / error (NaN where unusable); masked: (n_pix,) bool pixels
    not used in the fit; labels: table label/value/error/flag/gradcorr; info: row metadata."""

    row: int
    wave: np.ndarray
    flux: np.ndarray
    model: np.ndarray
    error: np.ndarray
    resid_sigma: np.ndarray
    masked: np.ndarray
    labels: pd.DataFrame
    info: dict


def store_row(bundle: SurveyBundle, row: int) -> int:
    """The store row holding catalogue row ``row``'s spectrum: a catalogue may be a subset or a
    resampling of its store, and then its ``store_row`` column says which; else the same row."""
    rec = bundle.catalog.iloc[row]
    return int(rec["store_row"]) if "store_row" in rec else row


def comparison_labels(bundle: SurveyBundle, row: int) -> tuple[str, dict]:
    """What a star's fitted labels can be compared with: on a synthetic bundle the true labels
    (from the store), on a real one the reference survey's (<prefix>_<label> columns named by
    the catalogue's ``reference_labels``). Returns (column title, {label: value})."""
    if bundle.synthetic and bundle.store is not None:
        srow = store_row(bundle, row)
        truth = bundle.store.meta_rows(srow, srow + 1).iloc[0]
        return "true (synthetic)", {lab: truth.get(lab, np.nan) for lab in bundle.model.labels}
    prefix = bundle.metadata.get("reference_labels")
    if prefix:
        rec = bundle.catalog.iloc[row]
        return f"{prefix.upper()} reference", {lab: rec.get(f"{prefix}_{lab}", np.nan)
                                              for lab in bundle.model.labels}
    return "", {}


def label_table(bundle: SurveyBundle, row: int) -> pd.DataFrame:
    """The fitted labels of one catalogue row with errors and units, the labels they compare
    with (``comparison_labels``), X_flag, gradcorr and whether the fit sat on a bound."""
    rec = bundle.catalog.iloc[row]
    title, other = comparison_labels(bundle, row)
    out = []
    for lab in bundle.model.labels:
        entry = {"label": with_unit(lab), "fitted": rec.get(lab, np.nan),
                 "error": rec.get(f"{lab}_err", np.nan)}
        if title:
            entry[title] = other.get(lab, np.nan)
        entry.update({"X_flag (1 = measured)": rec.get(f"{lab}_flag", np.nan),
                      "gradient correlation": rec.get(f"{lab}_gradcorr", np.nan),
                      "at fit bound": bool(rec.get(f"{lab}_at_bound", False))})
        out.append(entry)
    return pd.DataFrame(out)


def star_view(bundle: SurveyBundle, row: int) -> StarView:
    """Observed spectrum (normalized, rest frame), best-fit model and residual of one row
    (the store's row ``store_row`` if the catalogue has that column, else the same row)."""
    if bundle.store is None:
        raise ValueError("this catalogue has no spectral store: spectra cannot be shown")
    model, rec = bundle.model, bundle.catalog.iloc[row]
    srow = store_row(bundle, row)
    flux, ivar = bundle.store.read(srow, srow + 1)
    rv = np.array([rec.get("rv", 0.0)], dtype=np.float64)
    norm, norm_ivar = preprocess_batch(flux, ivar, rv, get_instrument(bundle.store.info["instrument"]))
    labels = rec[list(model.labels)].to_numpy(dtype=np.float64)
    fitted = fitted_spectra(model, labels[None], np.array([rec.get("lsf_dvar", np.nan)]))[0] \
        if np.all(np.isfinite(labels)) else np.full(model.wave.size, np.nan)
    usable = (norm_ivar[0] > 0) & model.mask
    error = np.where(norm_ivar[0] > 0, 1 / np.sqrt(np.where(norm_ivar[0] > 0, norm_ivar[0], 1)), np.nan)
    resid = np.where(usable, (norm[0] - fitted) / error, np.nan)
    info = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()
            if k in ("specid", "star_id", "snr", "chi2", "redchi2", "lsf_dvar", "chi2ratio",
                     "qflag_chi2", "qflag_singlestar", "fit_status", "is_binary", "injected_bad")}
    return StarView(row, model.wave, norm[0], fitted, error, resid, ~usable,
                    label_table(bundle, row), info)


@dataclass
class GradientComparison:
    """Emulator and ab initio finite-difference spectra for one star and label.

    wave: (n_pix,) [A]; emulator, ab_initio: (n_pix,) dF for the step ``step`` of the nearest
    reference star ``reference_star`` (index into the reference table); corr: their Pearson
    correlation over the model's unmasked pixels (the star's gradcorr); windows: [(lo, hi)] [A]
    around the strongest ab initio features, for zooming on the element's key lines."""

    label: str
    wave: np.ndarray
    emulator: np.ndarray
    ab_initio: np.ndarray
    step: float
    reference_star: int
    reference_labels: dict
    corr: float
    windows: list


def gradient_comparison(bundle: SurveyBundle, row: int, label: str, n_windows: int = 3,
                        half_width: float = 25.0,
                        masked: np.ndarray | None = None) -> GradientComparison:
    """The gradient spectra behind one star's <label>_gradcorr (same metric as flags.gradcorr).
    masked: (n_pix,) bool pixels of this star's spectrum not used in its fit (StarView.masked);
    the feature windows are centred on pixels that neither the model nor the star masks."""
    model = bundle.model
    ref = bundle.reference.select_labels(model.labels)
    labels = bundle.catalog.iloc[row][list(model.labels)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(labels)):
        raise ValueError(f"row {row}: fitted labels are not finite (failed fit)")
    k = model.labels.index(label)
    names = list(model.labels)
    j = int(nearest_reference(*([labels[names.index(c)]] for c in ("teff", "logg", "feh")),
                              ref.stars["teff"], ref.stars["logg"], ref.stars["feh"])[0])
    steps = ref.steps()[j]
    emu = emulator_dflux(model, labels[None], steps[None])[0, k]
    ab = ref.dflux[j, k]
    m = model.mask
    corr = float(np.corrcoef(emu[m], ab[m])[0, 1]) if np.std(emu[m]) > 0 else float("nan")
    shown = m if masked is None else m & ~np.asarray(masked, dtype=bool)
    return GradientComparison(label, model.wave, emu, ab, float(steps[k]), j,
                              {c: float(ref.stars[c][j]) for c in ("teff", "logg", "feh")},
                              corr, feature_windows(model.wave, np.where(shown, ab, 0.0), n_windows,
                                                    half_width))


def feature_windows(wave: np.ndarray, dflux: np.ndarray, n: int = 3, half_width: float = 25.0):
    """Windows [(lo, hi)] [A] centred on the ``n`` largest |dflux| features, at least two
    half-widths apart, sorted by wavelength."""
    order = np.argsort(-np.abs(dflux))
    centres = []
    for i in order:
        if len(centres) == n or dflux[i] == 0:
            break
        if all(abs(wave[i] - c) > 2 * half_width for c in centres):
            centres.append(float(wave[i]))
    return [(c - half_width, c + half_width) for c in sorted(centres)]


def flag_counts(tuner: FlagTuner, config: XFlagConfig, keep: np.ndarray) -> pd.DataFrame:
    """Per label: stars in ``keep`` with X_flag 1 and their share in percent ("-" when no star
    is kept: a share of nothing is not a number to show)."""
    n = int(keep.sum())
    return pd.DataFrame([{"label": pretty(lab), "X_flag = 1": k,
                          "share": f"{100 * k / n:.1f} %" if n else "-"}
                         for lab, k in tuner.count_flagged(config, keep).items()])


# --- Finding and stepping through stars -------------------------------------------------------------
SEARCH_COLUMNS = ("specid", "obsid", "designation", "filename", "star_id")


def find_rows(table: pd.DataFrame, query: str) -> tuple[np.ndarray, str]:
    """Catalogue rows matching ``query`` and how they matched: '#123' is catalogue row 123;
    otherwise an exact match (case-insensitive, as text) in the first of SEARCH_COLUMNS (specid,
    LAMOST obsid, designation, file name, star_id) that has one, else file names containing
    the query. Returns ((n_match,) int sorted, the column matched or 'row'); empty rows when
    nothing matches."""
    none = np.zeros(0, dtype=int)
    q = str(query).strip()
    if not q:
        return none, ""
    if q.startswith("#"):
        row = int(q[1:]) if q[1:].isdigit() else -1
        return (np.array([row]) if 0 <= row < len(table) else none), "row"
    for col in SEARCH_COLUMNS:
        if col in table:
            hit = table[col].astype(str).str.strip().str.lower().to_numpy() == q.lower()
            if hit.any():
                return np.nonzero(hit)[0], col
    if "filename" in table:
        hit = table["filename"].astype(str).str.contains(q, case=False, regex=False).to_numpy()
        return np.nonzero(hit)[0], "part of the file name"
    return none, ""


def step_row(keep: np.ndarray, row: int, step: int) -> int | None:
    """The shown row (``keep`` (n_row,) bool) after (step +1) or before (step -1) ``row`` in
    catalogue order, wrapping round at the ends; the first (or last) shown row when ``row`` is
    negative; None when no row is shown."""
    shown = np.nonzero(keep)[0]
    if len(shown) == 0:
        return None
    if row < 0:
        return int(shown[0] if step > 0 else shown[-1])
    i = np.searchsorted(shown, row, side="right" if step > 0 else "left")
    return int(shown[i % len(shown)] if step > 0 else shown[(i - 1) % len(shown)])


def repeat_rows(table: pd.DataFrame, row: int, limit: int = C.MAX_REPEAT_VISITS) -> np.ndarray:
    """Other catalogue rows of the same star (same star_id), at most ``limit``, in order of
    observation date where the table has ``mjd``: (n,) int."""
    if "star_id" not in table:
        return np.zeros(0, dtype=int)
    ids = table["star_id"].to_numpy()
    same = np.nonzero(ids == ids[row])[0]
    same = same[same != row]
    if "mjd" in table:
        same = same[np.argsort(table["mjd"].to_numpy()[same], kind="stable")]
    return same[:limit]


def spectrum_table(view: StarView) -> pd.DataFrame:
    """The inspector's spectrum of one star as a table for download: rest-frame vacuum
    wavelength [A], normalized flux, its 1-sigma error, the best-fit model and whether the fit
    used the pixel."""
    return pd.DataFrame({"wavelength_vacuum_rest_aa": view.wave, "flux_normalized": view.flux,
                         "flux_error": view.error, "model": view.model,
                         "used_in_fit": ~view.masked})


def histogram(values: np.ndarray, keep: np.ndarray, bins: int = 60,
              value_range: tuple[float, float] | None = None):
    """Counts of the finite ``values`` (n_row,) in ``keep`` (n_row,) bool: (counts (bins,),
    edges (bins + 1,)) over ``value_range`` (default robust_range of the kept values)."""
    v = np.asarray(values, dtype=np.float64)[keep]
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.zeros(bins, dtype=int), np.linspace(0.0, 1.0, bins + 1)
    lo, hi = value_range or robust_range(v)
    return np.histogram(v, bins=bins, range=(lo, hi))


EXPORT_FORMATS = {"CSV": ".csv", "Parquet": ".parquet", "FITS": ".fits"}


def export_table(table: pd.DataFrame, fmt: str) -> io.BytesIO:
    """``table`` as a file in memory in ``fmt`` (a key of EXPORT_FORMATS) for a browser
    download: CSV, Parquet, or a FITS binary table (TOPCAT reads all three)."""
    buf = io.BytesIO()
    if fmt == "CSV":
        buf.write(table.to_csv(index=False).encode())
    elif fmt == "Parquet":
        table.to_parquet(buf, index=False)
    elif fmt == "FITS":
        from astropy.table import Table
        Table.from_pandas(table.reset_index(drop=True)).write(buf, format="fits")
    else:
        raise ValueError(f"export format {fmt!r}: choose one of {sorted(EXPORT_FORMATS)}")
    buf.seek(0)
    return buf


def flag_config_path(directory: str | Path, name: str) -> Path:
    """Where a flag configuration called ``name`` is saved for the bundle in ``directory``:
    always ``<directory>/flag_configs/<name>.json``. The app takes ``name`` from a text field that
    anyone who reaches the server can fill, so only a plain file name is accepted (letters,
    digits, '.', '_', '-'; no folders, no leading dot); anything else is a ValueError that says
    so."""
    name = str(name).strip()
    if name and not name.endswith(".json"):
        name += ".json"
    if not FLAG_CONFIG_NAME.fullmatch(name):
        raise ValueError(f"flag configuration name {name!r}: use a plain file name of letters, "
                         "digits, '.', '_' or '-' (at most 64 characters, no folder, not starting "
                         "with a dot); it is saved in the bundle's flag_configs/ folder")
    return Path(directory) / FLAG_CONFIG_DIR / name


def save_flag_config(config: XFlagConfig, directory: str | Path, name: str) -> Path:
    """Write a flag configuration into the bundle ``directory`` (see ``flag_config_path``) for
    `ddpayne flag --config PATH --reflag-only`; returns the path written."""
    return atomic_write_text(flag_config_path(directory, name), config.to_json())
