"""The peers' state_dict layouts: SAN, AlexHex7, official CBAM, timm, RCAN (docs/ops.md §D).

Every srops attention module carries its peers' layouts as the class attribute ``PEER_LAYOUTS`` (a
:class:`PeerLayouts`: the key marking each layout, the converter, the configuration reader; this file defines
them) and registers :func:`peer_load_hook`, so ``load_state_dict`` accepts a peer's keys (relative to the
module, as in the peer's own submodule) and renames them to the srops keys before loading. The configuration
is never changed by loading: where the peer's checkpoint implies a different one (pooled φ/g, a BatchNorm
after W, bias-free MLPs, the spatial pooling order), a ``ValueError`` names the constructor argument to set.
:func:`from_state_dict` builds a module configured as the peer's instead.

Key maps (peer → srops):

- ``NonLocal2d`` (``"san"``, ``"alexhex7"``): ``theta``, ``phi[.0]``, ``g[.0]`` → ``qkv``
  (θ, φ, g stacked along the output channels); ``W`` → ``out``, or ``W.0`` → ``out`` and
  ``W.1`` → ``bn``.
- ``SecondOrderAttention`` (``"san"``): ``conv_du.0`` → ``conv_down``, ``conv_du.2`` → ``conv_up``.
- ``ChannelAttention``: ``"rcan"`` ``conv_du.0/2``; ``"official"`` ``mlp.1/3``; ``"timm"``
  ``fc1/fc2`` → ``mlp.0`` and the last Linear (1×1 conv weights are reshaped).
- ``SpatialAttention``: ``"official"`` ``spatial.conv/bn``; ``"timm"`` ``conv.conv/bn`` →
  ``conv``, ``bn``.
- ``CBAM``: ``"official"`` ``ChannelGate``/``SpatialGate`` → ``channel``/``spatial``;
  ``"timm"`` keeps ``channel``/``spatial`` and its children's keys are mapped as above.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

import torch
from torch import nn

from srops.nn.peer_writers import (
    write_cbam,
    write_channel,
    write_nonlocal,
    write_second_order,
    write_spatial,
)

if TYPE_CHECKING:  # srops.nn.cbam imports this module
    from srops.nn.cbam import ChannelAttention, SpatialAttention

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class PeerLayouts:
    """What a srops module knows of its peers' checkpoints; the module holds it as ``PEER_LAYOUTS``.

    ``markers`` maps each layout's name to the key (relative to the module) whose presence marks it;
    ``convert(module, state_dict, prefix, layout)`` renames that layout's keys under ``prefix`` to the
    module's, in place, refusing a configuration the keys contradict; ``config(state_dict, layout)``
    reads the peer's constructor arguments from its keys and shapes; ``write(module, state_dict, layout)``
    is the way back, the module's entries under the peer's keys (:mod:`srops.nn.peer_writers`, used by
    :func:`srops.nn.peer_state_dict`). Layouts in ``detected_only``
    are recognised when loading but cannot be asked for by name. A module class of any package takes
    peers' checkpoints by setting the attribute and registering :func:`peer_load_hook`; subclasses
    inherit it.
    """

    kind: str  # the srops class, for messages
    markers: Mapping[str, str]
    convert: Callable[[Any, dict, str, str], None]
    config: Callable[[Mapping[str, torch.Tensor], str], dict[str, Any]]
    write: Callable[[Any, Mapping[str, torch.Tensor], str], dict[str, torch.Tensor]]
    detected_only: tuple[str, ...] = ()

    @property
    def public(self) -> tuple[str, ...]:
        """The layouts one may name in ``from_state_dict``/``convert_state_dict``."""
        return tuple(name for name in self.markers if name not in self.detected_only)


def has_peers(module: Any) -> bool:
    """Whether a module (or module class) declares its peers' layouts (``PEER_LAYOUTS``)."""
    cls = module if isinstance(module, type) else type(module)
    return isinstance(getattr(cls, "PEER_LAYOUTS", None), PeerLayouts)


def peers_of(module: Any) -> PeerLayouts:
    """The ``PEER_LAYOUTS`` of a module (or module class); ``TypeError`` for a module without one."""
    cls = module if isinstance(module, type) else type(module)
    peers = getattr(cls, "PEER_LAYOUTS", None)
    if not isinstance(peers, PeerLayouts):
        raise TypeError(f"srops.nn.compat: expected a srops attention module, got {cls.__name__} (a module "
                        "class takes peers' checkpoints through a PEER_LAYOUTS attribute)")
    return peers


def _move(sd: dict, src: str, dst: str, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
    if src not in sd:
        return False
    value = sd.pop(src)
    sd[dst] = fn(value) if fn is not None else value
    return True


def _linear(w: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv weight ``[O, I, 1, 1]`` as a Linear weight ``[O, I]``."""
    return w.reshape(w.shape[0], w.shape[1]) if w.dim() == 4 else w


def _fail(kind: str, layout: str, message: str) -> None:
    raise ValueError(f"srops.{kind}: cannot load the {layout!r} state_dict: {message}")


# --------------------------------------------------------------------------- per-module converters


def san_wrapper_keys(sd: Mapping[str, Any], p: str) -> bool:
    """Whether ``sd`` holds, under ``p``, SAN's ``Nonlocal_CA`` (``non_local.theta.*``) rather than its inner block."""
    return p + "non_local.theta.weight" in sd and p + "theta.weight" not in sd


def _unwrap_san(m: nn.Module, sd: dict, p: str, layout: str) -> None:
    """SAN's ``Nonlocal_CA`` keys under ``p``: ``non_local.*`` moved up, the unused ``soca.*`` dropped.

    ``Nonlocal_CA`` runs its inner block on each quadrant of a 2×2 split, so only a module that
    splits the same way (``regions=2``) may take them.
    """
    if tuple(getattr(m, "regions", (2, 2))) != (2, 2):
        _fail("NonLocal2d", layout, "these are SAN's Nonlocal_CA keys ('non_local.*', 'soca.*'), which run the block "
              f"on each quadrant of a 2×2 split: build NonLocal2d with regions=2 (got regions={m.regions})")
    for key in [k for k in sd if k.startswith(p + "non_local.")]:
        sd[p + key[len(p) + len("non_local."):]] = sd.pop(key)
    for key in [k for k in sd if k.startswith(p + "soca.")]:
        del sd[key]  # Nonlocal_CA builds a SOCA its forward never calls


def _nonlocal(m: nn.Module, sd: dict, p: str, layout: str) -> None:
    if san_wrapper_keys(sd, p):
        _unwrap_san(m, sd, p, layout)
    pooled = p + "phi.0.weight" in sd
    if pooled != (p + "g.0.weight" in sd):
        _fail("NonLocal2d", layout, "φ and g must be both max-pooled (phi.0, g.0) or neither (phi, g)")
    if pooled and m.sub_sample != "after":
        _fail("NonLocal2d", layout, "its φ and g are max-pooled after their convolutions (keys 'phi.0.*', "
              f"'g.0.*'), so build NonLocal2d with sub_sample=True (got sub_sample={m.sub_sample!r})")
    if not pooled and m.sub_sample:
        _fail("NonLocal2d", layout, f"its φ and g are not pooled (keys 'phi.*', 'g.*'), so build NonLocal2d "
              f"with sub_sample=False (got sub_sample={m.sub_sample!r})")
    has_bn = p + "W.0.weight" in sd
    if has_bn and m.bn is None:
        _fail("NonLocal2d", layout, "W is a conv followed by BatchNorm (keys 'W.0.*', 'W.1.*'): build with bn=True")
    if not has_bn and m.bn is not None:
        _fail("NonLocal2d", layout, "W is a single conv (keys 'W.*'): build with bn=False")
    sub = ".0." if pooled else "."
    for name in ("weight", "bias"):
        parts = [sd.pop(p + key + name) for key in ("theta.", "phi" + sub, "g" + sub) if p + key + name in sd]
        if len(parts) == 3:
            sd[p + "qkv." + name] = torch.cat(parts, dim=0)
        elif parts:
            _fail("NonLocal2d", layout, f"θ, φ and g must all have a {name!r}")
    w = "W.0." if has_bn else "W."
    _move(sd, p + w + "weight", p + "out.weight")
    _move(sd, p + w + "bias", p + "out.bias")
    if has_bn:
        for name in _BN_KEYS:
            _move(sd, p + "W.1." + name, p + "bn." + name)


def _second_order(m: nn.Module, sd: dict, p: str, layout: str) -> None:
    for src, dst in (("conv_du.0.", "conv_down."), ("conv_du.2.", "conv_up.")):
        for name in ("weight", "bias"):
            _move(sd, p + src + name, p + dst + name)


def _channel(m: ChannelAttention, sd: dict, p: str, layout: str) -> None:
    first, last = {"rcan": ("conv_du.0.", "conv_du.2."), "official": ("mlp.1.", "mlp.3."),
                   "timm": ("fc1.", "fc2.")}[layout]
    want_pool = ("avg",) if layout == "rcan" else ("avg", "max")
    if sorted(m.pool) != sorted(want_pool):
        _fail("ChannelAttention", layout, f"it pools {want_pool}: build with pool={want_pool} (got {m.pool})")
    if any(isinstance(layer, nn.BatchNorm1d) for layer in m.mlp):
        _fail("ChannelAttention", layout, "its MLP has no BatchNorm: build with mlp_bn=False")
    has_bias = p + first + "bias" in sd
    if has_bias != (m.mlp[0].bias is not None):
        _fail("ChannelAttention", layout, f"its MLP {'has' if has_bias else 'has no'} biases: build with "
              f"mlp_bias={has_bias}")
    out = f"mlp.{len(m.mlp) - 1}."
    for name in ("weight", "bias"):
        _move(sd, p + first + name, p + "mlp.0." + name, _linear)
        _move(sd, p + last + name, p + out + name, _linear)


def _spatial(m: SpatialAttention, sd: dict, p: str, layout: str) -> None:
    src = "spatial." if layout == "official" else "conv."
    order = ("max", "mean") if layout == "official" else ("mean", "max")
    if m.pool_order != order:
        _fail("SpatialAttention", layout, f"its conv reads [{', '.join(order)}]: build with pool_order={order}")
    if m.bn is None and p + src + "bn.weight" in sd:
        _fail("SpatialAttention", layout, "its conv is followed by BatchNorm: build with bn=True")
    _move(sd, p + src + "conv.weight", p + "conv.weight")
    _move(sd, p + src + "conv.bias", p + "conv.bias")
    for name in _BN_KEYS:
        _move(sd, p + src + "bn." + name, p + "bn." + name)


def _cbam(m: nn.Module, sd: dict, p: str, layout: str) -> None:
    if layout == "official":
        for key in [k for k in sd if k.startswith(p + "ChannelGate.") or k.startswith(p + "SpatialGate.")]:
            head = "channel." if key.startswith(p + "ChannelGate.") else "spatial."
            sd[p + head + key[len(p) + len("ChannelGate."):]] = sd.pop(key)


def _detect(peers: PeerLayouts, sd: Mapping[str, Any], prefix: str) -> str | None:
    for layout, marker in peers.markers.items():
        value = sd.get(prefix + marker)
        if value is None:
            continue
        # srops's own mlp_bn layout also has an 'mlp.1.weight': the BatchNorm's, 1-D
        if marker == "mlp.1.weight" and not (isinstance(value, torch.Tensor) and value.dim() == 2):
            continue
        return layout
    return None


def _check_layout(peers: PeerLayouts, layout: str) -> None:
    if layout not in peers.public:
        raise ValueError(f"srops.{peers.kind}: 'layout' must be one of {peers.public}, got {layout!r}")


def peer_load_hook(module: nn.Module, state_dict: dict, prefix: str, *_args: Any) -> None:
    """``load_state_dict`` pre-hook: renames a peer's keys under ``prefix`` to srops keys, in place.

    Runs for the module's own keys only; children convert theirs in their own hooks.
    """
    peers = peers_of(module)
    layout = _detect(peers, state_dict, prefix)
    if layout is not None:
        peers.convert(module, state_dict, prefix, layout)


def convert_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], layout: str) -> OrderedDict:
    """A copy of a peer's state_dict for ``module`` with srops keys (``module.load_state_dict`` ready).

    The module converts its own keys first, then each submodule with peers of the same ``layout``
    converts the keys under its name (as ``load_state_dict``'s hooks would, parents first).
    """
    _check_layout(peers_of(module), layout)
    sd = OrderedDict(state_dict)
    for name, sub in module.named_modules():
        peers = getattr(type(sub), "PEER_LAYOUTS", None)
        if isinstance(peers, PeerLayouts) and layout in peers.markers:
            peers.convert(sub, sd, name + "." if name else "", layout)
    return sd


def _reduction(kind: str, channels: int, hidden: int) -> int:
    """An r with ``max(1, channels // r) == hidden`` (srops's hidden width)."""
    for r in range(1, channels + 1):
        if max(1, channels // r) == hidden:
            return r
    raise ValueError(f"srops.{kind}: no reduction r gives a hidden width of {hidden} for {channels} channels "
                     "(the width is max(1, C // r))")


def _weight(kind: str, sd: Mapping[str, torch.Tensor], key: str, layout: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"srops.{kind}: a {layout!r} state_dict must contain {key!r}; got keys {sorted(sd)}")
    return sd[key]


def _nonlocal_config(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    if san_wrapper_keys(sd, ""):
        return {**_nonlocal_config(_strip(sd, "non_local."), "alexhex7"), "regions": 2}
    w = _weight("NonLocal2d", sd, "theta.weight", layout)
    return {"in_channels": w.shape[1], "inter_channels": w.shape[0], "sub_sample": "phi.0.weight" in sd,
            "bn": "W.0.weight" in sd, "regions": 1, "scale": 1.0}


def _second_order_config(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    w = _weight("SecondOrderAttention", sd, "conv_du.0.weight", layout)
    return {"channels": w.shape[1], "reduction": _reduction("SecondOrderAttention", w.shape[1], w.shape[0]),
            "iterations": 5, "max_size": 1000, "eps": 0.0}  # SAN adds no eps to the trace


def _channel_config(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    key = {"rcan": "conv_du.0.", "official": "mlp.1.", "timm": "fc1."}[layout]
    w = _weight("ChannelAttention", sd, key + "weight", layout)
    return {"channels": w.shape[1], "hidden": w.shape[0],
            "pool": ("avg",) if layout == "rcan" else ("avg", "max"), "mlp_bias": key + "bias" in sd}


def _spatial_config(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    src = "spatial." if layout == "official" else "conv."
    w = _weight("SpatialAttention", sd, src + "conv.weight", layout)
    return {"kernel_size": w.shape[-1], "bn": src + "bn.weight" in sd, "bias": src + "conv.bias" in sd,
            "pool_order": ("max", "mean") if layout == "official" else ("mean", "max"),
            "bn_momentum": 0.01 if layout == "official" else 0.1}


def _cbam_config(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    heads = ("ChannelGate.", "SpatialGate.") if layout == "official" else ("channel.", "spatial.")
    channel = _channel_config(_strip(sd, heads[0]), layout)
    spatial = _spatial_config(_strip(sd, heads[1]), layout)
    return {"channels": channel["channels"], "mlp_hidden": channel["hidden"], "mlp_bias": channel["mlp_bias"],
            "kernel_size": spatial["kernel_size"], "spatial_bn": spatial["bn"], "spatial_bias": spatial["bias"],
            "spatial_pool_order": spatial["pool_order"], "bn_momentum": spatial["bn_momentum"]}


# --------------------------------------------------------------------------- the modules' PEER_LAYOUTS

NONLOCAL2D = PeerLayouts(
    "NonLocal2d", {"san": "theta.weight", "alexhex7": "theta.weight", "san_ca": "non_local.theta.weight"},
    _nonlocal, _nonlocal_config, write_nonlocal, detected_only=("san_ca",))
SECOND_ORDER = PeerLayouts("SecondOrderAttention", {"san": "conv_du.0.weight"}, _second_order,
                           _second_order_config, write_second_order)
CHANNEL = PeerLayouts("ChannelAttention",
                      {"rcan": "conv_du.0.weight", "timm": "fc1.weight", "official": "mlp.1.weight"},
                      _channel, _channel_config, write_channel)
SPATIAL = PeerLayouts("SpatialAttention", {"official": "spatial.conv.weight", "timm": "conv.conv.weight"},
                      _spatial, _spatial_config, write_spatial)
CBAM_PEERS = PeerLayouts("CBAM", {"official": "ChannelGate.mlp.1.weight", "timm": "channel.fc1.weight"},
                         _cbam, _cbam_config, write_cbam)


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` (e.g. ``"non_local.non_local."`` in a SAN checkpoint), prefix removed."""
    if not prefix.endswith("."):
        prefix += "."
    out = _strip(state_dict, prefix)
    if not out:
        raise ValueError(f"srops.nn.compat.sub_state_dict: no key starts with {prefix!r}")
    return out


def _dtype_device(state_dict: Mapping[str, Any]) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of the first floating-point tensor of a state_dict (None, None without one)."""
    for value in state_dict.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype, value.device
    return None, None


def _check_san_regions(kind: str, state_dict: Mapping[str, Any], layout: str, overrides: Mapping[str, Any]) -> None:
    """SAN's inner non-local keys say nothing of the 2×2 split: the caller must say where the block goes."""
    if (kind == "NonLocal2d" and layout == "san" and "theta.weight" in state_dict
            and not san_wrapper_keys(state_dict, "") and "regions" not in overrides):
        raise ValueError(
            "srops.NonLocal2d.from_state_dict: these are the keys of SAN's inner NONLocalBlock2D ('theta.*', ...), "
            "which SAN's Nonlocal_CA runs on each quadrant of a 2×2 split. Pass regions=1 to put the block back "
            "inside the Nonlocal_CA (at 'non_local.non_local'), or regions=2 to replace the Nonlocal_CA itself "
            "(at 'non_local'); or slice the Nonlocal_CA's keys (sub_state_dict(ckpt, 'non_local')), which give "
            "regions=2. srops.nn.swap(model) does this for a whole network."
        )


def from_state_dict(cls: type[ModuleT], state_dict: Mapping[str, torch.Tensor], layout: str,
                    **overrides: Any) -> ModuleT:
    """``cls`` built with the peer's configuration (``overrides`` win), loaded strictly from ``state_dict``.

    The module takes the dtype and device of the checkpoint's floating-point tensors unless
    ``dtype=``/``device=`` are given (as for ``nn.Module`` constructors). For ``NonLocal2d`` with
    ``layout="san"``: the keys of SAN's ``Nonlocal_CA`` (``non_local.*``, ``soca.*``; its unused
    SOCA is dropped) give ``regions=2``; the keys of its inner block need an explicit ``regions``.
    """
    peers = peers_of(cls)
    kind = peers.kind
    _check_layout(peers, layout)
    _check_san_regions(kind, state_dict, layout, overrides)
    sd_dtype, sd_device = _dtype_device(state_dict)
    dtype, device = overrides.pop("dtype", None) or sd_dtype, overrides.pop("device", None) or sd_device
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"srops.{kind}.from_state_dict: 'dtype' must be a floating-point dtype, got {dtype}")
    module = cls(**{**peers.config(state_dict, layout), **overrides})
    module.to(device=device, dtype=dtype)
    module.load_state_dict(convert_state_dict(module, state_dict, layout), strict=True)
    return module
