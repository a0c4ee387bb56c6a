"""The srops → peer direction of the peers' key layouts (the inverse of :mod:`srops.nn.compat`'s converters).

Each writer takes a srops module, its own state_dict entries (keys relative to the module) and a layout name,
and returns the entries under the peer's keys, refusing (``ValueError``) a configuration no peer has. The
modules reach them through their ``PEER_LAYOUTS`` (``write``); :func:`srops.nn.peer_state_dict` walks a
network with them. Imports no srops module at run time (compat, which every module imports, imports this).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch

if TYPE_CHECKING:
    from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
    from srops.nn.nonlocal2d import NonLocal2d
    from srops.nn.second_order import SecondOrderAttention

PEER_ATTR = "_srops_peer"  # on a swapped-in module: (peer name, layout, tensors the swap dropped)

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_CHANNEL = {"rcan": ("conv_du.0.", "conv_du.2.", True), "official": ("mlp.1.", "mlp.3.", False),
            "timm": ("fc1.", "fc2.", True)}  # first, last, 1×1-conv weights
_SPATIAL = {"official": "spatial.", "timm": "conv."}


def _fail(kind: str, layout: str, why: str) -> None:
    raise ValueError(f"srops.nn.peer_state_dict: a {kind} cannot be written in the {layout!r} layout: {why}")


def write_nonlocal(m: NonLocal2d, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if m.scale != 1.0:
        _fail("NonLocal2d", layout, f"the peers have no logit scale (scale={m.scale})")
    if m.sub_sample == "before":
        _fail("NonLocal2d", layout, "the peers pool φ and g after their convolutions (sub_sample='before')")
    wrapped = layout == "san" and tuple(m.regions) == (2, 2)
    if not wrapped and tuple(m.regions) != (1, 1):
        _fail("NonLocal2d", layout,
              f"regions={m.regions}: only SAN's Nonlocal_CA (layout 'san', regions=2) splits the map")
    d, pool = m.inter_channels, ".0." if m.sub_sample else "."
    out: dict[str, torch.Tensor] = {}
    for name in ("weight", "bias"):
        for key, part in zip(("theta.", "phi" + pool, "g" + pool), sd["qkv." + name].split(d, dim=0), strict=True):
            out[key + name] = part.clone()
    w = "W.0." if m.bn is not None else "W."
    out[w + "weight"], out[w + "bias"] = sd["out.weight"], sd["out.bias"]
    if m.bn is not None:
        out.update({"W.1." + k: sd["bn." + k] for k in _BN if "bn." + k in sd})
    if wrapped:
        out = {"non_local." + k: v for k, v in out.items()}
        out.update({k: v.clone() for k, v in getattr(m, PEER_ATTR, (None, None, {}))[2].items()})
    return out


def write_second_order(m: SecondOrderAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if layout != "san":
        _fail("SecondOrderAttention", layout, "its only peer layout is 'san'")
    return {f"conv_du.{i}.{n}": sd[f"{src}.{n}"]
            for i, src in ((0, "conv_down"), (2, "conv_up")) for n in ("weight", "bias")}


def write_channel(m: ChannelAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if layout not in _CHANNEL:
        _fail("ChannelAttention", layout, f"its peer layouts are {tuple(_CHANNEL)}")
    if len(m.mlp) != 3:
        _fail("ChannelAttention", layout, "the peers' MLPs have no BatchNorm (mlp_bn=True)")
    want = ("avg",) if layout == "rcan" else ("avg", "max")
    if sorted(m.pool) != sorted(want):
        _fail("ChannelAttention", layout, f"the peer pools {want}, this module {m.pool}")
    first, last, conv = _CHANNEL[layout]
    out = {}
    for src, dst in (("mlp.0.", first), ("mlp.2.", last)):
        for name in ("weight", "bias"):
            if src + name in sd:
                t = sd[src + name]
                out[dst + name] = t[:, :, None, None] if conv and t.dim() == 2 else t
    return out


def write_spatial(m: SpatialAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if layout not in _SPATIAL:
        _fail("SpatialAttention", layout, f"its peer layouts are {tuple(_SPATIAL)}")
    order = ("max", "mean") if layout == "official" else ("mean", "max")
    if m.pool_order != order:
        _fail("SpatialAttention", layout, f"the peer's conv reads {order}, this module's {m.pool_order}")
    head = _SPATIAL[layout]
    return {head + k: v for k, v in sd.items() if k.startswith(("conv.", "bn."))}


def write_cbam(m: CBAM, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    heads = ("ChannelGate.", "SpatialGate.") if layout == "official" else ("channel.", "spatial.")
    out = {heads[0] + k: v for k, v in write_channel(m.channel, sub(sd, "channel."), layout).items()}
    out.update({heads[1] + k: v for k, v in write_spatial(m.spatial, sub(sd, "spatial."), layout).items()})
    return out


def sub(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
