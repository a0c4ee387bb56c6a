"""Every network runs under torch.inference_mode() with worker threads, as srops-upscale runs it: the C++
kernels' worker threads must write the caller's inference tensors under the caller's mode. Inference mode
changes no arithmetic (the same kernels, plans and thread count as under no_grad), so the output is equal."""
from __future__ import annotations

import pytest
import torch

import srops.models


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", srops.models.list_models())
def test_network_runs_under_inference_mode(name, batch, threads):
    torch.manual_seed(0)
    net = srops.models.build(name, scale=2).eval()
    x = torch.rand(batch, 3, 40, 36)
    with torch.inference_mode():
        got = net(x)
    with torch.no_grad():
        want = net(x)
    got, want = (t[-1] if isinstance(t, (list, tuple)) else t for t in (got, want))
    assert torch.equal(got, want), f"{name}: inference mode changed the output"
