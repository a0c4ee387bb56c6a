"""Stage 1 of the device check: build the extension in place for sm_90 only, then check that it loads.

The build log's tail and ``python -m srops.info`` go to ``build.txt``. In a dry run the build command is
recorded but not run (the CPU build is the test suite's own business); the import check still runs.
"""
from __future__ import annotations

import os
import subprocess
import sys

from tools.gpu_check_common import SkipCase, Stage

LOG_CHARS = 60_000  # tail of the build log kept in build.txt


def build_command() -> tuple[list[str], dict[str, str]]:
    """The build command and its environment: sm_90 only unless TORCH_CUDA_ARCH_LIST is set, one job per
    CPU, and a loud failure if the CUDA sources cannot be built."""
    env = dict(os.environ)
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    env.setdefault("SROPS_FORCE_CUDA", "1")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e", "."]
    return cmd, env


def run(stage: Stage) -> None:
    log: list[str] = []

    def build(rec: dict) -> None:
        cmd, env = build_command()
        rec["command"] = " ".join(cmd)
        rec["env"] = {k: env[k] for k in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "SROPS_FORCE_CUDA")}
        if stage.dry_run:
            raise SkipCase("dry run: the build command is recorded, not run")
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(1.0, stage.time_left()))
        log.append(f"$ {rec['command']}\n{res.stdout}{res.stderr}")
        rec["returncode"] = res.returncode
        if res.returncode != 0 and stage.time_left() > 30:
            # e.g. an old setuptools without bdist_wheel cannot make the editable install: build in place
            fallback = [sys.executable, "setup.py", "build_ext", "--inplace"]
            res = subprocess.run(fallback, env=env, capture_output=True, text=True,
                                 timeout=max(1.0, stage.time_left()))
            log.append(f"$ {' '.join(fallback)}\n{res.stdout[-20000:]}{res.stderr}")
            rec.update(fallback=" ".join(fallback), fallback_returncode=res.returncode)
        stage.check(res.returncode == 0, f"build failed (exit {res.returncode}); see build.txt")

    def load(rec: dict) -> None:
        code = ("import json, torch; from srops import _ext; from srops.info import environment; "
                "print(json.dumps({'has_ext': _ext.HAS_EXT, 'has_cuda_ext': _ext.HAS_CUDA_EXT, "
                "'error': _ext.EXT_ERROR, 'env': environment()}))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=max(1.0, stage.time_left()))
        log.append(f"$ python -c <import check>\n{res.stdout}{res.stderr}")
        import json

        stage.check(res.returncode == 0, f"import failed: {res.stderr[-500:]}")
        facts = json.loads(res.stdout.strip().splitlines()[-1])
        rec.update(has_ext=facts["has_ext"], has_cuda_ext=facts["has_cuda_ext"])
        stage.info["environment"] = facts["env"]
        if stage.dry_run:
            return
        stage.check(facts["has_ext"] and facts["has_cuda_ext"],
                    f"srops._C must load with CUDA kernels, got: {facts['error'] or 'compiled without CUDA'}")

    stage.run("pip install -e . (sm_90)", build)
    stage.run("import srops._C", load)
    env = stage.info.get("environment", {})
    stage.info["headline"] = f"torch {env.get('torch', '?')}, triton {env.get('triton', '?')}, " \
                             f"{env.get('compiled with', '?')}"
    text = "\n".join(log)
    stage.out.write_text("build.txt", text[-LOG_CHARS:] if text else "(nothing run)\n")
