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
