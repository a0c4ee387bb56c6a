"""CBAM reference against the official definition written out independently."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import srops.functional as F
from srops import CBAM, ChannelAttention, SpatialAttention
from srops.testing import assert_close


class OfficialCBAM(nn.Module):
    """The official CBAM as published (avg/max pool → shared MLP → sum → σ; [max, mean] → conv → BN → σ)."""

    def __init__(self, c: int, r: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, max(1, c // r)), nn.Linear(max(1, c // r), c)
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        avg = TF.avg_pool2d(x, (h, w)).flatten(1)
        mx = TF.max_pool2d(x, (h, w)).flatten(1)
        att = self.fc2(torch.relu(self.fc1(avg))) + self.fc2(torch.relu(self.fc1(mx)))
        x = x * torch.sigmoid(att)[:, :, None, None]
        pooled = torch.cat([torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


def load_official(ours: CBAM, official: OfficialCBAM) -> None:
    with torch.no_grad():
        official.fc1.weight.copy_(ours.channel.mlp[0].weight)
        official.fc1.bias.copy_(ours.channel.mlp[0].bias)
        official.fc2.weight.copy_(ours.channel.mlp[2].weight)
        official.fc2.bias.copy_(ours.channel.mlp[2].bias)
        official.conv.weight.copy_(ours.spatial.conv.weight)


@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (3, 64, 9, 11), (2, 3, 1, 1)])
@pytest.mark.parametrize("train", [True, False])
def test_cbam_matches_official_definition(shape, train):
    ours = CBAM(shape[1], backend="reference").double()
    official = OfficialCBAM(shape[1]).double()
    load_official(ours, official)
    with torch.no_grad():  # non-trivial BN state
        for bn in (ours.spatial.bn, official.bn):
            bn.weight.fill_(1.3), bn.bias.fill_(-0.2), bn.running_mean.fill_(0.1), bn.running_var.fill_(2.0)
    ours.train(train), official.train(train)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y_ours = ours(x)
    g_ours = torch.autograd.grad(y_ours.sum(), [x, *ours.parameters()])
    y_off = official(x)
    g_off = torch.autograd.grad(y_off.sum(), [x, official.fc1.weight, official.fc1.bias, official.fc2.weight,
                                              official.fc2.bias, official.conv.weight, official.bn.weight,
                                              official.bn.bias])
    assert_close(y_ours, y_off)
    for a, e in zip(g_ours, g_off):
        assert_close(a, e)
    assert_close(ours.spatial.bn.running_mean, official.bn.running_mean)


def test_rcan_channel_attention_is_avg_only():
    ca = ChannelAttention(16, reduction=4, pool=("avg",)).double()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    w = torch.sigmoid(ca.mlp(x.mean((2, 3))))
    assert_close(ca(x), x * w[:, :, None, None])


def test_spatial_attention_without_bn_with_bias():
    sa = SpatialAttention(7, bn=False, bias=True).double()
    x = torch.randn(2, 5, 8, 9, dtype=torch.float64)
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    assert_close(sa(x), x * torch.sigmoid(sa.conv(pooled)))
    assert sum(p.numel() for p in sa.parameters()) == 99


def test_max_ties_send_gradient_to_first_index():
    x = torch.zeros(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    ca = ChannelAttention(2, reduction=1, pool=("max",)).double()
    gate_sum = F.channel_gate(x, ca.mlp, ("max",)).sum()
    (gx,) = torch.autograd.grad(gate_sum, x)
    flat = gx.flatten(2)
    assert torch.all(flat[..., 1:] == 0) and torch.all(flat[..., 0] != 0)


def test_parameter_counts():
    assert sum(p.numel() for p in CBAM(64).parameters()) == 680
    assert sum(p.numel() for p in CBAM(64, mlp_bn=True).parameters()) == 688
    assert sum(p.numel() for p in CBAM(32, mlp_bn=True).parameters()) == 266
    assert sum(p.numel() for p in ChannelAttention(64).parameters()) == 580


@pytest.mark.parametrize("fn", ["channel_attention", "spatial_attention", "cbam"])
def test_gradcheck(fn):
    c = 6
    mlp = nn.Sequential(nn.Linear(c, 2), nn.ReLU(), nn.Linear(2, c)).double()
    conv = nn.Conv2d(2, 1, 3, padding=1).double()
    x = torch.randn(2, c, 4, 5, dtype=torch.float64, requires_grad=True)
    call = {
        "channel_attention": lambda t: F.channel_attention(t, mlp),
        "spatial_attention": lambda t: F.spatial_attention(t, conv),
        "cbam": lambda t: F.cbam(t, mlp, conv),
    }[fn]
    assert torch.autograd.gradcheck(call, (x,))


def test_bad_input():
    mlp, conv = nn.Identity(), nn.Identity()
    with pytest.raises(ValueError, match=r"srops\.cbam: 'x' must be a 4-D tensor"):
        F.cbam(torch.randn(2, 3, 4), mlp, conv)
    with pytest.raises(ValueError, match=r"srops\.channel_attention: 'pool' must be a non-empty subset"):
        F.channel_attention(torch.randn(1, 2, 3, 3), mlp, pool=("lse",))
    with pytest.raises(TypeError, match=r"srops\.spatial_attention: 'conv' must be a callable"):
        F.spatial_attention(torch.randn(1, 2, 3, 3), 3)
    with pytest.raises(ValueError, match=r"srops\.CBAM: input must be \[B, 8, H, W\]"):
        CBAM(8)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="'kernel_size' must be an odd int"):
        SpatialAttention(4)
