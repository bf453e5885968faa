"""Catalogue plots: the histogram of any column and the datashaded scatter of any two columns of
the catalogue, over the stars that the filters keep, with a linear, logarithmic or equalized
colour scale. Layout only: the numbers come from ddpayne_core.app.explore."""
from __future__ import annotations

import numpy as np
import panel as pn
from app_state import banner, bundle
from bokeh import events
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from explorer_page import COLOR_SCALES, MapView, with_document_lock
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from ddpayne_core.app import density_map, histogram, selection
from ddpayne_core.labels import with_unit


def numeric_columns(table) -> dict:
    """{human name with unit: column} of the catalogue's numeric, non-boolean columns."""
    cols = [c for c in table.columns
            if is_numeric_dtype(table[c]) and not is_bool_dtype(table[c])]
    return {f"{with_unit(c)} ({c})" if with_unit(c) != c else c: c for c in cols}


def catalog_page():
    return build_catalog_page(*bundle())[0]


def build_catalog_page(b, tuner):
    """The page and its widgets (for scripting, as build_explorer)."""
    cat = b.catalog
    columns = numeric_columns(cat)
    pick = lambda *names: next((c for c in names if c in cat), cat.columns[0])
    snr_w = pn.widgets.FloatSlider(name="S/N at least", start=0, end=200, step=5, value=0)
    chi2_w = pn.widgets.Checkbox(name="good chi2 only (qflag_chi2 = 0)")
    hist_w = pn.widgets.Select(name="histogram of", options=columns, value=pick("feh"),
                               css_classes=["hist-column"])
    bins_w = pn.widgets.IntSlider(name="bins", start=10, end=200, step=10, value=60)
    logy_w = pn.widgets.Checkbox(name="logarithmic counts", css_classes=["hist-log"])
    x_w = pn.widgets.Select(name="scatter: x", options=columns, value=pick("feh"),
                            css_classes=["scatter-x"])
    y_w = pn.widgets.Select(name="scatter: y", options=columns, value=pick("mg_fe", "logg"),
                            css_classes=["scatter-y"])
    scale_w = pn.widgets.RadioButtonGroup(name="colour scale", options=list(COLOR_SCALES),
                                          value="equalized", css_classes=["scatter-scale"])
    counts = pn.pane.Markdown(css_classes=["catalog-counts"])
    hist_pane = pn.pane.Bokeh(css_classes=["histogram"])
    scatter = MapView(b, "scatter", x_w.value, y_w.value, invert=False, shape=(420, 560))
    keep = {"rows": None}

    def refilter(*_):
        keep["rows"] = selection(cat, snr_w.value, chi2_w.value)
        counts.object = f"**{int(keep['rows'].sum()):,}** of {len(cat):,} spectra kept"
        with_document_lock(draw_histogram)
        with_document_lock(draw_scatter)

    # One figure per count axis (Bokeh cannot switch a figure's axis type), sharing the bins.
    hist_src = ColumnDataSource({"left": [], "right": [], "top": []})
    hist_figs = {}
    for kind in ("linear", "log"):
        fig = figure(name=f"histogram-{kind}", width=560, height=320, y_axis_type=kind,
                     y_axis_label="spectra per bin", tools="pan,wheel_zoom,box_zoom,reset,save,hover",
                     tooltips=[("bin", "@left{0.[00]} to @right{0.[00]}"), ("spectra", "@top{0}")])
        # A log axis cannot show zero: there the bars start at 0.5 and empty bins draw nothing.
        fig.quad(left="left", right="right", bottom=0.5 if kind == "log" else 0, top="top",
                 source=hist_src, fill_color="#4c72b0", line_color="white")
        hist_figs[kind] = fig
    hist_pane.object = hist_figs["linear"]

    def draw_histogram(*_):
        col = hist_w.value
        n, edges = histogram(cat[col].to_numpy(), keep["rows"], bins_w.value)
        hist_src.data = {"left": edges[:-1], "right": edges[1:], "top": n.astype(np.float64)}
        for fig in hist_figs.values():
            fig.xaxis.axis_label = with_unit(col)
        hist_pane.object = hist_figs["log" if logy_w.value else "linear"]

    def draw_scatter(ranges=None):
        fig = scatter.fig
        ranges = ranges or ((fig.x_range.start, fig.x_range.end), (fig.y_range.start, fig.y_range.end))
        x, y = cat[scatter.xcol].to_numpy(), cat[scatter.ycol].to_numpy()
        scatter.show(density_map(x, y, keep["rows"], *ranges, scatter.shape), None, ranges)

    def change_axes(*_):
        scatter.set_x(x_w.value, b.axis_range(x_w.value))
        scatter.set_y(y_w.value, b.axis_range(y_w.value))
        draw_scatter()

    def rescale(*_):
        scatter.set_palette("density", scale_w.value)

    scatter.fig.on_event(events.RangesUpdate, lambda e: draw_scatter(((e.x0, e.x1), (e.y0, e.y1))))
    for w in (snr_w, chi2_w):
        w.param.watch(refilter, "value")
    for w in (hist_w, bins_w, logy_w):
        w.param.watch(lambda e: with_document_lock(draw_histogram), "value")
    for w in (x_w, y_w):
        w.param.watch(lambda e: with_document_lock(change_axes), "value")
    scale_w.param.watch(lambda e: with_document_lock(rescale), "value")
    refilter()
    layout = pn.Column(
        pn.pane.Markdown("# ddpayne catalogue plots  ·  [index](?)"), banner(b),
        pn.Row(pn.Column(pn.pane.Markdown("### Filters"), snr_w, chi2_w, counts, width=300),
               pn.Column(pn.Row(hist_w, bins_w, logy_w), hist_pane),
               ),
        pn.Row(pn.Column(x_w, y_w, pn.pane.Markdown("colour scale"), scale_w, width=300),
               pn.Column(pn.pane.Bokeh(scatter.fig), css_classes=["scatter-map"])))
    widgets = dict(snr=snr_w, hist=hist_w, logy=logy_w, x=x_w, y=y_w, scale=scale_w,
                   histogram=hist_pane, scatter=scatter, counts=counts)
    return layout, widgets
