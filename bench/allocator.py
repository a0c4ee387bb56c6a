"""The benchmarks' memory allocation, tuned for timing unless ``SROPS_BENCH_TUNED_ALLOCATOR=0``.

Tuned: large CPU tensors on transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, which torch reads at its
first allocation, so :func:`prepare` runs before torch is imported: a fresh 133 MB output otherwise spends
most of its time in 4 KiB page faults), and freed memory kept in the process (:func:`keep_freed_memory`:
with glibc's defaults a freed tensor of some MB goes back to the OS and the next allocation of that size
page-faults it in again, adding milliseconds to random rounds of every backend). Untuned, every backend also
pays the page faults of its fresh allocations, as in an untuned program. No torch import here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

TUNED = os.environ.get("SROPS_BENCH_TUNED_ALLOCATOR", "1") != "0"


def prepare() -> None:
    """Ask torch for huge pages (tuned only); call before the first ``import torch``."""
    if TUNED:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def keep_freed_memory() -> str:
    """Keep freed memory in the process (tuned, glibc only); returns the allocator's description."""
    allocator = "default"
    if TUNED and ctypes.util.find_library("c") and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
            if libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20):
                allocator = "glibc, trim threshold 1 GiB, mmap threshold 32 MiB"
        except (OSError, AttributeError):
            pass
    if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1":
        allocator += "; torch THP_MEM_ALLOC_ENABLE=1"
    return allocator
