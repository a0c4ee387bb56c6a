"""pytest-benchmark harness shared by bench_*.py.

``pytest bench/ --benchmark-only`` times every backend of every op on the
device at hand (CUDA if visible, else CPU with smaller shapes), forward and
forward+backward. Each result carries, in ``extra_info``: backend, pass, shape,
peak extra memory in MB during one call, and the environment (device, torch,
triton, CUDA versions). Results are grouped by op, shape and pass, so the
backends of one case sit side by side; ``reference`` is the baseline.

By default the run is quick (a few minutes on a 2-core CPU machine): each case
gets at most 0.25 s of timed rounds (at least 3) after a short warm-up, unless
``--benchmark-max-time`` / ``--benchmark-min-rounds`` are given. ``--bench-full``
keeps pytest-benchmark's own defaults (1 s, 5 rounds) and the long warm-up.
``--smoke`` shrinks every shape to a toy size (used by ``make test`` for a
one-round run that proves the harness works).

The run ends with a summary (``bench/report.py``): per op, shape and pass, each
backend's median time, speed-up over ``reference`` and over the peer (``sdpa``
where it applies, else ``torch.compile(reference)``) and peak memory; skipped
cases are counted per reason instead of printed one ``s`` each.

Run from a checkout after a non-editable ``pip install .``, the installed srops
(with its compiled extension) is benchmarked, not the checkout's sources.
"""
from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

# The process's memory allocation is tuned for timing unless SROPS_BENCH_TUNED_ALLOCATOR=0 (bench/allocator.py):
# huge pages asked for here, before torch is imported, freed memory kept in the process in pytest_configure.
from bench import allocator  # noqa: E402  (no torch import)

allocator.prepare()

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"benchmark_max_time": ("--benchmark-max-time", "0.25"), "benchmark_min_rounds": ("--benchmark-min-rounds", 3),
         "benchmark_columns": ("--benchmark-columns", ["median", "rounds"])}


def installed_srops_outside(root: Path = ROOT, path: list[str] | None = None) -> Path | None:
    """The sys.path folder holding an installed (non-editable) srops other than the checkout ``root``, or None.

    An editable install has no such folder (its finder points at the checkout).
    """
    for entry in sys.path if path is None else path:
        base = Path(entry or os.getcwd()).resolve()
        if base != root and (base / "srops" / "__init__.py").is_file():
            return base
    return None


def _import_installed_srops() -> None:
    """Import srops from its installed copy when the checkout would shadow it.

    pytest puts the checkout on sys.path (bench/ is a package), where ``srops/``
    has no compiled extension. srops is imported here, once, with the checkout left out, so
    every later ``import srops...`` gets the installed package.
    """
    if installed_srops_outside() is None:
        return
    saved = list(sys.path)
    sys.path[:] = [e for e in saved if Path(e or os.getcwd()).resolve() != ROOT]
    try:
        import srops  # noqa: F401
        import srops.models  # noqa: F401
    finally:
        sys.path[:] = saved


_import_installed_srops()


def pytest_configure(config: pytest.Config) -> None:
    """Keep freed memory in the process (bench/allocator.py), recorded in each result's extra_info as
    ``allocator``."""
    os.environ["_SROPS_BENCH_ALLOCATOR"] = allocator.keep_freed_memory()
    os.environ["_SROPS_BENCH_FULL"] = "1" if config.getoption("--bench-full") else "0"  # read by run_benchmark
    if not config.getoption("--bench-full"):
        given = config.invocation_params.args
        for dest, (flag, value) in QUICK.items():
            if hasattr(config.option, dest) and not any(str(a).startswith(flag) for a in given):
                setattr(config.option, dest, value)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--smoke", action="store_true", help="toy shapes only (harness smoke run)")
    parser.addoption("--bench-full", action="store_true",
                     help="pytest-benchmark's default rounds (1 s, >=5 per case) and the long warm-up")


def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark's tables name each row by its backend (the table's title already gives op, shape
    and pass), unless ``--benchmark-name`` is given: the tables then fit a terminal."""
    bench_session = getattr(session.config, "_benchmarksession", None)
    if bench_session is None or any(str(a).startswith("--benchmark-name") for a in session.config.invocation_params.args):
        return
    fallback = bench_session.name_format
    bench_session.name_format = lambda bench: (bench.get("extra_info") or {}).get("backend") or fallback(bench)


def pytest_report_header(config: pytest.Config) -> str:
    import srops
    from srops import _ext

    ext = "loaded" if _ext.HAS_EXT else f"missing ({_ext.EXT_ERROR})"
    mode = "full" if config.getoption("--bench-full") else "quick (--bench-full for longer rounds)"
    return f"srops {srops.__version__} from {Path(srops.__file__).parent}; extension {ext}; benchmark run: {mode}"


@pytest.fixture(scope="session")
def smoke(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--smoke"))


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def isolated_state() -> Iterator[None]:
    """Run a case and put back the process state it may change, so that it cannot slow or alter a later case.

    Restored: torch's intra-op thread count, the environment variables (``SROPS_BACKEND``, OpenMP and
    allocator settings...), grad mode, the CPU autocast state, deterministic algorithms, the default dtype,
    float32 matmul precision, flush-denormal (off: torch has no getter; the harness never turns it on) and
    srops's backend orders. Then compiled state is dropped: ``torch._dynamo.reset()`` and Inductor's compile
    worker processes are shut down when torch.compile was used, and a garbage collection frees the case's
    modules and tensors.
    """
    import torch
    from srops import _backend

    env = dict(os.environ)
    threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()
    autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    dtype = torch.get_default_dtype()
    precision = torch.get_float32_matmul_precision()
    orders = {name: dict(op.order) for name, op in _backend._OPS.items()}
    try:
        yield
    finally:
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_autocast_enabled("cpu", autocast[0])
        torch.set_autocast_dtype("cpu", autocast[1])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(precision)
        torch.set_flush_denormal(False)
        for name, order in orders.items():
            _backend._OPS[name].order.clear()
            _backend._OPS[name].order.update(order)
        if "torch._dynamo" in sys.modules:
            torch._dynamo.reset()
        if "torch._inductor.async_compile" in sys.modules:
            sys.modules["torch._inductor.async_compile"].shutdown_compile_workers()
        gc.collect()


@pytest.fixture(autouse=True)
def _isolate_case() -> Iterator[None]:
    """Every benchmark case runs in :func:`isolated_state`."""
    with isolated_state():
        yield


_SKIPPED: list[dict[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped case and why (out of memory, too slow, not on this device...)."""
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append({"name": report.nodeid.split("::")[-1], "reason": reason.removeprefix("Skipped: ")})


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Skipped cases print nothing in the progress line; the summary counts them per reason."""
    if report.skipped and report.when in ("setup", "call"):
        return "skipped", "", "SKIPPED"
    return None


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    output_json["skipped"] = list(_SKIPPED)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """After pytest-benchmark's tables: the speed-up summary and one line per skip reason."""
    from bench.report import rows_from_session, skip_lines, summary_lines

    session = getattr(config, "_benchmarksession", None)
    rows = rows_from_session(session.benchmarks) if session is not None else []
    lines = summary_lines(rows) + skip_lines(Counter(s["reason"] for s in _SKIPPED))
    if lines:
        terminalreporter.write_sep("=", "srops benchmark summary")
        for line in lines:
            terminalreporter.write_line(line)
