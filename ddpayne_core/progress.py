"""A minimal command-line progress bar (stderr), silent when not attached to a terminal
unless DDPAYNE_PROGRESS=1."""
from __future__ import annotations

import os
import sys
import time


def progress(iterable, total: int | None = None, desc: str = "", every: float = 0.5):
    """Yield from ``iterable`` while drawing ``desc [#####     ] k/n  elapsed  eta``."""
    show = sys.stderr.isatty() or os.environ.get("DDPAYNE_PROGRESS") == "1"
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    start = last = time.monotonic()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if show and (now - last > every or done == total):
            last = now
            _draw(desc, done, total, now - start)
    if show:
        sys.stderr.write("\n")


def _draw(desc, done, total, elapsed):
    if total:
        frac = done / total
        bar = "#" * int(30 * frac)
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        line = f"\r{desc} [{bar:<30}] {done}/{total}  {elapsed:6.0f}s  eta {eta:6.0f}s"
    else:
        line = f"\r{desc} {done}  {elapsed:6.0f}s"
    sys.stderr.write(line)
    sys.stderr.flush()
