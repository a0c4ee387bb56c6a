"""Fold a region tiling of a feature map into the batch dimension, and back.

SAN's region-level non-local splits the map into ``rh × rw`` tiles: every tile
but the last in each direction has ``H // rh`` rows (``W // rw`` columns), the
last takes the remainder. Tiles of equal shape are gathered into one batch by
reshapes (no loop over tiles or over the batch); when the sides do not divide,
there are at most four shape classes (interior, last row, last column, corner).
"""
from __future__ import annotations

import torch

Span = tuple[int, int, int, int]  # (start, stop, tile count, tile size)


def spans(size: int, parts: int) -> list[Span]:
    """Row (or column) groups of equal-size tiles: ``(start, stop, count, tile)``."""
    tile = size // parts
    if tile == 0:
        raise ValueError(f"cannot split a side of {size} into {parts} regions")
    last = size - tile * (parts - 1)
    if last == tile:
        return [(0, size, parts, tile)]
    groups = [(0, tile * (parts - 1), parts - 1, tile)] if parts > 1 else []
    return groups + [(tile * (parts - 1), size, 1, last)]


def fold(x: torch.Tensor, rows: Span, cols: Span) -> torch.Tensor:
    """``x[:, :, rows, cols]`` cut into its tiles: ``[B·nr·nc, C, h, w]``."""
    b, c = x.shape[:2]
    r0, r1, nr, h = rows
    c0, c1, nc, w = cols
    part = x[:, :, r0:r1, c0:c1].reshape(b, c, nr, h, nc, w)
    return part.permute(0, 2, 4, 1, 3, 5).reshape(b * nr * nc, c, h, w)


def unfold(tiles: torch.Tensor, batch: int, rows: Span, cols: Span) -> torch.Tensor:
    """Inverse of :func:`fold`: ``[B·nr·nc, C, h, w]`` → ``[B, C, nr·h, nc·w]``."""
    _, c, h, w = tiles.shape
    nr, nc = rows[2], cols[2]
    part = tiles.reshape(batch, nr, nc, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return part.reshape(batch, c, nr * h, nc * w)
