"""Published PSNR/SSIM (Y channel) the demo and the reproduction recipe are compared with.

From the AMMS paper's Table 2 (docs/models.md §1; the bicubic, SRCNN and AMMS rows at ×2).
"""
from __future__ import annotations

#: ``{method: {dataset: (psnr, ssim)}}`` at ×2.
PUBLISHED_X2: dict[str, dict[str, tuple[float, float]]] = {
    "bicubic": {"Set5": (33.66, 0.9299), "Set14": (30.24, 0.8688), "BSD100": (29.56, 0.8431)},
    "SRCNN": {"Set5": (36.66, 0.9542), "Set14": (32.42, 0.9063), "BSD100": (31.36, 0.8879)},
    "AMMS": {"Set5": (37.92, 0.9623), "Set14": (33.51, 0.9160), "BSD100": (32.23, 0.8997)},
}

#: What each published row stands for, printed beside it.
NOTES = {
    "bicubic": "published bicubic",
    "SRCNN": "SRCNN (2014), published",
    "AMMS": "AMMS paper, full network, days of GPU training",
}


def published_rows(datasets: list[str]) -> list[tuple[str, list[tuple[float, float] | None]]]:
    """Rows for :func:`srops.models.test.format_table`; a dataset a method has no figure for is None."""
    return [(NOTES[m], [PUBLISHED_X2[m].get(d) for d in datasets]) for m in PUBLISHED_X2]
