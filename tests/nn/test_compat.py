"""SAN / AlexHex7 non-local and SAN SOCA state_dicts load into srops and match a per-key re-implementation.

The peer modules below are written out here with the peers' key names (θ, φ, g, W with an optional
BatchNorm, 2×2 max-pooling of φ and g; SOCA's ``conv_du``) and plain torch layers; they share no code
with srops. Weights are random (including W and the BatchNorm statistics), so the blocks are far from
the identity they start as.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import srops.nn.compat as compat
from srops import NonLocal2d, SecondOrderAttention
from srops.nn.second_order import centre_crop
from srops.testing import assert_close


class PeerNonLocal(nn.Module):
    """Embedded-Gaussian non-local block with SAN's / AlexHex7's submodule names."""

    def __init__(self, c: int, d: int, pooled: bool, bn: bool) -> None:
        super().__init__()
        self.theta = nn.Conv2d(c, d, 1)
        phi, g = nn.Conv2d(c, d, 1), nn.Conv2d(c, d, 1)
        self.phi = nn.Sequential(phi, nn.MaxPool2d(2)) if pooled else phi
        self.g = nn.Sequential(g, nn.MaxPool2d(2)) if pooled else g
        self.W = nn.Sequential(nn.Conv2d(d, c, 1), nn.BatchNorm2d(c)) if bn else nn.Conv2d(d, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.theta(x).flatten(2), self.phi(x).flatten(2), self.g(x).flatten(2)  # [B, d, ·]
        attn = torch.softmax(torch.einsum("bdn,bdm->bnm", q, k), dim=-1)  # no 1/√d
        y = torch.einsum("bnm,bdm->bdn", attn, v).reshape(b, -1, h, w)
        return x + self.W(y)


def san_quadrants(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SAN's region-level wrapper: the block on each quadrant of a ⌊H/2⌋, ⌊W/2⌋ split."""
    h1, w1 = x.shape[2] // 2, x.shape[3] // 2
    out = torch.zeros_like(x)
    for rows in (slice(0, h1), slice(h1, None)):
        for cols in (slice(0, w1), slice(w1, None)):
            out[:, :, rows, cols] = block(x[:, :, rows, cols])
    return out


def randomise(module: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
            elif t.is_floating_point():
                t.copy_(0.4 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
    return module


def peer(c: int = 16, d: int = 2, pooled: bool = True, bn: bool = False) -> PeerNonLocal:
    return randomise(PeerNonLocal(c, d, pooled, bn)).double()  # float32 values: srops builds in float32


@pytest.mark.parametrize("backend", [None, "reference"])
def test_san_state_dict_matches_san_quadrants(backend):
    ref = peer(16, 16 // 8, pooled=True, bn=False)  # SAN: inter = C // 8, φ/g pooled, no BN
    nonlocal_ca = {f"non_local.{k}": v for k, v in ref.state_dict().items()}  # SAN's Nonlocal_CA keys: 2×2
    blk = NonLocal2d.from_state_dict(nonlocal_ca, "san", backend=backend).double()
    assert (blk.in_channels, blk.inter_channels, blk.sub_sample, blk.regions, blk.bn) == (16, 2, "after", (2, 2), None)
    x = torch.randn(2, 16, 13, 11, dtype=torch.float64, requires_grad=True)  # odd sides: unequal quadrants
    x2 = x.detach().clone().requires_grad_()
    out, expected = blk(x), san_quadrants(ref, x2)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("pooled, bn", [(True, True), (False, True), (True, False), (False, False)])
def test_alexhex7_state_dict_matches_reference(pooled, bn):
    ref = peer(12, 6, pooled, bn)  # AlexHex7 default inter = C // 2
    blk = NonLocal2d.from_state_dict(ref.state_dict(), "alexhex7", backend="reference").double()
    assert blk.regions == (1, 1) and blk.sub_sample == ("after" if pooled else False) and (blk.bn is not None) == bn
    x = torch.randn(3, 12, 8, 10, dtype=torch.float64)
    ref.eval(), blk.eval()
    assert_close(blk(x), ref(x))
    if bn:  # training mode: batch statistics and the running-stat update agree too
        ref.train(), blk.train()
        assert_close(blk(x), ref(x))
        assert_close(blk.bn.running_mean, ref.W[1].running_mean)
        assert_close(blk.bn.running_var, ref.W[1].running_var)


def test_load_state_dict_accepts_peer_keys_inside_a_parent():
    ref = peer(16, 2, pooled=True, bn=False)
    san_checkpoint = {f"non_local.non_local.{k}": v for k, v in ref.state_dict().items()}
    san_checkpoint["non_local.soca.conv_du.0.weight"] = torch.zeros(2, 16, 1, 1)  # SAN's unused SOCA
    parent = nn.Sequential(NonLocal2d(16, 2, sub_sample=True, regions=2, backend="reference")).double()
    parent.load_state_dict({"0." + k: v for k, v in compat.sub_state_dict(san_checkpoint, "non_local.non_local").items()})
    x = torch.randn(1, 16, 10, 12, dtype=torch.float64)
    assert_close(parent(x), san_quadrants(ref, x))
    # srops's own keys still load unchanged
    again = NonLocal2d(16, 2, regions=2, backend="reference").double()
    again.load_state_dict(parent[0].state_dict())
    assert_close(again(x), parent(x))


def test_mismatched_configuration_is_refused_with_the_option_to_set():
    pooled = peer(16, 2, pooled=True, bn=False).state_dict()
    with pytest.raises(ValueError, match=r"srops\.NonLocal2d: .*build NonLocal2d with sub_sample=True"):
        NonLocal2d(16, 2, sub_sample=False).load_state_dict(pooled)  # SAN's call, ported literally
    with pytest.raises(ValueError, match=r"sub_sample=False"):
        NonLocal2d(12, 6).load_state_dict(peer(12, 6, pooled=False, bn=False).state_dict())
    with pytest.raises(ValueError, match=r"build with bn=True"):
        NonLocal2d(12, 6).load_state_dict(peer(12, 6, pooled=True, bn=True).state_dict())
    with pytest.raises(ValueError, match=r"build with bn=False"):
        NonLocal2d(16, 2, bn=True).load_state_dict(pooled)
    with pytest.raises(RuntimeError, match=r"size mismatch"):
        NonLocal2d(16, 4).load_state_dict(pooled)
    with pytest.raises(ValueError, match=r"'layout' must be one of \('san', 'alexhex7'\), got 'timm'"):
        NonLocal2d.from_state_dict(pooled, "timm")
    with pytest.raises(ValueError, match=r"must contain 'theta.weight'"):
        NonLocal2d.from_state_dict({"qkv.weight": torch.zeros(6, 16, 1, 1)}, "san")


# ----------------------------------------------------------------------------- SAN's SOCA


def san_crop(x: torch.Tensor, limit: int = 1000) -> torch.Tensor:
    """SAN's SOCA crop, branch by branch (strict comparisons with the limit)."""
    h, w = x.shape[-2:]
    if h < limit and w < limit:
        return x
    if h < limit and w > limit:
        return x[..., (w - limit) // 2 : (w - limit) // 2 + limit]
    if w < limit and h > limit:
        return x[..., (h - limit) // 2 : (h - limit) // 2 + limit, :]
    top, left = (h - limit) // 2, (w - limit) // 2
    return x[..., top : top + limit, left : left + limit]


def san_newton_schulz(sigma: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    """SAN's 5 Newton–Schulz steps on Σ / tr: Y ≈ (Σ / tr)^½ (``tr`` is ``[B, 1, 1]``)."""
    eye3 = 3 * torch.eye(sigma.shape[-1], dtype=sigma.dtype)
    a = sigma / tr
    y, z = a @ (0.5 * (eye3 - a)), 0.5 * (eye3 - a)
    for _ in range(3):
        t = 0.5 * (eye3 - z @ y)
        y, z = y @ t, t @ z
    return 0.5 * y @ (eye3 - z @ y)


class PeerSOCA(nn.Module):
    """SAN's SOCA with its key names: covariance through the centring matrix, 5 Newton–Schulz steps."""

    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(c, c // r, 1), nn.ReLU(), nn.Conv2d(c // r, c, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        X = san_crop(x).reshape(b, c, -1)
        m = X.shape[2]
        ihat = (torch.eye(m, dtype=x.dtype) - 1.0 / m) / m
        sigma = X @ ihat @ X.transpose(1, 2)
        tr = sigma.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
        y = san_newton_schulz(sigma, tr)
        s = (y * tr.sqrt()).mean(dim=1)
        return x * self.conv_du(s[:, :, None, None])


def test_san_soca_state_dict_matches_reference():
    ref = randomise(PeerSOCA(32, 16)).double()  # SAN: reduction 16 → 32→2→32
    # SAN adds no eps; eps must be > 0, and 1e-300 leaves a float64 trace of order 1 unchanged.
    m = SecondOrderAttention.from_state_dict(ref.state_dict(), eps=1e-300).double()
    assert (m.channels, m.conv_down.out_channels, m.iterations, m.max_size) == (32, 2, 5, 1000)
    x = torch.randn(2, 32, 9, 7, dtype=torch.float64)
    assert_close(m(x), ref(x))
    plain = SecondOrderAttention(32, eps=1e-300).double()
    plain.load_state_dict(ref.state_dict())  # the hook renames conv_du.0/2
    assert_close(plain(x), ref(x))


@pytest.mark.parametrize("h, w", [(999, 998), (1200, 800), (800, 1500), (1500, 1200), (1000, 1000), (1000, 1200),
                                  (1000, 300)])
def test_max_size_1000_reproduces_san_crop(h, w):
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
    assert torch.equal(centre_crop(x, 1000), san_crop(x))  # crops: exact


@pytest.mark.parametrize("h, w, kept", [(1000, 500, 250), (1000, 999, 1), (1000, 334, 333), (1000, 333, 333)])
def test_san_miscrops_the_other_side_when_one_side_is_1000(h, w, kept):
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
    san = san_crop(x)
    assert san.shape[-2:] == (1000, kept)  # the 1000 side whole, the shorter one cut to its tail
    assert torch.equal(san, x[..., w - kept :])
    assert centre_crop(x, 1000).shape[-2:] == (1000, w)  # srops keeps the shorter side whole
    xt = x.transpose(2, 3)  # the same with the sides swapped
    assert san_crop(xt).shape[-2:] == (kept, 1000)


def test_convert_state_dict_and_sub_state_dict():
    ref = peer(16, 2, pooled=True, bn=True)
    blk = NonLocal2d(16, 2, bn=True)
    sd = ref.state_dict()
    converted = compat.convert_state_dict(blk, sd, "alexhex7")
    assert set(converted) == set(blk.state_dict())
    assert torch.equal(converted["qkv.weight"][2:4], sd["phi.0.weight"])  # θ, φ, g order
    assert "theta.weight" in sd and "qkv.weight" not in sd  # the caller's dict is left alone
    blk.load_state_dict(sd)
    assert "theta.weight" in sd  # load_state_dict's hook converts a copy too
    with pytest.raises(ValueError, match=r"no key starts with 'RG\.0\.soca\.'"):
        compat.sub_state_dict(ref.state_dict(), "RG.0.soca")
    with pytest.raises(TypeError, match=r"expected a srops attention module, got Conv2d"):
        compat.convert_state_dict(nn.Conv2d(1, 1, 1), {}, "san")


class _Gate(nn.Module):
    """A module outside srops.nn that takes a peer's checkpoint through PEER_LAYOUTS alone."""

    def __init__(self, c: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c, c, 1)
        self.register_load_state_dict_pre_hook(compat.peer_load_hook)

    @staticmethod
    def _convert(_m: nn.Module, sd: dict, p: str, _layout: str) -> None:
        for name in ("weight", "bias"):
            if p + "fc." + name in sd:
                sd[p + "proj." + name] = sd.pop(p + "fc." + name)

    PEER_LAYOUTS = compat.PeerLayouts("Gate", {"peer": "fc.weight"}, _convert,
                                      lambda sd, _layout: {"c": sd["fc.weight"].shape[0]},
                                      lambda _m, sd, _layout: {"fc." + k[len("proj."):]: v for k, v in sd.items()})


def test_a_module_of_any_package_declares_its_peers_as_a_class_attribute():
    peer_sd = {"fc.weight": torch.randn(4, 4, 1, 1), "fc.bias": torch.randn(4)}
    gate = _Gate(4)
    gate.load_state_dict(peer_sd)  # the hook finds the layout from the class attribute
    assert torch.equal(gate.proj.weight, peer_sd["fc.weight"])
    built = compat.from_state_dict(_Gate, peer_sd, "peer")
    assert built.proj.weight.shape == (4, 4, 1, 1) and torch.equal(built.proj.bias, peer_sd["fc.bias"])
    parent = nn.Sequential(_Gate(4))
    parent.load_state_dict({"0." + k: v for k, v in peer_sd.items()})
    assert torch.equal(parent[0].proj.bias, peer_sd["fc.bias"])
    with pytest.raises(ValueError, match=r"srops\.Gate: 'layout' must be one of \('peer',\), got 'san'"):
        compat.convert_state_dict(gate, peer_sd, "san")
    from srops.nn import peer_state_dict

    back = peer_state_dict(nn.Sequential(nn.Conv2d(4, 4, 1), gate), layout="peer")  # and the way back
    assert set(back) == {"0.weight", "0.bias", "1.fc.weight", "1.fc.bias"}
    assert torch.equal(back["1.fc.weight"], peer_sd["fc.weight"])


def test_every_srops_module_with_the_load_hook_declares_its_peers():
    import srops.nn as snn

    classes = [c for c in vars(snn).values() if isinstance(c, type) and issubclass(c, nn.Module)]
    hooked = []
    for cls in classes:
        if getattr(cls, "PEER_LAYOUTS", None) is None:
            continue
        peers = compat.peers_of(cls)
        assert peers.kind == cls.__name__ and peers.public
        assert set(peers.detected_only) <= set(peers.markers)
        hooked.append(cls.__name__)
    assert sorted(hooked) == ["CBAM", "ChannelAttention", "NonLocal2d", "SecondOrderAttention", "SpatialAttention"]
