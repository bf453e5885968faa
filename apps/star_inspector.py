"""The selected star, as the survey explorer shows it: finding it (search, previous/next, a URL),
its header and cautions, its spectrum with error band, model, residual, line markers, zoom
presets and other visits, its labels, and its emulator-versus-ab-initio gradient spectra. Layout
only: every number comes from ddpayne_core.app.explore."""
from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Label, Range1d, Span
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from ddpayne_core import constants as C
from ddpayne_core.app import (
    export_table,
    find_rows,
    gradient_comparison,
    label_table,
    repeat_rows,
    robust_range,
    spectrum_table,
    star_view,
    step_row,
)
from ddpayne_core.labels import UNITS, pretty, with_unit

FLAG_LEGEND = ("Flags: **X_flag 1** = the label is measured from spectral features (its "
               "gradient spectrum correlates with the ab initio one above the cutoff), 0 = not; "
               "**qflag_chi2 0** = good fit, 1 = chi2 high for its S/N; **single star 1** = "
               "single, 0 = likely binary, -1 = undetermined; **at fit bound** = the bound, not "
               "the spectrum, set the value.")
WAVE_AXIS = "rest-frame vacuum wavelength [A]"
VISIT_COLORS = Category10_10[2:2 + C.MAX_REPEAT_VISITS]
CAMERA_COLORS = {"B": "#1f77b4", "R": "#9467bd", "Z": "#8c564b"}   # DESI cameras (the model is red)


class StarInspector:
    """The inspector of ``state.row`` (``state``: the SurveyExplorer, whose ``row`` it follows). ``shown()``
    returns the rows the explorer's filters keep, for previous/next. ``layout`` and
    ``gradient_layout`` are the panels; ``find``/``step`` select stars as the widgets do."""

    def __init__(self, b, state, shown, with_document_lock):
        self.b, self.s, self.shown, self._lock = b, state, shown, with_document_lock
        cat = b.catalog
        self.find_w = pn.widgets.TextInput(
            name="find a star", placeholder="specid, obsid, designation, file name or #row",
            css_classes=["find-star"], width=330)
        self.find_msg = pn.pane.Markdown("", css_classes=["find-message"])
        prev_w = pn.widgets.Button(name="◀ previous shown star", css_classes=["previous-star"])
        next_w = pn.widgets.Button(name="next shown star ▶", css_classes=["next-star"])
        self.find_w.param.watch(lambda e: self.find(e.new), "value")
        prev_w.on_click(lambda _: self.step(-1))
        next_w.on_click(lambda _: self.step(+1))

        # --- spectrum, model, residual --------------------------------------------------------
        # Explicit ranges: Bokeh cannot auto-range figures that start without data.
        self.full = (float(b.model.wave[0]), float(b.model.wave[-1]))
        self.spec = _figure("spectrum and model", "normalized flux", 1050, 280,
                            x_range=Range1d(*self.full), y_range=Range1d(0, 1.2))
        self.resid = _figure("", "(data - model) / error [σ]", 1050, 180,
                             x_range=self.spec.x_range, y_range=Range1d(-6, 6))
        self.src = {k: ColumnDataSource({"x": [], "y": []}) for k in ("flux", "model", "resid")}
        self.band = ColumnDataSource({"x": [], "lo": [], "hi": []})
        self.mask_src = ColumnDataSource({"left": [], "right": []})
        self.visit_src = ColumnDataSource({"xs": [], "ys": [], "color": [], "visit": []},
                                          name="repeat-visits")
        for fig in (self.spec, self.resid):
            fig.quad(left="left", right="right", bottom=-1e3, top=1e3, source=self.mask_src,
                     color="grey", alpha=0.15, legend_label="not used in the fit")
        self.spec.varea(x="x", y1="lo", y2="hi", source=self.band, color="#1f77b4", alpha=0.25,
                        legend_label="±1σ")
        self.spec.multi_line("xs", "ys", source=self.visit_src, line_color="color",
                             line_alpha=0.7, legend_field="visit")
        # DESI: the spectrum by camera (B, R, Z; each where it is the camera in use on the merged
        # grid, constants.DESI_CAMERA_SPLIT_AA), so a camera's own problems can be told apart.
        self.cameras = b.model.config.get("instrument") == "desi"
        if self.cameras:
            self.camera_src = {cam: ColumnDataSource({"x": [], "y": []}, name=f"camera-{cam}")
                               for cam in CAMERA_COLORS}
            for cam, color in CAMERA_COLORS.items():
                self.spec.line("x", "y", source=self.camera_src[cam], color=color,
                               legend_label=f"observed, {cam} camera")
        else:
            self.spec.line("x", "y", source=self.src["flux"], legend_label="observed")
        self.spec.line("x", "y", source=self.src["model"], color="red", legend_label="model")
        self.resid.line("x", "y", source=self.src["resid"])
        self.markers = _line_markers(self.spec, self.full)
        _legend_outside(self.spec)
        _legend_outside(self.resid)

        zooms = {"full range": self.full} | {
            k: v for k, v in C.ZOOM_PRESETS_AA.items() if self.full[0] <= v[0] and v[1] <= self.full[1]}
        self.zoom_w = pn.widgets.Select(name="zoom to", options=list(zooms), value="full range",
                                        width=160, css_classes=["zoom-preset"])
        self.zoom_w.param.watch(lambda e: self._lock(lambda: self._zoom(zooms[e.new])), "value")
        lines_w = pn.widgets.Checkbox(name="line markers", value=True)
        lines_w.param.watch(lambda e: self._lock(lambda: self._show_markers(e.new)), "value")
        self.visits_w = pn.widgets.Checkbox(name="overlay other visits of this star", value=True,
                                            disabled="star_id" not in cat,
                                            css_classes=["overlay-visits"])
        self.visits_w.param.watch(lambda e: self._lock(self.show_star), "value")
        self.download_w = pn.widgets.FileDownload(
            callback=self._spectrum_file, filename="ddpayne_star.csv", button_type="default",
            label="Download spectrum and model (CSV)", css_classes=["download-spectrum"],
            disabled=True)

        # --- gradient spectra ----------------------------------------------------------------
        self.grad_label_w = pn.widgets.Select(
            name="gradient spectra of", options={pretty(l): l for l in b.model.labels},
            value="mg_fe" if "mg_fe" in b.model.labels else b.model.labels[0])
        ylabel = "ΔF [normalized flux]"
        self.grad_figs = [_figure("", ylabel, 1050, 240, x_range=Range1d(*self.full),
                                  y_range=Range1d(-0.1, 0.1))] + \
            [_figure(f"strongest feature {i + 1}", ylabel, 340, 220, x_range=Range1d(*self.full),
                     y_range=Range1d(-0.1, 0.1)) for i in range(3)]
        self.grad_src = [(ColumnDataSource({"x": [], "y": []}), ColumnDataSource({"x": [], "y": []}))
                         for _ in self.grad_figs]
        for i, (fig, (ab_src, emu_src)) in enumerate(zip(self.grad_figs, self.grad_src)):
            # The same pixels as the spectrum panel shows masked: the fit and gradcorr skip them.
            fig.quad(left="left", right="right", bottom=-1e3, top=1e3, source=self.mask_src,
                     color="grey", alpha=0.15, legend_label="not used")
            fig.line("x", "y", source=ab_src, color="black", line_width=2, legend_label="ab initio")
            fig.line("x", "y", source=emu_src, color="#ff7f0e", legend_label="emulator")
            if i == 0:
                _legend_outside(fig)
            else:
                fig.legend.visible = False
        self.gradient_head = pn.pane.Markdown(css_classes=["gradient-head"])
        self.grad_label_w.param.watch(lambda *_: self._lock(self.show_gradients), "value")

        state.param.watch(lambda *_: self._lock(self.show_star), "row")
        self.view = None
        self.layout = pn.Column(
            pn.Row(self.find_w, prev_w, next_w), self.find_msg,
            pn.pane.Markdown(pn.bind(self.head, state.param.row, state.param.click),
                             css_classes=["inspector"]),
            pn.Row(self.zoom_w, lines_w, self.visits_w, self.download_w),
            pn.pane.Bokeh(self.spec), pn.pane.Bokeh(self.resid),
            pn.pane.DataFrame(pn.bind(lambda r: shown_labels(label_table(b, r)) if r >= 0 else None,
                                      state.param.row),
                              index=False, css_classes=["label-table"]),
            pn.pane.Markdown(FLAG_LEGEND, css_classes=["flag-legend"]))
        self.gradient_layout = pn.Column(
            self.grad_label_w, self.gradient_head, pn.pane.Bokeh(self.grad_figs[0]),
            pn.Row(*[pn.pane.Bokeh(f) for f in self.grad_figs[1:]]))

    # --- choosing a star -----------------------------------------------------------------------
    def find(self, query: str) -> None:
        """Select the first catalogue row matching ``query`` (explore.find_rows)."""
        if not query.strip():
            self.find_msg.object = ""
            return
        rows, how = find_rows(self.b.catalog, query)
        if len(rows) == 0:
            self.find_msg.object = f"No star matches `{query}`."
            return
        more = f" (first of {len(rows)} matches: rows {', '.join(map(str, rows[:8]))})" if len(rows) > 1 else ""
        hidden = "" if self.shown()[rows[0]] else "; the map filters hide it"
        self.find_msg.object = f"Found row {rows[0]} by {how}{more}{hidden}."
        self.s.row = int(rows[0])

    def step(self, direction: int) -> None:
        """Select the previous (-1) or next (+1) star among those the filters show."""
        row = step_row(self.shown(), self.s.row, direction)
        if row is None:
            self.find_msg.object = "No star is shown: loosen the filters."
            return
        self.find_msg.object = ""
        self.s.row = row

    # --- what is shown -------------------------------------------------------------------------
    def head(self, row, click) -> str:
        b, cat = self.b, self.b.catalog
        if row < 0 and click[2]:
            return (f"No shown star within {C.CLICK_RADIUS_PX:.0f} pixels of the click at "
                    f"{value_text(click[2], click[0])}, {value_text(click[3], click[1])}: click "
                    "on a star (filters hide some), or zoom in.")
        if row < 0:
            return ("Click a star on either map to inspect it (it is ringed on both maps), "
                    "find one by its identifier, or step through the shown stars.")
        rec = cat.iloc[row]
        main = ", ".join(value_text(lab, rec[lab], rec.get(f"{lab}_err")) for lab in ("teff", "logg", "feh"))
        extra = "" if b.store is not None else "\n\n(no spectra stored with this catalogue)"
        warn = cautions(rec, b.model.labels)
        extra += f"\n\n**Caution:** {'; '.join(warn)}" if warn else ""
        rv = (f", RV {rec['rv']:+.1f} ± {rec.get('rv_err', np.nan):.1f} km/s (spectrum shifted "
              "to rest)" if np.isfinite(rec.get("rv", np.nan)) else "")
        return (f"### Star row {row}, specid {rec.get('specid', row)}: {main}\n\n"
                f"S/N {rec['snr']:.1f}{rv}, chi2 {rec.get('chi2', np.nan):.1f} (reduced "
                f"{rec.get('redchi2', np.nan):.2f}), LSF variance offset "
                f"{rec.get('lsf_dvar', np.nan):+.2f} px², qflag_chi2 {rec.get('qflag_chi2', '-')}, "
                f"single star {rec.get('qflag_singlestar', '-')}{extra}")

    def show_star(self, *_):
        row, b = self.s.row, self.b
        self.view = v = star_view(b, row) if row >= 0 and b.store is not None else None
        self.download_w.disabled = v is None
        if v is None:
            return
        self.download_w.filename = f"ddpayne_star_{b.catalog['specid'].iloc[row] if 'specid' in b.catalog else row}.csv"
        spans = _mask_spans(v.wave, v.masked)
        self.mask_src.data = {"left": [a for a, _ in spans], "right": [c for _, c in spans]}
        # Pixels without a measurement (zero inverse variance) carry no flux worth drawing.
        self.src["flux"].data = {"x": v.wave, "y": np.where(np.isfinite(v.error), v.flux, np.nan)}
        if self.cameras:
            lo, hi = C.DESI_CAMERA_SPLIT_AA
            for cam, use in zip(CAMERA_COLORS, (v.wave < lo, (v.wave >= lo) & (v.wave < hi), v.wave >= hi)):
                self.camera_src[cam].data = {"x": v.wave[use], "y": self.src["flux"].data["y"][use]}
        # The emulator is not trained on masked pixels: show the model where it was fitted.
        self.src["model"].data = {"x": v.wave, "y": np.where(v.masked, np.nan, v.model)}
        self.src["resid"].data = {"x": v.wave, "y": v.resid_sigma}
        self.band.data = {"x": v.wave, "lo": v.flux - v.error, "hi": v.flux + v.error}
        self._show_visits(row)
        self.spec.y_range.start, self.spec.y_range.end = robust_range(v.flux[~v.masked], pad=0.2)
        lim = np.nanpercentile(np.abs(v.resid_sigma), 99.5) if np.isfinite(v.resid_sigma).any() else 5
        self.resid.y_range.start, self.resid.y_range.end = -1.1 * lim, 1.1 * lim
        self.show_gradients()

    def _show_visits(self, row):
        rows = repeat_rows(self.b.catalog, row) if self.visits_w.value else []
        views = [star_view(self.b, r) for r in rows]
        mjd = self.b.catalog["mjd"] if "mjd" in self.b.catalog else None
        self.visit_src.data = {
            "xs": [v.wave for v in views], "ys": [np.where(v.masked, np.nan, v.flux) for v in views],
            "color": list(VISIT_COLORS[:len(views)]),
            "visit": [f"row {r}" + (f", MJD {mjd.iloc[r]:.0f}" if mjd is not None else "") for r in rows]}

    def show_gradients(self, *_):
        row, label = self.s.row, self.grad_label_w.value
        if row < 0:
            return
        masked = self.view.masked if self.view is not None else None
        try:
            g = gradient_comparison(self.b, row, label, masked=masked)
        except ValueError as exc:
            self.gradient_head.object = str(exc)
            return
        ref, unit = g.reference_labels, UNITS.get(label, "dex")
        self.gradient_head.object = (
            f"### {pretty(label)} gradient spectra\nΔF: the change of the normalized flux when "
            f"{pretty(label)} changes by **{g.step:+.3g} {unit}**, from the star's fitted labels "
            f"(emulator) and from the nearest reference star #{g.reference_star + 1} (ab initio: "
            f"Teff {ref['teff']:.0f} K, logg {ref['logg']:.2f}, [Fe/H] {ref['feh']:+.2f}). "
            f"Correlation over the fitted pixels **{g.corr:.3f}** (the star's {label}_gradcorr; "
            "X_flag compares its bin's median with the cutoff). Grey: pixels not used.")
        windows = [(g.wave[0], g.wave[-1])] + list(g.windows)
        for i, ((ab_src, emu_src), fig) in enumerate(zip(self.grad_src, self.grad_figs)):
            lo, hi = windows[i] if i < len(windows) else (np.inf, -np.inf)
            w = (g.wave >= lo) & (g.wave <= hi)
            ab_src.data = {"x": g.wave[w], "y": g.ab_initio[w]}
            emu_src.data = {"x": g.wave[w], "y": g.emulator[w]}
            if w.any():
                both = np.concatenate([g.ab_initio[w], g.emulator[w]])
                fig.x_range.start, fig.x_range.end = float(lo), float(hi)
                fig.y_range.start, fig.y_range.end = robust_range(both, pad=0.1)

    def _zoom(self, window):
        self.spec.x_range.start, self.spec.x_range.end = window

    def _show_markers(self, visible: bool):
        for m in self.markers:
            m.visible = visible

    def _spectrum_file(self):
        if self.view is None:
            raise ValueError("no star selected")
        return export_table(spectrum_table(self.view), "CSV")


def cautions(rec, labels) -> list:
    """What should make a reader distrust this star's labels, in words."""
    out = []
    pinned = [pretty(lab) for lab in labels if bool(rec.get(f"{lab}_at_bound", False))]
    if pinned:
        out.append(f"{', '.join(pinned)} at the fit bound (not measured)")
    if bool(rec.get("lsf_at_bound", False)):
        out.append("LSF offset at its bound")
    if bool(rec.get("out_of_coverage", False)):
        out.append("labels outside the training set's coverage")
    if rec.get("qflag_chi2", 0) == 1:
        out.append("poor fit (qflag_chi2 = 1)")
    if rec.get("fit_status", 0) != 0:
        out.append(f"fit_status {rec.get('fit_status')} (1 = not converged, 2 = failed)")
    if rec.get("snr", np.inf) < C.LOW_SNR_CAUTION:
        out.append(f"S/N {rec['snr']:.1f} < {C.LOW_SNR_CAUTION:.0f}: the labels are noisy (see "
                   "their errors); X_flag is set per Teff-[Fe/H] bin from S/N > 30 stars and "
                   "says nothing of this star's noise")
    return out


def shown_labels(table):
    """explore.label_table as a reader wants it: 'fitted' as '4986 ± 86' in the label's unit
    (named in the label column), Teff to 1 K and the rest to 0.01 dex or km/s, correlations to
    0.001."""
    out = table.copy()
    digits = [0 if lab.startswith("Teff") else 2 for lab in out["label"]]
    fmt = lambda v, d: "-" if not np.isfinite(v) else f"{v:.{d}f}"
    out["fitted"] = [f"{fmt(v, d)} ± {fmt(e, d)}" for v, e, d in zip(out["fitted"], out["error"], digits)]
    out = out.drop(columns="error")
    for col in out.columns[2:]:
        if col == "gradient correlation":
            out[col] = [fmt(v, 3) for v in out[col]]
        elif col not in ("X_flag (1 = measured)", "at fit bound"):   # the comparison labels
            out[col] = [fmt(float(v), d) for v, d in zip(out[col], digits)]
    out["X_flag (1 = measured)"] = [fmt(float(v), 0) for v in out["X_flag (1 = measured)"]]
    out["at fit bound"] = np.where(out["at fit bound"], "yes", "no")
    return out


def value_text(col: str, value, err=None) -> str:
    """'Teff 4986 ± 86 K', '[Fe/H] -0.31 ± 0.05 dex': a label as a reader writes it."""
    unit = with_unit(col)[len(pretty(col)):].strip(" []")
    digits = 0 if col == "teff" else 2
    pm = f" ± {err:.{digits}f}" if err is not None and np.isfinite(err) else ""
    return f"{pretty(col)} {value:.{digits}f}{pm}{' ' + unit if unit else ''}"


def _figure(title: str, ylabel: str, width: int, height: int, **kw):
    return figure(title=title, width=width, height=height, x_axis_label=WAVE_AXIS,
                  y_axis_label=ylabel, tools="pan,xwheel_zoom,box_zoom,reset,save", **kw)


def _legend_outside(fig) -> None:
    """Put the figure's legend right of the plot, off the data; a click hides a curve."""
    legend = fig.legend[0]
    legend.click_policy = "hide"
    fig.add_layout(legend, "right")


def _line_markers(fig, full) -> list:
    """Dotted vertical lines at C.LINE_MARKERS_AA inside ``full`` (lo, hi) [A], each named once
    at the top of the plot; returns the Bokeh annotations (to toggle)."""
    out, named = [], set()
    for name, wave in C.LINE_MARKERS_AA:
        if not full[0] <= wave <= full[1]:
            continue
        out.append(Span(location=wave, dimension="height", line_color="#2ca02c",
                        line_dash="dotted", line_width=1))
        if name not in named:   # names alternate between two heights so neighbours stay legible
            out.append(Label(x=wave, y=4 + 12 * (len(named) % 2), y_units="screen", text=name,
                             text_font_size="9pt", text_color="#2ca02c", x_offset=2))
            named.add(name)
    for m in out:
        fig.add_layout(m)
    return out


def _mask_spans(wave: np.ndarray, masked: np.ndarray) -> list:
    """Contiguous masked pixel runs as (start, end) wavelengths."""
    edges = np.diff(np.concatenate([[0], masked.astype(np.int8), [0]]))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    return list(zip(wave[starts], wave[stops]))
