"""NonLocal2d: the embedded-Gaussian non-local block (Wang et al.; SAN's region-level variant)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as TF
from torch import nn

from srops.nn._export import backend_for, export_spans, exporting
from srops.nn.compat import NONLOCAL2D, PeerLayouts, from_state_dict, peer_load_hook
from srops.ops.nonlocal_attention.frontend import nonlocal_attention
from srops.ops.nonlocal_attention.regions import fold, spans, unfold

_SUB_SAMPLE = (False, True, "after", "before")


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"srops.NonLocal2d: '{name}' must be an int >= 1 or a pair of them, got {value!r}")
    return pair


class NonLocal2d(nn.Module):
    """z = x + W · softmax(θ(x) φ(x)ᵀ · scale) g(x), per region.

    Args:
        in_channels: C of the input ``[B, C, H, W]``.
        inter_channels: d of θ, φ, g; default ``max(1, C // 2)`` (AlexHex7; SAN passes C // 8).
        sub_sample: 2×2 max-pool of the keys and values: ``True``/``"after"`` pools φ(x), g(x)
            (AlexHex7, and SAN's effective behaviour); ``"before"`` pools x before the φ/g
            convolutions (FB video-nonlocal-net); ``False`` none.
        regions: ``rh × rw`` tiling (an int or a pair); each tile attends only within itself, with
            shared weights (SAN uses 2). Tiles are folded into the batch, one attention call per
            tile shape (at most four when the sides do not divide).
        scale: logit scale; 1.0 for SAN/AlexHex7.
        bn: W is a 1×1 conv then BatchNorm with γ = β = 0 (AlexHex7 default); otherwise the
            W conv's weight and bias are zero. Either way the block starts as the identity.
        backend: attention backend (see :func:`srops.functional.nonlocal_attention`).

    θ, φ and g are one fused 1×1 convolution ``qkv`` (C → 3d, with bias).
    Every region must be at least 2×2 when sub-sampling.

    SAN's configuration is ``NonLocal2d(64, inter_channels=64 // 8, sub_sample=True, regions=2)``
    (SAN builds ``NONLocalBlock2D(64, 8, sub_sample=False, bn_layer=False)`` on a 2×2 split).
    SAN's code always max-pools φ and g: its 2-D branch rebinds the local ``sub_sample`` to the
    class ``nn.Upsample``, which is truthy, so the ``sub_sample=False`` it passes is ignored and
    its checkpoints hold ``phi.0.weight``/``g.0.weight``. A literal port of SAN's call must
    therefore pass ``sub_sample=True`` to reproduce SAN's trained models (docs/ops.md §B).

    ``load_state_dict`` also takes SAN's and AlexHex7's keys (``theta``, ``phi``, ``g``, ``W``),
    and refuses them when ``sub_sample`` or ``bn`` does not match the checkpoint;
    :meth:`from_state_dict` builds the block from such a checkpoint (docs/ops.md §D).
    """

    #: The srops ops (``srops.backends()`` names) this module runs: what its ``backend`` argument selects for.
    OPS: ClassVar[tuple[str, ...]] = ("nonlocal_attention",)
    PEER_LAYOUTS: ClassVar[PeerLayouts] = NONLOCAL2D

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        sub_sample: bool | str = True,
        regions: int | tuple[int, int] = 1,
        scale: float = 1.0,
        bn: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"srops.NonLocal2d: 'in_channels' must be an int >= 1, got {in_channels!r}")
        if sub_sample not in _SUB_SAMPLE:
            raise ValueError(f"srops.NonLocal2d: 'sub_sample' must be one of {_SUB_SAMPLE}, got {sub_sample!r}")
        self.in_channels = in_channels
        self.inter_channels = inter_channels if inter_channels is not None else max(1, in_channels // 2)
        if self.inter_channels < 1:
            raise ValueError(f"srops.NonLocal2d: 'inter_channels' must be >= 1, got {inter_channels!r}")
        self.sub_sample = "after" if sub_sample is True else sub_sample
        self.regions = _pair(regions, "regions")
        self.scale = float(scale)
        self.backend = backend
        d = self.inter_channels
        self.qkv = nn.Conv2d(in_channels, 3 * d, 1)
        self.out = nn.Conv2d(d, in_channels, 1)
        self.bn: nn.BatchNorm2d | None
        if bn:
            self.bn = nn.BatchNorm2d(in_channels)
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
        else:
            self.bn = None
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self._out_bias)
        self.register_load_state_dict_pre_hook(peer_load_hook)

    @classmethod
    def from_state_dict(cls, state_dict: dict, layout: str, **overrides: Any) -> "NonLocal2d":
        """A block configured as the peer's (``"san"``: 2×2 regions; ``"alexhex7"``) with its weights.

        Channels, ``inter_channels``, ``sub_sample`` and ``bn`` are read from the keys and shapes;
        ``overrides`` replace any constructor argument (``backend``, ``regions``, ...).
        """
        return from_state_dict(cls, state_dict, layout, **overrides)

    @property
    def _qkv_bias(self) -> torch.Tensor:
        """``qkv.bias`` (the convolution is built with one)."""
        assert self.qkv.bias is not None
        return self.qkv.bias

    @property
    def _out_bias(self) -> torch.Tensor:
        """``out.bias`` (the convolution is built with one)."""
        assert self.out.bias is not None
        return self.out.bias

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, inter_channels={self.inter_channels}, sub_sample={self.sub_sample!r}, "
            f"regions={self.regions}, scale={self.scale}, backend={self.backend!r}"
        )

    def _tile_qkv(
        self, x: torch.Tensor, qkv: torch.Tensor | None, rows: tuple, cols: tuple
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """θ, φ, g of one group of equal tiles, ``[T, d, h, w]``, with φ and g pooled if asked."""
        d = self.inter_channels
        if self.sub_sample == "before":  # qkv: None, or θ of the whole map (under torch.compile)
            xt = fold(x, rows, cols)
            w, b = self.qkv.weight, self._qkv_bias
            theta = TF.conv2d(xt, w[:d], b[:d]) if qkv is None else fold(qkv, rows, cols)
            phi, g = TF.conv2d(TF.max_pool2d(xt, 2), w[d:], b[d:]).split(d, dim=1)
            return theta, phi, g
        assert qkv is not None  # computed over the whole map unless sub_sample == "before"
        theta, phi, g = fold(qkv, rows, cols).split(d, dim=1)
        if self.sub_sample == "after":
            phi, g = TF.max_pool2d(phi, 2), TF.max_pool2d(g, 2)
        return theta, phi, g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"srops.NonLocal2d: input must be [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        rh, rw = self.regions
        if h < rh or w < rw:
            raise ValueError(f"srops.NonLocal2d: input {h}×{w} is smaller than regions {rh}×{rw}")
        if self.sub_sample and (h // rh < 2 or w // rw < 2):
            raise ValueError(f"srops.NonLocal2d: sub_sample needs regions of at least 2×2, got {h // rh}×{w // rw}")
        # θ/φ/g are 1×1 convs, so projecting the whole map first equals projecting each tile.
        # Under torch.compile no convolution may take a 4-D view with symbolic sides, which it would
        # save for backward (Inductor cannot order its strides: see regions.unfold). So there "before"
        # projects θ over the whole map, not over the folded tiles of x, and a map made of one group
        # of equal tiles is unfolded fresh. Eager keeps the cheaper forms.
        compiling = torch.compiler.is_compiling()
        d = self.inter_channels
        if self.sub_sample != "before":
            qkv = self.qkv(x)
        else:
            qkv = TF.conv2d(x, self.qkv.weight[:d], self._qkv_bias[:d]) if compiling else None
        # at most two of each; under torch.export always two, so that no side length is specialised
        if exporting():
            row_groups, col_groups = export_spans(h, rh), export_spans(w, rw)
        else:
            row_groups, col_groups = spans(h, rh), spans(w, rw)
        fresh = compiling and len(row_groups) == len(col_groups) == 1
        rows_out = []
        for rows in row_groups:
            cols_out = []
            for cols in col_groups:
                theta, phi, g = self._tile_qkv(x, qkv, rows, cols)
                t, d, th, tw = theta.shape
                q = theta.flatten(2).transpose(1, 2)
                k = phi.flatten(2).transpose(1, 2)
                v = g.flatten(2).transpose(1, 2)
                y = nonlocal_attention(q, k, v, scale=self.scale, backend=backend_for(self.backend))
                cols_out.append(unfold(y.transpose(1, 2).reshape(t, d, th, tw), b, rows, cols, fresh=fresh))
            rows_out.append(torch.cat(cols_out, dim=3))
        z = self.out(torch.cat(rows_out, dim=2))
        if self.bn is not None:
            z = self.bn(z)
        return x + z
