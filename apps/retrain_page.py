"""Retraining: choose D_scale per label group, neurons, epochs and the training subset (or drop
the regularization), train in a background thread with progress and cancel, compare the new
model with the current one side by side, then adopt (refit + re-flag the catalogue) or discard.
One training per server at a time; other sessions keep browsing meanwhile."""
from __future__ import annotations

import asyncio
import threading
import time

import holoviews as hv
import pandas as pd
import panel as pn
from app_state import banner, bundle, replace_bundle

from ddpayne_core.app import (
    RetrainSettings,
    adopt,
    gradcorr_medians,
    load_bundle,
    star_residuals,
    start_training,
    validation_scatter,
)
from ddpayne_core.labels import pretty

_JOB_KEY = "ddpayne_training_job"
_LOCK = threading.Lock()


def retrain_page():
    b, _ = bundle()
    default = RetrainSettings()
    dp_w = pn.widgets.FloatInput(label="D_scale: Teff, logg, vmic", value=default.d_scale_params,
                                 start=0, end=1e4, css_classes=["dscale-params"])
    da_w = pn.widgets.FloatInput(label="D_scale: [Fe/H], [X/Fe]", value=default.d_scale_abund,
                                 start=0, end=1e4, css_classes=["dscale-abund"])
    nh_w = pn.widgets.IntSlider(label="neurons per hidden layer", start=4, end=40, value=default.n_hidden)
    ep_w = pn.widgets.IntInput(label="epochs", value=default.epochs, start=1, end=5000,
                               css_classes=["epochs-input"])
    max_w = pn.widgets.IntInput(label="training stars at most (0 = all)", value=0, start=0)
    reg_w = pn.widgets.Checkbox(name="gradient-spectrum regularization", value=True)
    start_w = pn.widgets.Button(name="Start training", button_type="primary", css_classes=["start-training"])
    cancel_w = pn.widgets.Button(name="Cancel", button_type="danger", disabled=True,
                                 css_classes=["cancel-training"])
    progress = pn.indicators.Progress(value=0, max=100, width=400, css_classes=["training-progress"])
    status = pn.pane.Markdown("No training running.", css_classes=["training-status"])
    row_w = pn.widgets.IntInput(label="star (catalogue row) for residuals", value=0, start=0,
                                end=len(b.catalog) - 1)
    compare_w = pn.widgets.Button(name="Compare with current model", disabled=True)
    adopt_w = pn.widgets.Button(name="Adopt (refit + re-flag catalogue)", disabled=True,
                                button_type="success")
    discard_w = pn.widgets.Button(name="Discard", disabled=True)
    history = pn.pane.HoloViews(None, width=520, height=270, visible=False)
    history_note = pn.pane.Markdown("The loss curves appear here after the first epoch.",
                                    css_classes=["history-note"], width=520)
    comparison = pn.Column()
    session = {"job": None, "cb": None}

    def poll():
        job = session["job"]
        if job is None:
            return
        progress.value = int(100 * job.progress)
        h = job.history
        n_epochs = len(h.get("epoch", []))
        if n_epochs and n_epochs != session.get("plotted"):   # redraw on a new epoch only
            session["plotted"] = n_epochs
            epochs = [e + 1 for e in h["epoch"]]
            ylabel = "loss (chi2 summed over pixels)"
            history.object = (hv.Curve((epochs, h["train_chi2"]), "epoch", ylabel, label="training chi2")
                              * hv.Curve((epochs, h["valid_chi2"]), "epoch", ylabel, label="validation chi2")
                              * hv.Curve((epochs, h["train_prior"]), "epoch", ylabel,
                                         label="gradient prior")).opts(
                hv.opts.Curve(logy=True, xformatter="%d"),
                hv.opts.Overlay(width=520, height=270, legend_position="right", logy=True))
            history.visible, history_note.visible = True, False
        if job.state != "running":
            session["cb"].stop()
            with _LOCK:
                pn.state.cache.pop(_JOB_KEY, None)
            start_w.disabled, cancel_w.disabled = False, True
            done = job.state == "done"
            compare_w.disabled = adopt_w.disabled = discard_w.disabled = not done
        status.object = f"**{job.state}**: {job.message}"

    def start(_):
        with _LOCK:
            if _JOB_KEY in pn.state.cache:
                status.object = "Another training is running on this server; try again when it ends."
                return
            out = b.directory / "retrained" / f"model-{time.strftime('%Y%m%d-%H%M%S')}.pt"
            try:   # RetrainSettings names any empty, NaN or out-of-range field
                settings = RetrainSettings(d_scale_params=dp_w.value, d_scale_abund=da_w.value,
                                           n_hidden=nh_w.value, epochs=ep_w.value,
                                           regularize=reg_w.value, max_stars=max_w.value or None)
                job = start_training(b, settings, out)
            except ValueError as exc:
                status.object = f"cannot train: {exc}"
                return
            pn.state.cache[_JOB_KEY] = job
        session["job"] = job
        start_w.disabled, cancel_w.disabled = True, False
        comparison.objects = []
        status.object = f"**running**: {job.message}"
        history.visible, history_note.visible = False, True
        session["cb"] = pn.state.add_periodic_callback(poll, period=500)

    def cancel(_):
        if session["job"] is not None:
            session["job"].cancel()
            status.object = "cancelling after the current epoch..."

    async def compare(_):
        job = session["job"]
        compare_w.disabled = True
        status.object = "comparing: fitting validation stars with both models..."
        models = {"current": b.model, "new": job.model}
        scatter, grads, resid = await asyncio.gather(
            asyncio.to_thread(validation_scatter, b, models),
            asyncio.to_thread(lambda: pd.DataFrame({k: gradcorr_medians(b, m) for k, m in models.items()})),
            asyncio.to_thread(star_residuals, b, row_w.value, models))
        wave = b.model.wave
        # The current model solid and dark, the new one dashed on top: both stay visible.
        style = {"current": {"color": "black", "line_width": 1.5},
                 "new": {"color": "#ff7f0e", "line_dash": "dashed", "alpha": 0.8}}
        curves = [hv.Curve((wave, r), "rest-frame vacuum wavelength [A]",
                           "(data - model) / error [σ]", label=f"{k} model").opts(**style[k])
                  for k, (_, r) in resid.items()]
        labels = pd.DataFrame({k: lab for k, (lab, _) in resid.items()},
                              index=[pretty(l) for l in b.model.labels])
        comparison.objects = [
            pn.pane.Markdown("### New model versus current"),
            pn.Row(pn.Column(pn.pane.Markdown("validation scatter (fitted - high-res labels)"),
                             pn.pane.DataFrame(scatter, float_format="{:.3f}".format)),
                   pn.Column(pn.pane.Markdown("median gradcorr"),
                             pn.pane.DataFrame(grads, float_format="{:.3f}".format)),
                   pn.Column(pn.pane.Markdown(f"labels of row {row_w.value}"),
                             pn.pane.DataFrame(labels, float_format="{:.3f}".format))),
            pn.pane.HoloViews(hv.Overlay(curves).opts(width=1000, height=250, legend_position="right",
                                                     title=f"residuals of row {row_w.value}"))]
        status.object = "comparison done: adopt or discard the new model"
        compare_w.disabled = False

    async def adopt_model(_):
        job = session["job"]
        adopt_w.disabled = discard_w.disabled = True
        status.object = "adopting: refitting and re-flagging the whole catalogue (progress in the log)..."
        progress.active = True
        path = await asyncio.to_thread(adopt, b, job.out, log=lambda *a: None)
        replace_bundle(load_bundle(b.directory))
        progress.active = False
        status.object = f"adopted: {path} rewritten with the new model; reload the explorer"

    def discard(_):
        job = session["job"]
        job.out.unlink(missing_ok=True)
        session["job"] = None
        adopt_w.disabled = discard_w.disabled = compare_w.disabled = True
        comparison.objects = []
        status.object = "discarded"

    start_w.on_click(start)
    cancel_w.on_click(cancel)
    compare_w.on_click(compare)
    adopt_w.on_click(adopt_model)
    discard_w.on_click(discard)
    controls = pn.Column(pn.pane.Markdown("### Settings"), dp_w, da_w, nh_w, ep_w, max_w, reg_w,
                         pn.Row(start_w, cancel_w), progress, status, row_w,
                         pn.Row(compare_w, adopt_w, discard_w), width=460)
    cfg = b.model.config
    info = pn.pane.Markdown(
        f"Current model: `{b.directory / 'model.pt'}`: {b.model.net.n_hidden} neurons, "
        f"regularization {'on' if cfg.get('regularize', True) else 'off'}, "
        f"{cfg.get('n_train', '?')} training stars, up to {cfg.get('epochs', '?')} epochs with "
        f"early stopping on the validation chi2.\n\n"
        f"**Epochs**: each passes once over the training stars. The default here, "
        f"{default.epochs}, is a quick look, not a model to adopt: match the current model's "
        f"{cfg.get('epochs', '?')} for that. The time per epoch and the time left show once the "
        f"first epoch ends (reading and normalizing the training spectra comes first).\n\n"
        f"**D_scale** weighs the prior that keeps the emulator's gradient spectra close to the "
        f"ab initio ones (X19 sec. 2 uses {default.d_scale_params:g} for Teff, logg, vmic and "
        f"{default.d_scale_abund:g} for [Fe/H] and [X/Fe]): larger = closer to the ab initio "
        f"gradients, 0 = no prior for that group. **Compare** fits validation stars with both "
        f"models (labels in K and dex); **Adopt** refits and re-flags the whole catalogue.",
        css_classes=["retrain-info"], width=1000)
    return pn.Column(pn.pane.Markdown("# ddpayne retraining  ·  [index](?)"), banner(b), info,
                     pn.Row(controls, pn.Column(history_note, history)), comparison)

