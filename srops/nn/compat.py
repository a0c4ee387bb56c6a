"""The peers' state_dict layouts: SAN, AlexHex7, official CBAM, timm, RCAN (docs/ops.md §D).

Every srops attention module registers :func:`peer_load_hook`, so ``load_state_dict`` accepts
a peer's keys (relative to the module, as in the peer's own submodule) and renames them to the
srops keys before loading. The configuration is never changed by loading: where the peer's
checkpoint implies a different one (pooled φ/g, a BatchNorm after W, bias-free MLPs, the
spatial pooling order), a ``ValueError`` names the constructor argument to set.
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
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar, cast

import torch
from torch import nn

if TYPE_CHECKING:  # srops.nn.cbam imports this module
    from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _kind(module: Any) -> str:
    """The srops class a module (or class) is, by the first srops base in its MRO."""
    cls = module if isinstance(module, type) else type(module)
    for base in cls.__mro__:
        if base.__module__.startswith("srops.nn.") and base.__name__ in LAYOUTS:
            return base.__name__
    raise TypeError(f"srops.nn.compat: expected a srops attention module, got {cls.__name__}")


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


# layouts per srops class: converter, and the key (relative to the module) that marks the layout
LAYOUTS: dict[str, dict[str, str]] = {
    "NonLocal2d": {"san": "theta.weight", "alexhex7": "theta.weight", "san_ca": "non_local.theta.weight"},
    "SecondOrderAttention": {"san": "conv_du.0.weight"},
    "ChannelAttention": {"rcan": "conv_du.0.weight", "timm": "fc1.weight", "official": "mlp.1.weight"},
    "SpatialAttention": {"official": "spatial.conv.weight", "timm": "conv.conv.weight"},
    "CBAM": {"official": "ChannelGate.mlp.1.weight", "timm": "channel.fc1.weight"},
}
# each converter takes the module of its class
_CONVERT: dict[str, Callable[[Any, dict, str, str], None]] = {
    "NonLocal2d": _nonlocal, "SecondOrderAttention": _second_order, "ChannelAttention": _channel,
    "SpatialAttention": _spatial, "CBAM": _cbam}


def _detect(kind: str, sd: Mapping[str, Any], prefix: str) -> str | None:
    for layout, marker in LAYOUTS[kind].items():
        value = sd.get(prefix + marker)
        if value is None:
            continue
        # srops's own mlp_bn layout also has an 'mlp.1.weight': the BatchNorm's, 1-D
        if marker == "mlp.1.weight" and not (isinstance(value, torch.Tensor) and value.dim() == 2):
            continue
        return layout
    return None


def _check_layout(kind: str, layout: str) -> None:
    public = tuple(name for name in LAYOUTS[kind] if name != "san_ca")  # "san_ca": detected, not asked for
    if layout not in public:
        raise ValueError(f"srops.{kind}: 'layout' must be one of {public}, got {layout!r}")


def peer_load_hook(module: nn.Module, state_dict: dict, prefix: str, *_args: Any) -> None:
    """``load_state_dict`` pre-hook: renames a peer's keys under ``prefix`` to srops keys, in place.

    Runs for the module's own keys only; children convert theirs in their own hooks.
    """
    kind = _kind(module)
    layout = _detect(kind, state_dict, prefix)
    if layout is not None:
        _CONVERT[kind](module, state_dict, prefix, layout)


def convert_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], layout: str) -> OrderedDict:
    """A copy of a peer's state_dict for ``module`` with srops keys (``module.load_state_dict`` ready)."""
    kind = _kind(module)
    _check_layout(kind, layout)
    sd = OrderedDict(state_dict)
    _CONVERT[kind](module, sd, "", layout)
    if kind == "CBAM":
        cbam = cast("CBAM", module)  # _kind checked the class
        _channel(cbam.channel, sd, "channel.", layout)
        _spatial(cbam.spatial, sd, "spatial.", layout)
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


def _config(kind: str, sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, Any]:
    """Constructor arguments of the peer's module, read from its keys and weight shapes."""
    if kind == "NonLocal2d":
        if san_wrapper_keys(sd, ""):
            return {**_config(kind, _strip(sd, "non_local."), "alexhex7"), "regions": 2}
        w = _weight(kind, sd, "theta.weight", layout)
        return {"in_channels": w.shape[1], "inter_channels": w.shape[0], "sub_sample": "phi.0.weight" in sd,
                "bn": "W.0.weight" in sd, "regions": 1, "scale": 1.0}
    if kind == "SecondOrderAttention":
        w = _weight(kind, sd, "conv_du.0.weight", layout)
        return {"channels": w.shape[1], "reduction": _reduction(kind, w.shape[1], w.shape[0]),
                "iterations": 5, "max_size": 1000, "eps": 0.0}  # SAN adds no eps to the trace
    if kind == "ChannelAttention":
        key = {"rcan": "conv_du.0.", "official": "mlp.1.", "timm": "fc1."}[layout]
        w = _weight(kind, sd, key + "weight", layout)
        return {"channels": w.shape[1], "hidden": w.shape[0],
                "pool": ("avg",) if layout == "rcan" else ("avg", "max"), "mlp_bias": key + "bias" in sd}
    if kind == "SpatialAttention":
        src = "spatial." if layout == "official" else "conv."
        w = _weight(kind, sd, src + "conv.weight", layout)
        return {"kernel_size": w.shape[-1], "bn": src + "bn.weight" in sd, "bias": src + "conv.bias" in sd,
                "pool_order": ("max", "mean") if layout == "official" else ("mean", "max"),
                "bn_momentum": 0.01 if layout == "official" else 0.1}
    heads = ("ChannelGate.", "SpatialGate.") if layout == "official" else ("channel.", "spatial.")
    channel = _config("ChannelAttention", _strip(sd, heads[0]), layout)
    spatial = _config("SpatialAttention", _strip(sd, heads[1]), layout)
    return {"channels": channel["channels"], "mlp_hidden": channel["hidden"], "mlp_bias": channel["mlp_bias"],
            "kernel_size": spatial["kernel_size"], "spatial_bn": spatial["bn"], "spatial_bias": spatial["bias"],
            "spatial_pool_order": spatial["pool_order"], "bn_momentum": spatial["bn_momentum"]}


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
    kind = _kind(cls)
    _check_layout(kind, layout)
    _check_san_regions(kind, state_dict, layout, overrides)
    sd_dtype, sd_device = _dtype_device(state_dict)
    dtype, device = overrides.pop("dtype", None) or sd_dtype, overrides.pop("device", None) or sd_device
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"srops.{kind}.from_state_dict: 'dtype' must be a floating-point dtype, got {dtype}")
    module = cls(**{**_config(kind, state_dict, layout), **overrides})
    module.to(device=device, dtype=dtype)
    module.load_state_dict(convert_state_dict(module, state_dict, layout), strict=True)
    return module
