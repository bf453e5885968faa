"""The process-wide memory thresholds set on import (ddpayne_core/memory.py)."""
import sys

import pytest

from ddpayne_core.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_thresholds_are_set_on_glibc_and_can_be_declined(monkeypatch):
    assert keep_freed_memory() is True
    monkeypatch.setenv("DDPAYNE_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False
