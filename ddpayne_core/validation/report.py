"""The validation report of a fitted, flagged catalogue (paper figures in parentheses):
self- and cross-validation against the high-resolution labels (X19 Figs. 5-8), repeat-visit
precision versus S/N (Figs. 9-11), gradient-correlation maps over Teff-[Fe/H] (Fig. 2), label
covariances (Fig. 3), Kiel and [Fe/H]-[alpha/Fe] density maps (Fig. 14), and, on a synthetic
survey, recovery of injected bad spectra and binaries and the error over the Cramer-Rao bound
(Z24 Fig. 9). Writes PNG figures, summary.md and summary.json into one folder.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# Figures are built with matplotlib's object API, which needs no backend: importing this module
# never changes the backend of the process (a Jupyter notebook keeps its inline plots).
from matplotlib.figure import Figure

from .. import constants as C
from ..catalog import SYNTHETIC_NOTE, alpha_fe, robust_bias_scatter
from ..flags import FlagTuner, XFlagConfig, repeat_precision, spectroscopic_parallax
from ..io_utils import atomic_path, atomic_write_text
from ..labels import pretty

SNR_BINS = (10, 20, 30, 50, 80, 120, 200, 400)


def validation_table(catalog: pd.DataFrame, meta: pd.DataFrame, labels, training_ids,
                     survey: str = "apogee") -> pd.DataFrame:
    """Fitted minus high-resolution labels for the stars in common: 'self' = the training
    stars, 'cross' = the others (not trained on). Rows labels; columns bias/scatter/n of each."""
    hires = meta[["specid"] + [f"{survey}_{lab}" for lab in labels if f"{survey}_{lab}" in meta]]
    m = catalog.merge(hires, on="specid")
    good = (m["fit_status"] < 2).to_numpy()
    trained = m["specid"].isin(set(training_ids)).to_numpy()
    rows = {}
    for lab in labels:
        if f"{survey}_{lab}" not in m:
            continue
        d = (m[lab] - m[f"{survey}_{lab}"]).to_numpy()
        row = {}
        for name, sel in (("self", good & trained), ("cross", good & ~trained)):
            row[f"{name}_bias"], row[f"{name}_scatter"] = robust_bias_scatter(d[sel])
            row[f"{name}_n"] = int(np.isfinite(d[sel]).sum())
        rows[lab] = row
    return pd.DataFrame(rows).T


def precision_vs_snr(catalog: pd.DataFrame, labels, bins=SNR_BINS) -> tuple[pd.DataFrame, dict]:
    """Repeat-visit precision per S/N bin (median of |v1 - v2|/sqrt 2 over pairs, times 1.4826,
    the sigma of a Gaussian whose absolute values have that median) and, per label, the
    log-log slope of precision against S/N (-1 means precision ~ 1/(S/N))."""
    ok = (catalog["fit_status"] < 2).to_numpy()
    c = catalog[ok]
    snr, disp = repeat_precision(c["star_id"].to_numpy(), c["mjd"].to_numpy(), c["snr"].to_numpy(),
                                 c[list(labels)].to_numpy(dtype=np.float64))
    idx = np.digitize(snr, bins)
    rows, slopes = [], {}
    for b in range(1, len(bins)):
        sel = idx == b
        if sel.sum() < 5:
            continue
        row = {"snr_lo": bins[b - 1], "snr_hi": bins[b], "snr_median": float(np.median(snr[sel])),
               "n_pairs": int(sel.sum())}
        for k, lab in enumerate(labels):
            row[lab] = float(np.nanmedian(disp[sel, k]) * 1.4826)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["snr_lo", "snr_hi", "snr_median", "n_pairs", *labels])
    for lab in labels:
        if len(table) >= 3:
            good = np.isfinite(table[lab]) & (table[lab] > 0)
            slopes[lab] = float(np.polyfit(np.log10(table.loc[good, "snr_median"]),
                                           np.log10(table.loc[good, lab]), 1)[0])
    return table, slopes


def recovery_of_injected(catalog: pd.DataFrame, meta: pd.DataFrame) -> dict:
    """On a synthetic survey: completeness and contamination of qflag_chi2 for the injected bad
    spectra and of qflag_singlestar for the binaries (where the flag is defined).

    The bad-spectrum flag's false alarms are split: a binary's spectrum holds two stars, which a
    single-star model cannot fit, so a chi^2 flag is right to catch it; the fraction of clean
    single stars flagged is the flag's real false-alarm rate. With meta column bad_kind,
    completeness per kind of injected defect."""
    m = catalog.merge(meta[[c for c in ("specid", "injected_bad", "bad_kind", "is_binary",
                                        "binary_dmag") if c in meta]], on="specid")
    out = {}
    bad_flagged = ((m["qflag_chi2"] == 1) | (m["fit_status"] == 2)).to_numpy()
    truth_bad = m["injected_bad"].to_numpy(bool)
    out["bad_spectra"] = _completeness(truth_bad, bad_flagged)
    if "is_binary" in m:
        binary = m["is_binary"].to_numpy(bool)
        out["bad_spectra"]["flagged_binaries"] = int((bad_flagged & ~truth_bad & binary).sum())
        clean_single = ~truth_bad & ~binary
        out["bad_spectra"]["flagged_fraction_of_clean_single_stars"] = (
            float(bad_flagged[clean_single].mean()) if clean_single.any() else float("nan"))
    if "bad_kind" in m:
        kinds = m.loc[truth_bad, "bad_kind"]
        out["bad_spectra"]["completeness_by_kind"] = {
            str(kind): float(bad_flagged[truth_bad][(kinds == kind).to_numpy()].mean())
            for kind in sorted(kinds.unique())}
    if "qflag_singlestar" in m:
        defined = (m["qflag_singlestar"] >= 0).to_numpy() & ~truth_bad
        out["binaries"] = _completeness(m["is_binary"].to_numpy(bool)[defined],
                                        (m["qflag_singlestar"] == 0).to_numpy()[defined])
        out["binaries"]["flag_defined_fraction"] = float(defined.mean())
        if "binary_dmag" in m:
            out["binaries"]["detectability"] = binary_detectability(m[defined])
    return out


def inside_training_coverage(catalog: pd.DataFrame) -> pd.Series:
    """Stars whose fitted labels lie inside the training coverage the flags issue means:
    4500-7000 K dwarfs (logg >= 3.8), 4000-5600 K giants, [Fe/H] > -2.0."""
    teff, logg, feh = catalog["teff"], catalog["logg"], catalog["feh"]
    return (feh > -2.0) & (((logg >= 3.8) & teff.between(4500, 7000))
                           | ((logg < 3.8) & teff.between(4000, 5600)))


def partial_slopes(fitted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per label, the slope of the fitted label on its true value with every other true label
    held fixed: least squares of fitted[:, k] on all columns of ``true`` and a constant.

    fitted, true: (n_star, n_label) in the same label order; returns (n_label,). 1: the fit
    follows the label's own variation, which only its spectral features carry; 0: it follows
    only the labels it correlates with (astrophysical correlations, the training set's)."""
    design = np.column_stack([true, np.ones(len(true))])
    coef = np.linalg.lstsq(design, fitted, rcond=None)[0]
    return np.diag(coef[:-1])


def flag_information(catalog: pd.DataFrame, meta: pd.DataFrame, labels, min_snr: float = 50.0,
                     min_stars: int = 50) -> dict:
    """On a synthetic survey: does X_flag tell labels measured from spectral features from labels
    inferred from astrophysical correlations (docs/spec.md sec. 8)?

    For single, unbroken, fitted stars inside the training coverage with S/N > ``min_snr``,
    per label and X_flag value: the label's ``partial_slopes``. ``meta``: specid, the true labels,
    is_binary, injected_bad. Returns label -> {partial_slope_flag1, n_flag1, partial_slope_flag0,
    n_flag0}; a slope is None with fewer than ``min_stars`` stars."""
    labels = list(labels)
    m = catalog.merge(meta[["specid", "is_binary", "injected_bad"] + labels], on="specid",
                      suffixes=("", "_true"))
    ok = (inside_training_coverage(m) & ~m["is_binary"].astype(bool) & ~m["injected_bad"].astype(bool)
          & (m["snr"] > min_snr) & (m["fit_status"] != 2)).to_numpy()
    true = m[[f"{lab}_true" for lab in labels]].to_numpy(dtype=np.float64)
    out = {}
    for k, lab in enumerate(labels):
        row = {}
        for flag in (1, 0):
            sel = ok & (m[f"{lab}_flag"] == flag).to_numpy()
            fitted = m.loc[sel, labels].to_numpy(dtype=np.float64)
            row[f"partial_slope_flag{flag}"] = (float(partial_slopes(fitted, true[sel])[k])
                                                if sel.sum() >= min_stars else None)
            row[f"n_flag{flag}"] = int(sel.sum())
        out[lab] = row
    return out


def binary_detectability(m: pd.DataFrame, cut: float = C.BINARY_DPARALLAX_CUT) -> dict:
    """Why binaries are or are not found, on a synthetic survey: a companion adding dmag of light
    (truth column binary_dmag) raises the spectroscopic parallax by 10^(dmag/5), so the
    snr_dparallax it is expected to cause is w_sp (1 - 10^(-dmag/5)) / sqrt(s_sp^2 + s_Gaia^2).
    m: catalogue rows (labels, astrometry, qflag_singlestar) merged with is_binary, binary_dmag.
    Returns the fraction of binaries expected above ``cut``, the completeness among those and
    below, and the completeness per tertile of dmag."""
    w_sp, s_sp = spectroscopic_parallax(m["teff"], m["logg"], m["feh"], m["phot_g_mean_mag"],
                                        m["a_g"], m["parallax"], m["parallax_error"])
    b = m["is_binary"].to_numpy(bool)
    dmag = m["binary_dmag"].to_numpy()[b]
    expected = w_sp[b] * (1 - 10 ** (-dmag / 5)) / np.sqrt(s_sp[b] ** 2
                                                          + m["parallax_error"].to_numpy()[b] ** 2)
    found = (m["qflag_singlestar"] == 0).to_numpy()[b]
    above = expected > cut
    edges = np.unique(np.quantile(dmag, [0, 1 / 3, 2 / 3, 1]))
    groups = pd.cut(dmag, edges, include_lowest=True) if len(edges) > 1 \
        else pd.Categorical(np.full(len(dmag), pd.Interval(edges[0], edges[0], closed="both")))
    return {"expected_snr_dparallax_median": float(np.median(expected)),
            "expected_above_cut_fraction": float(above.mean()),
            "completeness_expected_above_cut": float(found[above].mean()) if above.any() else None,
            "completeness_expected_below_cut": float(found[~above].mean()) if (~above).any() else None,
            "completeness_by_dmag": {f"{iv.left:.2f}-{iv.right:.2f} mag": float(found[groups == iv].mean())
                                     for iv in groups.categories}}


def _completeness(truth: np.ndarray, flagged: np.ndarray) -> dict:
    n_true, n_flag = int(truth.sum()), int(flagged.sum())
    hit = int((truth & flagged).sum())
    return {"n_true": n_true, "n_flagged": n_flag,
            "completeness": hit / n_true if n_true else float("nan"),
            "contamination": (n_flag - hit) / n_flag if n_flag else float("nan")}


def _save(fig, path: Path, mark: str = "") -> None:
    if mark:
        fig.text(0.5, 0.005, mark, ha="center", va="bottom", color="C3", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def _grid(n: int, size=2.6):
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(size * cols + 0.6, size * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def figure_validation(catalog, meta, labels, training_ids, survey, path, mark=""):
    hires = meta[["specid"] + [f"{survey}_{lab}" for lab in labels]]
    m = catalog.merge(hires, on="specid")
    m = m[m["fit_status"] < 2]
    trained = m["specid"].isin(set(training_ids)).to_numpy()
    fig, axes = _grid(len(labels))
    for ax, lab in zip(axes, labels):
        x, y = m[f"{survey}_{lab}"].to_numpy(), m[lab].to_numpy()
        ax.scatter(x[~trained], y[~trained] - x[~trained], s=2, c="0.6", label="cross")
        ax.scatter(x[trained], y[trained] - x[trained], s=2, c="C0", label="self")
        ax.axhline(0, c="k", lw=0.8)
        ax.set_xlabel(f"{survey.upper()}-like {pretty(lab)}", fontsize=8)
        ax.set_ylabel(f"DD-Payne - {survey.upper()}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, markerscale=4)
    fig.suptitle("Self- (training stars) and cross-validation against high-resolution labels")
    _save(fig, path, mark)


def figure_precision(table, labels, path, mark=""):
    fig, axes = _grid(len(labels))
    for ax, lab in zip(axes, labels):
        ax.loglog(table["snr_median"], table[lab], "o-", ms=3)
        if len(table):
            ref = table[lab].iloc[0] * table["snr_median"].iloc[0] / table["snr_median"]
            ax.loglog(table["snr_median"], ref, "k:", lw=0.8)
        ax.set_title(pretty(lab), fontsize=8)
        ax.set_xlabel("S/N", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Repeat-visit precision vs S/N (dotted: 1/(S/N))")
    _save(fig, path, mark)


def figure_gradcorr_maps(catalog, labels, path, config=XFlagConfig(), mark=""):
    tuner = FlagTuner(catalog, labels)
    fig, axes = _grid(len(labels))
    for ax, lab in zip(axes, labels):
        for giant, marker in ((False, "s"), (True, "o")):
            g = tuner.gradcorr_map(lab, config, giant)
            sc = ax.scatter(g["teff"], g["feh"], c=g["median"], cmap="RdBu", vmin=-1, vmax=1,
                            marker=marker, s=14)
        ax.invert_xaxis()
        ax.set_title(f"{pretty(lab)} gradcorr", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(sc, ax=axes, shrink=0.6, label="bin median gradcorr")
    fig.suptitle("Median gradient correlation over Teff-[Fe/H] (squares dwarfs, circles giants)")
    _save(fig, path, mark)


def figure_covariance(catalog, labels, path, snr_min=50.0, mark=""):
    sel = (catalog["snr"] > snr_min) & (catalog["fit_status"] < 2)
    corr = np.stack(catalog.loc[sel, "label_corr"].to_numpy()) if sel.any() else None
    n = len(labels)
    mat = np.eye(n)
    if corr is not None:
        iu = np.triu_indices(n, 1)
        med = np.nanmedian(corr, axis=0)
        mat[iu] = med
        mat[(iu[1], iu[0])] = med
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    im = ax.imshow(mat, cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xticks(range(n), [pretty(l) for l in labels], rotation=90, fontsize=7)
    ax.set_yticks(range(n), [pretty(l) for l in labels], fontsize=7)
    fig.colorbar(im, label="median fit correlation")
    ax.set_title(f"Label correlations of the fits (S/N > {snr_min:.0f})")
    _save(fig, path, mark)


def figure_density_maps(catalog, labels, path, mark=""):
    good = (catalog["fit_status"] < 2) & (catalog.get("qflag_chi2", 0) == 0)
    c = catalog[good]
    fig = Figure(figsize=(11, 4.5))
    a1, a2 = fig.subplots(1, 2)
    a1.hist2d(c["teff"], c["logg"], bins=120, cmap="Blues", cmin=1)
    a1.invert_xaxis()
    a1.invert_yaxis()
    a1.set_xlabel("Teff [K]")
    a1.set_ylabel("logg")
    values = {lab: c[lab].to_numpy() for lab in labels}
    errors = {lab: c[f"{lab}_err"].to_numpy() for lab in labels}
    alpha, _ = alpha_fe(values, errors)
    a2.hist2d(c["feh"], alpha, bins=120, cmap="Blues", cmin=1, range=[[-2.5, 0.6], [-0.3, 0.5]])
    a2.set_xlabel("[Fe/H]")
    a2.set_ylabel("[alpha/Fe]")
    fig.suptitle("Kiel and [Fe/H]-[alpha/Fe] density (qflag_chi2 = 0)")
    _save(fig, path, mark)


def figure_crb(experiment: dict, path, mark=""):
    """Accuracy, precision and noise-only precision over the Cramer-Rao bound per label, from
    ``demo.crb_experiment`` (DESI Fig. 9 bottom panel), with each label's response slope."""
    rows = experiment["labels"]
    labs = list(rows)
    fig = Figure(figsize=(9, 4.4))
    ax = fig.subplots()
    fig.subplots_adjust(bottom=0.25)
    x = np.arange(len(labs))
    for i, (key, name) in enumerate((("error_over_crb", "accuracy (against truth)"),
                                     ("precision_over_crb", "precision (repeat visits)"),
                                     ("precision_noise_only_over_crb", "precision, noise only"))):
        ax.bar(x + (i - 1) * 0.27, [rows[l][key] for l in labs], 0.27, label=name)
    for xi, lab in zip(x, labs):
        ax.text(xi, 0.02, f"{rows[lab]['slope']:.2f}", ha="center", fontsize=7,
                transform=ax.get_xaxis_transform())
    ax.axhline(1, c="k", lw=0.8)
    ax.axhline(1.5, c="C3", ls="--", lw=0.8, label="target 1.5")
    ax.set_yscale("log")
    ax.set_xticks(x, [pretty(l) for l in labs], rotation=60, fontsize=8)
    ax.set_ylabel("error / CRB")
    ax.set_title(f"Error over the Cramer-Rao bound at S/N {experiment['snr']:.0f} "
                 f"({experiment['n_stars']} stars; numbers: response slope)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path, mark)


def write_report(out: str | Path, catalog: pd.DataFrame, meta: pd.DataFrame, labels,
                 training_ids, survey: str = "apogee", summary: dict | None = None) -> dict:
    """Write the figures, summary.md and summary.json into ``out``; returns the summary.

    catalog: flagged fits (columns specid, star_id, mjd, snr, labels, errors, gradcorr, flags,
    label_corr); meta: the store's metadata (high-resolution labels <survey>_<label> and, on a
    synthetic survey, injected_bad and is_binary); training_ids: specids trained on;
    summary: numbers computed elsewhere (recovery, error_over_crb, flag fractions) to include.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(labels)
    summary = dict(summary or {})
    val = validation_table(catalog, meta, labels, training_ids, survey)
    prec, slopes = precision_vs_snr(catalog, labels)
    summary["validation"] = json.loads(val.to_json(orient="index"))
    summary["precision_vs_snr"] = json.loads(prec.to_json(orient="records"))
    summary["precision_snr_slope"] = slopes
    if "injected_bad" in meta:
        summary["injected_recovery"] = recovery_of_injected(catalog, meta)
    mark = SYNTHETIC_NOTE if summary.get("synthetic") else ""
    figure_validation(catalog, meta, [l for l in labels if f"{survey}_{l}" in meta], training_ids,
                      survey, out / "validation.png", mark)
    figure_precision(prec, labels, out / "precision_vs_snr.png", mark)
    figure_gradcorr_maps(catalog, labels, out / "gradcorr_maps.png", mark=mark)
    figure_covariance(catalog, labels, out / "label_correlations.png", mark=mark)
    figure_density_maps(catalog, labels, out / "density_maps.png", mark)
    if summary.get("crb_experiment"):
        figure_crb(summary["crb_experiment"], out / "error_over_crb.png", mark)
    read_peer_benchmark(out, summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    atomic_write_text(out / "summary.md", summary_markdown(summary, val, prec, slopes))
    return summary


def markdown_table(df: pd.DataFrame, index: bool = True, fmt: str = "{:.3f}") -> str:
    """A GitHub-flavoured markdown table of ``df`` (floats formatted with ``fmt``)."""
    cell = lambda v: fmt.format(v) if isinstance(v, (float, np.floating)) else str(v)
    head = ([""] if index else []) + [str(c) for c in df.columns]
    # object dtype keeps integer columns (counts) integers
    rows = [([str(i)] if index else []) + [cell(v) for v in r]
            for i, r in zip(df.index, df.astype(object).to_numpy())]
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *rows])


def _flag_ceiling_table(summary: dict) -> pd.DataFrame:
    """Labels as columns; rows: measured X_flag 1 fraction, the perfect emulator's, and (where
    the summary has them) the measured one among stars the perfect emulator flags 1 and 0."""
    rows = {"measured": summary["featured_flag1_fraction"],
            "perfect emulator": summary["featured_flag1_fraction_perfect_emulator"]}
    agreement = summary.get("flag_agreement_with_perfect_emulator", {})
    if agreement:
        for flag in (1, 0):
            rows[f"measured, where perfect is {flag}"] = {
                lab: a[f"flag1_where_perfect_{flag}"] for lab, a in agreement.items()}
    return pd.DataFrame(rows).T


def read_peer_benchmark(out: Path, summary: dict) -> None:
    """Put The Cannon's figures into ``summary["peer_cannon"]`` when a peer benchmark
    (``benchmarks/bench_peer_cannon.py`` on a synthetic demo, ``bench_cannon_real.py`` on a
    real-data bundle) left them in ``out/peer_cannon.json``."""
    peer = Path(out) / "peer_cannon.json"
    if peer.exists():
        summary["peer_cannon"] = json.loads(peer.read_text())


def peer_markdown(summary: dict, benchmark: str) -> list[str]:
    """The peer benchmark's table as report lines (none when it has not run)."""
    if "peer_cannon" not in summary:
        return []
    return ["", f"## The Cannon on the same training spectra (benchmarks/{benchmark})", "",
            markdown_table(pd.DataFrame(summary["peer_cannon"]["rows"]), index=False), "",
            "Timing (train_s in seconds, speeds in spectra/s): " + json.dumps(summary["peer_cannon"]["timing"], default=float), ""]


def population_shift_markdown(shift: dict) -> list[str]:
    """The population-shift study (``validation.studies.population_shift``) as report lines:
    per population and label the X_flag 1 fraction and, for the stars flagged 1, the slope,
    bias and scatter of fitted against true."""
    lines = [f"## Populations the training set lacks (S/N {shift['snr']:.0f})", "",
             f"{shift['n_stars']} survey stars with their labels redrawn (independent: every [X/Fe] "
             "uniform in +-0.3, uncorrelated; accreted: [Fe/H] -1.3, low alpha, low Al, Ni, Mn), "
             "observed once and fitted with the survey's model; X_flag binned over the shifted "
             "stars. A label flagged 1 should follow its own truth (slope near 1 where its true "
             "values spread, small bias); where it does not, the flag should drop.", ""]
    for kind, labels in shift["populations"].items():
        rows = pd.DataFrame({lab: {"flag1_fraction": r["flag1_fraction"],
                                   **{f"{k}_flag1": r["flag1"][k] for k in ("slope", "bias", "scatter")},
                                   "slope_all": r["all"]["slope"]} for lab, r in labels.items()}).T
        failing = shift.get("flag1_but_not_following_truth", {}).get(kind)
        lines += [f"**{kind}**", "", markdown_table(rows.astype(float)), "",
                  "Flagged measured but not following the truth (constants.SHIFT_*): "
                  f"{', '.join(failing) if failing else 'none'}.", ""]
    return lines


def summary_markdown(summary: dict, val: pd.DataFrame, prec: pd.DataFrame, slopes: dict) -> str:
    lines = ["# ddpayne validation report", ""]
    if summary.get("synthetic"):
        lines += ["**SYNTHETIC SURVEY**: simulated spectra with known truth, not observations.", ""]
    if "recovery" in summary:
        rec = pd.DataFrame(summary["recovery"]).T
        cols = [c for c in rec.columns if c.startswith("scatter_")]
        lines += ["## Label recovery against truth (robust scatter)", "",
                  markdown_table(rec[cols]), ""]
    if summary.get("bias_vs_training_labels"):      # empty without training labels to compare
        lines += ["## Median bias against truth: the fits' and the training labels' own (S/N > 30)", "",
                  "A data-driven model learns its training labels' scale; added_bias is what the "
                  "method adds to it.", "",
                  markdown_table(pd.DataFrame(summary["bias_vs_training_labels"]).T[
                      ["training_bias", "fitted_bias", "added_bias", "n_training", "n_fitted"]]), ""]
    lines += ["## Self- and cross-validation against the high-resolution labels", "",
              markdown_table(val), "",
              "## Repeat-visit precision versus S/N", "",
              markdown_table(prec, index=False), "",
              "log-log slope of precision against S/N (-1 = 1/(S/N)): "
              + ", ".join(f"{pretty(k)} {v:.2f}" for k, v in slopes.items()), ""]
    if "crb_experiment" in summary:
        exp = summary["crb_experiment"]
        lines += [f"## Measured error over the Cramer-Rao bound at S/N {exp['snr']:.0f}", "",
                  f"{exp['n_stars']} survey stars observed twice more at S/N {exp['snr']:.0f} "
                  "(and twice with noise alone) and fitted. crb: the bound of the survey's forward "
                  "model (truth emulator, fibre LSF, normalization) for a fit that knew each "
                  "fibre's LSF; crb_lsf_free: for one that fits the LSF width too, as ddpayne "
                  "does (lsf_dvar); accuracy: robust scatter "
                  "against truth (error_over_crb); precision: visit-to-visit scatter / sqrt 2, the "
                  "papers' internal precision (DESI Fig. 9); slope: d fitted / d true; formal_over_crb: "
                  "median formal error over the bound. A precision below the bound is no "
                  "better-than-possible measurement: the emulator's spectrum responds to that "
                  "label more strongly than the truth's (formal_over_crb < 1), and the fit often "
                  "shrinks the label toward the training mean (slope < 1).", "",
                  markdown_table(pd.DataFrame(exp["labels"]).T), ""]
    if summary.get("desi_vs_lamost"):
        both = summary["desi_vs_lamost"]
        lines += ["## DESI against LAMOST on the stars both observed", "",
                  f"Robust scatter of fitted minus true labels of each survey's good fits (S/N > "
                  f"{both['snr_min']:.0f}, qflag_chi2 0): {both['n_desi']} DESI spectra (median S/N "
                  f"{both.get('snr_median_desi', float('nan')):.0f}) and {both['n_lamost']} LAMOST "
                  f"spectra (median S/N {both.get('snr_median_lamost', float('nan')):.0f}) of the same stars. crb_*: each side's median "
                  "Cramer-Rao bound at its spectra's own S/N; physics_desi_over_lamost below 1 is "
                  "where the physics says DESI should measure the label better. error_correlation: "
                  f"rank correlation of the two surveys' errors on the same star ({both.get('n_pairs', 0)} "
                  "pairs); above 0, error the two share, which no resolution removes: learned from the "
                  "training labels DESI took from LAMOST's catalogue (Z24 sec. 3.2), or common to both "
                  "methods.", "",
                  markdown_table(pd.DataFrame(both["labels"]).T), ""]
    if "error_calibration" in summary:
        cal = pd.DataFrame(summary["error_calibration"]).T
        lines += ["## Formal errors scaled to the repeat-visit scatter", "",
                  "median_scale: factor applied (third-order polynomial of S/N, Teff, [Fe/H], dwarfs "
                  "and giants apart); pull_*: robust scatter of (fitted - true) / error (1 = "
                  "errors describe the actual error).", "", markdown_table(cal), ""]
    if "featured_flag1_fraction_perfect_emulator" in summary:
        lines += ["## X_flag 1 fraction: measured and with a perfect emulator", "",
                  "Stars inside the training coverage whose X_flag is 1, for each label with a "
                  "spectral signature: measured, and had the emulator learned the survey perfectly "
                  "(the truth emulator's gradients at the true labels, flagged the same way). "
                  "Below the second the emulator costs X_flag; the second itself is where features "
                  "fade (physics). The last two rows ask whether the flag picks the right stars: "
                  "the measured X_flag 1 fraction among stars the perfect emulator flags 1 (ideally "
                  "1) and among those it flags 0 (ideally 0).", "",
                  markdown_table(_flag_ceiling_table(summary)), ""]
    if "flag_information" in summary:
        lines += ["## Does X_flag mark the labels measured from spectral features?", "",
                  "Single, unbroken stars inside the training coverage at S/N > 50 (SYNTHETIC "
                  "truth): the partial slope of the fitted label on its true value with every "
                  "other true label held fixed, among stars with X_flag 1 and X_flag 0. Near 1: "
                  "the fit follows the label's own variation (spectral features); near 0: only "
                  "the labels it correlates with.", "",
                  markdown_table(pd.DataFrame.from_dict(summary["flag_information"], orient="index")), ""]
    if "population_shift" in summary:
        lines += population_shift_markdown(summary["population_shift"])
    if "metal_poor_blend" in summary:
        mp = summary["metal_poor_blend"]
        lines += ["## Metal-poor model blend", "",
                  f"Robust scatter against truth for the {mp['n_stars']} stars with true [Fe/H] < -1 "
                  "and S/N > 30: the overall model alone and blended with the metal-poor model "
                  "(metal-poor below [Fe/H] -1.0, overall above -0.6, linear between).", "",
                  markdown_table(pd.DataFrame(mp["scatter"]).T), ""]
        if "featured_flag1_fraction" in mp:
            lines += ["X_flag 1 fraction in the blended catalogue (the metal-poor model's flags "
                      "where its weight exceeds 0.5), as above: "
                      + ", ".join(f"{pretty(k)} {v:.2f}" for k, v in mp["featured_flag1_fraction"].items()), ""]
    if "recovery_by_feh" in summary:
        lines += ["## Bias against truth by true [Fe/H]", "",
                  "Median of fitted minus true label (good fits, S/N > 30) in bins of true [Fe/H], "
                  "for the overall model and, where there is one, the metal-poor blend: the "
                  "emulator's systematic error, which noise and repeat visits do not show.", ""]
        for name, table in summary["recovery_by_feh"].items():
            df = pd.DataFrame(table).T
            bias = df[[c for c in df.columns if c.startswith("bias_")]].rename(columns=lambda c: c[5:])
            lines += [f"{name}:", "", markdown_table(pd.concat([df[["n"]].astype(int), bias], axis=1)), ""]
    if "galah" in summary:
        rec = pd.DataFrame(summary["galah"]["recovery"]).T
        lines += ["## GALAH-label model: recovery against truth (robust scatter)", "",
                  "The recommended catalogue (catalog_recommended.parquet) takes each label from "
                  "the training set X19 Table 4 names.", "",
                  markdown_table(rec[[c for c in rec.columns if c.startswith("scatter_")]]), "",
                  "featured_flag1_fraction: " + json.dumps(summary["galah"]["featured_flag1_fraction"],
                                                           default=float), ""]
        if "featured_flag1_fraction_perfect_emulator" in summary["galah"]:
            lines += ["X_flag 1 fraction, measured and with a perfect emulator (as above):", "",
                      markdown_table(_flag_ceiling_table(summary["galah"])), ""]
    for key in ("featureless_flag0_fraction", "featured_flag1_fraction", "injected_recovery"):
        if key in summary:
            lines += [f"## {key}", "", "```", json.dumps(summary[key], indent=1, default=float),
                      "```", ""]
    lines += peer_markdown(summary, "bench_peer_cannon.py")
    lines += ["Figures: validation.png, precision_vs_snr.png, gradcorr_maps.png, "
              "label_correlations.png, density_maps.png, error_over_crb.png", ""]
    return "\n".join(lines)


# --- real spectra validated against reference labels (held-out stars) ----------------------------
REAL_SNR_BINS = (10.0, 20.0, 50.0, 100.0, np.inf)
# Spectral classes validated apart: A stars lie beyond X19's Teff range (X_flag 0 above 7500 K,
# X19 sec. 5.4.2) and The Cannon fails differently on them.
REAL_TYPE_GROUPS = {"A": ("A",), "F/G": ("F", "G")}


def real_validation(catalog: pd.DataFrame, labels, prefix: str, snr_min: float = 20.0) -> pd.DataFrame:
    """Fitted minus reference label on the held-out stars, by spectral type group and S/N bin
    (plus all S/N > ``snr_min``): n, median bias and robust scatter per label. Only fits that did
    not fail (fit_status < 2) with a reference label enter."""
    rows = []
    held = catalog[catalog["heldout"].astype(bool) & (catalog["fit_status"] < 2)]
    snr = held["snr"].to_numpy(dtype=float)
    bins = [(f"S/N > {snr_min:g}", snr > snr_min)] + [
        (f"S/N {lo:g}-{hi:g}", (snr >= lo) & (snr < hi)) for lo, hi in zip(REAL_SNR_BINS[:-1], REAL_SNR_BINS[1:])]
    for group, letters in REAL_TYPE_GROUPS.items():
        in_group = held["spectral_type"].isin(letters).to_numpy()
        for name, sel in bins:
            m = held[in_group & sel]
            row = {"type": group, "snr": name, "n": len(m)}
            for lab in labels:
                b, s = robust_bias_scatter(m[lab] - m[f"{prefix}_{lab}"])
                row[f"{lab}_bias"], row[f"{lab}_scatter"] = b, s
            rows.append(row)
    return pd.DataFrame(rows)


def chi2_by_snr(catalog: pd.DataFrame, bins=REAL_SNR_BINS) -> pd.DataFrame:
    """Median reduced chi2 of the fits per S/N bin and spectral type group: what the model
    reaches on real spectra (1 = residuals as the noise predicts)."""
    rows = []
    for group, letters in REAL_TYPE_GROUPS.items():
        g = catalog[catalog["spectral_type"].isin(letters) & (catalog["fit_status"] < 2)]
        for lo, hi in zip(bins[:-1], bins[1:]):
            m = g[(g["snr"] >= lo) & (g["snr"] < hi)]
            rows.append({"type": group, "snr": f"{lo:g}-{hi:g}", "n": len(m),
                         "median_redchi2": float(m["redchi2"].median()) if len(m) else np.nan})
    return pd.DataFrame(rows)


def residual_stacks(catalog: pd.DataFrame, store, model, snr_min: float = 30.0,
                    max_per_type: int = 200) -> dict:
    """Median of (data - model) over the held-out spectra of each type group with S/N >
    ``snr_min``: where the model fails to describe real spectra (tellurics, sky lines, Balmer
    wings, the blue end). Returns {group: (n_pix,)} on the model's grid (NaN where masked)."""
    from ..fit.lm import fitted_spectra
    from ..instrument import get_instrument
    from ..preprocess.grid import preprocess_batch

    inst = get_instrument(store.info["instrument"])
    out = {}
    for group, letters in REAL_TYPE_GROUPS.items():
        m = catalog[catalog["heldout"].astype(bool) & catalog["spectral_type"].isin(letters)
                    & (catalog["snr"] > snr_min) & (catalog["fit_status"] < 2)].head(max_per_type)
        if m.empty:
            continue
        rows = m["specid"].to_numpy()
        flux, ivar = store.read_rows(rows)
        norm, niv = preprocess_batch(flux, ivar, m["rv"].to_numpy(), inst)
        best = fitted_spectra(model, m[list(model.labels)].to_numpy(), m["lsf_dvar"].to_numpy())
        resid = np.where(niv > 0, norm - best, np.nan)
        with warnings.catch_warnings():   # masked pixels: an all-NaN column stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[group] = np.nanmedian(resid, axis=0)
    return out


def figure_real(catalog, labels, prefix, path, synthetic=None):
    """Fitted against reference labels for the held-out stars (A stars and F/G apart), with the
    synthetic-trained model's fits of the same spectra beside them when given."""
    models = [("DD-Payne trained on real spectra", catalog)] + \
        ([("synthetic-trained model", synthetic)] if synthetic is not None else [])
    fig = Figure(figsize=(3.6 * len(labels), 3.4 * len(models)))
    axes = np.atleast_2d(fig.subplots(len(models), len(labels), squeeze=False))
    units = {"teff": " [K]", "logg": " [dex]", "feh": " [dex]"}
    for r, (name, cat) in enumerate(models):
        held = cat[cat["heldout"].astype(bool) & (cat["fit_status"] < 2) & (cat["snr"] > 20)]
        for c, lab in enumerate(labels):
            ax = axes[r, c]
            for group, letters in REAL_TYPE_GROUPS.items():
                m = held[held["spectral_type"].isin(letters)]
                ax.scatter(m[f"{prefix}_{lab}"], m[lab], s=3, alpha=0.6, label=group)
            lo, hi = np.nanpercentile(held[f"{prefix}_{lab}"], [0.5, 99.5])
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            ax.set_xlabel(f"{prefix.upper()} {pretty(lab)}{units.get(lab, ' [dex]')}")
            ax.set_ylabel(f"fitted {pretty(lab)}")
            ax.set_title(name, fontsize=8)
            ax.legend(fontsize=7, markerscale=3)
    fig.suptitle(f"Held-out real LAMOST spectra, S/N(g) > 20: fitted against {prefix.upper()} labels")
    _save(fig, path)


def figure_real_diagnostics(chi2: pd.DataFrame, stacks: dict, wave: np.ndarray, path):
    fig = Figure(figsize=(12, 6.5))
    a1, a2 = fig.subplots(2, 1)
    for group, g in chi2.groupby("type"):
        a1.plot(range(len(g)), g["median_redchi2"], "o-", label=group)
        a1.set_xticks(range(len(g)), g["snr"])
    a1.axhline(1, color="k", lw=0.8)
    a1.set_xlabel("S/N(g)")
    a1.set_ylabel("median reduced chi2")
    a1.legend()
    for group, r in stacks.items():
        a2.plot(wave, r, lw=0.6, label=f"{group} stars")
    a2.axhline(0, color="k", lw=0.5)
    a2.set_xlabel("rest-frame vacuum wavelength [A]")
    a2.set_ylabel("median (data - model), normalized flux")
    a2.legend()
    fig.suptitle("Real LAMOST spectra: chi2 against S/N, and the held-out residuals stacked by type")
    _save(fig, path)


def write_real_report(out: str | Path, catalog: pd.DataFrame, model, prefix: str,
                      synthetic: pd.DataFrame | None = None, store=None, log=print) -> dict:
    """Validation of a DD-Payne on real spectra against reference labels (held-out stars):
    scatter and bias by type and S/N for it and the synthetic-trained model, chi2 against S/N,
    residual stacks, the flags' counts; with the peer benchmark's figures when
    ``benchmarks/bench_cannon_real.py`` left them in ``out/peer_cannon.json``. Writes
    summary.md, summary.json and PNG figures; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [lab for lab in model.labels if f"{prefix}_{lab}" in catalog]
    val = real_validation(catalog, labels, prefix)
    summary = {"synthetic": False, "reference": prefix, "n_spectra": len(catalog),
               "n_heldout": int(catalog["heldout"].sum()),
               "fit_failed": int((catalog["fit_status"] == 2).sum()),
               "validation": val.to_dict(orient="records")}
    if synthetic is not None:
        summary["validation_synthetic_model"] = real_validation(synthetic, labels, prefix).to_dict(orient="records")
    chi2 = chi2_by_snr(catalog)
    summary["redchi2_by_snr"] = chi2.to_dict(orient="records")
    flags = {c: int(catalog[c].astype(bool).sum()) for c in
             ["at_bound", "out_of_coverage", "lsf_at_bound"] + [f"{lab}_at_bound" for lab in model.labels]
             if c in catalog}
    flags["qflag_chi2_bad"] = int((catalog.get("qflag_chi2", pd.Series(dtype=float)) == 1).sum())
    for lab in model.labels:
        if f"{lab}_flag" in catalog:
            flags[f"{lab}_flag_1"] = int((catalog[f"{lab}_flag"] == 1).sum())
    # A fit pinned at a bound or outside the training coverage that claims nothing is wrong.
    problem = catalog.get("at_bound", False) | catalog.get("out_of_coverage", False)
    flags["problem_fits_with_nothing_set"] = int((problem & (catalog["fit_status"] == 0)
                                                  & ~catalog.get("at_bound", False)
                                                  & ~catalog.get("out_of_coverage", False)).sum())
    summary["flags"] = flags
    figure_real(catalog, labels, prefix, out / "real_validation.png", synthetic)
    if store is not None:
        stacks = residual_stacks(catalog, store, model)
        figure_real_diagnostics(chi2, stacks, model.wave, out / "real_chi2_residuals.png")
    read_peer_benchmark(out, summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    lines = [f"# Validation on real LAMOST spectra against {prefix.upper()} labels",
             "", f"{summary['n_spectra']:,} real spectra fitted ({summary['fit_failed']} failed); "
             f"{summary['n_heldout']:,} are of held-out stars (never trained on).", "",
             "## Held-out stars: fitted minus reference (median bias, robust scatter)", "",
             markdown_table(val, index=False)]
    if synthetic is not None:
        lines += ["", "## The same spectra fitted by the synthetic-trained model", "",
                  markdown_table(pd.DataFrame(summary["validation_synthetic_model"]), index=False)]
    lines += ["", "## Median reduced chi2 against S/N(g)", "", markdown_table(chi2, index=False),
              "", "## Flags (all spectra)", "", markdown_table(pd.Series(flags, name="count").to_frame())]
    lines += peer_markdown(summary, "bench_cannon_real.py")
    lines += ["", "Figures: real_validation.png, real_chi2_residuals.png"]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    log(f"real-data report -> {out / 'summary.md'}")
    return summary
