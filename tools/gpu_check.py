"""The device check: build, then check and time srops on a GPU, in stages by priority, in one bounded run.

    python tools/gpu_check.py                    # all stages, ~8 minutes at most (make gpu-check)
    python tools/gpu_check.py --stages triton,cuda --total 200
    python tools/gpu_check.py --dry-run          # CPU tensors, tiny shapes, Triton interpreter (tests)

Stages (each in its own process, with its own time budget, in this order):

1. ``build``      ``pip install --no-build-isolation --no-deps -e .`` for sm_90 only
                  (``TORCH_CUDA_ARCH_LIST=9.0`` unless set, ``MAX_JOBS`` = CPU count), then an import check.
2. ``triton``     the flash kernels with every launch configuration of the fixed candidate list
                  (``srops/ops/nonlocal_attention/triton_configs.py``; no autotuner) forced in turn (outputs
                  pre-filled with NaN), ragged float32/float16/bfloat16 shapes on the configurations the
                  launch rule picks, logits above 100 and near 1e4, determinism.
3. ``cuda``       every CUDA C++ op against the reference (covpool_sqrtm on its shared-memory, global-scratch
                  and bmm paths; covpool; each CBAM op with the fused backward).
4. ``timing``     srops against SDPA's flash, cuDNN and memory-efficient kernels (forced one at a time),
                  the reference and torch.compile(reference), as ratios, with the fraction of the exp bound.
5. ``full_image`` one forward and backward at N = M = 518,400 (a 960×540 frame), d = 32, bfloat16.
6. ``sanitizer``  compute-sanitizer memcheck and racecheck over small calls of every srops kernel.

Each stage writes ``<stage>.json`` after every case, so a stage stopped at its limit loses only the case it
was running; the next stage starts in a fresh process (a CUDA fault in one stage cannot poison the next).
Results: at most 8 files (``build.txt``, six stage JSONs, ``summary.md``), no folders, in
``$SROPS_RESULTS_DIR`` or ``bench/results/<device>/`` (the device name as ``srops.info`` spells it, read
here from ``nvidia-smi`` so that this process never loads the extension the build replaces).
The summary table is printed last.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.gpu_check_common import ResultsDir, Stage, load_stage_file  # noqa: E402

TOTAL_SECONDS = 465.0  # the whole run, build included: under 8 minutes with room for start-up and summary


@dataclass(frozen=True)
class StageSpec:
    """A stage: its name, ``module:function`` target and time budget in seconds."""

    name: str
    target: str
    budget: float


STAGES: tuple[StageSpec, ...] = (
    StageSpec("build", "tools.gpu_check_build:run", 160.0),
    StageSpec("triton", "tools.gpu_check_triton:run", 110.0),
    StageSpec("cuda", "tools.gpu_check_cuda:run", 45.0),
    StageSpec("timing", "tools.gpu_check_timing:run_timing", 100.0),
    StageSpec("full_image", "tools.gpu_check_timing:run_full_image", 50.0),
    StageSpec("sanitizer", "tools.gpu_check_sanitize:run", 80.0),
)


def device_slug() -> str:
    """``srops.info.device_name()`` without importing srops: the GPU's name from nvidia-smi, else the CPU's."""
    name = None
    if shutil.which("nvidia-smi"):
        try:
            res = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            name = res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None
        except (OSError, subprocess.SubprocessError, IndexError):
            name = None
    if name is None:
        model = None
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = "cpu-" + (model or os.uname().machine)
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def default_results_dir() -> Path:
    return Path(os.environ.get("SROPS_RESULTS_DIR") or ROOT / "bench" / "results" / device_slug())


def stage_window(start: float, budget: float, total_deadline: float) -> tuple[float, float]:
    """(soft, hard) deadlines of a stage starting at ``start``: cases start until soft; the process is
    killed at hard = min(start + budget, total_deadline). The margin lets the case in flight finish."""
    hard = min(start + budget, total_deadline)
    soft = hard - min(max(3.0, 0.15 * (hard - start)), 20.0)
    return max(start, soft), hard


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_stage(spec: StageSpec, out: ResultsDir, total_deadline: float, dry_run: bool,
              options: dict | None = None) -> dict:
    """Run one stage in a child process within its window; returns its record (from its JSON file,
    completed with how it ended)."""
    start = time.time()
    soft, hard = stage_window(start, spec.budget, total_deadline)
    record: dict = {"stage": spec.name, "budget": spec.budget}
    if hard - start < 1.0:
        record.update(result="skipped: no time left in the run", seconds=0.0)
        out.write_json(f"{spec.name}.json", {"stage": spec.name, "done": False, "result": record["result"],
                                             "cases": []})
        return record
    cmd = [sys.executable, "-m", "tools.gpu_check", "--run-stage", spec.target, "--name", spec.name,
           "--out", str(out.root), "--deadline", f"{soft:.3f}", "--options", json.dumps(options or {})]
    if dry_run:
        cmd.append("--dry-run")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if dry_run:
        env["TRITON_INTERPRET"] = "1"
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(0.1, hard - time.time()))
            cut = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, cut = None, True
        log.seek(0)
        tail = log.read()[-4000:]
    data = load_stage_file(out.root / f"{spec.name}.json") or {"stage": spec.name, "done": False, "cases": []}
    if cut:
        result = "cut at its time limit"
    elif rc != 0 or not data.get("done"):
        result = f"crashed (exit {rc})"
    else:
        counts = data.get("counts", {})
        result = "ok" if counts.get("fail", 0) == 0 and counts.get("error", 0) == 0 else "FAILURES"
    data["result"] = result
    if result != "ok":
        data["output_tail"] = tail
    out.write_json(f"{spec.name}.json", data)
    record.update(result=result, seconds=round(time.time() - start, 1), counts=data.get("counts", {}),
                  headline=data.get("info", {}).get("headline", ""))
    return record


def summary_table(records: list[dict], total: float) -> str:
    lines = ["| stage | result | pass | fail | error | skip | seconds | budget | headline |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in records:
        c = r.get("counts") or {}
        lines.append(f"| {r['stage']} | {r['result']} | {c.get('pass', 0)} | {c.get('fail', 0)} | "
                     f"{c.get('error', 0)} | {c.get('skip', 0)} | {r.get('seconds', 0):.0f} | {r['budget']:.0f} | "
                     f"{r.get('headline', '')} |")
    lines.append(f"\ntotal {total:.0f} s")
    return "\n".join(lines)


def run_all(stages: tuple[StageSpec, ...] | list[StageSpec], out_dir: Path, total: float, dry_run: bool,
            options: dict | None = None) -> list[dict]:
    """Run ``stages`` in order within ``total`` seconds; write each stage's JSON and ``summary.md``."""
    start = time.time()
    out = ResultsDir(out_dir)
    records = []
    for spec in stages:
        records.append(run_stage(spec, out, start + total, dry_run, (options or {}).get(spec.name)))
        text = summary_table(records, time.time() - start)
        out.write_text("summary.md", f"# srops device check ({'dry run' if dry_run else 'GPU'})\n\n{text}\n")
    return records


def _child(target: str, name: str, out_dir: str, deadline: float, dry_run: bool, options: dict) -> int:
    import importlib

    module, func = target.split(":")
    stage = Stage(name=name, out=ResultsDir(out_dir), deadline=deadline, dry_run=dry_run, options=options)
    stage.flush()
    getattr(importlib.import_module(module), func)(stage)
    stage.flush(done=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default=",".join(s.name for s in STAGES), help="comma-separated stage names")
    parser.add_argument("--total", type=float, default=TOTAL_SECONDS, help="seconds for the whole run")
    parser.add_argument("--budget", action="append", default=[], metavar="STAGE=SECONDS",
                        help="override one stage's budget")
    parser.add_argument("--out", default=None, help="results folder (default $SROPS_RESULTS_DIR or "
                                                    "bench/results/<device>/)")
    parser.add_argument("--dry-run", action="store_true", help="CPU tensors and tiny shapes (no GPU needed)")
    parser.add_argument("--run-stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out_dir = Path(args.out) if args.out else default_results_dir()
    if args.run_stage:
        return _child(args.run_stage, args.name, str(out_dir), args.deadline, args.dry_run, json.loads(args.options))
    budgets = dict(item.split("=", 1) for item in args.budget)
    known = {s.name: s for s in STAGES}
    wanted = [n for n in args.stages.split(",") if n]
    unknown = [n for n in wanted + list(budgets) if n not in known]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; stages are {list(known)}")
    stages = [StageSpec(n, known[n].target, float(budgets.get(n, known[n].budget))) for n in wanted]
    start = time.time()
    records = run_all(stages, out_dir, args.total, args.dry_run)
    print(f"\nsrops device check, results in {out_dir}\n")
    print(summary_table(records, time.time() - start))
    return 0 if all(r["result"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
