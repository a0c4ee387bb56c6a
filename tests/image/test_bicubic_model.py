"""The registered ``bicubic`` network."""
from __future__ import annotations

import pytest
import torch

import srops.models
from srops.image import imresize


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_build_and_forward(scale: int) -> None:
    net = srops.models.build("bicubic", scale=scale)
    assert "bicubic" in srops.models.list_models()
    assert sum(p.numel() for p in net.parameters()) == 0
    x = torch.rand(2, 3, 7, 9)
    y = net(x)
    assert y.shape == (2, 3, 7 * scale, 9 * scale) and y.dtype == x.dtype
    assert torch.equal(y, imresize(x, scale))
    assert f"scale={scale}" in repr(net)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scale"):
        srops.models.build("bicubic", scale=0)
    with pytest.raises(TypeError, match="scale"):
        srops.models.build("bicubic", scale=2.5)
    with pytest.raises(ValueError, match="4-D"):
        srops.models.build("bicubic", scale=2)(torch.rand(3, 7, 9))
