"""The notebooks run end to end on small synthetic inputs, so they cannot rot."""
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from conftest import TEST_LABELS
from ddpayne_core.catalog import read_catalog_metadata
from ddpayne_core.theory.gradients import DATA_DIR

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.skipif(not (DATA_DIR / "lamost-table1.npz").exists(),
                                reason="reference gradients not assembled yet")


def _execute(name: str, out: Path, truth_path, monkeypatch, **env) -> None:
    """Run notebooks/<name> with DDPAYNE_NB_* settings (the test truth, the test labels)."""
    settings = {"TRUTH": str(truth_path), "LABELS": ",".join(TEST_LABELS), "OUT": str(out), **env}
    for key, value in settings.items():
        monkeypatch.setenv(f"DDPAYNE_NB_{key}", str(value))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()


def test_quickstart_notebook_executes(tmp_path, truth_path, monkeypatch):
    _execute("quickstart.ipynb", tmp_path, truth_path, monkeypatch, STARS=400, EPOCHS=5)
    assert (tmp_path / "catalog.parts").exists() and (tmp_path / "model.pt").exists()


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
