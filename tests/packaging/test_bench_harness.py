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
