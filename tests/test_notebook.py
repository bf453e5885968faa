"""The quickstart notebook runs end to end on a small synthetic survey."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ddpayne_core.theory.gradients import DATA_DIR

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.skipif(not (DATA_DIR / "lamost-table1.npz").exists(),
                    reason="reference gradients not assembled yet")
def test_quickstart_notebook_executes(tmp_path, truth_path, monkeypatch):
    from conftest import TEST_LABELS

    monkeypatch.setenv("DDPAYNE_NB_STARS", "400")
    monkeypatch.setenv("DDPAYNE_NB_TRUTH", str(truth_path))
    monkeypatch.setenv("DDPAYNE_NB_LABELS", ",".join(TEST_LABELS))
    monkeypatch.setenv("DDPAYNE_NB_EPOCHS", "5")
    monkeypatch.setenv("DDPAYNE_NB_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert (tmp_path / "catalog.parts").exists() and (tmp_path / "model.pt").exists()


NEW_USER = NOTEBOOK.parent / "new_user.ipynb"


@pytest.mark.skipif(not (DATA_DIR / "lamost-table1.npz").exists(),
                    reason="reference gradients not assembled yet")
def test_new_user_notebook_executes(tmp_path, truth_path, monkeypatch):
    """Folder of LAMOST-layout FITS + allStar table -> ingest -> cross-match -> training set ->
    model -> flagged catalogue, on synthetic stand-ins."""
    import pandas as pd

    from conftest import TEST_LABELS
    from ddpayne_core.catalog import read_catalog_metadata

    monkeypatch.setenv("DDPAYNE_NB_FILES", "300")
    monkeypatch.setenv("DDPAYNE_NB_TRUTH", str(truth_path))
    monkeypatch.setenv("DDPAYNE_NB_LABELS", ",".join(TEST_LABELS))
    monkeypatch.setenv("DDPAYNE_NB_EPOCHS", "3")
    monkeypatch.setenv("DDPAYNE_NB_OUT", str(tmp_path))
    nb = nbformat.read(NEW_USER, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NEW_USER.parent)}}).execute()
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    assert len(cat) == len(list((tmp_path / "lamost_fits").glob("*.fits")))
    assert {"teff", "mg_fe_err", "mg_fe_gradcorr", "mg_fe_flag", "qflag_chi2"} <= set(cat.columns)
    assert (cat["fit_status"] < 2).mean() > 0.9
    # Stand-ins are synthetic, and the store and catalogue say so.
    assert read_catalog_metadata(tmp_path / "catalog.parquet")["synthetic"] is True
