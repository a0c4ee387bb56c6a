"""SASS report of srops's CUDA C++ kernels for sm_90: instructions per element in their inner loops.

    python tools/sass_cuda.py                         # compile csrc/**/*.cu for sm_90 here (nvcc), report
    python tools/sass_cuda.py --so srops/_C*.so       # read the SASS of a built extension instead
    python tools/sass_cuda.py --csrc /tmp/old/csrc    # another source tree (a baseline), same flags
    python tools/sass_cuda.py --json out.json --markdown out.md
    python tools/sass_cuda.py --so srops/_C*.so --compare base.json   # before/after table first

Per kernel (every template instantiation, demangled): registers, the innermost loops (a backward branch and
its target, holding no other loop) with their instruction count, global/shared/generic loads and stores,
calls (64-bit integer division and modulo are calls to a subroutine on sm_90), and instructions per
element = loop instructions / elements per iteration, the elements counted by the kernel's principal
memory operation (``PRINCIPAL``: e.g. one STG per output element; a 16-byte STG.E.128 of float32 counts 4).
A kernel with optional inputs has one loop per combination the compiler specialised (and unrolled copies):
the range over them is given. No GPU is needed: nvcc and the cuobjdump that Triton's wheel carries suffice.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# kernel name fragment -> (opcode prefix counted, how many of them one element needs[, how many 16-byte
# ones one element needs in a loop of packs, where only those count])
PRINCIPAL = {
    "apply_kernel": ("STG", 1),
    "apply_backward_dx_kernel": ("LDG", 2, 2),  # g and x per element (dx/ds stores depend on the call)
    "input_backward_kernel": ("STG", 1),
    # x and the channel gate per channel; in a loop of 16-byte packs only x's packs count (the gate is
    # one load per channel for the pack's positions): the third number is the packed loads per element
    "spatial_pool_kernel": ("LDG", 2, 1),
    "spatial_pool_backward_dx_kernel": ("STG", 1),
    "channel_pool_backward_kernel": ("STG", 1),
    "channel_pool_kernel": ("LDG", 1),
    "spatial_pool_backward_dc_kernel": ("LDG", 4),  # both pooled gradients, argmax and x
    "apply_backward_dc_kernel": ("LDG", 3),
    "row_mean_kernel": ("LDG", 1),
    "centre_kernel": ("STG", 1),  # one centred element per store (the Gram and dx GEMMs are cuBLAS's)
    "forward_kernel": ("FFMA", 1),  # Newton–Schulz matrix products: one FMA per multiply-add
    "backward_kernel": ("FFMA", 1),
}
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
LABEL = re.compile(r"^\s*(\.L_x_\d+):")
FUNC = re.compile(r"Function : (\S+)")
BRANCH = re.compile(r"\bBRA\b.*?(?:`\((\.L_x_\d+)\)|0x([0-9a-f]+))")


def cuobjdump() -> str:
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("triton")
    if spec and spec.origin:
        cand = Path(spec.origin).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if cand.exists():
            return str(cand)
    raise SystemExit("sass_cuda: cuobjdump not found (install triton, or put the CUDA toolkit on PATH)")


def demangle(names: list[str]) -> dict[str, str]:
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def nvcc_flags() -> list[str]:
    from torch.utils import cpp_extension

    try:
        incs = cpp_extension.include_paths("cuda")
    except TypeError:  # older torch: include_paths(cuda=True)
        incs = cpp_extension.include_paths(cuda=True)
    incs = list(incs) + [sysconfig.get_paths()["include"]]
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        incs += sorted(glob.glob(os.path.join(base, "cu*", "include")))
    return ["-arch=sm_90", "-cubin", "-O3", "-std=c++20", "--expt-relaxed-constexpr", "-DSROPS_WITH_CUDA=1",
            "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
            "-D__CUDA_NO_HALF2_OPERATORS__", "-DTORCH_EXTENSION_NAME=_C", "-DTORCH_API_INCLUDE_EXTENSION_H"] + \
        [f"-I{p}" for p in incs]


def compile_cubins(csrc: Path, workdir: Path, only: list[str] | None = None) -> list[Path]:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    flags = nvcc_flags() + [f"-I{csrc}"]
    cubins = []
    for src in sorted(csrc.rglob("*.cu")):
        if src.name == "cuda_info.cu" or (only and src.name not in only):
            continue
        out = workdir / (src.stem + ".cubin")
        res = subprocess.run([nvcc, *flags, str(src), "-o", str(out)], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"sass_cuda: nvcc failed on {src}:\n{res.stderr[-3000:]}")
        cubins.append(out)
    return cubins


def sass_functions(binary: Path) -> dict[str, list[tuple[int, str]]]:
    """Mangled function name -> [(address, instruction text)], labels resolved to addresses."""
    text = subprocess.run([cuobjdump(), "-sass", str(binary)], capture_output=True, text=True).stdout
    funcs: dict[str, list[tuple[int, str]]] = {}
    current, pending = None, []
    labels: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        m = FUNC.search(line)
        if m:
            current = m.group(1)
            funcs[current], labels[current], pending = [], {}, []
            continue
        if current is None:
            continue
        lab = LABEL.match(line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = LINE.search(line)
        if m:
            addr = int(m.group(1), 16)
            for name in pending:
                labels[current][name] = addr
            pending = []
            funcs[current].append((addr, m.group(2)))
    for name, body in funcs.items():
        funcs[name] = [(a, _resolve(t, labels[name])) for a, t in body]
    return funcs


def _resolve(text: str, labels: dict[str, int]) -> str:
    return re.sub(r"`\((\.L_x_\d+)\)", lambda m: hex(labels.get(m.group(1), -1)), text)


def opcode(text: str) -> str:
    parts = text.split()
    if parts and parts[0].startswith("@"):
        parts = parts[1:]
    return parts[0] if parts else ""


def innermost_loops(body: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """(first, last) instruction indices of loops that hold no other loop."""
    index = {a: i for i, (a, _) in enumerate(body)}
    loops = []
    for i, (addr, text) in enumerate(body):
        if opcode(text) != "BRA":
            continue
        m = re.search(r"\b0x([0-9a-f]+)\b", text)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target <= addr and target in index:
            loops.append((index[target], i))
    return [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)]


ELEM_SIZE = {"c10::BFloat16": 2, "c10::Half": 2, "float": 4, "double": 8}
WIDTH = {"128": 16, "64": 8, "U16": 2, "S16": 2, "U8": 1, "S8": 1}  # bytes of a load/store by its suffix (else 4)


# kernels whose principal memory operation moves the accumulation type (the second template argument)
ACC_PRINCIPAL = ("centre_kernel",)


def elem_size(kernel: str) -> int:
    """Bytes of the element type the kernel's principal operation moves: its first template argument (the
    second for ACC_PRINCIPAL kernels), 4 when it has none."""
    args = re.findall(r"[<,]\s*([\w:]+)", kernel)
    pick = 1 if any(k in kernel for k in ACC_PRINCIPAL) and len(args) > 1 else 0
    return ELEM_SIZE.get(args[pick], 4) if args else 4


def elements_of(op: str, size: int) -> int:
    """Elements one memory instruction moves: LDG.E.128 of float32 is 4, of bfloat16 8; STG.E.U16 is 1."""
    width = next((WIDTH[p] for p in op.split(".")[1:] if p in WIDTH), 4)
    return max(1, width // size)


def loop_stats(body: list[tuple[int, str]], loop: tuple[int, int], principal: tuple[str, int],
               size: int = 4) -> dict:
    ops = [opcode(t) for _, t in body[loop[0]:loop[1] + 1]]
    count = lambda prefix: sum(o.split(".")[0] == prefix for o in ops)  # noqa: E731
    kinds = {"FFMA": ("FFMA", "DFMA")}.get(principal[0], (principal[0],))  # float64 kernels use DFMA
    memory = principal[0] in ("LDG", "STG")  # a vector access counts the elements it moves
    mine = [o for o in ops if o.split(".")[0] in kinds]
    per = principal[1]
    if memory and len(principal) > 2 and any(".128" in o for o in mine):
        mine, per = [o for o in mine if ".128" in o], principal[2]
    n_principal = sum(elements_of(o, size) if memory else 1 for o in mine)
    elems = n_principal / per if n_principal else 0
    return {
        "instructions": len(ops), "LDG": count("LDG"), "LDS": count("LDS"), "LD": count("LD"),
        "STG": count("STG"), "STS": count("STS"), "ST": count("ST"), "CALL": count("CALL"),
        "elements": elems, "per_element": round(len(ops) / elems, 2) if elems else None,
    }


def report(binaries: list[Path]) -> list[dict]:
    rows = []
    for binary in binaries:
        funcs = sass_functions(binary)
        names = demangle(list(funcs))
        for mangled, body in funcs.items():
            pretty = names[mangled]
            if "srops" not in pretty:
                continue
            short = re.sub(r"\(.*", "", pretty.replace("(anonymous namespace)::", "")).replace("srops::", "")
            short = re.sub(r"^void ", "", short)
            key = next((k for k in sorted(PRINCIPAL, key=len, reverse=True) if k in short.split("<")[0]), None)
            principal = PRINCIPAL.get(key, ("STG", 1))
            loops = [loop_stats(body, lp, principal, elem_size(short)) for lp in innermost_loops(body)]
            best = max(loops, key=lambda s: (s["elements"] > 0, s["instructions"]), default=None)
            per = [lp["per_element"] for lp in loops if lp["per_element"] is not None]
            rows.append({"kernel": short, "instructions": len(body), "loops": loops, "inner": best,
                         "per_element_range": [min(per), max(per)] if per else None,
                         "generic_ld_st": sum(opcode(t).split(".")[0] in ("LD", "ST") for _, t in body)})
    return sorted(rows, key=lambda r: r["kernel"])


def markdown(rows: list[dict]) -> str:
    lines = ["| kernel | SASS instr | generic LD/ST (kernel) | inner loop instr | per element | LDG | LDS | "
             "LD (generic) | STG | CALL |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        s = r["inner"] or {}
        lines.append(f"| `{r['kernel']}` | {r['instructions']} | {r['generic_ld_st']} | {s.get('instructions', '-')} | "
                     f"{s.get('per_element') if s.get('per_element') is not None else '-'} | {s.get('LDG', '-')} | "
                     f"{s.get('LDS', '-')} | {s.get('LD', '-')} | {s.get('STG', '-')} | {s.get('CALL', '-')} |")
    return "\n".join(lines) + "\n"


def base_name(kernel: str) -> str:
    """Kernel name without namespaces, the accumulation type and the shared/scratch or aligned flags: the
    key that matches a kernel across source versions (forward_kernel<float, true> -> forward_kernel<float>,
    apply_kernel<c10::Half, float, true> -> apply_kernel<c10::Half>)."""
    name = re.sub(r"^\w+_kernels::", "", kernel)
    return re.sub(r", (?:float|double|true|false)(?=[,>])", "", name)


def comparison(before: list[dict], after: list[dict]) -> str:
    """Markdown table of instructions per element (and generic loads/stores) before -> after."""
    old = {}
    for r in before:
        old.setdefault(base_name(r["kernel"]), r)
    lines = ["| kernel | per element before (inner loops, min–max) | after | generic LD/ST before | after | "
             "SASS instr before | after |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in after:
        b = old.get(base_name(r["kernel"]))
        if b is None:
            continue
        pe = lambda x: "{:g}–{:g}".format(*x["per_element_range"]) if x.get("per_element_range") else "-"  # noqa
        lines.append(f"| `{r['kernel']}` | {pe(b)} | {pe(r)} | {b['generic_ld_st']} | {r['generic_ld_st']} | "
                     f"{b['instructions']} | {r['instructions']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--so", nargs="*", default=None, help="built extension(s) to read instead of compiling")
    parser.add_argument("--csrc", default=str(ROOT / "csrc"), help="source tree to compile (default csrc/)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--filter", default="", help="only kernels whose name contains this")
    parser.add_argument("--only", action="append", default=None, help="compile only this .cu file name")
    parser.add_argument("--keep", default=None, help="keep the compiled cubins in this folder")
    parser.add_argument("--compare", default=None, help="JSON of an earlier run: print a before/after table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        binaries = [Path(p) for p in args.so] if args.so else compile_cubins(Path(args.csrc), work, args.only)
        rows = [r for r in report(binaries) if args.filter in r["kernel"]]
    text = markdown(rows)
    if args.compare:
        text = comparison(json.loads(Path(args.compare).read_text()), rows) + "\n" + text
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
