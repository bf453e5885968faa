"""Sample a running fit's Dask worker memory and progress, for long benchmarks (bench_scale.py).

Every --every seconds prints: UTC time, fit parts written in --parts (one per store chunk) and the
resident memory of each child process of --pid (the LocalCluster's workers), until --pid exits.
Reads /proc only (Linux). Usage:
    python tools/watch_workers.py --pid $(pgrep -f bench_scale.py) \
        --parts /tmp/ddpayne-scale/large_2w.parts --every 120
"""
import argparse
import time
from datetime import datetime, timezone
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``, started by any of its threads (Dask starts workers from
    a thread other than the main one)."""
    out = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in path.read_text().split()]
        except FileNotFoundError:
            continue
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` [MB] (0 if it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--parts", required=True)
    ap.add_argument("--every", type=float, default=120.0)
    args = ap.parse_args()
    parts = Path(args.parts)
    while Path(f"/proc/{args.pid}").exists():
        done = len(list(parts.glob("*.parquet"))) if parts.exists() else 0
        workers = {p: rss_mb(p) for p in children(args.pid) if rss_mb(p) > 100}
        print(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S} parts_done={done} "
              + " ".join(f"worker_{p}_rss_mb={m:.0f}" for p, m in workers.items()), flush=True)
        time.sleep(args.every)


if __name__ == "__main__":
    main()
