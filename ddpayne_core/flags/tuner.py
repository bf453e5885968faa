"""Live re-flagging for the app: X_flag and qflag_chi2 of a whole catalogue under a changing
configuration, with the bin medians cached so that moving a cutoff is one comparison per row.
The rule is ``xflag.xflag_rule``, the one the catalogue uses."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .chi2 import qflag_chi2
from .xflag import (XFlagConfig, bin_index, bin_passes, binned_medians, eligible_for_medians,
                    median_response, medians_at, xflag_eligible, xflag_rule)


class FlagTuner:
    """Live re-flagging of a catalogue's X_flag and qflag_chi2 under a changing configuration.

    Bin medians of gradcorr (and the labels' median X_response) depend on the bins and the S/N
    limit but not on the cutoffs, so they are cached per (label, bins, S/N limit): a cutoff
    change is one comparison per row.
    """

    def __init__(self, table: pd.DataFrame, labels):
        self.labels = list(labels)
        cols = lambda c: table[c].to_numpy(dtype=np.float64)
        self.teff, self.logg, self.feh, self.snr = (cols(c) for c in ("teff", "logg", "feh", "snr"))
        self.gradcorr = {lab: cols(f"{lab}_gradcorr") for lab in self.labels}
        self.response = {lab: cols(f"{lab}_response") if f"{lab}_response" in table else None
                         for lab in self.labels}
        self.chi2ratio = cols("chi2ratio") if "chi2ratio" in table else None
        self._medians: dict = {}
        self._keys: dict = {}
        self._count_cache: dict = {}
        self._count_hash = None

    def _bin_keys(self, config: XFlagConfig):
        """Bin key of every row and, once sorted, each row's index into the unique keys:
        (unique keys (n_bins,), row bin index (n_row,)). Cached per bin configuration."""
        key = (config.teff_bin, config.feh_bin, config.giant_logg)
        if key not in self._keys:
            keys = bin_index(np.nan_to_num(self.teff), np.nan_to_num(self.feh),
                              self.logg < config.giant_logg, config)
            uniq, inv = np.unique(keys, return_inverse=True)
            self._keys = {key: (keys, uniq, inv.astype(np.int32))}
        return self._keys[key]

    def bin_medians(self, label: str, config: XFlagConfig):
        """(bin keys, median gradcorr) of ``label`` under ``config``'s bins and S/N limit."""
        key = (label, config.teff_bin, config.feh_bin, config.giant_logg, config.snr_min)
        if key not in self._medians:
            use = eligible_for_medians(self.teff, self.logg, self.feh, self.snr, config)
            self._medians[key] = binned_medians(self._bin_keys(config)[0], self.gradcorr[label], use)
        return self._medians[key]

    def label_response(self, label: str, config: XFlagConfig):
        """``label``'s median X_response over the rows entering the bin medians (None for a
        label without one)."""
        if self.response[label] is None:
            return None
        key = ("response", label, config.snr_min)
        if key not in self._medians:
            use = eligible_for_medians(self.teff, self.logg, self.feh, self.snr, config)
            self._medians[key] = median_response(self.response[label], use)
        return self._medians[key]

    def _lookup(self, label: str, config: XFlagConfig):
        """The median gradcorr of every bin of the catalogue (NaN where no star enters the
        median): (n_bins,), the rows' bin index (n_row,), whether a row can carry X_flag = 1
        at all (finite gradcorr, inside the Teff/logg limits): (n_row,), and a hash of that
        mask (labels of one star usually share it). Cached."""
        key = ("lookup", label, config.teff_bin, config.feh_bin, config.giant_logg, config.snr_min)
        if key not in self._medians:
            _, all_bins, inv = self._bin_keys(config)
            bin_med = medians_at(*self.bin_medians(label, config), all_bins)
            eligible = xflag_eligible(self.gradcorr[label], self.teff, self.logg, self.feh)
            self._medians[key] = (bin_med, inv, eligible, hash(np.packbits(eligible).tobytes()))
        return self._medians[key]

    def flag(self, label: str, config: XFlagConfig) -> np.ndarray:
        """X_flag of ``label`` for every row: (n_row,) int8 (same rule as flags.x_flag)."""
        bin_med, inv, eligible, _ = self._lookup(label, config)
        return xflag_rule(bin_med[inv], eligible, config.cutoff, self.label_response(label, config),
                          config.response_min)

    def count_flagged(self, config: XFlagConfig, keep: np.ndarray) -> dict:
        """Per label, the rows in ``keep`` with X_flag 1, from per-bin counts of the kept,
        eligible rows (cached while ``keep`` is unchanged and shared by the labels with the same
        eligible rows): a cutoff change sums a few hundred bins per label."""
        keep_hash = hash(np.packbits(keep).tobytes())
        if keep_hash != self._count_hash:
            self._count_cache, self._count_hash = {}, keep_hash
        out = {}
        for label in self.labels:
            bin_med, inv, eligible, eligible_hash = self._lookup(label, config)
            key = (eligible_hash, config.teff_bin, config.feh_bin, config.giant_logg)
            if key not in self._count_cache:
                self._count_cache[key] = np.bincount(inv[keep & eligible], minlength=len(bin_med))
            passes = bin_passes(bin_med, config.cutoff, self.label_response(label, config),
                                config.response_min)
            out[label] = int(self._count_cache[key][passes].sum())
        return out

    def qflag_chi2(self, config: XFlagConfig) -> np.ndarray | None:
        if self.chi2ratio is None:
            return None
        return qflag_chi2(self.chi2ratio, self.snr, config.chi2_cuts)

    def gradcorr_map(self, label: str, config: XFlagConfig, giant: bool) -> pd.DataFrame:
        """Median gradcorr per (Teff, [Fe/H]) bin of dwarfs or giants: columns teff, feh (bin
        centres), median, passes (``bin_passes``: the bin's stars get X_flag 1)."""
        uniq, med = self.bin_medians(label, config)
        g, rest = np.divmod(uniq, 10_000 * 10_000)
        t, f = np.divmod(rest, 10_000)
        sel = g == int(giant)
        passes = bin_passes(med, config.cutoff, self.label_response(label, config), config.response_min)
        return pd.DataFrame({"teff": (t[sel] + 0.5) * config.teff_bin,
                             "feh": (f[sel] + 0.5) * config.feh_bin - 10.0,
                             "median": med[sel], "passes": passes[sel]})
