"""X_gradcorr and X_flag (X19 sec. 5.4; docs/spec.md sec. 8): the correlation of the emulator's
gradient spectra with the ab initio reference star's nearest in (Teff, logg, [Fe/H]), and the one
rule that turns its bin medians into X_flag, used by the catalogue and the app alike."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from .. import constants as C
from ..model.emulator import EmulatorModel
from ..theory.gradients import ReferenceGradients, load_reference_gradients


def check_number(what: str, name: str, value, lo: float, hi: float) -> float:
    """``value`` as a float if it is a finite number in [lo, hi], else a ValueError naming
    ``what``, the field ``name``, the range and the value given (widgets and JSON files alike
    can hand over None, NaN, text or 1e308)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = np.nan
    if isinstance(value, bool) or not (np.isfinite(number) and lo <= number <= hi):
        raise ValueError(f"{what}: {name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class XFlagConfig:
    """cutoff: bin-median gradcorr above which a bin passes; snr_min: stars entering the medians;
    teff_bin [K], feh_bin [dex]: bin sizes; giant_logg: dwarfs/giants split; chi2_cuts: the
    chi2ratio cut of each S/N tier of C.CHI2RATIO_TIERS (qflag_chi2); response_min: the least
    X_response (d fitted / d true, flags/response.py) an abundance needs for X_flag 1 (0: X19's
    flag, gradcorr alone)."""

    cutoff: float = C.GRADCORR_CUTOFF
    snr_min: float = C.GRADCORR_MIN_SNR
    teff_bin: float = 250.0
    feh_bin: float = 0.25
    giant_logg: float = C.GIANT_LOGG
    chi2_cuts: tuple = tuple(cut for _, cut in C.CHI2RATIO_TIERS)
    response_min: float = C.RESPONSE_MIN

    # Allowed ranges (inclusive). A chi2ratio cut below 1 would call a typical fit bad; a
    # gradcorr cutoff is a correlation coefficient; bins narrower than these hold a few stars.
    LIMITS = {"cutoff": (0.0, 1.0), "snr_min": (0.0, 1000.0), "teff_bin": (50.0, 3000.0),
              "feh_bin": (0.02, 3.0), "giant_logg": (0.0, 6.0), "chi2_cuts": (1.0, 1000.0),
              "response_min": (0.0, 2.0)}

    def __post_init__(self):
        values = asdict(self)
        cuts = values.pop("chi2_cuts")
        if len(cuts) != len(C.CHI2RATIO_TIERS):
            raise ValueError(f"flag configuration: chi2_cuts needs {len(C.CHI2RATIO_TIERS)} "
                             "values, one per S/N tier")
        values.update({f"chi2_cuts[{i}]": c for i, c in enumerate(cuts)})
        for name, value in values.items():
            check_number("flag configuration", name, value, *self.LIMITS[name.split("[")[0]])

    @classmethod
    def from_json(cls, text: str) -> "XFlagConfig":
        """A configuration saved by ``to_json`` (e.g. from the app); unknown keys are an error."""
        values = json.loads(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"flag configuration: unknown keys {sorted(unknown)}")
        if "chi2_cuts" in values:
            values["chi2_cuts"] = tuple(values["chi2_cuts"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def for_model(cls, model: EmulatorModel) -> "XFlagConfig":
        """The default configuration for a model's instrument: X19's S/N-tiered chi2ratio cuts
        for LAMOST, Z24's single cut (eq. 5: 3 MADs) at every S/N for DESI, whose chi2ratio is
        the MAD-scaled one (``chi2.chi2ratio_desi``)."""
        if model.config.get("instrument") == "desi":
            return cls(chi2_cuts=(C.DESI_CHI2_MAD_CUT,) * len(C.CHI2RATIO_TIERS))
        return cls()


def nearest_reference(teff, logg, feh, ref_teff, ref_logg, ref_feh) -> np.ndarray:
    """Index of the nearest reference star under X19's metric
    D = sqrt((dTeff/100 K)^2 + (dlogg/0.2)^2 + (d[Fe/H]/0.1)^2). Inputs (n,) and (n_ref,)."""
    s = C.GRADCORR_METRIC_SCALES
    d2 = ((np.asarray(teff)[:, None] - np.asarray(ref_teff)[None]) / s["teff"]) ** 2 \
        + ((np.asarray(logg)[:, None] - np.asarray(ref_logg)[None]) / s["logg"]) ** 2 \
        + ((np.asarray(feh)[:, None] - np.asarray(ref_feh)[None]) / s["feh"]) ** 2
    return np.argmin(d2, axis=1)


def emulator_dflux(model: EmulatorModel, labels: np.ndarray, steps: np.ndarray,
                   columns=None, net=None) -> np.ndarray:
    """The emulator's finite differences F(l + step_k e_k) - F(l) for the labels k at ``columns``
    (default all), on the pixels of ``net`` (default all: ``model.net``; or a
    ``pixel_subset`` of it). labels: (n, n_label) physical; steps: (n, n_step) physical, one per
    column -> (n, n_step, n_pix)."""
    columns = list(range(labels.shape[1]) if columns is None else columns)
    x = torch.as_tensor(model.scaler.scale(labels), dtype=torch.float32)
    scaled = torch.as_tensor(steps / model.scaler.span[columns], dtype=torch.float32)
    with torch.no_grad():
        return (model.net if net is None else net).label_steps(x, scaled, columns).numpy()


def centred(a: np.ndarray):
    a = a - a.mean(-1, keepdims=True)
    return a, np.sqrt((a ** 2).sum(-1))


def nearest_star(model: EmulatorModel, labels: np.ndarray, reference) -> np.ndarray:
    """Index into ``reference.stars`` of each fitted star's nearest reference star (X19's metric).
    labels: (n, n_label) physical, in ``model.labels`` order -> (n,)."""
    names = list(model.labels)
    return nearest_reference(*(labels[:, names.index(lab)] for lab in ("teff", "logg", "feh")),
                             reference.stars["teff"], reference.stars["logg"], reference.stars["feh"])


def paired_dflux(model: EmulatorModel, labels: np.ndarray, reference, which=None,
                 batch: int | None = None):
    """The emulator's finite differences at fitted labels beside the ab initio ones of each star's
    nearest reference star (X19's metric, that star's steps), on the model's unmasked pixels, for
    the labels ``which`` (default all of the model's; the reference must hold them). Yields, per
    batch of rows with finite labels, (rows (b,), emulator dF (b, k, p), ab initio dF (b, k, p),
    steps (b, k)). labels: (n, n_label) physical."""
    names = list(model.labels)
    which = list(names if which is None else which)
    ref = reference.select_labels(which)
    idx = nearest_star(model, labels, ref)
    steps = ref.steps()[idx]                                           # (n, k)
    ab = ref.dflux[:, :, model.mask]                                   # (n_ref, k, p)
    columns = [names.index(lab) for lab in which]
    rows = np.nonzero(np.all(np.isfinite(labels), axis=1))[0]
    net = model.net.pixel_subset(np.flatnonzero(model.mask))
    if batch is None:  # a hidden layer of the batch's (1 + n_label) spectra stays under 32 MB,
        # so the batch's memory is reused from the heap, not page-faulted afresh (memory.py)
        batch = max(1, (32 << 20) // (4 * net.n_pix * net.n_hidden * (len(columns) + 1)))
    for a in range(0, len(rows), batch):
        r = rows[a:a + batch]
        yield r, emulator_dflux(model, labels[r], steps[r], columns, net), ab[idx[r]], steps[r]


def gradcorr(model: EmulatorModel, labels: np.ndarray, reference, batch: int | None = None,
             which=None) -> np.ndarray:
    """X_gradcorr: Pearson correlation over the model's unmasked pixels between the emulator's
    finite difference at the fitted labels (the nearest reference star's steps) and that star's
    ab initio finite difference, for the labels named in ``which`` (default all of the model's;
    the reference must hold them). labels: (n, n_label) physical -> (n, len(which)); NaN where
    the labels are not finite."""
    out = np.full((len(labels), len(model.labels if which is None else which)), np.nan)
    for r, emu, ab, _ in paired_dflux(model, labels, reference, which, batch):
        (emu, emu_norm), (ab, ab_norm) = centred(emu), centred(ab)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = (emu * ab).sum(-1) / (emu_norm * ab_norm)
    return out


def bin_index(teff, feh, giant, config: XFlagConfig):
    """One integer per (dwarf/giant, Teff bin, [Fe/H] bin)."""
    t = np.floor(np.asarray(teff) / config.teff_bin).astype(np.int64)
    f = np.floor((np.asarray(feh) + 10.0) / config.feh_bin).astype(np.int64)
    return (giant.astype(np.int64) * 10_000 + t) * 10_000 + f


def group_medians(keys: np.ndarray, values: np.ndarray):
    """Median of ``values`` per unique key (vectorized: one sort). Returns (keys, medians)."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    uniq, start, counts = np.unique(k, return_index=True, return_counts=True)
    lo = start + (counts - 1) // 2
    hi = start + counts // 2
    return uniq, 0.5 * (v[lo] + v[hi])


def xflag_eligible(gradcorr_values, teff, logg, feh) -> np.ndarray:
    """Rows that may carry X_flag = 1 at all (X19 sec. 5.4.2): finite gradcorr and labels, and
    neither Teff > 7500 K nor a cool dwarf (Teff < 4500 K, logg > 3.8). (n,) bool."""
    g, teff, logg, feh = (np.asarray(a, dtype=np.float64) for a in (gradcorr_values, teff, logg, feh))
    cool_teff, cool_logg = C.XFLAG_COOL_DWARF
    return np.isfinite(g) & np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh) \
        & ~((teff > C.XFLAG_TEFF_MAX) | ((teff < cool_teff) & (logg > cool_logg)))


def medians_at(uniq: np.ndarray, medians: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The median of each of ``keys``' bins from ``group_medians``' (uniq, medians); NaN for a
    bin no star entered."""
    out = np.full(len(keys), np.nan)
    if len(uniq):
        pos = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
        hit = uniq[pos] == keys
        out[hit] = medians[pos[hit]]
    return out


def bin_passes(bin_median, cutoff: float, label_response=None, response_min: float = 0.0) -> np.ndarray:
    """Which bins pass: median gradcorr above ``cutoff`` (X19 sec. 5.4.2) and, for a label with
    an X_response (the abundances), the label's median response (``median_response``) at least
    ``response_min``. bin_median: array of bins (or of rows, each with its bin's median) -> bool."""
    passes = np.asarray(bin_median) > cutoff
    if label_response is not None:
        passes &= bool(label_response >= response_min)
    return passes


def xflag_rule(bin_median: np.ndarray, eligible: np.ndarray, cutoff: float, label_response=None,
               response_min: float = 0.0) -> np.ndarray:
    """X_flag from each row's bin median gradcorr: 1 where its bin passes (``bin_passes``) and
    the row is eligible, else 0. The one rule that flags.x_flag and the app's live re-flagging
    (explore.FlagTuner) both apply. (n,) int8."""
    return (bin_passes(bin_median, cutoff, label_response, response_min) & eligible).astype(np.int8)


def median_response(response, use: np.ndarray) -> float:
    """A label's X_response over a catalogue: the median over the rows ``use`` (those entering
    the bin medians) with a finite response; NaN if none. The response's deficit is the
    label's, not the star's: on the population-shift test (studies/population_shift) stars
    whose own bin's response passed followed their truth no better than those whose failed, so
    one value per label and catalogue decides, not one per bin."""
    r = np.asarray(response, dtype=np.float64)
    ok = use & np.isfinite(r)
    return float(np.median(r[ok])) if ok.any() else np.nan


def x_flag(gradcorr_values, teff, logg, feh, snr, config: XFlagConfig = XFlagConfig(), response=None):
    """X_flag per star (X19 sec. 5.4.2): 1 if the median gradcorr of its (dwarf/giant, Teff,
    [Fe/H]) bin, computed from stars with S/N > snr_min, exceeds the cutoff and, where
    ``response`` (X_response, (n,); the abundances) is given, the label's median response
    (``median_response``) reaches ``config.response_min``; 0 otherwise, and 0 outside
    ``xflag_eligible``. Inputs (n,); returns (n,) int8."""
    g = np.asarray(gradcorr_values, dtype=np.float64)
    teff, logg, feh, snr = (np.asarray(a, dtype=np.float64) for a in (teff, logg, feh, snr))
    eligible = xflag_eligible(g, teff, logg, feh)
    keys = bin_index(np.nan_to_num(teff), np.nan_to_num(feh), logg < config.giant_logg, config)
    use = eligible_for_medians(teff, logg, feh, snr, config)
    label_response = None if response is None else median_response(response, use)
    return xflag_rule(medians_at(*binned_medians(keys, g, use), keys), eligible, config.cutoff,
                      label_response, config.response_min)


def eligible_for_medians(teff, logg, feh, snr, config: XFlagConfig) -> np.ndarray:
    """Rows that enter the bin medians: finite labels and S/N above ``config.snr_min``. (n,) bool."""
    return np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh) & (snr > config.snr_min)


def binned_medians(keys: np.ndarray, values: np.ndarray, use: np.ndarray):
    """``group_medians`` of the finite ``values`` of rows ``use``: (bin keys, medians)."""
    use = use & np.isfinite(values)
    return group_medians(keys[use], values[use]) if use.any() else (np.zeros(0, np.int64), np.zeros(0))


def model_reference(model: EmulatorModel) -> ReferenceGradients:
    """The reference gradients ``model`` was regularized with: its X_gradcorr compares with them.
    (Models saved before the grid was recorded were all regularized with X19 Table 1's.)"""
    return load_reference_gradients(model.config.get("reference", C.TABLE1_GRID))
