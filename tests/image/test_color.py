"""BT.601 conversions against hand-computed MATLAB rgb2ycbcr values (double input, [0, 1] scale)."""
from __future__ import annotations

import pytest
import torch

from srops.image import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from srops.testing import assert_close


def _px(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float64).reshape(1, 3, 1, 1)


@pytest.mark.parametrize(
    "rgb,y255",
    [
        ((0.0, 0.0, 0.0), 16.0),
        ((1.0, 1.0, 1.0), 235.0),
        ((1.0, 0.0, 0.0), 81.481),
        ((0.0, 1.0, 0.0), 144.553),
        ((0.0, 0.0, 1.0), 40.966),
        ((0.5, 0.25, 0.75), 16 + 32.7405 + 32.13825 + 18.7245),
    ],
)
def test_rgb_to_y_hand_values(rgb, y255: float) -> None:
    y = rgb_to_y(_px(*rgb))
    assert y.shape == (1, 1, 1, 1)
    assert float(y) == pytest.approx(y255 / 255, abs=1e-12)


@pytest.mark.parametrize(
    "rgb,ycc255",
    [
        ((0.0, 0.0, 0.0), (16, 128, 128)),
        ((1.0, 1.0, 1.0), (235, 128, 128)),
        ((0.0, 0.0, 1.0), (40.966, 240, 128 - 18.214)),
        ((1.0, 0.0, 0.0), (81.481, 128 - 37.797, 240)),
    ],
)
def test_rgb_to_ycbcr_hand_values(rgb, ycc255) -> None:
    out = rgb_to_ycbcr(_px(*rgb)).flatten()
    assert_close(out * 255, torch.tensor(ycc255, dtype=torch.float64), atol=1e-10, rtol=0)


def test_y_matches_first_ycbcr_channel_and_layouts() -> None:
    x = torch.rand(4, 3, 5, 7, dtype=torch.float64)
    assert_close(rgb_to_y(x), rgb_to_ycbcr(x)[:, :1])
    assert_close(rgb_to_y(x[1]), rgb_to_y(x)[1])
    assert rgb_to_y(x.float()).dtype == torch.float32


def test_round_trip() -> None:
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x)
    ycc = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    assert_close(rgb_to_ycbcr(ycbcr_to_rgb(ycc)), ycc)


def test_grey_maps_to_neutral_chroma_and_back() -> None:
    grey = torch.full((1, 3, 2, 2), 0.4, dtype=torch.float64)
    ycc = rgb_to_ycbcr(grey)
    assert_close(ycc[:, 1:], torch.full((1, 2, 2, 2), 128 / 255, dtype=torch.float64))
    assert_close(ycbcr_to_rgb(ycc), grey)


def test_differentiable() -> None:
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    rgb_to_y(x).sum().backward()
    expected = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255
    assert_close(x.grad[0, :, 0, 0], expected)


@pytest.mark.parametrize("fn", [rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb])
def test_errors(fn) -> None:
    with pytest.raises(ValueError, match="3 channels"):
        fn(torch.rand(1, 4, 2, 2))
    with pytest.raises(ValueError, match="3-D or 4-D"):
        fn(torch.rand(3, 2))
    with pytest.raises(TypeError, match="floating"):
        fn(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([0.0, 0.0, 0.0])
