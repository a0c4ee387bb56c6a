"""A network's state_dict back in the peers' key layouts, and loading peer keys at any depth.

:func:`peer_state_dict` is the inverse of the renaming that ``load_state_dict`` does for srops
modules (srops/nn/compat.py): every srops attention module in the network writes its tensors
under the keys of the peer block it replaced (recorded by :func:`srops.nn.swap`) or of the
layout asked for, so that the peer's own network loads the checkpoint.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

import torch
from torch import nn

from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from srops.nn.nonlocal2d import NonLocal2d
from srops.nn.second_order import SecondOrderAttention
from srops.nn.swap import PEER_ATTR, SROPS_CLASSES

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_CHANNEL = {"rcan": ("conv_du.0.", "conv_du.2.", True), "official": ("mlp.1.", "mlp.3.", False),
            "timm": ("fc1.", "fc2.", True)}  # first, last, 1×1-conv weights
_SPATIAL = {"official": "spatial.", "timm": "conv."}


def _fail(kind: str, layout: str, why: str) -> None:
    raise ValueError(f"srops.nn.peer_state_dict: a {kind} cannot be written in the {layout!r} layout: {why}")


def _nonlocal(m: NonLocal2d, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
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


def _second_order(m: SecondOrderAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if layout != "san":
        _fail("SecondOrderAttention", layout, "its only peer layout is 'san'")
    return {f"conv_du.{i}.{n}": sd[f"{src}.{n}"]
            for i, src in ((0, "conv_down"), (2, "conv_up")) for n in ("weight", "bias")}


def _channel(m: ChannelAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
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


def _spatial(m: SpatialAttention, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    if layout not in _SPATIAL:
        _fail("SpatialAttention", layout, f"its peer layouts are {tuple(_SPATIAL)}")
    order = ("max", "mean") if layout == "official" else ("mean", "max")
    if m.pool_order != order:
        _fail("SpatialAttention", layout, f"the peer's conv reads {order}, this module's {m.pool_order}")
    head = _SPATIAL[layout]
    return {head + k: v for k, v in sd.items() if k.startswith(("conv.", "bn."))}


def _cbam(m: CBAM, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    heads = ("ChannelGate.", "SpatialGate.") if layout == "official" else ("channel.", "spatial.")
    out = {heads[0] + k: v for k, v in _channel(m.channel, _sub(sd, "channel."), layout).items()}
    out.update({heads[1] + k: v for k, v in _spatial(m.spatial, _sub(sd, "spatial."), layout).items()})
    return out


def _sub(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# each writer takes a module of its class
_WRITERS: dict[type[nn.Module], Callable[[Any, Mapping[str, torch.Tensor], str], dict[str, torch.Tensor]]] = {
    NonLocal2d: _nonlocal, SecondOrderAttention: _second_order, CBAM: _cbam,
    ChannelAttention: _channel, SpatialAttention: _spatial}


def _layout_of(m: nn.Module, name: str, layout: str | Mapping[str, str] | None) -> str:
    recorded = getattr(m, PEER_ATTR, None)
    if recorded is not None:
        return recorded[1] if recorded[0] != "san.Nonlocal_CA" else "san"
    kind = next(cls.__name__ for cls in SROPS_CLASSES if isinstance(m, cls))
    chosen = layout.get(kind) if isinstance(layout, Mapping) else layout
    if chosen is None:
        raise ValueError(f"srops.nn.peer_state_dict: {name or '<model>'!r} ({kind}) was not swapped in from a peer "
                         f"block: pass layout= (a layout name, or a dict by class name such as {{{kind!r}: ...}})")
    return chosen


def peer_state_dict(model: nn.Module, layout: str | Mapping[str, str] | None = None) -> OrderedDict:
    """``model.state_dict()`` with every srops attention module's keys in its peer's layout.

    A module swapped in by :func:`srops.nn.swap` is written as the peer block it replaced (SAN's
    ``Nonlocal_CA`` with the tensors of its unused SOCA). Other srops modules need ``layout``:
    one name for all (``"san"``, ``"alexhex7"``, ``"rcan"``, ``"official"``, ``"timm"``) or a dict
    by class name. ``NonLocal2d`` in ``"san"`` is SAN's ``Nonlocal_CA`` when ``regions=2``, its
    inner block when ``regions=1``. Raises ``ValueError`` for a configuration no peer has.
    """
    sd = model.state_dict()
    out: OrderedDict = OrderedDict()
    done: set[str] = set()
    for name, m in model.named_modules():
        if not isinstance(m, SROPS_CLASSES) or any(name.startswith(p) for p in done):
            continue
        prefix = name + "." if name else ""
        done.add(prefix)
        own = _sub(sd, prefix)
        writer = next(fn for cls, fn in _WRITERS.items() if isinstance(m, cls))
        out.update({prefix + k: v for k, v in writer(m, own, _layout_of(m, name, layout)).items()})
    for key, value in sd.items():
        if not any(key.startswith(p) for p in done):
            out[key] = value
    return out


def load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
    """``torch.nn.Module.load_state_dict`` on ``model``, bypassing an override in its class.

    Some networks override ``load_state_dict`` with a loop that copies only the keys they know,
    which skips the peer keys srops modules rename (and loads nothing into them, silently). This
    runs torch's loader, so the srops modules' renaming applies at every depth; ``strict=True``
    raises on any key left over or missing.
    """
    return nn.Module.load_state_dict(model, state_dict, strict=strict)
