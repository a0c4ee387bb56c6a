"""One state_dict across backends: same outputs and gradients as ``backend="reference"``.

For each network that uses srops modules, the candidates are the default dispatch
(``None``) and every backend that ``srops.backends()`` reports runnable on CPU for
one of the ops the network uses (the network routes a name to the modules whose
ops have it; the others keep the default dispatch).
"""
from __future__ import annotations

import pytest
import torch

import srops
import srops.models as M
from srops.models.archs.common import srops_ops
from srops.testing import assert_close_normwise

# Small depths keep float64 fast; the srops modules and their wiring are the defaults'.
NETS = {
    "amms": dict(scale=2, n_modules=1, n_am=2),
    "drfn": dict(scale=2, n_groups=3, n_blocks=1),
    "srgan_attention": dict(scale=2, n_blocks=2),
    "edsr_cbam": dict(scale=2, n_resblocks=2),
    "espcn_cbam": dict(scale=3),
    "srresnet_cbam": dict(scale=2, n_blocks=2),
    "lapsrn_cbam": dict(scale=2, n_units=2),
}
RGB_RANGE = {"amms": 255.0, "drfn": 255.0, "edsr_cbam": 255.0}


def candidates(net: torch.nn.Module) -> list[str | None]:
    table = srops.backends("cpu")
    names = {
        b
        for op in srops_ops(net)
        for b, row in table[op].items()
        if row["cpu"] == "ok" and torch.float64 in srops._backend._OPS[op].backends[b].dtypes  # the test runs float64
    }
    return [None] + sorted(names - {"reference"})


def run(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    x = x.clone().requires_grad_()
    y = net(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in net.named_parameters()}


def perturb(net: torch.nn.Module) -> None:
    """Non-zero weights everywhere (NonLocal2d's W starts at zero) so every path matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)


@pytest.mark.parametrize("name", sorted(NETS))
def test_same_state_dict_same_results_on_every_backend(name: str) -> None:
    kwargs = NETS[name]
    ref = M.build(name, backend="reference", **kwargs).double().train()
    perturb(ref)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    assert srops_ops(ref), f"{name} uses no srops op"
    x = torch.rand(2, 3, 13, 11, dtype=torch.float64) * RGB_RANGE.get(name, 1.0)
    y_ref, gx_ref, gp_ref = run(ref, x)
    for backend in candidates(ref):
        net = M.build(name, backend=backend, **kwargs).double().train()
        net.load_state_dict(state)
        y, gx, gp = run(net, x)
        # Normwise: backends sum in different orders (sdpa's online softmax vs stored scores, fused
        # CBAM reductions), and with rgb_range-255 inputs the non-local logits reach ~1e5, so single
        # elements can differ by more than an elementwise float64 tolerance while the worst error
        # relative to the tensor's largest entry stays ~1e-12. Parameters whose exact gradient is
        # zero (a bias feeding a train-mode BatchNorm) have rounding noise as their "expected" value:
        # their errors are measured against the largest parameter gradient of the network instead.
        # 1e-10 ≈ 4.5 · 1e5 · eps64: the float64 bound for a softmax whose logits reach 1e5 (κ ~ 1e5).
        assert_close_normwise(y, y_ref, 1e-10, f"{name} {backend} out")
        assert_close_normwise(gx, gx_ref, 1e-10, f"{name} {backend} dx")
        net_scale = max(g.abs().max().item() for g in gp_ref.values())
        for pname, g in gp.items():
            err = (g - gp_ref[pname]).abs().max().item()
            scale = max(gp_ref[pname].abs().max().item(), 1e-3 * net_scale)
            assert err <= 1e-10 * scale, f"{name} {backend} {pname}: max error {err:.3e} > 1e-10 × {scale:.3e}"


def test_global_nonlocal_amms_matches_across_backends() -> None:
    """``nl_regions=1`` (whole-image non-local) and 2×2 tiles on odd sides give the same results."""
    for regions in (1, 2):
        kwargs = dict(scale=3, n_modules=1, n_am=1, nl_regions=regions)
        ref = M.build("amms", backend="reference", **kwargs).double()
        perturb(ref)
        net = M.build("amms", backend={"nonlocal_attention": "sdpa"}, **kwargs).double()
        net.load_state_dict(ref.state_dict())
        x = torch.rand(1, 3, 9, 14, dtype=torch.float64) * 255
        for a, b in zip(run(ref, x)[:2], run(net, x)[:2]):  # logits up to ~1e5 (×255 inputs): 1e-9 ≈ 45 · κ · eps64
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_candidates_cover_attention_backends() -> None:
    assert "sdpa" in candidates(M.build("amms", n_modules=1, n_am=1))
