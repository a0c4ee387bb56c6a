"""Official CBAM, timm CBAM and RCAN channel-attention state_dicts load into srops and match.

The peer modules are re-implemented here with the peers' key names and plain torch layers:
official CBAM (``ChannelGate.mlp`` = Flatten, Linear, ReLU, Linear; ``SpatialGate.spatial`` =
conv without bias + BN with momentum 0.01 on [max, mean]); timm's ``CbamModule`` (bias-free 1×1
conv MLP ``fc1``/``fc2``, ``spatial.conv.conv``/``spatial.conv.bn`` with momentum 0.1 on
[mean, max]); RCAN's ``CALayer`` (``conv_du``). Weights and BN statistics are random.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from srops import CBAM, ChannelAttention, SpatialAttention
from srops.testing import assert_close_to_oracle, ulp_floor


def randomise(module: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.is_floating_point():
                t.copy_(0.5 * torch.randn(t.shape, generator=gen))
    return module


class OfficialChannelGate(nn.Module):
    def __init__(self, c: int, r: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(logits)[:, :, None, None]


class OfficialBasicConv(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class OfficialSpatialGate(nn.Module):
    def __init__(self, k: int = 7) -> None:
        super().__init__()
        self.spatial = OfficialBasicConv(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # [max, mean]
        return x * torch.sigmoid(self.spatial(pooled))


class OfficialCBAM(nn.Module):
    def __init__(self, c: int, r: int = 16) -> None:
        super().__init__()
        self.ChannelGate = OfficialChannelGate(c, r)
        self.SpatialGate = OfficialSpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class TimmChannelAttn(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        hidden = max(1, int(c / 16 + 0.5))  # timm rounds C / 16 to the nearest integer
        self.fc1 = nn.Conv2d(c, hidden, 1, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mlp = lambda t: self.fc2(self.act(self.fc1(t)))  # noqa: E731
        return x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))


class TimmConvNorm(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)  # momentum 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class TimmSpatialAttn(nn.Module):
    def __init__(self, k: int = 7) -> None:
        super().__init__()
        self.conv = TimmConvNorm(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # [mean, max]
        return x * torch.sigmoid(self.conv(pooled))


class TimmCbam(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.channel = TimmChannelAttn(c)
        self.spatial = TimmSpatialAttn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class RcanCALayer(nn.Module):
    def __init__(self, c: int, r: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(c, c // r, 1), nn.ReLU(), nn.Conv2d(c // r, c, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


def check_same(ours: nn.Module, ref: nn.Module, c: int, hw: tuple[int, int] = (9, 11), batch: int = 4) -> None:
    """Eval outputs agree; one training step gives the same output and BN running statistics.

    Both float32 modules are compared with the peer run in float64 on the same input (the oracle):
    ours may err at most twice the peer's own float32 error, plus a floor of 8 ulp of the output's scale.
    """
    x = torch.randn(batch, c, *hw)
    oracle = copy.deepcopy(ref).double()
    for train in (False, True):
        for m in (ours, ref, oracle):
            m.train(train)
        mode = "train" if train else "eval"
        expected = oracle(x.double())
        assert_close_to_oracle(ours(x), ref(x), expected, f"{mode} output", floor=ulp_floor(torch.float32, expected))
    ours_bn = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    ref_bn = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    oracle_bn = [m for m in oracle.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(ours_bn) == len(ref_bn) == len(oracle_bn)
    for a, b, o in zip(ours_bn, ref_bn, oracle_bn):  # the same momentum
        for stat in ("running_mean", "running_var"):
            expected = getattr(o, stat)
            assert_close_to_oracle(getattr(a, stat), getattr(b, stat), expected, stat,
                                   floor=ulp_floor(torch.float32, expected))


@pytest.mark.parametrize("backend", [None, "reference"])
def test_official_cbam_loads_into_default_cbam(backend):
    ref = randomise(OfficialCBAM(32))
    ours = CBAM(32, backend=backend)
    ours.load_state_dict(ref.state_dict())  # official semantics are srops's defaults
    check_same(ours, ref, 32)
    built = CBAM.from_state_dict(ref.state_dict(), "official", backend=backend)
    check_same(built, ref, 32)


@pytest.mark.parametrize("backend", [None, "reference"])
def test_timm_cbam_loads_strictly_with_timm_options(backend):
    ref = randomise(TimmCbam(24))  # hidden round(24 / 16) = 2, where srops's 24 // 16 would be 1
    ours = CBAM(24, mlp_hidden=2, mlp_bias=False, spatial_pool_order=("mean", "max"), bn_momentum=0.1, backend=backend)
    ours.load_state_dict(ref.state_dict(), strict=True)
    check_same(ours, ref, 24)
    built = CBAM.from_state_dict(ref.state_dict(), "timm", backend=backend)
    assert built.channel.mlp[0].bias is None and built.spatial.pool_order == ("mean", "max")
    assert built.spatial.bn.momentum == 0.1 and built.channel.mlp[0].out_features == 2
    check_same(built, ref, 24)


def test_timm_hidden_width_no_reduction_gives():
    ref = randomise(TimmCbam(520))  # round(32.5) = 33; no integer r has 520 // r == 33
    assert not any(max(1, 520 // r) == 33 for r in range(1, 521))
    built = CBAM.from_state_dict(ref.state_dict(), "timm", backend="reference")
    assert built.channel.mlp[0].out_features == 33
    check_same(built, ref, 520, (4, 5), 2)
    with pytest.raises(ValueError, match=r"srops\.ChannelAttention: 'hidden' must be None or an int >= 1, got 0"):
        ChannelAttention(8, hidden=0)


def test_timm_cbam_into_mismatched_options_is_refused():
    sd = randomise(TimmCbam(32)).state_dict()
    with pytest.raises(ValueError, match=r"srops\.ChannelAttention: .*'timm'.*mlp_bias=False"):
        CBAM(32).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"srops\.SpatialAttention: .*pool_order=\('mean', 'max'\)"):
        CBAM(32, mlp_bias=False).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'layout' must be one of \('official', 'timm'\), got 'san'"):
        CBAM.from_state_dict(sd, "san")


def test_mean_max_order_equals_swapped_weights():
    a = SpatialAttention(pool_order=("mean", "max"), backend="reference")
    b = SpatialAttention(backend="reference")
    with torch.no_grad():
        b.conv.weight.copy_(a.conv.weight.flip(1))
    x = torch.randn(2, 5, 6, 7)
    oracle = a.double()(x.double())
    a.float()
    assert_close_to_oracle(b(x), a(x), oracle, "swapped", floor=ulp_floor(torch.float32, oracle))
    assert not torch.allclose(a.conv.weight, b.conv.weight)  # the swap matters for these weights
    with pytest.raises(ValueError, match=r"srops\.SpatialAttention: 'pool_order' must be one of"):
        SpatialAttention(pool_order=("max", "max"))


@pytest.mark.parametrize("layout, ref_fn, kwargs", [
    ("official", lambda: OfficialChannelGate(32), {}),
    ("timm", lambda: TimmChannelAttn(32), {"mlp_bias": False}),
    ("rcan", lambda: RcanCALayer(32), {"pool": ("avg",)}),
])
def test_channel_attention_layouts(layout, ref_fn, kwargs):
    ref = randomise(ref_fn())
    ours = ChannelAttention(32, **kwargs)
    ours.load_state_dict(ref.state_dict())
    check_same(ours, ref, 32)
    check_same(ChannelAttention.from_state_dict(ref.state_dict(), layout), ref, 32)


def test_rcan_into_avg_max_channel_attention_is_refused():
    with pytest.raises(ValueError, match=r"pool=\('avg',\)"):
        ChannelAttention(32).load_state_dict(randomise(RcanCALayer(32)).state_dict())


@pytest.mark.parametrize("layout, ref_fn, kwargs", [
    ("official", OfficialSpatialGate, {}),
    ("timm", TimmSpatialAttn, {"pool_order": ("mean", "max"), "bn_momentum": 0.1}),
])
def test_spatial_attention_layouts(layout, ref_fn, kwargs):
    ref = randomise(ref_fn())
    ours = SpatialAttention(**kwargs)
    ours.load_state_dict(ref.state_dict())
    check_same(ours, ref, 6)
    check_same(SpatialAttention.from_state_dict(ref.state_dict(), layout), ref, 6)


def test_srops_own_state_dicts_still_load():
    builders = [lambda: CBAM(32, mlp_bn=True), lambda: CBAM(32), lambda: ChannelAttention(16, mlp_bn=True),
                lambda: SpatialAttention(bn=False, bias=True), lambda: ChannelAttention(16, mlp_bias=False)]
    for build in builders:
        source, target = randomise(build()), build()
        target.load_state_dict(source.state_dict())
        for (k, a), (_, b) in zip(target.state_dict().items(), source.state_dict().items()):
            assert torch.equal(a, b), k  # a copy
