"""A network's state_dict back in the peers' key layouts, and loading peer keys at any depth.

:func:`peer_state_dict` is the inverse of the renaming that ``load_state_dict`` does for srops
modules (srops/nn/compat.py): every srops attention module in the network writes its tensors
under the keys of the peer block it replaced (recorded by :func:`srops.nn.swap`) or of the
layout asked for, so that the peer's own network loads the checkpoint.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from srops.nn.compat import has_peers, peers_of
from srops.nn.peer_writers import PEER_ATTR, sub


def _layout_of(m: nn.Module, name: str, layout: str | Mapping[str, str] | None) -> str:
    recorded = getattr(m, PEER_ATTR, None)
    if recorded is not None:
        return recorded[1] if recorded[0] != "san.Nonlocal_CA" else "san"
    kind = peers_of(m).kind
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
        if not has_peers(m) or any(name.startswith(p) for p in done):
            continue
        prefix = name + "." if name else ""
        done.add(prefix)
        write = peers_of(m).write
        out.update({prefix + k: v for k, v in write(m, sub(sd, prefix), _layout_of(m, name, layout)).items()})
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
