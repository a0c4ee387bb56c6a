"""SRGAN discriminator (leftthomas' size-agnostic head by default; Ledig's dense head as an option)."""
from __future__ import annotations

import torch
from torch import nn

from srops.models.archs.common import check_choice, check_positive, conv
from srops.models.registry import register

CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)
STRIDES = (1, 2, 1, 2, 1, 2, 1, 2)


@register("srgan_discriminator")
class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator: eight conv3 blocks, then a real/fake probability per image.

    Model card
    ----------
    Paper/code [R Ledig, leftthomas]: conv3 layers with 64, 64, 128, 128, 256, 256, 512,
    512 channels and strides 1, 2, 1, 2, 1, 2, 1, 2; BN after every conv but the first;
    LeakyReLU(0.2). Head: leftthomas ``"conv"`` = global average pool → conv1 512→1024 →
    LReLU → conv1 1024→1 → sigmoid (any input size); Ledig/Keras ``"dense"`` = flatten →
    Dense(1024) → LReLU → Dense(1) → sigmoid (fixed ``input_size``).

    Our choices [C]: ``head="conv"`` (the attention SRGAN's leftthomas lineage, docs/models.md §3). ``scale`` is
    accepted for the registry's uniform signature and ignored.

    Layout: ``[B, 3, H, W]`` → ``[B]`` probabilities (logits if ``sigmoid=False``); with
    ``head="dense"`` H = W = ``input_size``.

    Parameters: conv head 5,215,425; dense head at 96² 23,565,505.
    """

    def __init__(
        self,
        scale: int = 4,
        head: str = "conv",
        input_size: int = 96,
        in_channels: int = 3,
        sigmoid: bool = True,
        backend: object = None,
    ) -> None:
        super().__init__()
        check_choice("srgan_discriminator", "head", head, ("conv", "dense"))
        check_positive("srgan_discriminator", input_size=input_size, in_channels=in_channels)
        layers: list[nn.Module] = []
        prev = in_channels
        for i, (ch, stride) in enumerate(zip(CHANNELS, STRIDES, strict=True)):
            layers.append(conv(prev, ch, 3, stride=stride))
            if i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2))
            prev = ch
        self.features = nn.Sequential(*layers)
        self.head_kind, self.input_size, self.sigmoid = head, input_size, sigmoid
        if head == "conv":
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Conv2d(prev, 1024, 1), nn.LeakyReLU(0.2), nn.Conv2d(1024, 1, 1)
            )
        else:
            side = input_size
            for stride in STRIDES:
                side = (side - 1) // stride + 1
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(prev * side * side, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "dense" and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"srops.models.srgan_discriminator: head='dense' needs input [B, C, {self.input_size}, "
                f"{self.input_size}], got shape {tuple(x.shape)}"
            )
        y = self.head(self.features(x)).flatten()
        return torch.sigmoid(y) if self.sigmoid else y
