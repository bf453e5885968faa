"""Every benchmark's --quick mode runs, so none breaks unnoticed (figures are printed, not
asserted: these are checks that the benchmarks work, not measurements)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py"))
# The figure each benchmark ends with: proof that it ran to the end.
LAST_FIGURE = {
    "bench_app.py": "peak_rss_gb=",
    "bench_cannon_real.py": "speed, DD-Payne",
    "bench_dask.py": "scaling_2_workers=",
    "bench_fit.py": "speedup_vs_curve_fit=",
    "bench_fit_desi.py": "speedup_vs_curve_fit=",
    "bench_train_cannon.py": "train_speedup_vs_cannon=",
    "bench_ingest.py": "ingest_scaling_2_workers=",
    "bench_malloc.py": "fit_speedup=",
    "bench_peer_cannon.py": "test_speed_ratio_vs_cannon=",
    "bench_memory.py": "peak_rss_ratio_",
    "bench_scale.py": "worker_peak_rss_ratio=",
    "bench_train.py": "prior_overhead_ratio=",
}


def test_every_benchmark_has_a_quick_check():
    assert set(SCRIPTS) == set(LAST_FIGURE), "add the new benchmark's last figure to LAST_FIGURE"
    for name in SCRIPTS:
        assert "--quick" in (BENCH / name).read_text(), f"{name} has no --quick mode"


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_quick(name, demo_bundle, tmp_path):
    if name in ("bench_cannon_real.py", "bench_fit.py", "bench_peer_cannon.py", "bench_train_cannon.py"):
        pytest.importorskip("TheCannon", reason="benchmark-only dependency: pip install thecannon==0.7.3")
    extra = ["--bundle", str(demo_bundle[0])] if name == "bench_app.py" else []
    if name in ("bench_ingest.py", "bench_memory.py", "bench_scale.py"):
        extra = ["--dir", str(tmp_path / "work")]
    run = subprocess.run([sys.executable, name, "--quick", *extra], cwd=BENCH,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert LAST_FIGURE[name] in run.stdout, run.stdout[-3000:]
