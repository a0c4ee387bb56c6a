"""SecondOrderAttention (SAN's SOCA) against its formula; the max_size crop."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import SecondOrderAttention
from srops.testing import assert_close


def soca_formula(m: SecondOrderAttention, x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    X = x.reshape(b, c, -1)
    M = X.shape[2]
    ihat = (torch.eye(M, dtype=x.dtype) - torch.full((M, M), 1.0 / M, dtype=x.dtype)) / M  # the original Î
    cov = X @ ihat @ X.transpose(1, 2)
    s = F.sqrtm_ns(cov, m.iterations, backend="reference").mean(dim=1)
    w = torch.sigmoid(m.conv_up(torch.relu(m.conv_down(s[:, :, None, None]))))
    return x * w


def test_matches_formula_with_centring_matrix():
    m = SecondOrderAttention(16, reduction=4).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    assert_close(m(x), soca_formula(m, x))


def test_parameter_count_and_hidden_width():
    assert sum(p.numel() for p in SecondOrderAttention(64).parameters()) == 580
    assert SecondOrderAttention(8).conv_down.out_channels == 1


@pytest.mark.parametrize("hw, crop", [((12, 9), 10), ((10, 10), 10), ((7, 6), 10)])
def test_max_size_crops_statistic_but_gates_whole_map(hw, crop):
    m = SecondOrderAttention(8, reduction=2, max_size=crop).double()
    x = torch.randn(1, 8, *hw, dtype=torch.float64)
    h, w = hw
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    sub = x[..., top : top + min(h, crop), left : left + min(w, crop)]
    full = SecondOrderAttention(8, reduction=2).double()
    full.load_state_dict(m.state_dict())
    expected = x * (full(sub) / sub)[:, :, :1, :1]
    assert_close(m(x), expected)


def test_gradcheck_module():
    m = SecondOrderAttention(6, reduction=2).double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_errors():
    with pytest.raises(ValueError, match=r"srops\.SecondOrderAttention: input must be \[B, 8, H, W\]"):
        SecondOrderAttention(8)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="'channels' must be an int >= 1"):
        SecondOrderAttention(0)
