"""Shared by the pages: which catalogue is shown (one bundle per server process, loaded once) and
the synthetic-survey banner. Choose the data with environment variables or ``--args``:

    DDPAYNE_BUNDLE=DIR       a directory with catalog.parquet, model.pt and survey/ (default data/demo)
    DDPAYNE_CATALOG, DDPAYNE_MODEL, DDPAYNE_STORE   override single files
    panel serve apps/ --args --bundle DIR [--catalog F] [--model F] [--store DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading

import panel as pn

from ddpayne_core.app import DEFAULT_BUNDLE, SurveyBundle, load_bundle
from ddpayne_core.catalog import SYNTHETIC_NOTE
from ddpayne_core.flags import FlagTuner

_LOCK = threading.Lock()


def data_paths() -> dict:
    ap = argparse.ArgumentParser(prog="panel serve apps/ --args")
    ap.add_argument("--bundle", default=os.environ.get("DDPAYNE_BUNDLE", str(DEFAULT_BUNDLE)))
    ap.add_argument("--catalog", default=os.environ.get("DDPAYNE_CATALOG"))
    ap.add_argument("--model", default=os.environ.get("DDPAYNE_MODEL"))
    ap.add_argument("--store", default=os.environ.get("DDPAYNE_STORE"))
    args, _ = ap.parse_known_args(sys.argv[1:])
    return vars(args)


def bundle() -> tuple[SurveyBundle, FlagTuner]:
    """The server's bundle and flag tuner, loaded on first use and shared by all sessions
    (read-only for sessions; replaced as a whole when a retrained model is adopted)."""
    with _LOCK:
        if "ddpayne_bundle" not in pn.state.cache:
            paths = data_paths()
            b = load_bundle(paths["bundle"], paths["catalog"], paths["model"], paths["store"])
            pn.state.cache["ddpayne_bundle"] = (b, FlagTuner(b.catalog, b.model.labels))
        return pn.state.cache["ddpayne_bundle"]


def replace_bundle(new: SurveyBundle) -> None:
    with _LOCK:
        pn.state.cache["ddpayne_bundle"] = (new, FlagTuner(new.catalog, new.model.labels))


def banner(b: SurveyBundle):
    """A visible marker on every page when the data are synthetic."""
    if b.synthetic:
        return pn.pane.Alert(f"**{SYNTHETIC_NOTE}.** Labels are compared with a known truth; "
                             "nothing here is a measurement of real stars.",
                             alert_type="warning", css_classes=["synthetic-banner"])
    return pn.pane.Markdown(f"Catalogue: `{b.directory}`")


def missing_data_page(exc: Exception):
    return pn.Column(pn.pane.Markdown("# ddpayne"),
                     pn.pane.Alert(f"No catalogue to show: {exc}", alert_type="danger"),
                     pn.pane.Markdown("Run `ddpayne demo` first, or point the app at a catalogue: "
                                      "`panel serve apps/ --args --bundle DIR`."))
