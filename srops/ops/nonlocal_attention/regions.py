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


def unfold(tiles: torch.Tensor, batch: int, rows: Span, cols: Span, fresh: bool = False) -> torch.Tensor:
    """Inverse of :func:`fold`: ``[B·nr·nc, C, h, w]`` → ``[B, C, nr·h, nc·w]``.

    The result is a view of one copy of the tiles. ``fresh=True`` makes it instead the output of
    its last operation (a ``cat`` of the rows of tiles, of the columns when there is one row, or
    a copy of a single tile), at the price of a second copy when there are both rows and columns
    of tiles. NonLocal2d asks for it under ``torch.compile`` when the result is the whole map,
    about to be a convolution's input, which is saved for backward: on CPU Inductor then prefers
    channels-last strides for it, and for a view it sorts those strides (``4·(H//2)·(W//2)``
    against ``4`` with dynamic shapes) without the shape environment, as bare sympy expressions
    whose order sympy cannot decide (pytorch/pytorch#185510). A ``cat`` or a copy is a buffer,
    whose strides Inductor sets without sorting.
    """
    _, c, h, w = tiles.shape
    nr, nc = rows[2], cols[2]
    if not fresh:
        part = tiles.reshape(batch, nr, nc, c, h, w).permute(0, 3, 1, 4, 2, 5)
        return part.reshape(batch, c, nr * h, nc * w)
    if nr > 1:
        bands = tiles.reshape(batch, nr, nc, c, h, w).permute(0, 1, 3, 4, 2, 5).reshape(batch, nr, c, h, nc * w)
        return torch.cat(bands.unbind(1), dim=2)
    if nc > 1:
        return torch.cat(tiles.reshape(batch, nc, c, h, w).unbind(1), dim=3)
    return tiles.clone(memory_format=torch.contiguous_format)
