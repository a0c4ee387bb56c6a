"""Fixtures for the training/evaluation tests: small synthetic image folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tests.train.tinynet  # noqa: F401  (registers tiny_sr)


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random smooth-ish RGB uint8 image [H, W, 3] (low-frequency noise plus a gradient)."""
    base = rng.random((h // 4 + 2, w // 4 + 2, 3))
    up = np.kron(base, np.ones((4, 4, 1)))[:h, :w]
    grad = np.linspace(0, 1, w)[None, :, None]
    img = 0.6 * up + 0.3 * grad + 0.1 * rng.random((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_folder(folder: Path, sizes: list[tuple[int, int]], seed: int = 0, fmt: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(smooth_image(rng, h, w)).save(folder / f"img{i}.{fmt}")
    return folder


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory) -> Path:
    """Four HR images, odd sizes (not multiples of 2, 3 or 4)."""
    return write_folder(tmp_path_factory.mktemp("train"), [(70, 83), (65, 65), (97, 71), (66, 90)], seed=1)


@pytest.fixture(scope="session")
def tiny_val(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("val"), [(50, 61), (48, 44)], seed=2)
