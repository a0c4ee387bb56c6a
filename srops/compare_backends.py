"""``python -m srops.compare_backends``: every op's module on features of a real image, on every backend here.

Loads an image from ``data/Set5``, lifts it to 64 feature channels with a fixed
random 3×3 convolution, and runs NonLocal2d (SAN's 2×2 regions, and global),
SecondOrderAttention and CBAM on each backend that can run on this machine,
printing agreement with the reference (max abs difference of outputs and of
input gradients), median time and peak extra memory.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import srops
from srops import CBAM, NonLocal2d, SecondOrderAttention
from srops.info import environment
from srops.profiling import median_time_ms, peak_memory_mb


def load_features(path: Path, size: int, device: torch.device) -> torch.Tensor:
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 3, 3, 3, generator=gen) * 0.2
    return torch.nn.functional.conv2d(x, weight, padding=1).to(device)


def runnable_backends(op: str, device: torch.device) -> list[str]:
    return [name for name, row in srops.backends(device.type)[op].items() if row[device.type] == "ok"]


def compare(name: str, module: NonLocal2d | SecondOrderAttention | CBAM, x: torch.Tensor) -> list[str]:
    (op,) = type(module).OPS
    rows, ref = [], None
    for backend in ["reference"] + [b for b in runnable_backends(op, x.device) if b != "reference"]:
        module.backend = backend
        for child in module.modules():
            if hasattr(child, "backend"):
                setattr(child, "backend", backend)  # noqa: B010  (any child module's backend attribute)
        xin = x.clone().requires_grad_()
        out = module(xin)
        out.square().mean().backward()
        result = (out.detach(), xin.grad)
        if ref is None:
            ref = result
        diff = max(float((a - b).abs().max()) for a, b in zip(result, ref, strict=True))
        fwd = lambda: module(x)  # noqa: E731
        with torch.no_grad():
            ms = median_time_ms(fwd, x.device, repeats=3)
            mb = peak_memory_mb(fwd, x.device)
        rows.append(f"| {name} | {backend} | {diff:.2e} | {ms:.1f} | {mb:.1f} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m srops.compare_backends", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=Path("data/Set5/butterfly.png"))
    parser.add_argument("--size", type=int, default=96, help="feature map side (LR size)")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        raise SystemExit(f"srops.compare_backends: image {args.image} not found (run from the repository root)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    x = load_features(args.image, args.size, device)
    env = environment()
    print(f"srops demo on {env['device']} (torch {env['torch']}, triton {env['triton']}, {env['compiled with']})")
    print(f"features: {args.image.name} resized to {args.size}×{args.size}, 64 channels\n")
    modules: dict[str, NonLocal2d | SecondOrderAttention | CBAM] = {
        "NonLocal2d regions=2": NonLocal2d(64, regions=2),
        "NonLocal2d global": NonLocal2d(64, regions=1),
        "SecondOrderAttention": SecondOrderAttention(64),
        "CBAM": CBAM(64),
    }
    print("| module | backend | max diff vs reference (out, grad) | forward ms | peak MB |")
    print("|---|---|---|---|---|")
    for name, module in modules.items():
        module = module.to(device).eval()
        with torch.no_grad():  # leave the zero-initialised identity so the attention path shows
            for p in module.parameters():
                p.normal_(0, 0.05)
        for row in compare(name, module, x):
            print(row)


if __name__ == "__main__":
    main()
