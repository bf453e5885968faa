"""The notebooks run end to end on small synthetic inputs, so they cannot rot."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import TEST_LABELS
from nbclient import NotebookClient

from ddpayne_core.catalog import read_catalog_metadata
from ddpayne_core.theory.gradients import DATA_DIR

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.skipif(not (DATA_DIR / "lamost-table1.npz").exists(),
                                reason="reference gradients not assembled yet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _execute(name: str, out: Path, truth_path, monkeypatch, **env):
    """Run notebooks/<name> with DDPAYNE_NB_* settings (the test truth, the test labels)."""
    settings = {"TRUTH": str(truth_path), "LABELS": ",".join(TEST_LABELS), "OUT": str(out), **env}
    for key, value in settings.items():
        monkeypatch.setenv(f"DDPAYNE_NB_{key}", str(value))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()


def test_quickstart_notebook_executes_and_shows_its_figures_inline(tmp_path, truth_path, monkeypatch):
    nb = _execute("quickstart.ipynb", tmp_path, truth_path, monkeypatch, STARS=400, EPOCHS=5)
    assert (tmp_path / "catalog.parts").exists() and (tmp_path / "model.pt").exists()
    # Each plotting cell leaves a PNG in its outputs: the inline backend was not switched off
    # by an import (a library must never set matplotlib's backend).
    plotting = [c for c in nb.cells if c.cell_type == "code" and "plt." in c.source]
    assert len(plotting) >= 2
    for cell in plotting:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:80]


def test_notebooks_write_outside_the_repository_by_default():
    for path in NOTEBOOKS.glob("*.ipynb"):
        setup = nbformat.read(path, as_version=4).cells[1].source
        assert 'Path.home() / "ddpayne-notebooks"' in setup and "../data" not in setup, path.name


def test_jupyter_lab_starts(tmp_path):
    """The README's setup installs JupyterLab: it serves its page on localhost."""
    port = _free_port()
    root = ["--allow-root"] if os.geteuid() == 0 else []   # CI runs as root
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
                             f"--port={port}", "--IdentityProvider.token=t",
                             f"--ServerApp.root_dir={tmp_path}", *root],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=t", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode()[-2000:] if proc.poll() is not None
                                         else "jupyter lab did not answer in 90 s")
                time.sleep(1)
        assert b"JupyterLab" in page
    finally:
        proc.terminate()
        proc.wait(30)


def test_new_user_notebook_executes(tmp_path, truth_path, monkeypatch):
    """Folder of LAMOST-layout FITS + allStar table -> ingest -> cross-match -> training set ->
    model -> flagged catalogue, on synthetic stand-ins."""
    _execute("new_user.ipynb", tmp_path, truth_path, monkeypatch, FILES=300, EPOCHS=3)
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    assert len(cat) == len(list((tmp_path / "lamost_fits").glob("*.fits")))
    assert {"teff", "mg_fe_err", "mg_fe_gradcorr", "mg_fe_flag", "qflag_chi2"} <= set(cat.columns)
    assert (cat["fit_status"] < 2).mean() > 0.9
    # Stand-ins are synthetic, and the store and catalogue say so.
    assert read_catalog_metadata(tmp_path / "catalog.parquet")["synthetic"] is True
