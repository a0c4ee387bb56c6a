"""The device check (tools/gpu_check.py) on CPU: its driver, limits and budgets, and a dry run of every stage.

The dry run uses CPU tensors, tiny shapes and the Triton interpreter, so that the script is known to run
before it ever meets a GPU. The driver tests use stand-in stages (tests/gpu_check/fake_stages.py).
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
import torch

from tools import gpu_check
from tools.gpu_check_common import MAX_FILES, CaseFailed, ResultLimitError, ResultsDir, SkipCase, Stage

FAKE = "tests.gpu_check.fake_stages"


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_results_dir_limits(tmp_path):
    out = ResultsDir(tmp_path)
    for i in range(MAX_FILES - 1):
        out.write_text(f"f{i}.txt", "x")
    out.write_text("a/b/deep.json", "{}")  # two folders: allowed
    out.write_text("f0.txt", "again")  # rewriting does not count twice
    with pytest.raises(ResultLimitError, match="at most 8 result files"):
        out.write_text("one-more.txt", "x")
    with pytest.raises(ResultLimitError, match="at most 2 folders deep"):
        ResultsDir(tmp_path / "other").write_text("a/b/c/file.txt", "x")
    for bad in ("../escape.txt", "/abs.txt"):
        with pytest.raises(ResultLimitError, match="relative path"):
            ResultsDir(tmp_path / "other").write_text(bad, "x")
    assert len(_files(tmp_path)) == MAX_FILES
    assert (tmp_path / "f0.txt").read_text() == "again"


def test_stage_records_each_outcome_and_writes_after_every_case(tmp_path):
    stage = Stage("s", ResultsDir(tmp_path), deadline=time.time() + 60)

    def skip(rec):
        raise SkipCase("no tool")

    def boom(rec):
        raise ValueError("kaput")

    stage.run("ok", lambda rec: rec.update(x=1))
    assert json.loads((tmp_path / "s.json").read_text())["counts"]["pass"] == 1
    stage.run("fail", lambda rec: stage.check(False, "off by one"))
    stage.run("skip", skip)
    stage.run("error", boom)
    data = json.loads((tmp_path / "s.json").read_text())
    assert [c["status"] for c in data["cases"]] == ["pass", "fail", "skip", "error"]
    assert data["cases"][0]["x"] == 1
    assert data["cases"][1]["reason"] == "off by one"
    assert "ValueError: kaput" in data["cases"][3]["reason"]
    assert data["done"] is False


def test_stage_past_its_deadline_starts_no_case(tmp_path):
    stage = Stage("late", ResultsDir(tmp_path), deadline=time.time() - 1)
    called = []
    rec = stage.run("would run", lambda rec: called.append(1))
    assert not called
    assert rec["status"] == "skip" and "budget" in rec["reason"]


def test_stage_window_respects_the_total_deadline():
    soft, hard = gpu_check.stage_window(100.0, 50.0, 1000.0)
    assert hard == 150.0 and 100.0 < soft < hard
    soft, hard = gpu_check.stage_window(100.0, 50.0, 120.0)
    assert hard == 120.0 and soft < hard


def test_stage_budgets_fit_eight_minutes():
    assert gpu_check.TOTAL_SECONDS < 480
    assert [s.name for s in gpu_check.STAGES] == ["build", "triton", "cuda", "timing", "full_image", "sanitizer"]


def test_driver_cuts_a_hung_stage_and_goes_on(tmp_path):
    stages = [gpu_check.StageSpec("hang", f"{FAKE}:hangs", 4.0), gpu_check.StageSpec("crash", f"{FAKE}:crashes", 20.0),
              gpu_check.StageSpec("bad", f"{FAKE}:fails", 20.0), gpu_check.StageSpec("quick", f"{FAKE}:quick", 20.0)]
    start = time.time()
    records = gpu_check.run_all(stages, tmp_path, total=60.0, dry_run=True)
    assert time.time() - start < 40
    results = {r["stage"]: r["result"] for r in records}
    assert results == {"hang": "cut at its time limit", "crash": "crashed (exit 3)", "bad": "FAILURES", "quick": "ok"}
    hang = json.loads((tmp_path / "hang.json").read_text())
    assert [c["case"] for c in hang["cases"]] == ["a", "b"]  # the finished cases survive the cut
    crash = json.loads((tmp_path / "crash.json").read_text())
    assert [c["status"] for c in crash["cases"]] == ["pass"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| quick | ok | 2 |" in summary and "quick done" in summary
    assert len(_files(tmp_path)) <= MAX_FILES


def test_driver_skips_stages_once_the_run_is_over(tmp_path):
    stages = [gpu_check.StageSpec("hang", f"{FAKE}:hangs", 30.0), gpu_check.StageSpec("quick", f"{FAKE}:quick", 30.0)]
    records = gpu_check.run_all(stages, tmp_path, total=8.0, dry_run=True)
    assert records[0]["result"] == "cut at its time limit"
    assert records[1]["result"].startswith("skipped")


def test_main_rejects_unknown_stages():
    with pytest.raises(SystemExit):
        gpu_check.main(["--stages", "build,nonsense"])


def test_nan_prefill_and_judge_catch_unwritten_and_wrong_outputs():
    from tools.gpu_check_triton import judge, magnitudes, nan_prefilled, reference

    original = torch.empty
    with nan_prefilled():
        assert torch.empty(3).isnan().all()
        assert torch.empty(3, dtype=torch.int64).dtype == torch.int64
    assert torch.empty is original
    q, k, v, g = torch.randn(1, 5, 4), torch.randn(1, 6, 4), torch.randn(1, 6, 3), torch.randn(1, 5, 3)
    want = reference(q, k, v, g, 0.5)
    mags = magnitudes(q, k, v, g, 0.5)
    names = ("out", "dq", "dk", "dv")
    judge({}, names, [w.float() for w in want], want, mags, 1e-5)
    hole = [w.float().clone() for w in want]
    hole[2][0, 3, 1] = float("nan")
    with pytest.raises(CaseFailed, match="dk holds NaN"):
        judge({}, names, hole, want, mags, 1e-5)
    off = [w.float().clone() for w in want]
    off[0][0, 0, 0] += 0.1
    with pytest.raises(CaseFailed, match="out: error"):
        judge({}, names, off, want, mags, 1e-5)


def test_timing_harness_on_cpu():
    from tools.gpu_check_timing import exp_bound_ms, time_call

    calls = []
    t = time_call(lambda: calls.append(torch.ones(64).sum()), "cpu", warmup=2, min_reps=4, max_seconds=0.0)
    assert t["reps"] == 4 and len(calls) == 6 and 0 <= t["min_ms"] <= t["median_ms"]
    # 132 SMs x 16 exps per clock at 1980 MHz: that many exps take exactly 1 ms
    assert exp_bound_ms(132 * 16 * 1980e3, 1, 132, 1980.0) == pytest.approx(1.0)
    assert exp_bound_ms(100.0, 3, 1, 1.0) == pytest.approx(3 * exp_bound_ms(100.0, 1, 1, 1.0))


def test_sanitizer_summary_parsing():
    from tools.gpu_check_sanitize import parse_summary

    assert parse_summary("========= ERROR SUMMARY: 0 errors\n") == 0
    assert parse_summary("x\n========= ERROR SUMMARY: 12 errors\n") == 12
    assert parse_summary("no summary here") is None


STAGE_MODULES = {s.name: s.target for s in gpu_check.STAGES}


# the timing stage times torch.compile(reference) beside the kernels: it compiles
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.compile) if n == "timing" else n
                                  for n in STAGE_MODULES])
def test_dry_run_of_each_stage(name, tmp_path):
    """Each real stage end to end on CPU (in this process: TRITON_INTERPRET=1 is already set)."""
    module, func = STAGE_MODULES[name].split(":")
    out = ResultsDir(tmp_path)
    stage = Stage(name, out, deadline=time.time() + 120, dry_run=True)
    getattr(importlib.import_module(module), func)(stage)
    stage.flush(done=True)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    bad = [c for c in data["cases"] if c["status"] in ("fail", "error")]
    assert not bad, bad
    assert data["cases"], "the stage ran no case"
    if name in ("triton", "timing", "full_image"):
        assert data["counts"]["pass"] > 0, data["cases"]
    assert len(_files(tmp_path)) <= 2


def _run_script(script: str, *args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, str(root / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--stages", "nonsense"], 2)])
def test_old_bench_path_runs_the_device_check_with_a_deprecation_note(args, code, tmp_path):
    """``python bench/gpu_check.py`` (README, old instructions) still works for one release: a note on stderr
    naming tools/gpu_check.py, then the same run, output and exit status as ``python tools/gpu_check.py``."""
    new = _run_script("tools/gpu_check.py", *args, cwd=tmp_path)
    old = _run_script("bench/gpu_check.py", *args, cwd=tmp_path)
    assert new.returncode == code, new.stderr[-2000:]
    assert old.returncode == new.returncode, old.stderr[-2000:]
    assert old.stdout == new.stdout
    note, _, rest = old.stderr.partition("\n")
    assert "DeprecationWarning" in note and "tools/gpu_check.py" in note, old.stderr
    assert rest == new.stderr
    assert "Deprecat" not in new.stderr


def test_old_bench_module_is_an_alias_that_warns():
    import sys

    sys.modules.pop("bench.gpu_check", None)
    with pytest.warns(DeprecationWarning, match="tools.gpu_check"):
        old = importlib.import_module("bench.gpu_check")
    assert old.main is gpu_check.main and old.STAGES is gpu_check.STAGES
