"""What the modules run under ``torch.export`` (and so ``torch.onnx.export(..., dynamo=True)``).

The compiled backends are ``srops::`` custom ops, which an exported program cannot carry to
ONNX or to another runtime; under export every module runs the ``reference`` backend, plain
torch ops that decompose to standard ONNX operators. Eager and ``torch.compile`` are unchanged.
"""
from __future__ import annotations

import torch


def exporting() -> bool:
    """Whether the current forward is being traced by ``torch.export``."""
    return bool(torch.compiler.is_exporting())


def backend_for(backend: str | None) -> str | None:
    """``"reference"`` under ``torch.export``, else ``backend`` unchanged."""
    return "reference" if exporting() else backend


def export_spans(size, parts: int) -> list[tuple]:
    """Region groups of one side, as ``regions.spans`` makes them, without testing whether the tiles divide.

    ``(start, stop, count, tile)`` with the first ``parts - 1`` tiles of ``size // parts`` and a
    last one of the remainder, as two groups even when they are equal: with a symbolic size
    (dynamic export) a test of divisibility would fix the exported program to the example's case.
    """
    if parts == 1:
        return [(0, size, 1, size)]
    tile = size // parts
    return [(0, tile * (parts - 1), parts - 1, tile), (tile * (parts - 1), size, 1, size - tile * (parts - 1))]
