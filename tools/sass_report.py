"""Per-score cost of the Triton flash non-local kernels, read from their compiled sm_90 SASS (no GPU needed).

Each kernel is compiled for every candidate configuration (``triton_configs.kernel_configs``) with
``triton.compile`` on ``GPUTarget("cuda", 90, 32)`` and the specialisation a run would get: unit last
strides (constants), 16-divisible pointers, sizes and other strides. The cubin is disassembled with
the ``nvdisasm``/``cuobjdump`` that triton's wheel ships, and the steady-state inner loop (the
innermost backward branch whose body holds the exps and the matrix products) is counted:

* ``instr/score`` — SASS instructions of one loop iteration per thread, divided by the scores one
  thread handles per iteration (``BLOCK_M·BLOCK_N / (32·num_warps)``); the forward at SR head dims is
  bound by instruction issue and the exp unit, so this is its cost model;
* ``ex2/score`` — MUFU.EX2 per score (the exp unit runs at 1/8 of the issue rate per SM on sm_90);
* registers, spill (local memory) instructions and bytes, shared memory, wgmma (HGMMA) / mma (HMMA) use.

Usage: ``python tools/sass_report.py [--kernels fwd bwd] [--dtypes bf16] [--dims 32] [--out DIR] [--cuda]``;
writes ``sass_sm90.md`` and ``sass_sm90.json`` into ``--out`` (default ``bench/results/sass``). ``--cuda``
adds the CUDA C++ kernels' instructions per element (``tools/sass_cuda.py``, compiled with nvcc) and writes
their rows to ``cuda_sm90.json``; ``--cuda-only`` skips the Triton kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile real kernels even where the test suite interprets them
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from srops.ops.nonlocal_attention import triton_configs, triton_impl  # noqa: E402

TRITON_BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
INTS = {"N", "M", "D", "DV", "N_PAD", "M_PAD", "KPG", "QPC", "G"}
FLOATS = {"qk_scale", "scale", "dk_scale"}
UNIT_STRIDE = re.compile(r"^s[a-z]+[dv]$|^sln$")  # last-dim strides (…d, …dv) and the stats row stride
MMA = re.compile(r"\b(HGMMA|HMMA|IMMA|DMMA)\b")


def kernel_table() -> list[tuple[str, object, dict[str, str]]]:
    """(config name, jit kernel, pointer name → 'fp32' for float32 buffers; others take the input dtype)."""
    return triton_impl.sass_kernels()


def _signature(kernel, fp32_ptrs: set[str], dt: str, consts: dict) -> tuple[dict, dict, dict]:
    signature, constexprs, attrs = {}, dict(consts), {}
    for i, name in enumerate(kernel.arg_names):
        if name in consts:
            signature[name] = "constexpr"
        elif name in FLOATS:
            signature[name] = "fp32"
        elif name in INTS:
            signature[name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name[0].isupper():
            signature[name] = "*fp32" if name in fp32_ptrs else "*" + dt
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif UNIT_STRIDE.match(name):
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:  # sizes and outer strides
            signature[name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def _disassemble(cubin: bytes) -> list[str]:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
        path = f.name
    try:
        text = subprocess.run([str(TRITON_BIN / "nvdisasm"), "-c", path], capture_output=True, text=True,
                              check=True).stdout
        usage = subprocess.run([str(TRITON_BIN / "cuobjdump"), "-res-usage", path], capture_output=True, text=True,
                               check=True).stdout
    finally:
        os.unlink(path)
    return text.splitlines(), usage


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_TARGET = re.compile(r"BRA\s+(?:`?\(?\.?L_x_\d+\)?|0x([0-9a-f]+))")


def _parse(lines: list[str]) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """(address, instruction text) in order, and label → address."""
    instrs, labels, pending = [], {}, []
    for line in lines:
        lab = re.match(r"^\s*\.?(L_x_\d+|\.L_x_\d+):", line)
        if lab:
            pending.append(lab.group(1).lstrip("."))
            continue
        m = _INSTR.search(line)
        if m:
            addr = int(m.group(1), 16)
            for name in pending:
                labels[name] = addr
            pending = []
            instrs.append((addr, m.group(2).strip()))
    return instrs, labels


def inner_loop(instrs: list[tuple[int, str]], labels: dict[str, int]) -> list[str]:
    """Instructions of the smallest backward-branch loop holding an exp (and a matrix product if any loop has one)."""
    index = {addr: i for i, (addr, _) in enumerate(instrs)}
    best, best_mma = None, None
    for j, (addr, text) in enumerate(instrs):
        if "BRA" not in text:
            continue
        lab = re.search(r"`?\(?(\.?L_x_\d+)\)?", text)
        target = labels.get(lab.group(1).lstrip(".")) if lab else None
        if target is None or target > addr or target not in index:
            continue
        body = [t for _, t in instrs[index[target]: j + 1]]
        if any("MUFU.EX2" in t for t in body):
            if best is None or len(body) < len(best):
                best = body
            if any(MMA.search(t) for t in body) and (best_mma is None or len(body) < len(best_mma)):
                best_mma = body
    return best_mma or best or []


def measure(name: str, kernel, fp32_ptrs: set[str], dt: str, d: int, dv: int, config) -> dict:
    blocks = dict(config.kwargs)
    consts = dict(blocks, BLOCK_D=triton_impl._head_block(d), BLOCK_DV=triton_impl._head_block(dv),
                  Q_SIGN=1, PARTIAL=False, PREC="ieee" if dt == "fp32" else "tf32")
    consts = {k: v for k, v in consts.items() if k in kernel.arg_names}
    signature, constexprs, attrs = _signature(kernel, fp32_ptrs, dt, consts)
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    seconds = time.perf_counter() - start
    lines, usage = _disassemble(compiled.asm["cubin"])
    instrs, labels = _parse(lines)
    loop = inner_loop(instrs, labels)
    body = [t for t in loop if not t.startswith("NOP")]
    scores = blocks["BLOCK_M"] * blocks["BLOCK_N"] / (32 * config.num_warps)
    res = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", usage))
    spill = [t for t in (t for _, t in instrs) if re.match(r"(@!?U?P\d+\s+)?(STL|LDL)\b", t)]
    return {
        "kernel": name, "dtype": dt, "d": d, "dv": dv, "BLOCK_M": blocks["BLOCK_M"], "BLOCK_N": blocks["BLOCK_N"],
        "warps": config.num_warps, "stages": config.num_stages,
        "loop_instr": len(body), "instr_per_score": round(len(body) / scores, 2) if body else None,
        "ex2_per_score": round(sum("MUFU.EX2" in t for t in body) / scores, 3) if body else None,
        "wgmma": sum("HGMMA" in t for t in body), "mma": sum(bool(re.search(r"\bHMMA\b", t)) for t in body),
        "ffma_loop": sum(t.split()[0].startswith("FFMA") for t in body),
        "registers": int(res.get("REG", 0)), "spill_instr": len(spill), "local_bytes": int(res.get("LOCAL", 0)),
        "stack_bytes": int(res.get("STACK", 0)), "shared_bytes": compiled.metadata.shared,
        "compile_s": round(seconds, 1),
    }


def _row(r: dict) -> str:
    ips = "—" if r["instr_per_score"] is None else f"{r['instr_per_score']:.2f}"
    ex2 = "—" if r["ex2_per_score"] is None else f"{r['ex2_per_score']:.3f}"
    tc = f"wgmma×{r['wgmma']}" if r["wgmma"] else (f"mma×{r['mma']}" if r["mma"] else "none")
    return (f"| {r['kernel']} | {r['dtype']} | {r['d']}/{r['dv']} | {r['BLOCK_M']}×{r['BLOCK_N']} | {r['warps']}/"
            f"{r['stages']} | {ips} | {ex2} | {r['loop_instr']} | {r['registers']} | {r['spill_instr']} | "
            f"{r['shared_bytes']} | {tc} |")


HEADER = ("| kernel | dtype | d/dv | BLOCK_M×N | warps/stages | instr/score | ex2/score | loop instr | regs | "
          "spill instr | smem B | tensor cores (loop) |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", nargs="*", help="config names (default: all)")
    parser.add_argument("--dtypes", nargs="*", default=["bf16", "fp16", "fp32"])
    parser.add_argument("--dims", nargs="*", type=int, default=[16, 32, 64, 128], help="head dims d (= dv)")
    parser.add_argument("--dv", type=int, default=None, help="value head dim (default: = d)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sass"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--cuda", action="store_true", help="also report the CUDA C++ kernels (tools/sass_cuda.py)")
    parser.add_argument("--cuda-only", action="store_true", help="only the CUDA C++ kernels")
    parser.add_argument("--picked", action="store_true",
                        help="only the configuration the launch rule picks (N = M = 65536, B = 1) per dtype and d")
    args = parser.parse_args(argv)
    if args.cuda or args.cuda_only:
        from tools import sass_cuda

        cuda_args = [] if args.no_write else ["--json", str(Path(args.out) / "cuda_sm90.json")]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        sass_cuda.main(cuda_args)
        if args.cuda_only:
            return 0
    configs = triton_configs.kernel_configs()
    rows = []
    for name, kernel, fp32_ptrs in kernel_table():
        if args.kernels and name not in args.kernels:
            continue
        for dt in args.dtypes:
            for d in args.dims:
                if dt != "bf16" and d != 32 and len(args.dims) > 1:
                    continue  # float16 compiles as bfloat16 does, float32 is no SR default: one head dim each
                todo = configs[name]
                if args.picked:
                    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dt]
                    bd, bdv = triton_impl._head_block(d), triton_impl._head_block(args.dv or d)
                    todo = [triton_configs.choose(name, 65536, 65536, 1, bd, bdv, dtype, interpret=False)]
                for config in todo:
                    rows.append(measure(name, kernel, set(fp32_ptrs), dt, d, args.dv or d, config))
                    print(_row(rows[-1]), flush=True)
    table = HEADER + "\n" + "\n".join(_row(r) for r in rows)
    print(table)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"triton": triton.__version__, "target": "cuda sm_90 (GPUTarget('cuda', 90, 32))"}
        (out / "sass_sm90.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        (out / "sass_sm90.md").write_text(
            f"# Triton flash non-local kernels: sm_90 SASS per score (triton {triton.__version__})\n\n"
            "Written by `python tools/sass_report.py`; see its docstring for the measures.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
