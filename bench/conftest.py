"""pytest-benchmark harness shared by bench_*.py.

``pytest bench/ --benchmark-only`` times every backend of every op on the
device at hand (CUDA if visible, else CPU with smaller shapes), forward and
forward+backward. Each result carries, in ``extra_info``: backend, pass, shape,
peak extra memory in MB during one call, and the environment (device, torch,
triton, CUDA versions). Results are grouped by op, shape and pass, so the
backends of one case sit side by side; ``reference`` is the baseline.

``--smoke`` shrinks every shape to a toy size (used by ``make test`` for a
one-round run that proves the harness works).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import pytest

# The process's memory allocation is tuned for timing unless SROPS_BENCH_TUNED_ALLOCATOR=0 (then every
# backend also pays the page faults of its fresh allocations, as in an untuned program):
# large CPU tensors on transparent huge pages (read by torch at its first allocation, so set before torch
# is imported; a fresh 133 MB output otherwise spends most of its time in 4 KiB page faults), and freed
# memory kept in the process (pytest_configure).
TUNED_ALLOCATOR = os.environ.get("SROPS_BENCH_TUNED_ALLOCATOR", "1") != "0"
if TUNED_ALLOCATOR:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Keep freed memory in the process (glibc only): with glibc's defaults a freed tensor of some MB goes back
    to the OS and the next allocation of that size page-faults it in again, adding milliseconds to random
    rounds of every backend. Recorded in each result's extra_info as ``allocator``."""
    allocator = "default"
    if TUNED_ALLOCATOR and ctypes.util.find_library("c") and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
            if libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20):
                allocator = "glibc, trim threshold 1 GiB, mmap threshold 32 MiB"
        except (OSError, AttributeError):
            pass
    if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1":
        allocator += "; torch THP_MEM_ALLOC_ENABLE=1"
    os.environ["_SROPS_BENCH_ALLOCATOR"] = allocator


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--smoke", action="store_true", help="toy shapes only (harness smoke run)")


@pytest.fixture(scope="session")
def smoke(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--smoke"))


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_SKIPPED: list[dict[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped case and why (out of memory, too slow, not on this device...)."""
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append({"name": report.nodeid.split("::")[-1], "reason": reason.removeprefix("Skipped: ")})


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    output_json["skipped"] = list(_SKIPPED)
