"""AMMS (Lyn & Yan; docs/models.md §1): attention + multi-scale modules on srops NonLocal2d and SecondOrderAttention."""
from __future__ import annotations

import torch
from torch import nn

import srops
from srops.models.archs.common import (
    BackendArg,
    MeanShift,
    Upsampler,
    check_positive,
    check_scale,
    conv,
    resolve_backend,
)
from srops.models.registry import register


class SFBlock(nn.Module):
    """Shallow-feature block: x + conv1(ReLU(conv1(x))), ``[B, C, H, W]`` → same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 1), nn.ReLU(inplace=True), conv(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MSFF(nn.Module):
    """Multi-scale feature fusion: x + conv1(cat[ReLU(conv_k(x)) for k in kernels]) (MSRN-style confusion)."""

    def __init__(self, channels: int, kernels: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(conv(channels, channels, k), nn.ReLU(inplace=True)) for k in kernels
        )
        self.fuse = conv(len(kernels) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class AM(nn.Module):
    """Attention module: x + conv1(cat[NL(x), SOCA(x)]), 2C → C."""

    def __init__(self, nl: nn.Module, soca: nn.Module, channels: int) -> None:
        super().__init__()
        self.nl, self.soca = nl, soca
        self.fuse = conv(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([self.nl(x), self.soca(x)], dim=1))


class LSAM(nn.Module):
    """M attention modules plus a long skip: x + conv3(AM_M ∘ … ∘ AM_1(x))."""

    def __init__(self, ams: list[AM], channels: int) -> None:
        super().__init__()
        self.ams = nn.Sequential(*ams)
        self.tail = conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.ams(x))


@register("amms")
class AMMS(nn.Module):
    """AMMS: attention and multi-scale modules for single-image SR (arXiv 2004.03939, "MLRN").

    Model card
    ----------
    Paper [P]: shallow features (one conv, then an SFblock of 1×1 convs with a local
    residual), a body of stacked AMMS modules (2 × MSFF + 1 × LS_AM; MSFF = parallel
    1×1/3×3/5×5 convs with nonlinearities, fused; LS_AM = M attention modules AM plus a
    long skip; AM = a non-local branch and a second-order (SAN SOCA) branch, fused), and
    a sub-pixel reconstruction. Trained with L1 on 291 images; the SFblock is said to
    also "correct the feature in the tail".

    Our choices [C] (all constructor arguments): N = ``n_modules`` = 4, M = ``n_am`` = 4,
    C = ``n_feats`` = 64; SFblock = conv1-ReLU-conv1 + x; MSFF and AM fusion = concat +
    1×1 conv (MSRN); a trailing conv3 closes each LS_AM and the body (RCAN/SAN); the NL
    branch is SAN's region-level embedded-Gaussian block ``NonLocal2d(C, C/2,
    sub_sample=True, regions=2)`` (8,352 params at C = 64: θ/φ/g 1×1 with a 2×2 max-pool
    of φ, g; no 1/√d; zero-initialised W); SOCA = ``SecondOrderAttention(C, 16)`` (580);
    a second SFblock before the upsampler (``tail_sfblock``); DIV2K MeanShift at
    ``rgb_range`` = 255. ``nl_regions=1`` gives a global non-local block: full-image
    inference then needs a backend that does not materialise the score matrix (``sdpa``).

    Layout: input ``[B, 3, H, W]`` RGB on 0..rgb_range → ``[B, 3, sH, sW]``.

    Parameters (N = 4, M = 4, C = 64): MSFF 155,904; AM 17,188; LS_AM 105,680; module
    417,488; total ×2 1,874,755, ×3 2,059,395, ×4 2,022,467. N = 6: ×2 2,709,731,
    ×4 2,857,443. N = 8: ×2 3,544,707, ×4 3,692,419.
    """

    def __init__(
        self,
        scale: int = 4,
        n_modules: int = 4,
        n_am: int = 4,
        n_feats: int = 64,
        msff_kernels: tuple[int, ...] = (1, 3, 5),
        nl_inter_channels: int | None = None,
        nl_regions: int | tuple[int, int] = 2,
        nl_sub_sample: bool | str = True,
        soca_reduction: int = 16,
        soca_max_size: int | None = None,
        tail_sfblock: bool = True,
        rgb_range: float = 255.0,
        backend: BackendArg = None,
    ) -> None:
        super().__init__()
        self.scale = check_scale("amms", scale)
        check_positive("amms", n_modules=n_modules, n_am=n_am, n_feats=n_feats)
        c = n_feats
        inter = nl_inter_channels if nl_inter_channels is not None else max(1, c // 2)
        nl_backend = resolve_backend(backend, srops.NonLocal2d.OPS)
        so_backend = resolve_backend(backend, srops.SecondOrderAttention.OPS)

        def make_am() -> AM:
            nl = srops.NonLocal2d(c, inter, sub_sample=nl_sub_sample, regions=nl_regions, backend=nl_backend)
            soca = srops.SecondOrderAttention(c, soca_reduction, max_size=soca_max_size, backend=so_backend)
            return AM(nl, soca, c)

        def make_module() -> nn.Sequential:
            return nn.Sequential(MSFF(c, msff_kernels), MSFF(c, msff_kernels),
                                 LSAM([make_am() for _ in range(n_am)], c))

        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.head = conv(3, c, 3)
        self.sf_head = SFBlock(c)
        self.body = nn.Sequential(*[make_module() for _ in range(n_modules)])
        self.body_tail = conv(c, c, 3)
        self.sf_tail = SFBlock(c) if tail_sfblock else nn.Identity()
        self.upsample = Upsampler(scale, c)
        self.recon = conv(c, 3, 3)
        self.add_mean = MeanShift(rgb_range, sign=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_sf = self.sf_head(self.head(self.sub_mean(x)))
        f = self.body_tail(self.body(f_sf)) + f_sf
        return self.add_mean(self.recon(self.upsample(self.sf_tail(f))))
