"""The README's Python example runs as printed, on real LAMOST DR10 spectra from ../shared."""
import re
from pathlib import Path

import pandas as pd
import pytest

from ddpayne_core.paths import SHARED

ROOT = Path(__file__).resolve().parents[1]
DR10 = SHARED / "lamost-dr10"


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@pytest.mark.slow
@pytest.mark.skipif(not (DR10 / "lasp_labels.csv").exists(), reason="needs ../shared/data")
def test_readme_python_example_runs_on_real_lamost_spectra(tmp_path, monkeypatch):
    table = pd.read_csv(DR10 / "lasp_labels.csv")
    files = table[table["snrg"] > 20]["file"].head(150)
    (tmp_path / "my_spectra").mkdir()
    for name in files:
        (tmp_path / "my_spectra" / Path(name).name).symlink_to(DR10 / name)
    table.to_csv(tmp_path / "labels.csv", index=False)
    monkeypatch.chdir(tmp_path)
    code = readme_python()
    assert "epochs=300" in code
    exec(compile(code.replace("epochs=300", "epochs=3"), "README.md", "exec"), {})   # noqa: S102
    catalog = pd.read_parquet(tmp_path / "catalog.parquet")
    assert len(catalog) == len(files)
    assert {"teff", "teff_err", "teff_flag", "qflag_chi2", "out_of_coverage"} <= set(catalog.columns)
    assert catalog["teff"].notna().mean() > 0.9
