"""srops.nn.swap on networks assembled from per-key re-implementations of the peers' blocks.

The peer blocks (SAN's non-local block, its Nonlocal_CA quadrant wrapper with its unused SOCA,
SAN's SOCA, RCAN's CALayer, official and timm CBAM) are written out in the test modules with the
peers' submodule names, shapes and forward maths (docs/ops.md §B–§D); no peer code is used.
A small SAN-shaped network (head, Nonlocal_CA, residual groups ending in SOCA and CALayer
blocks, Nonlocal_CA again, upsampler) has SAN's own non-strict ``load_state_dict`` override.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import srops
from srops.nn import compat
from srops.testing import assert_close
from tests.nn.test_compat import PeerNonLocal, PeerSOCA, randomise, san_newton_schulz, san_quadrants
from tests.nn.test_compat_cbam import OfficialCBAM, RcanCALayer, TimmCbam


class SanSOCA(PeerSOCA):
    """SAN's SOCA with its unused ``max_pool`` child; ``eps`` is added to the trace like srops's."""

    def __init__(self, c: int, r: int, eps: float = 0.0) -> None:
        super().__init__(c, r)
        self.max_pool = nn.MaxPool2d(2)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.eps == 0.0 else _soca_with_eps(self, x, self.eps)


def _soca_with_eps(m: PeerSOCA, x: torch.Tensor, eps: float) -> torch.Tensor:
    """PeerSOCA's maths (no crop: the tests' maps are small) with eps added to the trace."""
    b, c = x.shape[:2]
    X = x.reshape(b, c, -1)
    n = X.shape[2]
    ihat = (torch.eye(n, dtype=x.dtype) - 1.0 / n) / n
    sigma = X @ ihat @ X.transpose(1, 2)
    tr = sigma.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None] + eps
    y = san_newton_schulz(sigma, tr)
    s = (y * tr.sqrt()).mean(dim=1)
    return x * m.conv_du(s[:, :, None, None])


class NonlocalCA(nn.Module):
    """SAN's ``Nonlocal_CA``: the inner block on each quadrant; a SOCA (reduction 8) it never calls."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.non_local = PeerNonLocal(c, max(1, c // 8), pooled=True, bn=False)
        self.soca = SanSOCA(c, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return san_quadrants(self.non_local, x)


class Group(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), RcanCALayer(c, 4))
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.soca = SanSOCA(c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.soca(self.conv(self.body(x)))


class TinySAN(nn.Module):
    """SAN's shape at toy size: head, Nonlocal_CA, groups, the same Nonlocal_CA again, ×2 upsampler."""

    def __init__(self, c: int = 16, groups: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.non_local = NonlocalCA(c)
        self.RG = nn.ModuleList([Group(c) for _ in range(groups)])
        self.tail = nn.Sequential(nn.Conv2d(c, 4 * 3, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.non_local(self.head(x))
        r = h
        for g in self.RG:
            r = g(r)
        return self.tail(self.non_local(r) + h)

    def load_state_dict(self, state_dict, strict=False):  # SAN's: copies the keys it knows, skips the rest
        own = self.state_dict()
        for name, value in state_dict.items():
            if name in own:
                own[name].copy_(value)


def tiny_san(seed: int = 3) -> TinySAN:
    torch.manual_seed(seed)
    return randomise(TinySAN()).double()


def run(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, input gradient and parameter gradients (by the peer's keys for swapped modules: compared by value)."""
    x = x.detach().clone().requires_grad_()
    net.zero_grad()
    out = net(x)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape))
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def match_eps(peer: nn.Module, swapped: nn.Module) -> None:
    """The peer SOCAs use the eps srops's from_state_dict chose for SAN's layout."""
    for name, m in swapped.named_modules():
        if isinstance(m, srops.SecondOrderAttention):
            peer.get_submodule(name).eps = m.eps


def swap_quiet(net: nn.Module, **kwargs) -> srops.nn.SwapReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return srops.nn.swap(net, **kwargs)


@pytest.mark.parametrize("hw", [(12, 14), (13, 11)])
def test_swapped_san_matches_outputs_and_gradients(hw):
    peer = tiny_san()
    net = copy.deepcopy(peer)
    with pytest.warns(UserWarning, match="TinySAN override.*srops.nn.load_state_dict"):
        report = srops.nn.swap(net)
    assert [(r.name, r.peer) for r in report.replaced] == [
        ("non_local", "san.Nonlocal_CA"), ("RG.0.body.2", "rcan.CALayer"), ("RG.0.soca", "san.SOCA"),
        ("RG.1.body.2", "rcan.CALayer"), ("RG.1.soca", "san.SOCA")]
    assert isinstance(net.non_local, srops.NonLocal2d) and net.non_local.regions == (2, 2)
    assert report.dropped_parameters == sum(p.numel() for p in peer.non_local.soca.parameters())
    assert "build the optimizer after swapping" in str(report)
    match_eps(peer, net)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    out_p, gx_p, gp = run(peer, x)
    out_s, gx_s, gs = run(net, x)
    assert_close(out_s, out_p)
    assert_close(gx_s, gx_p)
    # parameter gradients, through the peer's key layout
    for name in ("head.weight", "RG.1.conv.weight", "tail.0.bias"):
        assert_close(gs[name], gp[name])
    nl = net.non_local
    assert_close(gs["non_local.qkv.weight"], torch.cat([gp["non_local.non_local.theta.weight"],
                 gp["non_local.non_local.phi.0.weight"], gp["non_local.non_local.g.0.weight"]]))
    assert_close(gs["non_local.out.weight"], gp["non_local.non_local.W.weight"])
    assert_close(gs["RG.0.soca.conv_down.weight"], gp["RG.0.soca.conv_du.0.weight"])
    assert_close(gs["RG.1.body.2.mlp.0.weight"], gp["RG.1.body.2.conv_du.0.weight"].flatten(1))
    assert nl.qkv.weight.dtype == torch.float64


def test_swap_follows_dtype_device_and_training_mode():
    net = tiny_san().eval()
    swap_quiet(net)
    for m in (net.non_local, net.RG[0].soca, net.RG[0].body[2]):
        assert all(p.dtype == torch.float64 for p in m.parameters())
        assert not m.training


def test_checkpoint_round_trips_both_ways():
    peer = tiny_san(3)
    other = tiny_san(4)  # a different set of weights: what each load must overwrite
    x = torch.randn(1, 3, 11, 10, dtype=torch.float64)
    # a peer checkpoint loaded after the swap, with torch's strict loader, and with srops's (SAN's own is bypassed)
    net = copy.deepcopy(other)
    swap_quiet(net)
    nn.Module.load_state_dict(net, peer.state_dict(), strict=True)
    match_eps(peer, net)
    assert_close(net(x), peer(x))
    net2 = copy.deepcopy(other)
    swap_quiet(net2)
    srops.nn.load_state_dict(net2, peer.state_dict())
    assert_close(net2(x), peer(x))
    # the swapped network's checkpoint, written back in SAN's keys, loads into the stock network
    back = srops.nn.peer_state_dict(net)
    assert set(back) == set(peer.state_dict())
    stock = copy.deepcopy(other)
    nn.Module.load_state_dict(stock, back, strict=True)
    match_eps(stock, net)
    assert_close(stock(x), peer(x))
    for key, value in peer.state_dict().items():
        assert torch.equal(back[key], value), key  # the unused SOCA's tensors come back too


def test_san_own_loader_after_swap_is_flagged():
    net = tiny_san(4)
    with pytest.warns(UserWarning, match="override"):
        report = srops.nn.swap(net)
    assert any("srops.nn.load_state_dict" in n for n in report.notes)


def test_inner_san_keys_need_regions_and_wrapper_keys_give_two():
    peer = tiny_san()
    ckpt = peer.state_dict()
    with pytest.raises(ValueError, match="Pass regions=1 .* regions=2"):
        srops.NonLocal2d.from_state_dict(compat.sub_state_dict(ckpt, "non_local.non_local"), layout="san")
    whole = srops.NonLocal2d.from_state_dict(compat.sub_state_dict(ckpt, "non_local"), layout="san")
    assert whole.regions == (2, 2)
    x = torch.randn(1, 16, 13, 10, dtype=torch.float64)
    assert_close(whole(x), peer.non_local(x))
    inner = srops.NonLocal2d.from_state_dict(compat.sub_state_dict(ckpt, "non_local.non_local"), "san", regions=1)
    net = copy.deepcopy(peer)
    net.non_local.non_local = inner  # back inside SAN's own quadrant wrapper: no double split
    assert_close(net.non_local(x), peer.non_local(x))


def test_double_split_is_refused():
    peer = tiny_san()
    ckpt = peer.state_dict()
    twice = srops.NonLocal2d.from_state_dict(compat.sub_state_dict(ckpt, "non_local.non_local"), "san", regions=2)
    net = copy.deepcopy(peer)
    net.non_local.non_local = twice
    with pytest.raises(ValueError, match="split twice"):
        srops.nn.swap(net)
    with pytest.raises(ValueError, match="build NonLocal2d with regions=2"):  # Nonlocal_CA keys into regions=1
        srops.NonLocal2d(16, 2, regions=1).load_state_dict(compat.sub_state_dict(ckpt, "non_local"))


def test_from_state_dict_follows_checkpoint_dtype_or_the_one_asked():
    sd = PeerNonLocal(8, 4, pooled=True, bn=False).double().state_dict()
    assert srops.NonLocal2d.from_state_dict(sd, "alexhex7").qkv.weight.dtype == torch.float64
    m = srops.NonLocal2d.from_state_dict(sd, "alexhex7", dtype=torch.float32, device="cpu")
    assert m.qkv.weight.dtype == torch.float32 and m.qkv.weight.device.type == "cpu"
    soca = srops.SecondOrderAttention.from_state_dict(SanSOCA(16, 4).double().state_dict())
    assert soca.conv_down.weight.dtype == torch.float64


@pytest.mark.parametrize("make, peer_name, cls", [
    (lambda: OfficialCBAM(32), "cbam.official", srops.CBAM),
    (lambda: TimmCbam(32), "timm.CbamModule", srops.CBAM),
    (lambda: RcanCALayer(32, 8), "rcan.CALayer", srops.ChannelAttention),
    (lambda: PeerNonLocal(32, 16, pooled=True, bn=True), "nonlocal", srops.NonLocal2d),
    (lambda: PeerNonLocal(32, 16, pooled=False, bn=False), "nonlocal", srops.NonLocal2d),
])
def test_each_peer_block_swaps_and_round_trips(make, peer_name, cls):
    torch.manual_seed(0)
    peer = randomise(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), make())).double().eval()
    net = copy.deepcopy(peer)
    report = srops.nn.swap(net)
    assert [(r.name, r.peer) for r in report.replaced] == [("1", peer_name)] and isinstance(net[1], cls)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    out_p, gx_p, _ = run(peer, x)
    out_s, gx_s, _ = run(net, x)
    assert_close(out_s, out_p)
    assert_close(gx_s, gx_p)
    back = srops.nn.peer_state_dict(net)
    assert set(back) == set(peer.state_dict())
    fresh = randomise(copy.deepcopy(peer))
    fresh.load_state_dict(back, strict=True)
    assert_close(fresh(x), peer(x))


def test_lookalikes_are_left_alone_with_a_reason():
    class LightSpatial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            conv = nn.Module()
            conv.conv, conv.bn = nn.Conv2d(1, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1)
            self.conv = conv

    light = TimmCbam(16)
    light.spatial = LightSpatial()
    relu6 = RcanCALayer(16, 4)
    relu6.conv_du[1] = nn.ReLU6()
    net = nn.Sequential(light, relu6, nn.Conv2d(16, 16, 1))
    report = srops.nn.swap(net)
    assert report.replaced == []
    reasons = dict(report.left_alone)
    assert "LightCbamModule" in reasons["0"] and "ReLU" in reasons["1"]
    assert isinstance(net[0], TimmCbam) and isinstance(net[1], RcanCALayer)


def test_swap_refuses_bad_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        srops.nn.swap("model")
    with pytest.raises(ValueError, match="'peers' must be among"):
        srops.nn.swap(nn.Sequential(), peers=["san"])
    with pytest.raises(ValueError, match="the model itself is a rcan.CALayer block"):
        srops.nn.swap(RcanCALayer(16, 4))
    with pytest.raises(ValueError, match="was not swapped in from a peer block: pass layout="):
        srops.nn.peer_state_dict(nn.Sequential(srops.CBAM(32)))
    sd = srops.nn.peer_state_dict(nn.Sequential(srops.CBAM(32)), layout="official")
    assert "0.ChannelGate.mlp.1.weight" in sd
