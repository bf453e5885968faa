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


class ExplorerState(param.Parameterized):
    """Per-session state: bumping ``version`` redraws the maps."""

    version = param.Integer(0)
    row = param.Integer(-1)
    click = param.Tuple(default=(np.nan, np.nan, "", ""), length=4)
    selected = param.Integer(0)


def explorer_page():
    return build_explorer(*bundle())[0]


def build_explorer(b, tuner):
    """The explorer layout and its controls (widgets, state, click handler) for scripting:
    benchmarks drive the same objects a browser does."""
    cat = b.catalog
    s = ExplorerState()
    default = XFlagConfig()
    abund = b.abundance_labels
    # The second map: [X/Fe] against [Fe/H]; for a model without abundances (e.g. trained on
    # Teff, logg, [Fe/H] alone) Teff against [Fe/H].
    second = abund or ["teff"]
    first_el = "mg_fe" if "mg_fe" in second else second[0]

    # --- widgets -------------------------------------------------------------------------
    snr_w = pn.widgets.FloatSlider(label="S/N at least", start=0, end=200, step=5, value=0)
    chi2_w = pn.widgets.Checkbox(name="good chi2 only (qflag_chi2 = 0)")
    single_w = pn.widgets.Checkbox(name="single stars only (qflag_singlestar = 1)")
    xflag_w = pn.widgets.Select(label="require X_flag = 1 for", value="", css_classes=["xflag-select"],
                                options={"(no X_flag filter)": ""} | {pretty(l): l for l in b.model.labels})
    element_w = pn.widgets.Select(label="[X/Fe] map element" if abund else "second map: y axis",
                                  value=first_el, options={pretty(l): l for l in second},
                                  css_classes=["element-select"])
    color_cols = ["density", "feh", "snr", "chi2ratio"] + \
        [c for c in cat.columns if c.endswith("_gradcorr")] + abund
    color_w = pn.widgets.Select(label="colour by", value="density",
                                options={("stars per pixel" if c == "density" else with_unit(c)): c
                                         for c in color_cols if c == "density" or c in cat})
    scale_w = pn.widgets.RadioButtonGroup(name="colour scale", options=list(COLOR_SCALES),
                                          value="equalized", css_classes=["color-scale"])
    cutoff_w = pn.widgets.FloatSlider(label="gradcorr cutoff", start=0, end=1, step=0.05,
                                      value=default.cutoff, css_classes=["gradcorr-cutoff"])
    snrlim_w = pn.widgets.FloatSlider(label="S/N limit for bin medians", start=0, end=150, step=5,
                                      value=default.snr_min)
    tbin_w = pn.widgets.IntSlider(label="Teff bin [K]", start=100, end=1000, step=50,
                                  value=int(default.teff_bin))
    fbin_w = pn.widgets.FloatSlider(label="[Fe/H] bin [dex]", start=0.05, end=1.0, step=0.05,
                                    value=default.feh_bin)
    cut_lo, cut_hi = XFlagConfig.LIMITS["chi2_cuts"]
    cut_ws = [pn.widgets.FloatInput(label=f"chi2ratio cut, S/N tier {i + 1}", value=c, step=0.5,
                                    start=cut_lo, end=cut_hi, width=130,
                                    css_classes=[f"chi2-cut-{i + 1}"])
              for i, c in enumerate(default.chi2_cuts)]
    map_label_w = pn.widgets.Select(label="gradient correlation maps of", value=first_el,
                                    options={pretty(l): l for l in b.model.labels},
                                    css_classes=["gradcorr-label"])
    # Saved only inside the bundle folder, under a validated plain name (explore.flag_config_path),
    # or downloaded by the browser: a served app must not write where a visitor says.
    save_name_w = pn.widgets.TextInput(name=f"save as (in the bundle's {FLAG_CONFIG_DIR}/)",
                                       value="flag_config", css_classes=["flag-config-name"])
    save_w = pn.widgets.Button(name="Save flag configuration", button_type="primary")
    save_msg = pn.pane.Markdown("", css_classes=["save-message"])
    config_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["config-error"])
    tuning = [cutoff_w, snrlim_w, tbin_w, fbin_w, *cut_ws]
    filters = [snr_w, chi2_w, single_w, xflag_w]

    last_valid = {"config": default}

    def config() -> XFlagConfig:
        """The widgets' configuration, or the last valid one with a message saying which field
        is wrong (an empty or out-of-range field must not silently become NaN)."""
        try:
            cfg = XFlagConfig(cutoff=cutoff_w.value, snr_min=snrlim_w.value,
                              teff_bin=tbin_w.value, feh_bin=fbin_w.value,
                              giant_logg=default.giant_logg,
                              chi2_cuts=tuple(w.value for w in cut_ws))
        except ValueError as exc:
            config_msg.object = f"{exc}; the last valid value is in use."
            config_msg.visible = True
            return last_valid["config"]
        config_msg.visible = False
        last_valid["config"] = cfg
        return cfg

    def keep() -> np.ndarray:
        cfg = config()
        flags = {}
        if chi2_w.value and tuner.chi2ratio is not None:
            flags["qflag_chi2"] = tuner.qflag_chi2(cfg)
        if xflag_w.value:
            flags[f"{xflag_w.value}_flag"] = tuner.flag(xflag_w.value, cfg)
        return selection(cat, snr_w.value, chi2_w.value, single_w.value, xflag_w.value or None,
                         flags)

    # --- maps ----------------------------------------------------------------------------
    # Plain Bokeh figures showing images aggregated by explore.density_map: a filter change or
    # a zoom re-aggregates the current view (~0.05 s per map for 6 million rows) and replaces
    # the image data; nothing is rebuilt.
    state = {"keep": keep(), "bounds": None}
    kiel = MapView(b, "kiel", "teff", "logg", invert=True)
    xfe = MapView(b, "xfe", "feh", element_w.value, invert=False)

    def draw(m, ranges=None):
        """Re-aggregate map ``m`` over ``ranges`` ((x0, x1), (y0, y1); default: its axes)."""
        color = None if color_w.value == "density" else cat[color_w.value].to_numpy()
        ranges = ranges or ((m.fig.x_range.start, m.fig.x_range.end),
                            (m.fig.y_range.start, m.fig.y_range.end))
        x, y = cat[m.xcol].to_numpy(), cat[m.ycol].to_numpy()
        m.show(density_map(x, y, state["keep"], *ranges, m.shape, values=color),
               density_map(x, y, state["keep"] & _in_bounds(cat, state["bounds"]), *ranges,
                           m.shape) if state["bounds"] else None, ranges)

    def draw_maps(*_):
        for m in (kiel, xfe):
            draw(m)

    def recolor():
        for m in (kiel, xfe):
            m.set_palette(color_w.value, scale_w.value)
        draw_maps()

    def change_element(event):
        xfe.set_y(event.new, b.axis_range(event.new))
        xfe.mark(cat, s.row)
        if state["bounds"] and state["bounds"][1] == event.old:
            _boxed(None, "feh", event.new)   # that box no longer exists: clear it on both maps
        else:
            draw(xfe)

    def _clicked(x, y, xcol, ycol):
        """Select the shown star nearest the click within CLICK_RADIUS_PX screen pixels; a click
        on empty sky selects nothing and says so."""
        if x is None or y is None:
            return
        m = kiel if (xcol, ycol) == (kiel.xcol, kiel.ycol) else xfe
        row = b.nearest_row(x, y, xcol, ycol, m.pixel_size(), state["keep"])
        s.click = (float(x), float(y), xcol, ycol)
        s.row = -1 if row is None else row

    def mark_star(*_):
        for m in (kiel, xfe):
            m.mark(cat, s.row)

    def _boxed(bounds, xcol, ycol):
        state["bounds"] = (xcol, ycol, bounds) if bounds else None
        s.selected = int((state["keep"] & _in_bounds(cat, state["bounds"])).sum()) if bounds else 0
        s.version += 1

    def _box_event(event, m):
        g = event.geometry
        # The tap tool reports a point geometry too; only finished boxes select.
        if event.final and g.get("type") == "rect":
            _boxed((g["x0"], g["y0"], g["x1"], g["y1"]), m.xcol, m.ycol)

    for m in (kiel, xfe):
        m.fig.on_event(events.Tap, lambda e, m=m: _clicked(e.x, e.y, m.xcol, m.ycol))
        m.fig.on_event(events.SelectionGeometry, lambda e, m=m: _box_event(e, m))
        m.fig.on_event(events.Reset, lambda e, m=m: _boxed(None, m.xcol, m.ycol))
        m.fig.on_event(events.RangesUpdate, lambda e, m=m: draw(m, ((e.x0, e.x1), (e.y0, e.y1))))
    # Widget callbacks run outside the Bokeh document lock, so figure updates are scheduled.
    color_w.param.watch(lambda e: with_document_lock(recolor), "value")
    scale_w.param.watch(lambda e: with_document_lock(recolor), "value")
    element_w.param.watch(lambda e: with_document_lock(lambda: change_element(e)), "value")
    s.param.watch(lambda e: with_document_lock(draw_maps), "version")
    draw_maps()

    def refresh(*_):
        state["keep"] = keep()
        s.version += 1

    for w in filters + tuning:
        w.param.watch(refresh, "value")

    # --- counts and flag tuning views ----------------------------------------------------
    # Panes and DynamicMaps are built once and updated in place: rebuilding Bokeh plots costs
    # ~0.4 s each, updating their data a few ms.
    counts_pane = pn.pane.Markdown(css_classes=["counts"])
    flag_pane = pn.pane.DataFrame(index=False, float_format="{:.3f}".format,
                                  css_classes=["flag-counts"], height=440, width=300)

    def update_counts(*_):
        k = state["keep"]
        sel = f"; **{s.selected:,}** in the box selection" if state["bounds"] else ""
        n = int(k.sum())
        none = "" if n else (" — **no star passes the filters**: loosen them (an X_flag filter at "
                             "a cutoff no bin passes removes every star)")
        counts_pane.object = f"**{n:,}** of {len(cat):,} spectra shown{sel}{none}"
        flag_pane.object = flag_counts(tuner, config(), k)

    s.param.watch(update_counts, ["version", "selected"])
    update_counts()

    # --- export of the shown stars or the box selection (with the flags as tuned now) -----------
    export_fmt_w = pn.widgets.Select(name="export format", options=list(EXPORT_FORMATS), value="CSV",
                                     width=120)

    def exported_rows():
        rows = state["keep"] & _in_bounds(cat, state["bounds"]) if state["bounds"] else state["keep"]
        table = cat[rows].copy()
        cfg = config()
        for lab in b.model.labels:
            table[f"{lab}_flag"] = tuner.flag(lab, cfg)[rows]
        return table

    def export_name():
        what = "box_selection" if state["bounds"] else "shown_stars"
        return f"ddpayne_{what}{EXPORT_FORMATS[export_fmt_w.value]}"

    export_w = pn.widgets.FileDownload(callback=lambda: export_table(exported_rows(), export_fmt_w.value),
                                       filename=export_name(), label="Download the shown stars",
                                       button_type="default", css_classes=["export-rows"])

    def relabel_export(*_):
        export_w.filename = export_name()
        export_w.label = ("Download the box-selected stars" if state["bounds"]
                          else "Download the shown stars")

    s.param.watch(relabel_export, ["version", "selected"])
    export_fmt_w.param.watch(relabel_export, "value")

    # --- a table of the same stars, linked to the inspector: a click on a row selects that star ---
    table_cols = [c for c in ("specid", "teff", "logg", "feh", "snr", "qflag_chi2", "qflag_singlestar")
                  if c in cat]
    rows_table = pn.widgets.Tabulator(pd.DataFrame(columns=["row"] + table_cols), disabled=True,
                                      show_index=False, selectable=1, pagination="remote",
                                      page_size=15, sizing_mode="stretch_width",
                                      css_classes=["star-table"],
                                      formatters={c: {"type": "money", "precision": 0 if c == "teff" else 2}
                                                  for c in ("teff", "logg", "feh", "snr")})
    table_note = pn.pane.Markdown()

    def update_table(*_):
        rows = np.nonzero(state["keep"] & _in_bounds(cat, state["bounds"]) if state["bounds"]
                          else state["keep"])[0]
        what = "box-selected" if state["bounds"] else "shown"
        cut = "" if len(rows) <= TABLE_MAX_ROWS else f" (the first {TABLE_MAX_ROWS:,} in catalogue order)"
        table_note.object = (f"{len(rows):,} {what} stars{cut}; click a row to inspect the star. "
                             "Units: Teff K, logg and [Fe/H] dex.")
        rows = rows[:TABLE_MAX_ROWS]
        rows_table.value = pd.DataFrame({"row": rows, **{c: cat[c].to_numpy()[rows] for c in table_cols}})

    def table_clicked(event):
        if event.new:
            s.row = int(rows_table.value["row"].iloc[event.new[0]])

    rows_table.param.watch(table_clicked, "selection")
    s.param.watch(update_table, ["version", "selected"])
    update_table()

    # The maps of the bin medians behind X_flag: the colour scale diverges at the cutoff (white =
    # the cutoff, blue = the bin passes, red = it fails) and passing bins are outlined, so the
    # pass/fail boundary is what the eye sees as the cutoff moves.
    gradcorr_figs, gradcorr_srcs, gradcorr_mappers = [], [], []
    for name in ("dwarfs", "giants"):
        fig = figure(title=f"median gradcorr, {name}", width=380, height=280,
                     x_range=DataRange1d(flipped=True), x_axis_label="Teff [K]",
                     y_axis_label="[Fe/H] [dex]", tools="pan,wheel_zoom,reset,hover",
                     tooltips=[("Teff", "@teff{0} K"), ("[Fe/H]", "@feh{0.00}"),
                               ("median gradcorr", "@median{0.000}"), ("X_flag", "@xflag")])
        src = ColumnDataSource({k: [] for k in ("left", "right", "bottom", "top", "teff", "feh",
                                                "median", "xflag", "edge")})
        mapper = LinearColorMapper(palette=diverging_at(default.cutoff), low=-1, high=1)
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=src,
                 fill_color={"field": "median", "transform": mapper}, line_color="edge",
                 line_width=1.5)
        fig.add_layout(ColorBar(color_mapper=mapper, title="median correlation"), "right")
        gradcorr_figs.append(fig)
        gradcorr_srcs.append(src)
        gradcorr_mappers.append(mapper)
    gradcorr_msg = pn.pane.Markdown(css_classes=["gradcorr-message"])

    def update_gradcorr_maps(*_):
        cfg = config()
        label = pretty(map_label_w.value)
        n_pass = n_bins = 0
        for giant, (src, fig, mapper) in enumerate(zip(gradcorr_srcs, gradcorr_figs, gradcorr_mappers)):
            fig.title.text = f"median {label} gradient correlation, {'giants' if giant else 'dwarfs'}"
            mapper.palette = diverging_at(cfg.cutoff)
            m = tuner.gradcorr_map(map_label_w.value, cfg, bool(giant))
            n_pass, n_bins = n_pass + int(m["passes"].sum()), n_bins + len(m)
            src.data = {"left": m["teff"] - cfg.teff_bin / 2, "right": m["teff"] + cfg.teff_bin / 2,
                        "bottom": m["feh"] - cfg.feh_bin / 2, "top": m["feh"] + cfg.feh_bin / 2,
                        "teff": m["teff"], "feh": m["feh"], "median": m["median"],
                        "xflag": np.where(m["passes"], "1 (passes)", "0 (fails)"),
                        "edge": np.where(m["passes"], "black", "rgba(0, 0, 0, 0)")}
        if n_bins == 0:
            gradcorr_msg.object = (f"No bin has a median: no star above S/N {cfg.snr_min:.0f} has a "
                                   f"finite {label} gradient correlation.")
        elif n_pass == 0:
            gradcorr_msg.object = (f"**No bin passes the cutoff {cfg.cutoff:.2f}**: every {label} "
                                   "X_flag is 0 (a correlation cannot exceed 1).")
        else:
            gradcorr_msg.object = (f"{n_pass} of {n_bins} {label} bins pass the cutoff "
                                   f"{cfg.cutoff:.2f} (outlined: their stars get X_flag 1).")

    s.param.watch(lambda e: with_document_lock(update_gradcorr_maps), "version")
    map_label_w.param.watch(lambda e: with_document_lock(update_gradcorr_maps), "value")
    update_gradcorr_maps()
    gradcorr_maps = pn.Column(map_label_w, gradcorr_msg,
                              pn.Row(*[pn.pane.Bokeh(f) for f in gradcorr_figs]))

    def save_config(_):
        try:
            path = save_flag_config(config(), b.directory, save_name_w.value)
        except ValueError as exc:
            save_msg.object = f"**Not saved:** {exc}"
            return
        save_msg.object = (f"saved `{path}`; apply to the catalogue with "
                           f"`ddpayne flag --catalog {b.directory / 'catalog.parquet'} --config {path} --reflag-only`")

    save_w.on_click(save_config)
    download_w = pn.widgets.FileDownload(callback=lambda: io.StringIO(config().to_json()),
                                         filename="flag_config.json", button_type="default",
                                         label="Download flag configuration")

    # --- the selected star ----------------------------------------------------------------------
    inspector = StarInspector(b, s, lambda: state["keep"], with_document_lock)
    s.param.watch(lambda *_: with_document_lock(mark_star), "row")
    # The URL names the selected star (?page=explorer&star=ROW): a link opens it.
    if pn.state.location is not None:
        pn.state.location.sync(s, {"row": "star"})

    # --- layout --------------------------------------------------------------------------
    sidebar = pn.Column(
        pn.pane.Markdown("### Filters"), *filters, pn.pane.Markdown("### Maps"), element_w, color_w,
        pn.pane.Markdown("colour scale"), scale_w,
        pn.pane.Markdown("### Flag tuning"),
        pn.pane.Markdown("The cutoff and bins set every X_flag: the counts and gradient-correlation "
                         "maps below follow them; the star maps follow them when *require X_flag "
                         "= 1 for* names a label."),
        cutoff_w, snrlim_w, tbin_w, fbin_w,
        pn.pane.Markdown("chi2ratio cuts per S/N tier (<200, 200-300, 300-400, 400-500, >500)"),
        pn.GridBox(*cut_ws, ncols=2), config_msg, save_name_w, save_w, save_msg, download_w,
        width=320)
    # The inspector sits right under the maps so that a click shows its answer on screen.
    main = pn.Column(
        pn.Row(counts_pane, export_fmt_w, export_w),
        pn.Card(table_note, rows_table, title="Table of these stars", collapsed=True, width=1100,
                css_classes=["star-table-card"]),
        pn.Row(pn.Column(pn.pane.Bokeh(kiel.fig), css_classes=["kiel-map"]),
               pn.Column(pn.pane.Bokeh(xfe.fig), css_classes=["xfe-map"])),
        pn.pane.Markdown("Click a star to inspect it; box-select on either map to highlight the "
                         "same stars on both."),
        inspector.layout, inspector.gradient_layout,
        pn.pane.Markdown("### Flags of the shown stars, and the gradient correlations behind X_flag"),
        pn.Row(flag_pane, gradcorr_maps))
    layout = pn.Column(pn.pane.Markdown("# ddpayne survey explorer  ·  [index](?)"), banner(b),
                       pn.Row(sidebar, main))
    controls = SimpleNamespace(state=s, click=_clicked, cutoff=cutoff_w, snr=snr_w,
                               xflag=xflag_w, element=element_w, inspector=inspector,
                               gradcorr_message=gradcorr_msg, maps=(kiel, xfe), scale=scale_w)
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


