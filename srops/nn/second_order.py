"""SecondOrderAttention: SAN's second-order channel attention (SOCA)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from srops._checks import check_float, check_int
from srops.nn._export import backend_for
from srops.nn.compat import SECOND_ORDER, PeerLayouts, from_state_dict, peer_load_hook
from srops.ops.covpool.frontend import MAX_ITERATIONS, covpool_sqrtm


def centre_crop(x: torch.Tensor, max_size: int) -> torch.Tensor:
    """Centre crop of x ``[B, C, H, W]`` to at most ``max_size`` along each side."""
    h, w = x.shape[-2:]
    top, left = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
    return x[..., top : top + min(h, max_size), left : left + min(w, max_size)]


class SecondOrderAttention(nn.Module):
    """x · σ(W₂ ReLU(W₁ s + b₁) + b₂), s = row mean of Σ^½, Σ = covariance of x over H·W.

    Args:
        channels: C of the input ``[B, C, H, W]``.
        reduction: hidden width ``max(1, C // reduction)`` of the gate (SAN: 16, so 64→4→64).
        iterations: Newton–Schulz iterations in [1, 256] (SAN: 5).
        max_size: if set, the statistic is computed on a centre crop of at most
            ``max_size`` per side; the gate multiplies the whole of x. ``max_size=1000``
            reproduces SAN's crop for every shape but one: SAN tests each side with strict
            ``<``/``>`` against 1000, so when one side is exactly 1000 and the other, w, is
            shorter, SAN keeps the 1000 side whole but slices the *other* side from the
            negative offset (w − 1000) // 2, which keeps only its last ⌈(1000 − w)/2⌉ rows
            or columns (for 334 ≤ w ≤ 999). srops keeps that shorter side whole.
        eps: added to the covariance trace before normalising, ``>= 0``. SAN adds none:
            ``eps=0`` (what :meth:`from_state_dict` sets) gives SAN's exact statistic. With
            ``eps=0`` a sample whose channels are all constant has statistic 0 and a zero
            gradient through it (not NaN).
        backend: backend of :func:`srops.functional.covpool_sqrtm`.

    The statistic is computed in float32 (float64 for float64 input). Its gradient is the exact
    derivative of the Newton–Schulz iteration; fast-MPN-COV's hand-written backward returns the
    transpose of the pre-normalisation gradient instead, which agrees after covariance pooling
    (only dΣ + dΣᵀ reaches x) but differs for a non-symmetric gradient fed to ``sqrtm_ns``
    directly (docs/ops.md §A). ``load_state_dict`` also takes SAN's ``conv_du`` keys.
    """

    #: The srops ops (``srops.backends()`` names) this module runs: what its ``backend`` argument selects for.
    OPS: ClassVar[tuple[str, ...]] = ("covpool_sqrtm",)
    PEER_LAYOUTS: ClassVar[PeerLayouts] = SECOND_ORDER

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        iterations: int = 5,
        max_size: int | None = None,
        eps: float = 1e-5,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"srops.SecondOrderAttention: 'channels' must be an int >= 1, got {channels!r}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"srops.SecondOrderAttention: 'max_size' must be None or >= 1, got {max_size!r}")
        check_int("SecondOrderAttention", "iterations", iterations, 1, MAX_ITERATIONS)
        eps = check_float("SecondOrderAttention", "eps", eps, nonnegative=True)
        hidden = max(1, channels // reduction)
        self.channels, self.iterations, self.max_size, self.eps, self.backend = (
            channels, iterations, max_size, eps, backend
        )
        self.conv_down = nn.Conv2d(channels, hidden, 1)
        self.conv_up = nn.Conv2d(hidden, channels, 1)
        self.register_load_state_dict_pre_hook(peer_load_hook)

    @classmethod
    def from_state_dict(cls, state_dict: dict, layout: str = "san", **overrides) -> "SecondOrderAttention":
        """SAN's SOCA (5 iterations, ``max_size=1000``, ``eps=0``) with the weights of a SAN state_dict.

        ``overrides`` (e.g. ``eps=1e-5``) replace those settings."""
        return from_state_dict(cls, state_dict, layout, **overrides)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, iterations={self.iterations}, max_size={self.max_size}, eps={self.eps}, "
                f"backend={self.backend!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"srops.SecondOrderAttention: input must be [B, {self.channels}, H, W], got shape {tuple(x.shape)}"
            )
        sub = centre_crop(x, self.max_size) if self.max_size is not None else x
        stat = covpool_sqrtm(sub, self.iterations, self.eps, row_mean=True, backend=backend_for(self.backend))
        w = torch.sigmoid(self.conv_up(torch.relu(self.conv_down(stat[:, :, None, None].to(x.dtype)))))
        return x * w
