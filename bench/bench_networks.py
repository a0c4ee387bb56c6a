"""Whole networks: one training step (forward, L1 loss, backward, Adam step) and inference.

srops' default dispatch (``backend=None``: the fastest backend of each op here)
against the same network and weights on ``backend="reference"``. GPU: SR training
shapes (B=16, 48×48 LR patches) and full-image inference (B=1, 256×256 and
960×540 LR). CPU: B=2 patches and 96×96 inference. ``--smoke``: tiny networks.
"""
from __future__ import annotations

import pytest
import torch

import srops.models as M
from bench.common import run_benchmark

NETWORKS = {"amms-x2": ("amms", 2, 255.0), "drfn-x4": ("drfn", 4, 255.0)}
SMOKE_KW = {"amms": dict(n_modules=1, n_am=1), "drfn": dict(n_groups=2, n_blocks=1)}
SHAPES = {
    "cuda": {"train-16x48x48": (16, 48, 48), "infer-256x256": (1, 256, 256), "infer-960x540": (1, 540, 960)},
    "cpu": {"train-2x48x48": (2, 48, 48), "infer-96x96": (1, 96, 96)},
    "smoke": {"train-1x12x12": (1, 12, 12), "infer-12x12": (1, 12, 12)},
}
ALL_SHAPES = sorted({s for table in SHAPES.values() for s in table})


def reference_scores_bytes(name: str, b: int, h: int, w: int, train: bool) -> int:
    """Bytes of the score matrices the reference non-local stores at once (AMMS: 2×2 regions, pooled keys)."""
    if name != "amms":
        return 0
    n = (h // 2) * (w // 2)
    return b * 4 * n * (n // 4) * 4 * (2 if train else 1)


@pytest.mark.parametrize("backend", ["srops", "reference"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_network(benchmark, device, smoke, network, shape, backend):
    table = SHAPES["smoke" if smoke else device.type]
    if shape not in table:
        pytest.skip(f"shape {shape} is not benchmarked on {device.type}{' (smoke run)' if smoke else ''}")
    name, scale, rgb_range = NETWORKS[network]
    b, h, w = table[shape]
    train = shape.startswith("train")
    limit = (torch.cuda.get_device_properties(0).total_memory if device.type == "cuda" else 8 * 2**30) // 2
    if backend == "reference" and reference_scores_bytes(name, b, h, w, train) > limit:
        pytest.skip(f"reference would store {reference_scores_bytes(name, b, h, w, train) / 2**30:.0f} GiB of scores")
    torch.manual_seed(0)
    net = M.build(name, scale=scale, backend=None if backend == "srops" else "reference",
                  **(SMOKE_KW[name] if smoke else {})).to(device)
    x = torch.rand(b, 3, h, w, device=device) * rgb_range
    if train:
        target = torch.rand(b, 3, h * scale, w * scale, device=device) * rgb_range
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        net.train()

        def call() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.l1_loss(net(x), target).backward()
            opt.step()
    else:
        net.eval()

        def call() -> None:
            with torch.no_grad():
                net(x)
    run_benchmark(benchmark, call, device, group=f"network {network} {shape}", backend=backend, shape=shape,
                  mode="train-step" if train else "infer", network=network, B=b, H=h, W=w)
