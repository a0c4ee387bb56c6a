"""A SAN-shaped network with the peers' own blocks against the same network after ``srops.nn.swap``.

The network (tests/nn/test_swap.py ``TinySAN`` at SAN's width C = 64, two residual groups): a head
conv, SAN's ``Nonlocal_CA`` (its non-local block on each quadrant of a 2×2 split, φ/g max-pooled,
inter channels C // 8), groups of conv + RCAN ``CALayer`` + SAN ``SOCA`` (covariance through the
M×M centring matrix, 5 Newton–Schulz steps), the same ``Nonlocal_CA`` again and a ×2 upsampler.
``peer`` runs those blocks as written; ``swapped`` is a copy after ``srops.nn.swap`` (same weights;
srops's default backends). Forward (no grad) and forward + backward of a fixed gradient, B = 1,
48×48 and 96×96 LR (GPU: B = 16 and 1); ``--smoke``: 12×12.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

import srops
from bench.common import run_benchmark
from tests.nn.test_swap import TinySAN

SHAPES = {
    "cuda": {"48x48": (16, 48, 48), "96x96": (1, 96, 96)},
    "cpu": {"48x48": (1, 48, 48), "96x96": (1, 96, 96)},
    "smoke": {"12x12": (1, 12, 12)},
}
ALL_SHAPES = sorted({s for table in SHAPES.values() for s in table})


def networks(device: torch.device, smoke: bool) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    peer = TinySAN(c=16 if smoke else 64, groups=2).to(device)
    with torch.no_grad():  # W of the non-local block starts at zero: random weights make it count
        for p in peer.parameters():
            p.copy_(0.05 * torch.randn_like(p))
    swapped = copy.deepcopy(peer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TinySAN overrides load_state_dict, as SAN does
        srops.nn.swap(swapped)
    return {"peer": peer, "swapped": swapped}


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("variant", ["peer", "swapped"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
def test_swap(benchmark, device, smoke, shape, variant, mode):
    table = SHAPES["smoke" if smoke else device.type]
    if shape not in table:
        pytest.skip(f"shape {shape} is not benchmarked on {device.type}{' (smoke run)' if smoke else ''}")
    b, h, w = table[shape]
    net = networks(device, smoke)[variant]
    x = torch.rand(b, 3, h, w, device=device)
    if mode == "fwd":
        net.eval()

        def call() -> None:
            with torch.no_grad():
                net(x)
    else:
        net.train()
        xg = x.requires_grad_()
        grad = torch.randn(b, 3, 2 * h, 2 * w, device=device)

        def call() -> None:
            net.zero_grad(set_to_none=True)
            xg.grad = None
            net(xg).backward(grad)

    run_benchmark(benchmark, call, device, group=f"swap SAN-shaped C={16 if smoke else 64} {shape} {mode}", backend=variant,
                  shape=shape, mode=mode, B=b, H=h, W=w)
