"""Survey explorer: datashaded Kiel and [X/Fe]-[Fe/H] maps with filters, linked box selections,
click-to-inspect (spectrum, model, residual, labels), emulator-versus-ab-initio gradient
spectra, and live flag tuning. Layout only: every number comes from ddpayne_core.explore."""
from __future__ import annotations

from types import SimpleNamespace

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource, Range1d
from bokeh.plotting import figure
from holoviews.operation.datashader import dynspread, rasterize

from ddpayne_core.explore import (flag_counts, gradient_comparison, label_table,
                                  save_flag_config, selection, star_view)
from ddpayne_core.flags import XFlagConfig
from ddpayne_core.labels import pretty

from app_state import banner, bundle

MAP_OPTS = dict(width=520, height=420, tools=["tap", "box_select", "hover"], colorbar=True,
                cnorm="eq_hist", active_tools=["wheel_zoom"])


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
    first_el = "mg_fe" if "mg_fe" in abund else abund[0]

    # --- widgets -------------------------------------------------------------------------
    snr_w = pn.widgets.FloatSlider(label="S/N at least", start=0, end=200, step=5, value=0)
    chi2_w = pn.widgets.Checkbox(name="good chi2 only (qflag_chi2 = 0)")
    single_w = pn.widgets.Checkbox(name="single stars only (qflag_singlestar = 1)")
    xflag_w = pn.widgets.Select(label="require X_flag = 1 for", value="",
                                options={"(no X_flag filter)": ""} | {pretty(l): l for l in b.model.labels})
    element_w = pn.widgets.Select(label="[X/Fe] map element", value=first_el,
                                  options={pretty(l): l for l in abund})
    color_cols = ["density", "feh", "snr", "chi2ratio"] + \
        [c for c in cat.columns if c.endswith("_gradcorr")] + abund
    color_w = pn.widgets.Select(label="colour by", value="density",
                                options=[c for c in color_cols if c == "density" or c in cat])
    cutoff_w = pn.widgets.FloatSlider(label="gradcorr cutoff", start=0, end=1, step=0.05,
                                      value=default.cutoff, css_classes=["gradcorr-cutoff"])
    snrlim_w = pn.widgets.FloatSlider(label="S/N limit for bin medians", start=0, end=150, step=5,
                                      value=default.snr_min)
    tbin_w = pn.widgets.IntSlider(label="Teff bin [K]", start=100, end=1000, step=50,
                                  value=int(default.teff_bin))
    fbin_w = pn.widgets.FloatSlider(label="[Fe/H] bin [dex]", start=0.05, end=1.0, step=0.05,
                                    value=default.feh_bin)
    cut_ws = [pn.widgets.FloatInput(label=f"chi2ratio cut, S/N tier {i + 1}", value=c, step=0.5,
                                    width=130) for i, c in enumerate(default.chi2_cuts)]
    grad_label_w = pn.widgets.Select(label="gradient spectra of", value=first_el,
                                     options={pretty(l): l for l in b.model.labels})
    save_path_w = pn.widgets.TextInput(label="save flag configuration to",
                                       value=str(b.directory / "flag_config.json"))
    save_w = pn.widgets.Button(name="Save flag configuration", button_type="primary")
    save_msg = pn.pane.Markdown("")
    tuning = [cutoff_w, snrlim_w, tbin_w, fbin_w, *cut_ws]
    filters = [snr_w, chi2_w, single_w, xflag_w]

    def config() -> XFlagConfig:
        return XFlagConfig(cutoff=cutoff_w.value, snr_min=snrlim_w.value, teff_bin=tbin_w.value,
                           feh_bin=fbin_w.value, giant_logg=default.giant_logg,
                           chi2_cuts=tuple(w.value for w in cut_ws))

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
    state = {"keep": keep(), "bounds": None}

    def points(xcol, ycol, version, selected_only=False):
        mask = state["keep"]
        if selected_only:
            mask = mask & _in_bounds(cat, state["bounds"])
        cols = [xcol, ycol] + ([color_w.value] if color_w.value != "density" else [])
        return hv.Points(cat.loc[mask, list(dict.fromkeys(cols))], kdims=[xcol, ycol])

    def aggregator():
        return ds.count() if color_w.value == "density" else ds.mean(color_w.value)

    def make_map(xcol, ycol, invert):
        base = hv.DynamicMap(pn.bind(points, xcol, ycol, s.param.version))
        sel = hv.DynamicMap(pn.bind(points, xcol, ycol, s.param.version, True))
        img = rasterize(base, aggregator=aggregator()).opts(
            cmap="viridis" if color_w.value != "density" else "Blues", xlabel=pretty(xcol),
            ylabel=pretty(ycol), invert_xaxis=invert, invert_yaxis=invert,
            xlim=_limits(cat[xcol]), ylim=_limits(cat[ycol]), **MAP_OPTS)
        hi = dynspread(rasterize(sel, aggregator=ds.count())).opts(cmap=["#d62728"], alpha=0.8)
        tap = hv.streams.Tap(source=img)
        box = hv.streams.BoundsXY(source=img)
        tap.add_subscriber(lambda x, y: _clicked(x, y, xcol, ycol))
        box.add_subscriber(lambda bounds: _boxed(bounds, xcol, ycol))
        return dynspread(img) * hi

    def _clicked(x, y, xcol, ycol):
        if x is None or y is None:
            return
        row = b.nearest_row(x, y, xcol, ycol, state["keep"])
        s.click = (float(x), float(y), xcol, ycol)
        if row is not None:
            s.row = row

    def _boxed(bounds, xcol, ycol):
        state["bounds"] = (xcol, ycol, bounds) if bounds else None
        s.selected = int((state["keep"] & _in_bounds(cat, state["bounds"])).sum()) if bounds else 0
        s.version += 1

    def maps(color, element):
        return pn.Row(pn.pane.HoloViews(make_map("teff", "logg", True), css_classes=["kiel-map"]),
                      pn.pane.HoloViews(make_map("feh", element, False), css_classes=["xfe-map"]))

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
        counts_pane.object = f"**{int(k.sum()):,}** of {len(cat):,} spectra shown{sel}"
        flag_pane.object = flag_counts(tuner, config(), k)

    s.param.watch(update_counts, ["version", "selected"])
    update_counts()

    def gradcorr_rects(version, label, giant):
        cfg = config()
        m = tuner.gradcorr_map(label, cfg, giant)
        return hv.Rectangles((m["teff"] - cfg.teff_bin / 2, m["feh"] - cfg.feh_bin / 2,
                              m["teff"] + cfg.teff_bin / 2, m["feh"] + cfg.feh_bin / 2,
                              m["median"]), vdims="median")

    gradcorr_maps = pn.Row(*[pn.pane.HoloViews(hv.DynamicMap(
        pn.bind(gradcorr_rects, s.param.version, grad_label_w, giant)).opts(
        color="median", cmap="RdBu", clim=(-1, 1), colorbar=True, invert_xaxis=True, width=360,
        height=280, line_color=None, tools=["hover"], xlabel="Teff", ylabel="[Fe/H]",
        framewise=True, title=f"median gradcorr, {name} (label below)"))
        for giant, name in ((False, "dwarfs"), (True, "giants"))])

    def save_config(_):
        path = save_flag_config(config(), save_path_w.value)
        save_msg.object = (f"saved `{path}`; apply to the catalogue with "
                           f"`ddpayne flag --catalog {b.directory / 'catalog.parquet'} --config {path} --reflag-only`")

    save_w.on_click(save_config)

    # --- star inspector and gradient spectra ---------------------------------------------
    # Plain Bokeh figures whose data sources are replaced on a click: far cheaper than
    # rebuilding plots, and each figure keeps its own auto-ranging x axis.
    def inspector_head(row, click):
        if row < 0:
            return "Click a star on either map to inspect it."
        rec = cat.iloc[row]
        where = (f"click at {pretty(click[2])} = {click[0]:.6g}, {pretty(click[3])} = {click[1]:.6g}"
                 if click[2] else "")
        extra = "" if b.store is not None else "\n\n(no spectra stored with this catalogue)"
        return (f"### Star row {row}, specid {rec.get('specid', row)}\n\n{where}; S/N {rec['snr']:.1f}, "
                f"chi2 {rec.get('chi2', np.nan):.1f} (reduced {rec.get('redchi2', np.nan):.2f}), "
                f"qflag_chi2 {rec.get('qflag_chi2', '-')}, single star "
                f"{rec.get('qflag_singlestar', '-')}{extra}")

    # Explicit ranges: Bokeh cannot auto-range figures that start without data.
    full = (float(b.model.wave[0]), float(b.model.wave[-1]))
    spec = _figure("spectrum and model", "normalized flux", 1050, 260, x_range=Range1d(*full),
                   y_range=Range1d(0, 1.2))
    resid = _figure("", "(data - model) / error", 1050, 180, x_range=spec.x_range,
                    y_range=Range1d(-6, 6))
    spec_src = {k: ColumnDataSource({"x": [], "y": []}) for k in ("flux", "model", "resid")}
    mask_src = ColumnDataSource({"left": [], "right": []})
    for fig in (spec, resid):
        fig.quad(left="left", right="right", bottom=-1e3, top=1e3, source=mask_src,
                 color="grey", alpha=0.15, legend_label="masked")
    spec.line("x", "y", source=spec_src["flux"], legend_label="observed")
    spec.line("x", "y", source=spec_src["model"], color="red", legend_label="model")
    resid.line("x", "y", source=spec_src["resid"])

    grad_figs = [_figure("", "dF", 1050, 240, x_range=Range1d(*full), y_range=Range1d(-0.1, 0.1))] + \
        [_figure(f"strongest feature {i + 1}", "dF", 340, 220, x_range=Range1d(*full),
                 y_range=Range1d(-0.1, 0.1)) for i in range(3)]
    grad_src = [(ColumnDataSource({"x": [], "y": []}), ColumnDataSource({"x": [], "y": []}))
                for _ in grad_figs]
    for fig, (ab_src, emu_src) in zip(grad_figs, grad_src):
        fig.line("x", "y", source=ab_src, color="black", line_width=2, legend_label="ab initio")
        fig.line("x", "y", source=emu_src, color="#ff7f0e", legend_label="emulator")
    gradient_head = pn.pane.Markdown(css_classes=["gradient-head"])

    def show_star(*_):
        row = s.row
        v = star_view(b, row) if row >= 0 and b.store is not None else None
        if v is not None:
            spans = _mask_spans(v.wave, v.masked)
            mask_src.data = {"left": [a for a, _ in spans], "right": [c for _, c in spans]}
            spec_src["flux"].data = {"x": v.wave, "y": v.flux}
            # The emulator is not trained on masked pixels: show the model where it was fitted.
            spec_src["model"].data = {"x": v.wave, "y": np.where(v.masked, np.nan, v.model)}
            spec_src["resid"].data = {"x": v.wave, "y": v.resid_sigma}
            spec.y_range.start, spec.y_range.end = _limits(pd.Series(v.flux[~v.masked]), pad=0.2)
            lim = np.nanpercentile(np.abs(v.resid_sigma), 99.5) if np.isfinite(v.resid_sigma).any() else 5
            resid.y_range.start, resid.y_range.end = -1.1 * lim, 1.1 * lim
        show_gradients()

    def show_gradients(*_):
        row, label = s.row, grad_label_w.value
        if row < 0:
            return
        try:
            g = gradient_comparison(b, row, label)
        except ValueError as exc:
            gradient_head.object = str(exc)
            return
        ref = g.reference_labels
        gradient_head.object = (
            f"### {pretty(label)} gradient spectra\nnearest reference star #{g.reference_star + 1} "
            f"(Teff {ref['teff']:.0f} K, logg {ref['logg']:.2f}, [Fe/H] {ref['feh']:+.2f}); step "
            f"{g.step:+.3g}; correlation **{g.corr:.3f}** (the star's {label}_gradcorr)")
        windows = [(g.wave[0], g.wave[-1])] + list(g.windows)
        for i, ((ab_src, emu_src), fig) in enumerate(zip(grad_src, grad_figs)):
            lo, hi = windows[i] if i < len(windows) else (np.inf, -np.inf)
            w = (g.wave >= lo) & (g.wave <= hi)
            ab_src.data = {"x": g.wave[w], "y": g.ab_initio[w]}
            emu_src.data = {"x": g.wave[w], "y": g.emulator[w]}
            if w.any():
                both = np.concatenate([g.ab_initio[w], g.emulator[w]])
                fig.x_range.start, fig.x_range.end = float(lo), float(hi)
                fig.y_range.start, fig.y_range.end = _limits(pd.Series(both), pad=0.1)

    s.param.watch(lambda *_: _with_document_lock(show_star), "row")
    grad_label_w.param.watch(lambda *_: _with_document_lock(show_gradients), "value")
    inspector = pn.Column(
        pn.pane.Markdown(pn.bind(inspector_head, s.param.row, s.param.click), css_classes=["inspector"]),
        pn.pane.Bokeh(spec), pn.pane.Bokeh(resid),
        pn.pane.DataFrame(pn.bind(lambda r: label_table(b, r) if r >= 0 else None, s.param.row),
                          index=False, css_classes=["label-table"], float_format="{:.3f}".format))
    gradient_view = pn.Column(gradient_head, pn.pane.Bokeh(grad_figs[0]),
                              pn.Row(*[pn.pane.Bokeh(f) for f in grad_figs[1:]]))

    # --- layout --------------------------------------------------------------------------
    sidebar = pn.Column(
        pn.pane.Markdown("### Filters"), *filters, pn.pane.Markdown("### Maps"), element_w, color_w,
        pn.pane.Markdown("### Flag tuning"), cutoff_w, snrlim_w, tbin_w, fbin_w,
        pn.pane.Markdown("chi2ratio cuts per S/N tier (<200, 200-300, 300-400, 400-500, >500)"),
        pn.GridBox(*cut_ws, ncols=2), save_path_w, save_w, save_msg, width=320)
    main = pn.Column(
        counts_pane,
        pn.bind(maps, color_w, element_w),
        pn.pane.Markdown("Box-select on either map to highlight the same stars on both."),
        grad_label_w, pn.Row(flag_pane, gradcorr_maps), inspector, gradient_view)
    layout = pn.Column(pn.pane.Markdown("# ddpayne survey explorer  ·  [index](?)"), banner(b),
                       pn.Row(sidebar, main))
    controls = SimpleNamespace(state=s, click=_clicked, cutoff=cutoff_w, snr=snr_w,
                               xflag=xflag_w, element=element_w)
    return layout, controls


def _with_document_lock(fn) -> None:
    """Run ``fn`` (which edits Bokeh models directly) under the session's document lock: a map
    click arrives from a HoloViews stream outside it. Outside a server session, run it now."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        doc.add_next_tick_callback(fn)
    else:
        fn()


def _figure(title: str, ylabel: str, width: int, height: int, **kw):
    fig = figure(title=title, width=width, height=height, x_axis_label="wavelength [A]",
                 y_axis_label=ylabel, tools="pan,xwheel_zoom,box_zoom,reset,save", **kw)
    return fig


def _limits(values: pd.Series, pad: float = 0.03) -> tuple:
    """Axis range covering the data (0.1-99.9 percentiles) with a little padding."""
    lo, hi = np.nanpercentile(values.to_numpy(dtype=float), [0.1, 99.9])
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


def _in_bounds(cat: pd.DataFrame, bounds) -> np.ndarray:
    if not bounds:
        return np.zeros(len(cat), dtype=bool)
    xcol, ycol, (x0, y0, x1, y1) = bounds
    x, y = cat[xcol].to_numpy(), cat[ycol].to_numpy()
    return (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))


def _mask_spans(wave: np.ndarray, masked: np.ndarray) -> list:
    """Contiguous masked pixel runs as (start, end) wavelengths."""
    edges = np.diff(np.concatenate([[0], masked.astype(np.int8), [0]]))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    return list(zip(wave[starts], wave[stops]))

