"""The worker gives a run's freed memory back to the system (glibc keeps it otherwise)."""

from __future__ import annotations

import ctypes.util
import gc
import os
from pathlib import Path

import pytest

from distill.heap import release_heap

STATM = Path("/proc/self/statm")


def _rss() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not (ctypes.util.find_library("c") and STATM.exists()),
                    reason="no C library to ask, or no /proc to read memory from")
def test_freed_heap_goes_back_to_the_system() -> None:
    # 300 MB in 1 KB blocks (below glibc's mmap threshold: on the heap), one in a thousand
    # kept so the heap's top stays in use and glibc cannot shrink it by itself.
    blocks = [bytes(1024) + bytes([i % 256]) for i in range(300_000)]
    kept = blocks[::1000]
    del blocks
    gc.collect()
    held = _rss()
    if not release_heap():
        pytest.skip("this C library has no malloc_trim")
    assert held - _rss() > 150_000_000
    assert len(kept) == 300
