"""Building blocks shared by the networks: mean shift, conv helper, sub-pixel upsampler, backend routing."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence, Union

import torch
from torch import nn

import srops
from srops import BACKEND_NAMES

#: DIV2K RGB mean on the 0–1 scale (EDSR, RCAN, SAN).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

BackendArg = Union[str, Mapping[str, str], None]
ActFactory = Callable[[], nn.Module]


def check_scale(model: str, scale: object, allowed: Sequence[int] = (2, 3, 4)) -> int:
    """Return ``scale`` if it is one of ``allowed``; otherwise raise a ValueError naming the model."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise ValueError(
            f"srops.models.{model}: 'scale' must be one of {tuple(allowed)}, got {scale!r}"
        )
    return scale


def check_positive(model: str, **values: object) -> None:
    """Every keyword must be an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"srops.models.{model}: '{name}' must be an int >= 1, got {value!r}")


def check_choice(model: str, name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"srops.models.{model}: '{name}' must be one of {choices}, got {value!r}")


def resolve_backend(backend: BackendArg, ops: Sequence[str]) -> str | None:
    """The ``backend=`` to hand to an srops module whose ops are ``ops``.

    A network takes one ``backend`` for all of its srops modules, with the same
    meaning as the ``SROPS_BACKEND`` variable: ``None`` is the default dispatch;
    a name applies to every module whose ops all have that backend, the others
    keep the default dispatch; a mapping ``{op: name}`` picks per op (the first
    of ``ops`` found in it wins), ops not in it keep the default dispatch.
    """
    if backend is None:
        return None
    if isinstance(backend, str):
        if backend not in BACKEND_NAMES:
            raise ValueError(f"srops.models: 'backend' must be one of {BACKEND_NAMES}, a mapping or None, "
                             f"got {backend!r}")
        table = srops.backends("cpu")
        return backend if all(backend in table.get(op, {}) for op in ops) else None
    if isinstance(backend, Mapping):
        for op in ops:
            if op in backend:
                return backend[op]
        return None
    raise TypeError(f"srops.models: 'backend' must be a str, a mapping or None, got {type(backend).__name__}")


def srops_ops(module: nn.Module) -> set[str]:
    """The srops op names used by the srops modules inside ``module`` (their ``OPS`` class attribute)."""
    found: set[str] = set()
    for m in module.modules():
        found.update(getattr(type(m), "OPS", ()))
    return found


def make_cbam(channels: int, reduction: int, mlp_bn: bool, backend: BackendArg) -> srops.CBAM:
    """A CBAM on ``channels`` (official spatial gate: 7×7 conv without bias, then BN)."""
    return srops.CBAM(channels, reduction, mlp_bn=mlp_bn, backend=resolve_backend(backend, srops.CBAM.OPS))


class MeanShift(nn.Module):
    """x ± rgb_range · mean per channel, on ``[B, 3, H, W]``; the mean is a buffer (not trained).

    ``sign=-1`` subtracts (network input), ``sign=+1`` adds back (network output).
    """

    shift: torch.Tensor  # registered buffer

    def __init__(self, rgb_range: float = 255.0, mean: Sequence[float] = DIV2K_MEAN, sign: int = -1) -> None:
        super().__init__()
        if sign not in (-1, 1):
            raise ValueError(f"srops.models.MeanShift: 'sign' must be -1 or 1, got {sign!r}")
        self.register_buffer("shift", sign * rgb_range * torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift.to(x.dtype)


def conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    """``kernel_size``×``kernel_size`` convolution with 'same' padding (k // 2)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler (ESPCN stages, as in EDSR/RCAN and SRResNet).

    ×2^n: n stages of conv3 C→4C, PixelShuffle(2); ×3: one stage conv3 C→9C,
    PixelShuffle(3). ``act`` (a factory) follows every shuffle when given
    (SRResNet: PReLU); EDSR/RCAN have none. Params at C = 64: ×2 147,712,
    ×3 332,352, ×4 295,424 (plus the activations').
    """

    def __init__(self, scale: int, channels: int, act: ActFactory | None = None, bias: bool = True) -> None:
        layers: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(scale.bit_length() - 1):
                layers += [conv(channels, 4 * channels, 3, bias), nn.PixelShuffle(2)]
                if act is not None:
                    layers.append(act())
        elif scale == 3:
            layers += [conv(channels, 9 * channels, 3, bias), nn.PixelShuffle(3)]
            if act is not None:
                layers.append(act())
        else:
            raise ValueError(f"srops.models.Upsampler: 'scale' must be 2, 3, 4 or 8, got {scale!r}")
        super().__init__(*layers)


def count_params(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
