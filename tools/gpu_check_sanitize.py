"""Stage 6 of the device check: compute-sanitizer memcheck, then racecheck, over small calls of every srops
kernel (``python -m tools.gpu_check_sanitize`` is the workload: covpool_sqrtm on its three paths, covpool,
every CBAM op, the Triton forward and backward).

Each tool's ERROR SUMMARY and output tail go into ``sanitizer.json``. Without compute-sanitizer (or in a dry
run) the tools are skipped with the reason and the workload runs once on its own, on CPU tensors in a dry run.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import torch

from tools.gpu_check_common import SkipCase, Stage

EXIT_ON_ERROR = 86  # compute-sanitizer's exit code when it found errors


def workload(device: str) -> list[str]:
    """Small calls of every srops kernel on ``device``; returns the names of the calls made."""
    from srops import _ext

    done = []
    ops = torch.ops.srops
    if _ext.HAS_EXT and (device == "cpu" or _ext.HAS_CUDA_EXT):
        for C in (16, 100, 130):  # shared memory, global scratch (backward), bmm
            x = torch.randn(2, C, 40, device=device)
            out, mean, a, states, trace = ops.covpool_sqrtm_fwd(x, 3, 1e-5, False)
            ops.covpool_sqrtm_bwd(torch.randn_like(out), x, mean, a, states, trace, out, False)
            done.append(f"covpool_sqrtm C={C}")
        x = torch.randn(2, 9, 33, device=device)
        sigma = ops.covpool_fwd(x)
        ops.covpool_bwd(torch.randn_like(sigma), x)
        done.append("covpool")
        B, C, H, W = 2, 5, 7, 3
        x, g = torch.randn(B, C, H, W, device=device), torch.randn(B, C, H, W, device=device)
        c, s = torch.rand(B, C, device=device), torch.rand(B, H, W, device=device)
        stats, carg = ops.cbam_channel_pool_fwd(x, True, True)
        gs = torch.randn_like(stats)
        ops.cbam_channel_pool_bwd(gs, x, carg, True, True)
        pooled, sarg = ops.cbam_spatial_pool_fwd(x, c)
        gp = torch.randn_like(pooled)
        ops.cbam_spatial_pool_bwd(gp, x, c, sarg, True)
        ops.cbam_apply_fwd(x, c, s)
        ops.cbam_apply_bwd(g, x, c, s, True)
        ops.cbam_input_bwd(g, c, s, gp, sarg, gs, carg, True, True)
        done.append("cbam ops")
    from srops.ops.nonlocal_attention import triton_impl

    if triton_impl.TRITON_ERROR is None:
        # head dims of a Triton stage case (2, 77, 131, 24, 40) in float32: kernels already compiled and cached
        q, k, v = (torch.randn(1, n, d, device=device) for n, d in ((77, 24), (131, 24), (131, 40)))
        out, st = ops.nonlocal_attention_triton_fwd(q, k, v, 0.25)
        ops.nonlocal_attention_triton_bwd(torch.randn_like(out), q, k, v, out, st, 0.25)
        done.append("nonlocal_attention_triton")
    if device == "cuda":
        torch.cuda.synchronize()
    return done


def find_sanitizer() -> str | None:
    """compute-sanitizer on PATH, else in the usual CUDA and Nsight install folders."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for pattern in ("/usr/local/cuda*/bin/compute-sanitizer", "/usr/local/cuda*/compute-sanitizer/compute-sanitizer",
                    "/opt/nvidia/*/compute-sanitizer", "/opt/nvidia/**/compute-sanitizer"):
        hits = sorted(glob.glob(pattern, recursive=True))
        if hits:
            return hits[-1]
    return None


def sanitizer_command(tool: str, exe: str = "compute-sanitizer") -> list[str]:
    return [exe, "--tool", tool, "--error-exitcode", str(EXIT_ON_ERROR),
            sys.executable, "-m", "tools.gpu_check_sanitize"]


def parse_summary(text: str) -> int | None:
    """The error count of compute-sanitizer's 'ERROR SUMMARY: N errors' line, or None if absent."""
    found = re.findall(r"ERROR SUMMARY:\s*(\d+)\s+error", text)
    return int(found[-1]) if found else None


def run(stage: Stage) -> None:
    dry = stage.dry_run
    device = "cpu" if dry else "cuda"

    def plain(rec: dict) -> None:
        rec["calls"] = workload(device)
        stage.check(bool(rec["calls"]), "no srops kernel could be called")

    stage.run("workload without sanitizer", plain)

    def tool(rec: dict, name: str, share: float) -> None:
        if dry:
            raise SkipCase("dry run: no GPU")
        exe = find_sanitizer()
        if exe is None:
            raise SkipCase("compute-sanitizer not found (PATH, /usr/local/cuda*, /opt/nvidia)")
        timeout = max(5.0, stage.time_left() * share)
        try:
            res = subprocess.run(sanitizer_command(name, exe), capture_output=True, text=True, timeout=timeout,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
        except subprocess.TimeoutExpired as exc:
            rec["tail"] = (exc.stdout or b"")[-3000:].decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else str(exc.stdout or "")[-3000:]
            raise SkipCase(f"{name} did not finish within {timeout:.0f} s") from None
        text = res.stdout + res.stderr
        rec.update(returncode=res.returncode, errors=parse_summary(text), tail=text[-3000:])
        stage.check(res.returncode == 0 and rec["errors"] == 0,
                    f"{name}: exit {res.returncode}, {rec['errors']} errors reported")

    stage.run("memcheck", tool, "memcheck", 0.55)
    stage.run("racecheck", tool, "racecheck", 0.95)
    stage.info["headline"] = ", ".join(f"{c['case']} {c.get('errors', c['status'])}" for c in stage.cases[1:])


if __name__ == "__main__":
    print("srops sanitizer workload:", workload("cuda" if torch.cuda.is_available() else "cpu"))
