"""Swap the peers' attention blocks inside an existing network for srops modules, in place.

:func:`swap` walks a model and replaces each block it recognises, by its children's names,
types and parameter shapes (no peer code is imported), with the srops module holding the same
weights, dtype, device and training mode:

=====================  ==============================================  ===============================
peer                   recognised structure                            srops module
=====================  ==============================================  ===============================
``san.Nonlocal_CA``    ``non_local`` (a non-local block), ``soca``     ``NonLocal2d(regions=2)``
``nonlocal``           ``theta``, ``phi[.0]``, ``g[.0]``, ``W[.0/.1]``  ``NonLocal2d(regions=1)``
(SAN's inner block, AlexHex7's ``NONLocalBlock2D``)
``san.SOCA``           ``max_pool``, ``conv_du`` (conv, ReLU, conv, σ)  ``SecondOrderAttention``
``rcan.CALayer``       ``avg_pool``, ``conv_du`` (conv, ReLU, conv, σ)  ``ChannelAttention(pool=avg)``
``cbam.official``      ``ChannelGate.mlp``, ``SpatialGate.spatial``     ``CBAM``
``timm.CbamModule``    ``channel.fc1/fc2``, ``spatial.conv.conv/bn``    ``CBAM`` (timm's options)
=====================  ==============================================  ===============================

SAN's ``Nonlocal_CA`` already cuts the map into 2×2 quadrants, so it is replaced as a whole by
one ``NonLocal2d(regions=2)``; its SOCA, which its forward never calls, is dropped (its tensors
are kept on the new module for :func:`srops.nn.peer_state_dict`). The new modules are new
parameters: build the optimizer after swapping. Checkpoints in the peer's keys load into the
swapped network with ``torch.nn.Module.load_state_dict`` (or :func:`srops.nn.load_state_dict`,
which bypasses a network's own override), and :func:`srops.nn.peer_state_dict` gives them back.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeGuard

from torch import nn

from srops.nn.cbam import CBAM, ChannelAttention
from srops.nn.compat import from_state_dict, has_peers
from srops.nn.nonlocal2d import NonLocal2d
from srops.nn.peer_writers import PEER_ATTR
from srops.nn.second_order import SecondOrderAttention


@dataclass
class Replacement:
    name: str
    peer: str
    module: str
    parameters: int
    dropped_parameters: int = 0


@dataclass
class SwapReport:
    """What :func:`swap` replaced (``replaced``) and what it left alone (``left_alone``: name, reason)."""

    replaced: list[Replacement] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def dropped_parameters(self) -> int:
        return sum(r.dropped_parameters for r in self.replaced)

    def __str__(self) -> str:
        lines = [f"srops.nn.swap: replaced {len(self.replaced)} block(s)"]
        lines += [f"  {r.name or '<model>'}: {r.peer} -> {r.module}"
                  + (f" (dropped {r.dropped_parameters:,} unused parameters)" if r.dropped_parameters else "")
                  for r in self.replaced]
        if self.left_alone:
            lines.append(f"left alone {len(self.left_alone)} block(s) that resemble a peer's:")
            lines += [f"  {name}: {why}" for name, why in self.left_alone]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _conv1x1(m: object) -> TypeGuard[nn.Conv2d]:
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1


def _children(m: nn.Module) -> set[str]:
    return set(dict(m.named_children()))


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _pooled(m: nn.Module) -> nn.Conv2d | None:
    """A 1×1 conv, or ``Sequential(conv 1×1, MaxPool2d(2))``; else None."""
    if _conv1x1(m):
        return m
    if (isinstance(m, nn.Sequential) and len(m) == 2 and _conv1x1(m[0]) and isinstance(m[1], nn.MaxPool2d)
            and m[1].kernel_size in (2, (2, 2)) and m[1].stride in (2, (2, 2), None) and m[1].padding in (0, (0, 0))):
        return m[0]
    return None


def _conv_du(m: nn.Module) -> str | None:
    """None when ``m.conv_du`` is ``Sequential(conv 1×1, ReLU, conv 1×1, Sigmoid)``, else why not."""
    du = getattr(m, "conv_du", None)
    if not (isinstance(du, nn.Sequential) and len(du) == 4):
        return "conv_du is not Sequential(conv, ReLU, conv, Sigmoid)"
    if not (_conv1x1(du[0]) and isinstance(du[1], nn.ReLU) and _conv1x1(du[2]) and isinstance(du[3], nn.Sigmoid)):
        return "conv_du is not Sequential(conv 1×1, ReLU, conv 1×1, Sigmoid)"
    if du[0].bias is None or du[2].bias is None:
        return "conv_du's convolutions have no bias"
    return None


def _nonlocal(m: nn.Module) -> str | None:
    """Why ``m`` is not an embedded-Gaussian non-local block with SAN's/AlexHex7's children (None: it is)."""
    if _children(m) != {"theta", "phi", "g", "W"}:
        return "not a non-local block"
    theta, phi, g = m.get_submodule("theta"), _pooled(m.get_submodule("phi")), _pooled(m.get_submodule("g"))
    if (not _conv1x1(theta) or phi is None or g is None
            or isinstance(m.phi, nn.Sequential) != isinstance(m.g, nn.Sequential)):
        return "theta/phi/g are not 1×1 convolutions (phi and g both max-pooled 2×2 or neither)"
    w = m.W
    if isinstance(w, nn.Sequential):
        if not (len(w) == 2 and _conv1x1(w[0]) and type(w[1]) is nn.BatchNorm2d):
            return "W is neither a 1×1 conv nor Sequential(conv, BatchNorm2d)"
    elif not _conv1x1(w):
        return "W is not a 1×1 convolution"
    if any(c.bias is None for c in (theta, phi, g)):
        return "theta/phi/g have no bias"
    if getattr(m, "mode", "embedded_gaussian") not in ("embedded_gaussian", "embedded"):
        return f"mode {m.mode!r} is not the embedded Gaussian"
    where = f"{type(m).__module__}.{type(m).__qualname__}".lower()
    if any(v in where for v in ("dot_product", "concatenation")) or ("gaussian" in where and "embedded" not in where):
        return f"{type(m).__module__} names another pairwise function than the embedded Gaussian"
    return None


def _soca_like(m: nn.Module) -> bool:
    return _children(m) == {"max_pool", "conv_du"} and _conv_du(m) is None


# --------------------------------------------------------------------------- recognisers
# Each returns None (not this peer), a str (looks like it, but cannot be swapped: why) or (peer, layout).

Match = tuple[str, str]


def _is_san_ca(m: nn.Module) -> Match | str | None:
    if _children(m) != {"non_local", "soca"}:
        return None
    if _nonlocal(m.get_submodule("non_local")) is not None or not _soca_like(m.get_submodule("soca")):
        return None
    return "san.Nonlocal_CA", "san"


def _is_nonlocal(m: nn.Module) -> Match | str | None:
    if _children(m) != {"theta", "phi", "g", "W"}:
        return None
    why = _nonlocal(m)
    return why if why else ("nonlocal", "alexhex7")


def _is_soca(m: nn.Module) -> Match | str | None:
    if _children(m) != {"max_pool", "conv_du"}:
        return None
    why = _conv_du(m)
    return why if why else ("san.SOCA", "san")


def _is_calayer(m: nn.Module) -> Match | str | None:
    if _children(m) != {"avg_pool", "conv_du"}:
        return None
    why = _conv_du(m)
    if why:
        return why
    if not (isinstance(m.avg_pool, nn.AdaptiveAvgPool2d) and m.avg_pool.output_size in (1, (1, 1))):
        return "avg_pool is not AdaptiveAvgPool2d(1)"
    return "rcan.CALayer", "rcan"


def _spatial_conv(conv: object, bn: object) -> str | None:
    if not (isinstance(conv, nn.Conv2d) and conv.in_channels == 2 and conv.out_channels == 1 and conv.groups == 1
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2,) * 2 and conv.stride == (1, 1) and conv.dilation == (1, 1)):
        return "its spatial conv is not a stride-1, 'same'-padded odd k×k conv from 2 channels to 1"
    if bn is not None and not (isinstance(bn, nn.BatchNorm2d) and bn.num_features == 1 and bn.affine):
        return "its spatial BatchNorm is not BatchNorm2d(1)"
    return None


def _is_cbam_official(m: nn.Module) -> Match | str | None:
    if "ChannelGate" not in _children(m):
        return None
    if _children(m) != {"ChannelGate", "SpatialGate"}:
        return "a CBAM without a SpatialGate (no_spatial=True) has no srops module"
    mlp = getattr(m.ChannelGate, "mlp", None)
    if not (isinstance(mlp, nn.Sequential) and len(mlp) == 4 and isinstance(mlp[0], nn.Flatten)
            and isinstance(mlp[1], nn.Linear) and isinstance(mlp[2], nn.ReLU) and isinstance(mlp[3], nn.Linear)):
        return "ChannelGate.mlp is not Sequential(Flatten, Linear, ReLU, Linear)"
    if list(getattr(m.ChannelGate, "pool_types", ["avg", "max"])) != ["avg", "max"]:
        return f"ChannelGate pools {m.get_submodule('ChannelGate').pool_types}, not ['avg', 'max']"
    basic = getattr(m.SpatialGate, "spatial", None)
    if basic is None or getattr(basic, "relu", None) is not None:
        return "SpatialGate.spatial is missing or ends in a ReLU"
    why = _spatial_conv(getattr(basic, "conv", None), getattr(basic, "bn", None))
    return why if why else ("cbam.official", "official")


def _is_cbam_timm(m: nn.Module) -> Match | str | None:
    if _children(m) != {"channel", "spatial"} or not hasattr(m.channel, "fc1"):
        return None
    ch = m.channel
    if not (_conv1x1(ch.fc1) and _conv1x1(getattr(ch, "fc2", None)) and isinstance(getattr(ch, "act", None), nn.ReLU)):
        return "channel is not fc1 (1×1 conv), ReLU, fc2 (1×1 conv)"
    cna = getattr(m.spatial, "conv", None)
    if cna is None or not isinstance(getattr(cna, "conv", None), nn.Conv2d):
        return "spatial.conv is not a conv + BatchNorm"
    if cna.conv.in_channels != 2:
        return "its spatial gate pools to one channel (timm's LightCbamModule), which srops does not provide"
    why = _spatial_conv(cna.conv, getattr(cna, "bn", None))
    if not why and not isinstance(getattr(getattr(cna, "bn", None), "act", nn.Identity()), nn.Identity):
        why = "its spatial BatchNorm has an activation"
    return why if why else ("timm.CbamModule", "timm")


RECOGNISERS: tuple[Callable[[nn.Module], Match | str | None], ...] = (
    _is_san_ca, _is_nonlocal, _is_soca, _is_calayer, _is_cbam_official, _is_cbam_timm,
)
_CLASS: dict[str, type[nn.Module]] = {
    "san.Nonlocal_CA": NonLocal2d, "nonlocal": NonLocal2d, "san.SOCA": SecondOrderAttention,
    "rcan.CALayer": ChannelAttention, "cbam.official": CBAM, "timm.CbamModule": CBAM}
PEERS = tuple(_CLASS)


def _build(peer: str, layout: str, old: nn.Module, backend: str | None) -> tuple[nn.Module, dict]:
    sd = old.state_dict()
    first = next((t for t in sd.values() if t.is_floating_point()), None)
    kwargs = {"dtype": first.dtype, "device": first.device} if first is not None else {}
    new = from_state_dict(_CLASS[peer], sd, layout, backend=backend, **kwargs)
    new.train(old.training)
    dropped = {k: v for k, v in sd.items() if k.startswith("soca.")} if peer == "san.Nonlocal_CA" else {}
    setattr(new, PEER_ATTR, (peer, layout, dropped))
    return new, dropped


def _double_split(parent: nn.Module | None, name: str, child: nn.Module) -> bool:
    """A srops NonLocal2d with regions inside a module shaped like SAN's Nonlocal_CA (which splits 2×2 itself)."""
    return (isinstance(child, NonLocal2d) and tuple(child.regions) != (1, 1) and parent is not None
            and name == "non_local" and _children(parent) == {"non_local", "soca"}
            and _soca_like(parent.get_submodule("soca")))


def swap(model: nn.Module, peers: Iterable[str] | None = None, backend: str | None = None) -> SwapReport:
    """Replace, in place, every recognised peer block in ``model`` by its srops module; returns the report.

    Args:
        model: any ``nn.Module``; a model that is itself a peer block cannot be replaced in place
            (wrap it, e.g. in ``nn.Sequential``).
        peers: the peer names to replace (default all: :data:`PEERS`).
        backend: ``backend=`` of the new modules (default: the fastest that can run).

    The new modules take the old ones' weights, dtype, device and training mode. Raises
    ``ValueError`` where a srops ``NonLocal2d`` with regions sits inside SAN's ``Nonlocal_CA``
    (which splits the map itself: it would be split twice).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"srops.nn.swap: 'model' must be a torch.nn.Module, got {type(model).__name__}")
    wanted = set(PEERS if peers is None else peers)
    if wanted - set(PEERS):
        raise ValueError(f"srops.nn.swap: 'peers' must be among {PEERS}, got {sorted(wanted - set(PEERS))}")
    for recognise in RECOGNISERS:
        found = recognise(model)
        if isinstance(found, tuple) and found[0] in wanted:
            raise ValueError(f"srops.nn.swap: the model itself is a {found[0]} block: swap a module that contains "
                             "it (e.g. nn.Sequential(block)) so that it can be replaced in place")
    report = SwapReport()
    _walk(model, "", wanted, backend, report)
    if report.dropped_parameters:
        report.notes.append(f"{report.dropped_parameters:,} parameters of unused blocks were dropped")
    if report.replaced:
        report.notes.append("the swapped-in modules hold new parameters: build the optimizer after swapping")
    overrides = sorted({type(m).__name__ for m in model.modules()
                        if type(m).load_state_dict is not nn.Module.load_state_dict})
    if report.replaced and overrides:
        msg = (f"{', '.join(overrides)} override(s) load_state_dict, which may skip the peer keys that srops renames: "
               "load checkpoints with srops.nn.load_state_dict(model, state_dict)")
        report.notes.append(msg)
        warnings.warn(f"srops.nn.swap: {msg}", stacklevel=2)
    return report


def _walk(module: nn.Module, prefix: str, wanted: set, backend: str | None, report: SwapReport) -> None:
    for name, child in list(module.named_children()):
        full = prefix + name
        if has_peers(child):
            if _double_split(module, name, child):
                raise ValueError(
                    f"srops.nn.swap: {full!r} is a NonLocal2d with regions={child.regions} inside a module shaped like "
                    f"SAN's Nonlocal_CA ({prefix[:-1] or '<model>'!r}), which already splits the map 2×2: the map "
                    "would be split twice. Use regions=1 there, or replace the Nonlocal_CA itself")
            continue
        found = None
        for recognise in RECOGNISERS:
            found = recognise(child)
            if found is not None:
                break
        if isinstance(found, tuple) and found[0] in wanted:
            new, dropped = _build(found[0], found[1], child, backend)
            setattr(module, name, new)
            report.replaced.append(Replacement(full, found[0], type(new).__name__, _count(new),
                                               sum(v.numel() for v in dropped.values())))
            continue
        if isinstance(found, str):
            report.left_alone.append((full, found))
        elif isinstance(found, tuple):
            report.left_alone.append((full, f"{found[0]} is not among the peers asked for"))
        _walk(child, full + ".", wanted, backend, report)
