"""Benchmarks' --quick modes run, so none breaks unnoticed (figures are printed, not asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_peer_benchmark_on_real_spectra_runs_quick():
    pytest.importorskip("TheCannon", reason="benchmark-only dependency: pip install thecannon==0.7.3")
    run = subprocess.run([sys.executable, "bench_cannon_real.py", "--quick"], cwd=BENCH,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DD-Payne scatter / best Cannon scatter" in run.stdout
    assert "speed, DD-Payne" in run.stdout
