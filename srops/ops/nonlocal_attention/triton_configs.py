"""Launch configurations of the Triton flash non-local kernels: candidates, choice, forcing.

The configuration of a launch is a pure function of the problem (kernel, bucketed N and M,
padded head dims, dtype), never of a timing run: benchmark-driven autotuning can pick a
different block shape in another process, and block shapes fix the order of the float
reductions, so outputs and gradients would differ bitwise from run to run. The candidate
sets are pruned by the sm_90 SASS read (``tools/sass_report.py``); :func:`choose` picks
among them by rule.

Public API (used by the device check, which runs every candidate in turn):

* :func:`kernel_configs` — kernel name → its candidate ``triton.Config`` list.
* :func:`forced_config` — context manager under which every launch of one kernel uses one
  given configuration instead of the rule.
* :func:`nan_outputs` — context manager under which the kernels' output and scratch buffers
  are allocated filled with NaN (floating) instead of uninitialised, so an element a kernel
  fails to write shows in the result.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

try:
    import triton
except ImportError:  # pragma: no cover - reported by triton_impl.TRITON_ERROR
    triton = None

# (BLOCK_M, BLOCK_N, num_warps, num_stages) per kernel. BLOCK_M runs over queries, BLOCK_N over keys.
# Pruned by tools/sass_report.py (sm_90 SASS per score, spills, shared memory; bench/results/sass/).
_CANDIDATES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "fwd": (
        (128, 128, 8, 2),  # 16-bit, d <= 64
        (64, 64, 4, 2),  # 16-bit, few query blocks
        (128, 64, 8, 2),  # 16-bit, d = 128 (shared memory within sm_80's 163 KB)
        (128, 32, 8, 2),  # float32 (FMA products), d <= 32
        (64, 16, 4, 2),  # float32, d > 32 or few query blocks
    ),
    "bwd": (
        (64, 64, 4, 2),  # 16-bit, d <= 32
        (32, 64, 4, 1),  # 16-bit, d = 64 (64×64/4w/1 is 17.0 per score but spills)
        (32, 32, 4, 1),  # 16-bit, d = 128 (the larger tiles spill)
        (16, 32, 4, 2),  # float32, d <= 32
        (16, 32, 8, 1),  # float32, d = 64
        (16, 16, 4, 1),  # float32, d = 128
        (64, 64, 4, 1),  # 16-bit, d <= 32, unpipelined: fewer instructions (12.4 at d = 32), no load prefetch
    ),
}
# kernel -> dtype class (16-bit, float32) -> head class (<= 32, <= 64, <= 128) -> (large, small) candidate
# index; "small" when the large block would give fewer than _MIN_PROGRAMS programs (the backward
# makes up its programs with key groups and query chunks instead, see bwd_split).
_RULE: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = {
    "fwd": (((0, 1), (0, 1), (2, 1)), ((3, 4), (4, 4), (4, 4))),
    "bwd": (((0, 0), (1, 1), (2, 2)), ((3, 3), (4, 4), (5, 5))),
}
# Under TRITON_INTERPRET=1 (CPU tensors, tests): small blocks keep runs short.
_INTERPRET_CONFIG = (16, 16, 1, 1)
# Fewer programs than this (grid size) and the rule takes the next smaller block on the parallel dim.
_MIN_PROGRAMS = 264

_lock = threading.Lock()
_forced: dict[str, "triton.Config"] = {}
_nan_fill = [0]  # nesting depth of nan_outputs()


def _make(entry: tuple[int, int, int, int]) -> "triton.Config":
    bm, bn, warps, stages = entry
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)


def kernel_configs() -> dict[str, list["triton.Config"]]:
    """Kernel name → candidate configurations (fresh ``triton.Config`` objects, ``BLOCK_M``/``BLOCK_N`` kwargs)."""
    return {name: [_make(e) for e in entries] for name, entries in _CANDIDATES.items()}


def _check_config(name: str, config: "triton.Config") -> None:
    if name not in _CANDIDATES:
        raise ValueError(f"srops.nonlocal_attention: unknown Triton kernel {name!r}; expected one of "
                         f"{sorted(_CANDIDATES)}")
    if triton is None or not isinstance(config, triton.Config):
        raise TypeError(f"srops.nonlocal_attention: forced_config expects a triton.Config, got {type(config).__name__}")
    blocks = config.kwargs
    if set(blocks) != {"BLOCK_M", "BLOCK_N"}:
        raise ValueError(f"srops.nonlocal_attention: a {name} config sets exactly BLOCK_M and BLOCK_N, "
                         f"got {sorted(blocks)}")
    for key, value in blocks.items():
        if not isinstance(value, int) or value < 16 or value & (value - 1):
            raise ValueError(f"srops.nonlocal_attention: {key} must be a power of two >= 16, got {value!r}")


@contextlib.contextmanager
def forced_config(name: str, config: "triton.Config") -> Iterator[None]:
    """Every launch of kernel ``name`` inside the block uses ``config`` (blocks, warps, stages).

    Nesting restores the outer forcing on exit. Raises ValueError for an unknown kernel name
    or block sizes that are not powers of two of at least 16.
    """
    _check_config(name, config)
    with _lock:
        previous = _forced.get(name)
        _forced[name] = config
    try:
        yield
    finally:
        with _lock:
            if previous is None:
                _forced.pop(name, None)
            else:
                _forced[name] = previous


@contextlib.contextmanager
def nan_outputs() -> Iterator[None]:
    """Inside the block, output and scratch buffers of the kernels start as NaN (a test aid; costs a fill)."""
    with _lock:
        _nan_fill[0] += 1
    try:
        yield
    finally:
        with _lock:
            _nan_fill[0] -= 1


def empty(*shape: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty``, or NaN-filled inside :func:`nan_outputs`."""
    if _nan_fill[0]:
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    return torch.empty(*shape, device=device, dtype=dtype)


# The backward's float32 scratch (dQ partials per key group, dK/dV partials per query chunk) may take
# this much before the split trades key groups for query chunks.
SCRATCH_BUDGET = 256 << 20


def bwd_split(n_kb: int, n_qb: int, batch: int, n_pad: int, m_pad: int, block_d: int, block_dv: int
              ) -> tuple[int, int, int, int]:
    """``(G, S, key blocks per group, query blocks per chunk)`` of the backward for a problem size.

    At least ``_MIN_PROGRAMS`` programs (G·S·B) where the blocks allow: key groups first (S = 1, dK/dV
    written directly), query chunks where the key blocks are too few; while the dQ scratch
    ``G·B·n_pad·block_d`` float32 exceeds :data:`SCRATCH_BUDGET`, ~√ of the programs each way. A pure
    function of the sizes: the same split, hence the same summation order, in every process.
    """
    want = -(-_MIN_PROGRAMS // batch)

    def split(count: int, parts: int) -> tuple[int, int]:  # (parts, blocks per part), parts >= the wish
        per = max(1, count // max(1, parts))
        return -(-count // per), per

    groups, kpg = split(n_kb, min(n_kb, want))
    chunks, qpc = split(n_qb, min(n_qb, want // groups))  # few key blocks: query chunks make up the rest
    if groups * batch * n_pad * block_d * 4 > SCRATCH_BUDGET and n_qb > 1:
        chunks, qpc = split(n_qb, min(n_qb, max(2, int(want ** 0.5 + 0.5))))
        groups, kpg = split(n_kb, min(n_kb, -(-want // chunks)))
    return groups, chunks, kpg, qpc


def size_bucket(size: int) -> int:
    """Power-of-two bucket of a sequence length (the key of the configuration rule)."""
    return 1 if size <= 1 else 1 << (int(size) - 1).bit_length()


def choose(name: str, n: int, m: int, batch: int, block_d: int, block_dv: int, dtype: torch.dtype,
           interpret: bool) -> "triton.Config":
    """The configuration of one launch: the forced one, else the rule on bucketed sizes.

    ``n``/``m`` are the query/key counts, ``block_d``/``block_dv`` the padded head dims.
    """
    forced = _forced.get(name)
    if forced is not None:
        return forced
    if interpret:
        return _make(_INTERPRET_CONFIG)
    entries = _CANDIDATES[name]
    head = max(block_d, block_dv)
    large, small = _RULE[name][dtype == torch.float32][0 if head <= 32 else (1 if head <= 64 else 2)]
    rows, key = (m, "BLOCK_N") if name == "bwd" else (n, "BLOCK_M")
    block = entries[large][{"BLOCK_M": 0, "BLOCK_N": 1}[key]]
    return _make(entries[large] if triton.cdiv(size_bucket(rows), block) * batch >= _MIN_PROGRAMS else entries[small])
