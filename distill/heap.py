"""Giving the memory a training run freed back to the operating system.

glibc keeps the heap at the size a process grew to: after SmolLM2-135M's LoRA on restaurants'
SQL (16 rows of ~250 tokens a step, peak 16 GB) the worker still held 15 GB with the run
over and its tensors freed, until `malloc_trim` returned it (0.6 GB). The worker lives beside
the gateway for days, so each run gives its peak back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_heap() -> bool:
    """Collect garbage (a trainer holds reference cycles), then return the heap's free pages
    to the system. True when the C library could be asked (glibc); elsewhere only the
    collection runs."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return False
    if trim is None:  # musl, macOS: no such call
        return False
    trim(0)
    return True
