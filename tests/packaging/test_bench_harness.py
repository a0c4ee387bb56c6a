"""The benchmark harness: which srops it measures, its summary table and its skip lines."""
from __future__ import annotations

from pathlib import Path

from bench.conftest import installed_srops_outside
from bench.report import peer_of, skip_lines, summary_lines


def test_installed_copy_found_outside_checkout(tmp_path: Path) -> None:
    checkout, site = tmp_path / "checkout", tmp_path / "site"
    for base in (checkout, site):
        (base / "srops").mkdir(parents=True)
        (base / "srops" / "__init__.py").write_text("")
    assert installed_srops_outside(checkout, [str(checkout), str(tmp_path / "nothing"), str(site)]) == site
    assert installed_srops_outside(checkout, [str(checkout), str(tmp_path / "nothing")]) is None  # editable


def _row(group: str, backend: str, ms: float, mb: float) -> dict:
    return {"group": group, "backend": backend, "median_ms": ms, "peak_mb": mb}


def test_summary_speedups_over_reference_and_peer() -> None:
    rows = [_row("nonlocal_attention train-full fwd", "reference", 40.0, 80.0),
            _row("nonlocal_attention train-full fwd", "sdpa", 20.0, 2.0),
            _row("nonlocal_attention train-full fwd", "compile(reference)", 30.0, 60.0),
            _row("nonlocal_attention train-full fwd", "cpu", 10.0, 1.5),
            _row("network amms-x2 infer-96x96", "reference", 9.0, 5.0),
            _row("network amms-x2 infer-96x96", "srops", 3.0, 1.0)]
    lines = summary_lines(rows)
    assert max(len(line) for line in lines) < 80
    cpu = next(line for line in lines if line.split()[0] == "cpu")
    assert cpu.split()[1:] == ["10.000", "4.00", "2.00", "1.5"]  # 40/10 over reference, 20/10 over sdpa
    srops_line = next(line for line in lines if line.split()[0] == "srops")
    assert srops_line.split()[1:] == ["3.000", "3.00", "–", "1.0"]  # no peer for a network
    assert lines.index(cpu) < lines.index(next(line for line in lines if line.split()[0] == "sdpa"))  # fastest first
    assert peer_of({"reference", COMPILED := "compile(reference)"}) == COMPILED
    assert peer_of({"reference", "sdpa", COMPILED}) == "sdpa"


def test_skip_lines_merge_reasons_that_differ_by_shape() -> None:
    lines = skip_lines({"shape train-48x48 is not benchmarked on cpu": 4,
                        "shape infer-960x540 is not benchmarked on cpu": 2,
                        "cuda: no CUDA device visible to this process": 5})
    assert lines[0] == "skipped 11 cases:"
    assert lines[1].split() == ["6", "x", "shape", "<shape>", "is", "not", "benchmarked", "on", "cpu",
                                "[infer-960x540,", "train-48x48]"]
    assert lines[2].split()[:3] == ["5", "x", "cuda:"] and len(lines) == 3


CASES = '''
import os
import torch
from srops import _backend

START = (torch.get_num_threads(), os.environ.get("SROPS_BACKEND"), torch.is_grad_enabled(),
         torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(),
         dict(_backend._OPS["nonlocal_attention"].order))


def test_a_changes_the_process_state():
    torch.set_num_threads(1)
    os.environ["SROPS_BACKEND"] = "reference"
    os.environ["SROPS_BENCH_PROBE"] = "1"
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float64)
    _backend.set_order("nonlocal_attention", "cpu", ("reference",))
    compiled = torch.compile(lambda t: t * 2, backend="eager")
    assert compiled(torch.ones(2)).sum() == 4


def test_b_sees_the_state_of_the_start():
    import torch._dynamo

    now = (torch.get_num_threads(), os.environ.get("SROPS_BACKEND"), torch.is_grad_enabled(),
           torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(),
           dict(_backend._OPS["nonlocal_attention"].order))
    assert now == START
    assert "SROPS_BENCH_PROBE" not in os.environ
    assert not torch._dynamo.eval_frame.cached_backends  # torch._dynamo.reset() ran
'''


def test_each_benchmark_case_starts_from_the_state_the_run_started_with(tmp_path: Path) -> None:
    """bench/conftest.py's isolation: a case that changes threads, environment, grad mode, deterministic
    algorithms, default dtype, srops's backend order and compiles something leaves none of it to the next."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "test_isolation.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "SROPS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench.conftest",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_isolation.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_summary_prints_no_ratio_from_a_case_that_did_not_warm_up() -> None:
    """A case with too few rounds, or whose first round is far above its median, is marked and gives no ratio
    (neither its own nor the others' against it)."""
    from bench.report import MAX_FIRST_OVER_MEDIAN, MIN_ROUNDS, group_table, warmed_up

    group = "network amms-x2 infer-96x96"
    steady = dict(_row(group, "reference", 332.0, 5.0), rounds=MIN_ROUNDS, first_ms=340.0)
    cold = dict(_row(group, "srops", 2166.0, 1.0), rounds=MIN_ROUNDS, first_ms=2166.0 * MAX_FIRST_OVER_MEDIAN * 1.1)
    few = dict(_row(group, "other", 100.0, 1.0), rounds=MIN_ROUNDS - 1)
    assert warmed_up(steady) and not warmed_up(cold) and not warmed_up(few)
    lines = summary_lines([steady, cold, few])
    srops_line = next(line for line in lines if line.split()[0] == "srops")
    assert srops_line.split()[1:] == ["2166.000", "–", "–", "1.0", "*"]
    assert next(line for line in lines if line.split()[0] == "other").split()[2] == "–"
    assert lines[-1].startswith("* not warmed up")
    assert next(line for line in lines if line.split()[0] == "reference").split()[2] == "1.00"
    table = group_table([dict(r, info={}, min_ms=r["median_ms"]) for r in (steady, cold)])
    assert any("srops (not warmed up)" in line and "| – |" in line for line in table)
