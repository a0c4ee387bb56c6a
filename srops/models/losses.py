"""The loss functions behind the ``loss`` and ``gan`` blocks of a training config
(:mod:`srops.models.objectives` picks them by name): Charbonnier (LapSRN), the attention SRGAN's
discriminator loss (docs/models.md §3), the VGG feature (content) loss.

Images are ``[B, C, H, W]``. Nothing here downloads anything: the VGG loss reads its
ImageNet weights from a local ``state_dict`` file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
#: ``features[:n]`` cut-offs: VGG19 up to relu5_4 (Ledig's φ5,4); VGG16 up to pool5 (leftthomas).
DEFAULT_LAYERS = {"vgg19": 36, "vgg16": 31}
#: Ledig divides VGG19 φ5,4 features by 12.75; leftthomas' VGG16 loss uses them unscaled.
DEFAULT_FEATURE_SCALE = {"vgg19": 1 / 12.75, "vgg16": 1.0}
WEIGHTS_ENV = "SROPS_VGG_WEIGHTS"

def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(√((pred − target)² + eps²)), a differentiable L1."""
    if pred.shape != target.shape:
        raise ValueError(f"srops.models.charbonnier: 'pred' and 'target' must match, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


class SRGANDiscriminatorLoss(nn.Module):
    """leftthomas / attention SRGAN discriminator loss: 1 − mean D(HR) + mean D(SR).

    Pass ``d_sr = D(sr.detach())`` so that the generator gets no gradient from it.
    """

    def forward(self, d_hr: torch.Tensor, d_sr: torch.Tensor) -> torch.Tensor:
        return 1 - d_hr.mean() + d_sr.mean()


def vgg_features(arch: str = "vgg19", n_layers: int | None = None) -> nn.Sequential:
    """torchvision-compatible ``features[:n_layers]`` of VGG16/19 (conv3 + ReLU, 2×2 max-pools).

    Module indices match torchvision's, so its ``features.<i>.*`` state-dict entries load.
    """
    if arch not in VGG_CFGS:
        raise ValueError(f"srops.models.vgg_features: 'arch' must be one of {tuple(VGG_CFGS)}, got {arch!r}")
    layers: list[nn.Module] = []
    prev = 3
    for v in VGG_CFGS[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(prev, int(v), 3, padding=1), nn.ReLU()]
            prev = int(v)
    n = DEFAULT_LAYERS[arch] if n_layers is None else n_layers
    if not 1 <= n <= len(layers):
        raise ValueError(f"srops.models.vgg_features: 'n_layers' must be in [1, {len(layers)}] for {arch}, got {n!r}")
    return nn.Sequential(*layers[:n])


def _missing_weights_message(arch: str, detail: str) -> str:
    return (
        f"srops.models.VGGFeatureLoss: {detail}. The VGG loss needs ImageNet {arch} weights as a local "
        f"state_dict file (torchvision's key layout, 'features.<i>.weight'/'bias'); nothing is downloaded. "
        f"Pass weights='/path/to/{arch}.pth' or set {WEIGHTS_ENV}. To make one where torchvision and a network "
        f"are available: python -c \"import torch, torchvision; torch.save(torchvision.models.{arch}"
        f"(weights='IMAGENET1K_V1').state_dict(), '{arch}.pth')\""
    )


def load_vgg_weights(features: nn.Sequential, state: Mapping[str, torch.Tensor], arch: str) -> None:
    """Copy ``features.<i>.*`` (or bare ``<i>.*``) entries of ``state`` into ``features``."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    wanted = features.state_dict()
    picked, missing = {}, []
    for key, ref in wanted.items():
        value = state.get(prefix + key)
        if value is None:
            missing.append(prefix + key)
        elif tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"srops.models.VGGFeatureLoss: weight {prefix + key!r} must have shape "
                             f"{tuple(ref.shape)} for {arch}, got {tuple(value.shape)}")
        else:
            picked[key] = value
    if missing:
        raise ValueError(_missing_weights_message(arch, f"the weights file lacks {missing[:3]} ({len(missing)} keys)"))
    features.load_state_dict(picked)


class VGGFeatureLoss(nn.Module):
    """Content loss MSE(s·φ(SR), s·φ(HR)) on frozen VGG features φ = ``features[:n_layers]``.

    Args:
        weights: path of a local ``state_dict`` file (torchvision layout); ``None`` reads
            the ``SROPS_VGG_WEIGHTS`` variable. Missing → ValueError/FileNotFoundError
            explaining how to provide one.
        arch: ``"vgg19"`` (Ledig, CBAM study: φ5,4 = ``features[:36]``) or ``"vgg16"``
            (leftthomas: ``features[:31]``).
        n_layers: cut-off; default per arch as above.
        feature_scale: s; default 1/12.75 for VGG19 (Ledig), 1 for VGG16.
        input_range: images are in [0, input_range]; they are mapped to [0, 1] and
            normalised by the ImageNet mean/std before φ.

    Inputs ``[B, 3, H, W]`` RGB. The VGG is frozen and kept in eval mode; gradients flow to SR only.
    """

    mean: torch.Tensor  # registered buffers
    std: torch.Tensor

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        arch: str = "vgg19",
        n_layers: int | None = None,
        feature_scale: float | None = None,
        input_range: float = 1.0,
    ) -> None:
        super().__init__()
        self.features = vgg_features(arch, n_layers)
        path = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
        if path is None:
            raise ValueError(_missing_weights_message(arch, "no weights file given"))
        if not Path(path).is_file():
            raise FileNotFoundError(_missing_weights_message(arch, f"weights file {str(path)!r} does not exist"))
        load_vgg_weights(self.features, torch.load(path, map_location="cpu", weights_only=True), arch)
        self.features.requires_grad_(False).eval()
        self.feature_scale = DEFAULT_FEATURE_SCALE[arch] if feature_scale is None else feature_scale
        self.input_range = input_range
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGFeatureLoss":
        super().train(mode)
        self.features.eval()
        return self

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled features s·φ(x) of ``[B, 3, H, W]`` images."""
        x = (x / self.input_range - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x) * self.feature_scale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.phi(hr)
        return F.mse_loss(self.phi(sr), target)
