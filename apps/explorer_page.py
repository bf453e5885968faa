"""Survey explorer: datashaded Kiel and [X/Fe]-[Fe/H] maps with filters, linked box selections,
click-to-inspect (spectrum, model, residual, labels), emulator-versus-ab-initio gradient
spectra, and live flag tuning. Layout only: every number comes from ddpayne_core.app.explore."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import panel as pn
import param
from app_state import banner, bundle
from bokeh import events
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    DataRange1d,
    EqHistColorMapper,
    HoverTool,
    LinearColorMapper,
    LogColorMapper,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.palettes import Blues256, RdBu11, Viridis256
from bokeh.plotting import figure
from star_inspector import StarInspector

from ddpayne_core.app import (
    EXPORT_FORMATS,
    FLAG_CONFIG_DIR,
    density_map,
    export_table,
    flag_counts,
    save_flag_config,
    selection,
)
from ddpayne_core.flags import XFlagConfig
from ddpayne_core.labels import pretty, with_unit

DENSITY_PALETTE = Blues256[::-1][40:]  # light to dark, without the near-white end
# Colour scales of the maps: histogram-equalized (datashader's default, shows structure at every
# density), linear, logarithmic (a mean colour column must be positive for log).
COLOR_SCALES = {"equalized": EqHistColorMapper, "linear": LinearColorMapper, "log": LogColorMapper}
TRANSPARENT = "rgba(0, 0, 0, 0)"
TABLE_MAX_ROWS = 10_000   # rows handed to the linked star table (it pages them to the browser)


N_CHI2_TIERS = len(XFlagConfig().chi2_cuts)


class SurveyExplorer(param.Parameterized):
    """The survey explorer of one bundle, in HoloViz's dashboard idiom: the filters, the map
    choices and the flag tuning are parameters shown as widgets, and the views follow them
    through ``@param.depends``. State: bumping ``version`` redraws the maps; ``row`` is the
    inspected star (the URL's ``star``); ``click`` the last map click; ``selected`` the number of
    box-selected stars. Flag-tuning numbers are checked by ``XFlagConfig`` rather than by param
    bounds, so an emptied or out-of-range field gives a message, not an exception."""

    snr_min = param.Number(0.0, bounds=(0, 200), label="S/N at least")
    good_chi2 = param.Boolean(False, label="good chi2 only (qflag_chi2 = 0)")
    single = param.Boolean(False, label="single stars only (qflag_singlestar = 1)")
    xflag_label = param.Selector(default="", objects=[""], label="require X_flag = 1 for")
    element = param.Selector(default="", objects=[""], label="[X/Fe] map element")
    color = param.Selector(default="density", objects=["density"], label="colour by")
    scale = param.Selector(default="equalized", objects=list(COLOR_SCALES), label="colour scale")
    cutoff = param.Number(XFlagConfig().cutoff, allow_None=True, label="gradcorr cutoff")
    snr_limit = param.Number(XFlagConfig().snr_min, allow_None=True, label="S/N limit for bin medians")
    teff_bin = param.Integer(int(XFlagConfig().teff_bin), allow_None=True, label="Teff bin [K]")
    feh_bin = param.Number(XFlagConfig().feh_bin, allow_None=True, label="[Fe/H] bin [dex]")
    response_min = param.Number(XFlagConfig().response_min, allow_None=True,
                                label="least response d fitted / d true ([X/Fe])")
    chi2_cut_1, chi2_cut_2, chi2_cut_3, chi2_cut_4, chi2_cut_5 = (
        param.Number(c, allow_None=True, label=f"chi2ratio cut, S/N tier {i + 1}")
        for i, c in enumerate(XFlagConfig().chi2_cuts))
    map_label = param.Selector(default="", objects=[""], label="gradient correlation maps of")
    save_name = param.String("flag_config")
    version = param.Integer(0)
    row = param.Integer(-1)
    click = param.Tuple(default=(np.nan, np.nan, "", ""), length=4)
    selected = param.Integer(0)

    FILTERS = ("snr_min", "good_chi2", "single", "xflag_label")
    TUNING = ("cutoff", "snr_limit", "teff_bin", "feh_bin", "response_min") + \
        tuple(f"chi2_cut_{i + 1}" for i in range(N_CHI2_TIERS))

    def __init__(self, b, tuner, **params):
        super().__init__(**params)
        self.b, self.tuner, self.cat = b, tuner, b.catalog
        # A catalogue's default flag configuration: X19's cuts, or Z24's for a DESI model.
        self.default = XFlagConfig.for_model(b.model)
        abund = b.abundance_labels
        # The second map: [X/Fe] against [Fe/H]; for a model without abundances (e.g. trained on
        # Teff, logg, [Fe/H] alone) Teff against [Fe/H].
        second = abund or ["teff"]
        first_el = "mg_fe" if "mg_fe" in second else second[0]
        labels = {pretty(lab): lab for lab in b.model.labels}
        self.param.xflag_label.objects = {"(no X_flag filter)": ""} | labels
        self.param.element.objects = {pretty(lab): lab for lab in second}
        self.param.element.label = "[X/Fe] map element" if abund else "second map: y axis"
        color_cols = ["density", "feh", "snr", "chi2ratio"] + \
            [c for c in self.cat.columns if c.endswith("_gradcorr")] + abund
        self.param.color.objects = {("stars per pixel" if c == "density" else with_unit(c)): c
                                    for c in color_cols if c == "density" or c in self.cat}
        self.param.map_label.objects = labels
        with param.parameterized.discard_events(self):   # the views do not exist yet
            self.param.update(element=first_el, map_label=first_el, cutoff=self.default.cutoff,
                              snr_limit=self.default.snr_min, teff_bin=int(self.default.teff_bin),
                              feh_bin=self.default.feh_bin, response_min=self.default.response_min,
                              **{f"chi2_cut_{i + 1}": c for i, c in enumerate(self.default.chi2_cuts)})
        self._valid = self.default
        self.config_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["config-error"])
        self.save_msg = pn.pane.Markdown("", css_classes=["save-message"])
        self._keep = self.keep()
        self._bounds = None
        self.kiel = MapView(b, "kiel", "teff", "logg", invert=True)
        self.xfe = MapView(b, "xfe", "feh", self.element, invert=False)
        for m in (self.kiel, self.xfe):
            m.fig.on_event(events.Tap, lambda e, m=m: self.clicked(e.x, e.y, m.xcol, m.ycol))
            m.fig.on_event(events.SelectionGeometry, lambda e, m=m: self._box_event(e, m))
            m.fig.on_event(events.Reset, lambda e, m=m: self._boxed(None, m.xcol, m.ycol))
            m.fig.on_event(events.RangesUpdate, lambda e, m=m: self.draw(m, ((e.x0, e.x1), (e.y0, e.y1))))
        self._build_views()
        self.inspector = StarInspector(b, self, lambda: self._keep, with_document_lock)
        if pn.state.location is not None:   # the URL names the selected star: a link opens it
            pn.state.location.sync(self, {"row": "star"})
        self.draw_maps()
        self.update_counts()
        self.update_table()
        self.update_gradcorr_maps()

    # --- the flag configuration and the shown rows ------------------------------------------
    def config(self) -> XFlagConfig:
        """The widgets' configuration, or the last valid one with a message saying which field
        is wrong (an empty or out-of-range field must not silently become NaN)."""
        try:
            cfg = XFlagConfig(cutoff=self.cutoff, snr_min=self.snr_limit, teff_bin=self.teff_bin,
                              feh_bin=self.feh_bin, giant_logg=self.default.giant_logg,
                              response_min=self.response_min,
                              chi2_cuts=tuple(getattr(self, f"chi2_cut_{i + 1}") for i in range(N_CHI2_TIERS)))
        except ValueError as exc:
            self.config_msg.object = f"{exc}; the last valid value is in use."
            self.config_msg.visible = True
            return self._valid
        self.config_msg.visible = False
        self._valid = cfg
        return cfg

    def keep(self) -> np.ndarray:
        """(n_row,) bool: the stars the filters keep, with the flags as tuned now."""
        cfg = self.config()
        flags = {}
        if self.good_chi2 and self.tuner.chi2ratio is not None:
            flags["qflag_chi2"] = self.tuner.qflag_chi2(cfg)
        if self.xflag_label:
            flags[f"{self.xflag_label}_flag"] = self.tuner.flag(self.xflag_label, cfg)
        return selection(self.cat, self.snr_min, self.good_chi2, self.single, self.xflag_label or None, flags)

    def shown_or_boxed(self) -> np.ndarray:
        return self._keep & _in_bounds(self.cat, self._bounds) if self._bounds else self._keep

    @param.depends(*FILTERS, *TUNING, watch=True)
    def _refilter(self):
        self._keep = self.keep()
        self.version += 1

    # --- maps: plain Bokeh figures showing images aggregated by explore.density_map; a filter
    # change or a zoom re-aggregates the current view (~0.05 s per map for 6 million rows) and
    # replaces the image data, nothing is rebuilt -----------------------------------------------
    def draw(self, m, ranges=None):
        """Re-aggregate map ``m`` over ``ranges`` ((x0, x1), (y0, y1); default: its axes)."""
        color = None if self.color == "density" else self.cat[self.color].to_numpy()
        ranges = ranges or ((m.fig.x_range.start, m.fig.x_range.end),
                            (m.fig.y_range.start, m.fig.y_range.end))
        x, y = self.cat[m.xcol].to_numpy(), self.cat[m.ycol].to_numpy()
        boxed = density_map(x, y, self.shown_or_boxed(), *ranges, m.shape) if self._bounds else None
        m.show(density_map(x, y, self._keep, *ranges, m.shape, values=color), boxed, ranges)

    @param.depends("version", watch=True)
    def draw_maps(self):
        # Callbacks run outside the Bokeh document lock, so figure updates are scheduled.
        with_document_lock(lambda: [self.draw(m) for m in (self.kiel, self.xfe)])

    @param.depends("color", "scale", watch=True)
    def _recolor(self):
        def recolor():
            for m in (self.kiel, self.xfe):
                m.set_palette(self.color, self.scale)
                self.draw(m)
        with_document_lock(recolor)

    @param.depends("element", watch=True)
    def _change_element(self):
        def change():
            old = self.xfe.ycol
            self.xfe.set_y(self.element, self.b.axis_range(self.element))
            self.xfe.mark(self.cat, self.row)
            if self._bounds and self._bounds[1] == old:
                self._boxed(None, "feh", self.element)   # that box no longer exists: clear it
            else:
                self.draw(self.xfe)
        with_document_lock(change)

    @param.depends("row", watch=True)
    def _mark_star(self):
        with_document_lock(lambda: [m.mark(self.cat, self.row) for m in (self.kiel, self.xfe)])

    def clicked(self, x, y, xcol, ycol):
        """Select the shown star nearest the click within CLICK_RADIUS_PX screen pixels; a click
        on empty sky selects nothing and says so."""
        if x is None or y is None:
            return
        m = self.kiel if (xcol, ycol) == (self.kiel.xcol, self.kiel.ycol) else self.xfe
        row = self.b.nearest_row(x, y, xcol, ycol, m.pixel_size(), self._keep)
        self.click = (float(x), float(y), xcol, ycol)
        self.row = -1 if row is None else row

    def _boxed(self, bounds, xcol, ycol):
        self._bounds = (xcol, ycol, bounds) if bounds else None
        self.selected = int(self.shown_or_boxed().sum()) if bounds else 0
        self.version += 1

    def _box_event(self, event, m):
        g = event.geometry
        # The tap tool reports a point geometry too; only finished boxes select.
        if event.final and g.get("type") == "rect":
            self._boxed((g["x0"], g["y0"], g["x1"], g["y1"]), m.xcol, m.ycol)

    # --- counts, export, star table, gradient-correlation maps ------------------------------
    def _build_views(self):
        # Panes and figures are built once and updated in place: rebuilding Bokeh plots costs
        # ~0.4 s each, updating their data a few ms.
        self.counts_pane = pn.pane.Markdown(css_classes=["counts"])
        self.flag_pane = pn.pane.DataFrame(index=False, float_format="{:.3f}".format,
                                           css_classes=["flag-counts"], height=440, width=300)
        self.export_fmt_w = pn.widgets.Select(name="export format", options=list(EXPORT_FORMATS),
                                              value="CSV", width=120)
        self.export_w = pn.widgets.FileDownload(
            callback=lambda: export_table(self.exported_rows(), self.export_fmt_w.value),
            filename=self.export_name(), label="Download the shown stars", button_type="default",
            css_classes=["export-rows"])
        self.export_fmt_w.param.watch(lambda e: self._relabel_export(), "value")
        self.table_cols = [c for c in ("specid", "teff", "logg", "feh", "snr", "qflag_chi2",
                                       "qflag_singlestar") if c in self.cat]
        self.rows_table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["row"] + self.table_cols), disabled=True, show_index=False,
            selectable=1, pagination="remote", page_size=15, sizing_mode="stretch_width",
            css_classes=["star-table"],
            formatters={c: {"type": "money", "precision": 0 if c == "teff" else 2}
                        for c in ("teff", "logg", "feh", "snr")})
        self.rows_table.param.watch(self._table_clicked, "selection")
        self.table_note = pn.pane.Markdown()
        # The maps of the bin medians behind X_flag: the colour scale diverges at the cutoff
        # (white = the cutoff, blue = the bin passes, red = it fails) and passing bins are
        # outlined, so the pass/fail boundary is what the eye sees as the cutoff moves.
        self.gradcorr = []
        for name in ("dwarfs", "giants"):
            fig = figure(title=f"median gradcorr, {name}", width=380, height=280,
                         x_range=DataRange1d(flipped=True), x_axis_label="Teff [K]",
                         y_axis_label="[Fe/H] [dex]", tools="pan,wheel_zoom,reset,hover",
                         tooltips=[("Teff", "@teff{0} K"), ("[Fe/H]", "@feh{0.00}"),
                                   ("median gradcorr", "@median{0.000}"), ("X_flag", "@xflag")])
            src = ColumnDataSource({k: [] for k in ("left", "right", "bottom", "top", "teff", "feh",
                                                    "median", "xflag", "edge")})
            mapper = LinearColorMapper(palette=diverging_at(self.default.cutoff), low=-1, high=1)
            fig.quad(left="left", right="right", bottom="bottom", top="top", source=src,
                     fill_color={"field": "median", "transform": mapper}, line_color="edge",
                     line_width=1.5)
            fig.add_layout(ColorBar(color_mapper=mapper, title="median correlation"), "right")
            self.gradcorr.append((fig, src, mapper))
        self.gradcorr_msg = pn.pane.Markdown(css_classes=["gradcorr-message"])

    @param.depends("version", "selected", watch=True)
    def update_counts(self):
        k = self._keep
        sel = f"; **{self.selected:,}** in the box selection" if self._bounds else ""
        n = int(k.sum())
        none = "" if n else (" — **no star passes the filters**: loosen them (an X_flag filter at "
                             "a cutoff no bin passes removes every star)")
        self.counts_pane.object = f"**{n:,}** of {len(self.cat):,} spectra shown{sel}{none}"
        self.flag_pane.object = flag_counts(self.tuner, self.config(), k)
        self._relabel_export()

    def exported_rows(self) -> pd.DataFrame:
        """The shown (or box-selected) stars with their flags as tuned now."""
        rows = self.shown_or_boxed()
        table = self.cat[rows].copy()
        cfg = self.config()
        for lab in self.b.model.labels:
            table[f"{lab}_flag"] = self.tuner.flag(lab, cfg)[rows]
        return table

    def export_name(self) -> str:
        what = "box_selection" if self._bounds else "shown_stars"
        return f"ddpayne_{what}{EXPORT_FORMATS[self.export_fmt_w.value]}"

    def _relabel_export(self):
        self.export_w.filename = self.export_name()
        self.export_w.label = "Download the box-selected stars" if self._bounds else "Download the shown stars"

    @param.depends("version", "selected", watch=True)
    def update_table(self):
        """The linked table of the same stars: a click on a row selects that star."""
        rows = np.nonzero(self.shown_or_boxed())[0]
        what = "box-selected" if self._bounds else "shown"
        cut = "" if len(rows) <= TABLE_MAX_ROWS else f" (the first {TABLE_MAX_ROWS:,} in catalogue order)"
        self.table_note.object = (f"{len(rows):,} {what} stars{cut}; click a row to inspect the star. "
                                  "Units: Teff K, logg and [Fe/H] dex.")
        rows = rows[:TABLE_MAX_ROWS]
        self.rows_table.value = pd.DataFrame({"row": rows, **{c: self.cat[c].to_numpy()[rows]
                                                             for c in self.table_cols}})

    def _table_clicked(self, event):
        if event.new:
            self.row = int(self.rows_table.value["row"].iloc[event.new[0]])

    @param.depends("version", "map_label", watch=True)
    def update_gradcorr_maps(self):
        with_document_lock(self._draw_gradcorr_maps)

    def _draw_gradcorr_maps(self):
        cfg = self.config()
        label = pretty(self.map_label)
        n_pass = n_bins = 0
        for giant, (fig, src, mapper) in enumerate(self.gradcorr):
            fig.title.text = f"median {label} gradient correlation, {'giants' if giant else 'dwarfs'}"
            mapper.palette = diverging_at(cfg.cutoff)
            m = self.tuner.gradcorr_map(self.map_label, cfg, bool(giant))
            n_pass, n_bins = n_pass + int(m["passes"].sum()), n_bins + len(m)
            src.data = {"left": m["teff"] - cfg.teff_bin / 2, "right": m["teff"] + cfg.teff_bin / 2,
                        "bottom": m["feh"] - cfg.feh_bin / 2, "top": m["feh"] + cfg.feh_bin / 2,
                        "teff": m["teff"], "feh": m["feh"], "median": m["median"],
                        "xflag": np.where(m["passes"], "1 (passes)", "0 (fails)"),
                        "edge": np.where(m["passes"], "black", "rgba(0, 0, 0, 0)")}
        if n_bins == 0:
            self.gradcorr_msg.object = (f"No bin has a median: no star above S/N {cfg.snr_min:.0f} "
                                        f"has a finite {label} gradient correlation.")
        elif n_pass == 0:
            self.gradcorr_msg.object = (f"**No bin passes the cutoff {cfg.cutoff:.2f}**: every {label} "
                                        "X_flag is 0 (a correlation cannot exceed 1).")
        else:
            self.gradcorr_msg.object = (f"{n_pass} of {n_bins} {label} bins pass the cutoff "
                                        f"{cfg.cutoff:.2f} (outlined: their stars get X_flag 1).")

    def save_config(self, _=None):
        # Saved only inside the bundle folder, under a validated plain name
        # (explore.flag_config_path), or downloaded: a served app must not write where a
        # visitor says.
        try:
            path = save_flag_config(self.config(), self.b.directory, self.save_name)
        except ValueError as exc:
            self.save_msg.object = f"**Not saved:** {exc}"
            return
        self.save_msg.object = (f"saved `{path}`; apply to the catalogue with `ddpayne flag --catalog "
                                f"{self.b.directory / 'catalog.parquet'} --config {path} --reflag-only`")

    # --- widgets and layout ---------------------------------------------------------------
    def widgets(self) -> dict:
        """The parameters' widgets, built once (tests and benchmarks drive them)."""
        if hasattr(self, "_widgets"):
            return self._widgets
        w = pn.widgets
        lo, hi = XFlagConfig.LIMITS["chi2_cuts"]
        self._widgets = {
            "snr_min": w.FloatSlider.from_param(self.param.snr_min, start=0, end=200, step=5),
            "good_chi2": w.Checkbox.from_param(self.param.good_chi2),
            "single": w.Checkbox.from_param(self.param.single),
            "xflag_label": w.Select.from_param(self.param.xflag_label, css_classes=["xflag-select"]),
            "element": w.Select.from_param(self.param.element, css_classes=["element-select"]),
            "color": w.Select.from_param(self.param.color),
            "scale": w.RadioButtonGroup.from_param(self.param.scale, css_classes=["color-scale"]),
            "cutoff": w.FloatSlider.from_param(self.param.cutoff, start=0, end=1, step=0.05,
                                               css_classes=["gradcorr-cutoff"]),
            "snr_limit": w.FloatSlider.from_param(self.param.snr_limit, start=0, end=150, step=5),
            "teff_bin": w.IntSlider.from_param(self.param.teff_bin, start=100, end=1000, step=50),
            "feh_bin": w.FloatSlider.from_param(self.param.feh_bin, start=0.05, end=1.0, step=0.05),
            "response_min": w.FloatSlider.from_param(self.param.response_min, start=0, end=1.2,
                                                     step=0.05, css_classes=["response-min"]),
            **{f"chi2_cut_{i + 1}": w.FloatInput.from_param(
                getattr(self.param, f"chi2_cut_{i + 1}"), step=0.5, start=lo, end=hi, width=130,
                css_classes=[f"chi2-cut-{i + 1}"]) for i in range(N_CHI2_TIERS)},
            "map_label": w.Select.from_param(self.param.map_label, css_classes=["gradcorr-label"]),
            "save_name": w.TextInput.from_param(self.param.save_name,
                                                name=f"save as (in the bundle's {FLAG_CONFIG_DIR}/)",
                                                css_classes=["flag-config-name"]),
        }
        return self._widgets

    def panel(self) -> pn.viewable.Viewable:
        w = self.widgets()
        save_w = pn.widgets.Button(name="Save flag configuration", button_type="primary")
        save_w.on_click(self.save_config)
        download_w = pn.widgets.FileDownload(callback=lambda: io.StringIO(self.config().to_json()),
                                             filename="flag_config.json", button_type="default",
                                             label="Download flag configuration")
        sidebar = pn.Column(
            pn.pane.Markdown("### Filters"), *(w[k] for k in self.FILTERS),
            pn.pane.Markdown("### Maps"), w["element"], w["color"],
            pn.pane.Markdown("colour scale"), w["scale"],
            pn.pane.Markdown("### Flag tuning"),
            pn.pane.Markdown("The cutoff and bins set every X_flag: the counts and gradient-correlation "
                             "maps below follow them; the star maps follow them when *require X_flag "
                             "= 1 for* names a label. An abundance also needs the fit's response to "
                             "its own signal (d fitted / d true at the nearest held-out reference "
                             "star) to reach the least response (0: X19's flag)."),
            w["cutoff"], w["snr_limit"], w["teff_bin"], w["feh_bin"], w["response_min"],
            pn.pane.Markdown("chi2ratio cuts per S/N tier (<200, 200-300, 300-400, 400-500, >500)"),
            pn.GridBox(*(w[f"chi2_cut_{i + 1}"] for i in range(N_CHI2_TIERS)), ncols=2),
            self.config_msg, w["save_name"], save_w, self.save_msg, download_w, width=320)
        gradcorr_maps = pn.Column(w["map_label"], self.gradcorr_msg,
                                  pn.Row(*[pn.pane.Bokeh(fig) for fig, _, _ in self.gradcorr]))
        # The inspector sits right under the maps so that a click shows its answer on screen.
        main = pn.Column(
            pn.Row(self.counts_pane, self.export_fmt_w, self.export_w),
            pn.Card(self.table_note, self.rows_table, title="Table of these stars", collapsed=True,
                    width=1100, css_classes=["star-table-card"]),
            pn.Row(pn.Column(pn.pane.Bokeh(self.kiel.fig), css_classes=["kiel-map"]),
                   pn.Column(pn.pane.Bokeh(self.xfe.fig), css_classes=["xfe-map"])),
            pn.pane.Markdown("Click a star to inspect it; box-select on either map to highlight the "
                             "same stars on both."),
            self.inspector.layout, self.inspector.gradient_layout,
            pn.pane.Markdown("### Flags of the shown stars, and the gradient correlations behind X_flag"),
            pn.Row(self.flag_pane, gradcorr_maps))
        return pn.Column(pn.pane.Markdown("# ddpayne survey explorer  ·  [index](?)"), banner(self.b),
                         pn.Row(sidebar, main))


def explorer_page():
    return build_explorer(*bundle())[0]


def build_explorer(b, tuner):
    """The explorer's layout and its controls for scripting: benchmarks drive the same objects
    a browser does (``controls.state`` is the explorer itself)."""
    ex = SurveyExplorer(b, tuner)
    layout = ex.panel()
    w = ex.widgets()
    controls = SimpleNamespace(state=ex, click=ex.clicked, cutoff=w["cutoff"], snr=w["snr_min"],
                               xflag=w["xflag_label"], element=w["element"], inspector=ex.inspector,
                               gradcorr_message=ex.gradcorr_msg, maps=(ex.kiel, ex.xfe), scale=w["scale"])
    return layout, controls


class MapView:
    """One datashaded map: a Bokeh figure with the aggregated image of the shown stars, a red
    overlay of the box-selected ones and a colour bar; ``show`` replaces the images."""

    def __init__(self, b, name: str, xcol: str, ycol: str, invert: bool, shape=(420, 520)):
        self.xcol, self.ycol, self.shape = xcol, ycol, shape
        (x0, x1), (y0, y1) = b.axis_range(xcol), b.axis_range(ycol)
        self.fig = figure(name=f"{name}-map", width=shape[1] + 100, height=shape[0] + 60, x_axis_label=with_unit(xcol),
                          y_axis_label=with_unit(ycol), x_range=Range1d(*((x1, x0) if invert else (x0, x1))),
                          y_range=Range1d(*((y1, y0) if invert else (y0, y1))),
                          tools="pan,wheel_zoom,box_select,tap,reset,save", active_scroll="wheel_zoom",
                          active_drag="box_select",
                          tooltips=_tooltips(xcol, ycol))
        self.mappers = {k: cls(palette=DENSITY_PALETTE, nan_color=TRANSPARENT)
                        for k, cls in COLOR_SCALES.items()}
        self.mapper = self.mappers["equalized"]
        empty = {"image": [np.full((1, 1), np.nan)], "x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}
        self.src, self.hi_src = ColumnDataSource(dict(empty)), ColumnDataSource(dict(empty))
        self.image = self.fig.image("image", x="x", y="y", dw="dw", dh="dh", source=self.src,
                                    color_mapper=self.mapper)
        self.fig.select_one(HoverTool).renderers = [self.image]   # not the selection ring
        self.fig.image("image", x="x", y="y", dw="dw", dh="dh", source=self.hi_src, global_alpha=0.8,
                       color_mapper=LinearColorMapper(palette=["#d62728"], nan_color=TRANSPARENT))
        self.colorbar = ColorBar(color_mapper=self.mapper, title="stars per pixel",
                                 formatter=NumeralTickFormatter(format="0,0.[00]"))
        self.fig.add_layout(self.colorbar, "right")
        self.marker = ColumnDataSource({"x": [], "y": []}, name=f"selected-star-{name}")
        self.fig.scatter("x", "y", source=self.marker, marker="circle_cross", size=18,
                         fill_alpha=0, line_color="#e7298a", line_width=2.5)

    def pixel_size(self) -> tuple[float, float]:
        """Data units per screen pixel along x and y at the current zoom (the frame size as the
        browser reports it, else the image's)."""
        r = self.fig

        def frame(name, default):   # unset until a browser has laid the figure out
            try:
                return getattr(r, name) or default
            except UnsetValueError:
                return default
        return ((r.x_range.end - r.x_range.start) / frame("inner_width", self.shape[1]),
                (r.y_range.end - r.y_range.start) / frame("inner_height", self.shape[0]))

    def mark(self, cat, row: int) -> None:
        """Ring catalogue row ``row`` (none when negative)."""
        self.marker.data = ({"x": [float(cat[self.xcol].iloc[row])], "y": [float(cat[self.ycol].iloc[row])]}
                            if row >= 0 else {"x": [], "y": []})

    def show(self, image: np.ndarray, selected: np.ndarray | None, ranges) -> None:
        """image, selected: (ny, nx) from explore.density_map over ranges ((x0, x1), (y0, y1))."""
        (x0, x1), (y0, y1) = (sorted(r) for r in ranges)
        place = {"x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}
        self.src.data = {"image": [image.astype(np.float32)], **place}
        hi = selected if selected is not None else np.full((1, 1), np.nan)
        self.hi_src.data = {"image": [hi.astype(np.float32)], **place}

    def set_palette(self, color: str, scale: str = "equalized") -> None:
        """Colour by star counts ("density") or the mean of a column, on a COLOR_SCALES scale."""
        density = color == "density"
        self.mapper = self.mappers[scale]
        self.mapper.palette = DENSITY_PALETTE if density else Viridis256
        self.image.glyph.color_mapper = self.mapper
        self.colorbar.color_mapper = self.mapper
        self.colorbar.title = "stars per pixel" if density else f"mean {with_unit(color)}"

    def set_x(self, col: str, limits) -> None:
        self.xcol = col
        self.fig.xaxis.axis_label = with_unit(col)
        self.fig.select_one(HoverTool).tooltips = _tooltips(col, self.ycol)
        self.fig.x_range.start, self.fig.x_range.end = limits

    def set_y(self, col: str, limits) -> None:
        self.ycol = col
        self.fig.yaxis.axis_label = with_unit(col)
        self.fig.select_one(HoverTool).tooltips = _tooltips(self.xcol, col)
        self.fig.y_range.start, self.fig.y_range.end = limits


def diverging_at(cutoff: float, n: int = 256) -> list:
    """A red-white-blue palette of ``n`` colours over correlations -1..1 whose white falls at
    ``cutoff``: reds below it (X_flag 0), blues above (X_flag 1)."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in RdBu11], dtype=float)
    blue, red = rgb[:6], rgb[5:]          # dark blue..white, white..dark red
    n_low = int(round(n * (cutoff + 1) / 2))
    ramp = lambda stops, k: np.array([np.interp(np.linspace(0, 1, k), np.linspace(0, 1, len(stops)),
                                                stops[:, j]) for j in range(3)]).T
    cols = np.vstack([ramp(red[::-1], n_low), ramp(blue[::-1], n - n_low)])
    return ["#%02x%02x%02x" % tuple(int(round(v)) for v in c) for c in cols]


def _tooltips(xcol: str, ycol: str) -> list:
    """Hover text of a map: both coordinates with their units and rounding, and the pixel's
    value (stars, or the mean of the colour column)."""
    fmt = {"teff": "{0}", "snr": "{0.0}"}
    return [(pretty(xcol), f"$x{fmt.get(xcol, '{0.00}')}"), (pretty(ycol), f"$y{fmt.get(ycol, '{0.00}')}"),
            ("value", "@image{0.[00]}")]


def with_document_lock(fn) -> None:
    """Run ``fn`` (which edits Bokeh models directly) under the session's document lock: a map
    click arrives from a HoloViews stream outside it. Outside a server session, run it now."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        doc.add_next_tick_callback(fn)
    else:
        fn()


def _in_bounds(cat, bounds) -> np.ndarray:
    if not bounds:
        return np.zeros(len(cat), dtype=bool)
    xcol, ycol, (x0, y0, x1, y1) = bounds
    x, y = cat[xcol].to_numpy(), cat[ycol].to_numpy()
    return (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))


