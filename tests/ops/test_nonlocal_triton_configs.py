"""Launch configurations of the Triton flash kernels: every candidate forced in turn, the rule, the API.

On CPU these run under ``TRITON_INTERPRET=1`` (float32/float16 only) against the float64 oracle,
with outputs pre-filled with NaN so an element a kernel leaves unwritten fails the comparison.
"""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops.ops.nonlocal_attention import triton_configs, triton_impl
from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref
from srops.testing import assert_close_to_oracle, ulp_floor

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(triton_impl.TRITON_ERROR is not None, reason=str(triton_impl.TRITON_ERROR))]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("out", "dq", "dk", "dv")


def _inputs(b, n, m, d, dv, dtype=torch.float32, spread=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *s: (torch.randn(*s, generator=gen, dtype=torch.float64) * spread)  # noqa: E731
    return make(b, n, d), make(b, m, d), make(b, m, dv), make(b, n, dv)


def _run(fn, q, k, v, grad, scale):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, scale)
    return [out.detach(), *torch.autograd.grad(out, leaves, grad)]


def _triton(q, k, v, scale):
    return F.nonlocal_attention(q, k, v, scale, backend="triton")


def _float32_cases(q, k, v, grad, scale: float):
    """The inputs rounded to float32 on DEVICE, the reference on them in float32 and in float64 (the oracle)."""
    inputs = [t.to(device=DEVICE, dtype=torch.float32) for t in (q, k, v, grad)]
    same = _run(nonlocal_attention_ref, *inputs, scale)
    oracle = _run(nonlocal_attention_ref, *(t.double() for t in inputs), scale)
    return inputs, same, oracle


def _assert_close(label: str, got: torch.Tensor, same: torch.Tensor, oracle: torch.Tensor) -> None:
    """At most twice the float32 reference's error against the float64 oracle, plus 8 ulp of the result's scale."""
    assert_close_to_oracle(got, same, oracle, label, floor=ulp_floor(torch.float32, oracle))


def _config_cases():
    if triton_impl.TRITON_ERROR is not None:
        return []
    return [pytest.param(name, i, id=f"{name}-{i}") for name, cfgs in triton_impl.kernel_configs().items()
            for i in range(len(cfgs))]


@pytest.mark.parametrize("name, index", _config_cases())
def test_every_candidate_config_matches_the_oracle(name, index):
    """Each candidate forced on ragged shapes (N, M no multiple of any block, d = 24, dv = 40), NaN-filled outputs."""
    config = triton_impl.kernel_configs()[name][index]
    b, n, m, d, dv = 2, 2 * config.kwargs["BLOCK_M"] + 3, config.kwargs["BLOCK_N"] + 7, 24, 40
    q, k, v, grad = _inputs(b, n, m, d, dv, seed=index)
    scale = 0.3
    inputs, same, oracle = _float32_cases(q, k, v, grad, scale)
    with triton_impl.forced_config(name, config), triton_impl.nan_outputs():
        got = _run(_triton, *inputs, scale)
    for label, a, s, o in zip(NAMES, got, same, oracle):
        assert torch.isfinite(a).all(), f"{name} {config}: {label} has unwritten (NaN) elements"
        _assert_close(f"{name} {config} {label}", a, s, o)


def test_forced_config_large_logits_near_1e4_and_float16():
    """Logits near 1e4 under the widest forward candidate: finite, and within float32's conditioning.

    A float32 logit of magnitude L is only known to L·ε, so the attention carries a relative error of
    that order; the bound for dq/dk scales it by the product of the factors that make them.
    """
    configs = triton_impl.kernel_configs()["fwd"]
    widest = max(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])
    q, k, v, grad = (t.float().double() for t in _inputs(1, 37, widest.kwargs["BLOCK_N"] + 5, 8, 24, spread=30.0))
    logit = torch.bmm(q, k.transpose(1, 2)).abs().max().item()
    assert 3e3 < logit < 3e4
    oracle = _run(nonlocal_attention_ref, q, k, v, grad, 1.0)
    to = lambda t, dt=torch.float32: t.to(device=DEVICE, dtype=dt)  # noqa: E731
    with triton_impl.forced_config("fwd", widest), triton_impl.nan_outputs():
        got = _run(_triton, to(q), to(k), to(v), to(grad), 1.0)
        half = _triton(to(q / 30.0, torch.float16), to(k / 30.0, torch.float16), to(v, torch.float16), 900.0)
    eps = torch.finfo(torch.float32).eps
    top = lambda t: t.abs().max().item()  # noqa: E731
    sizes = {"out": top(v), "dv": top(grad), "dq": top(grad) * top(v) * top(k), "dk": top(grad) * top(v) * top(q)}
    for label, a, e in zip(NAMES, got, oracle):
        assert torch.isfinite(a).all(), label
        err = (a.cpu().double() - e).abs().max().item()
        assert err <= 2 * logit * eps * sizes[label], f"logits ~1e4 {label}: error {err:.3e}"
    assert torch.isfinite(half).all()


def test_forced_config_is_scoped_and_nests():
    cfgs = triton_impl.kernel_configs()["fwd"]
    rule = triton_configs.choose("fwd", 100, 100, 1, 16, 16, torch.float32, interpret=False)
    with triton_impl.forced_config("fwd", cfgs[1]):
        assert triton_configs.choose("fwd", 100, 100, 1, 16, 16, torch.float32, interpret=True) is cfgs[1]
        with triton_impl.forced_config("fwd", cfgs[2]):
            assert triton_configs.choose("fwd", 100, 100, 1, 16, 16, torch.float32, interpret=True) is cfgs[2]
        assert triton_configs.choose("fwd", 100, 100, 1, 16, 16, torch.float32, interpret=True) is cfgs[1]
    after = triton_configs.choose("fwd", 100, 100, 1, 16, 16, torch.float32, interpret=False)
    assert (after.kwargs, after.num_warps, after.num_stages) == (rule.kwargs, rule.num_warps, rule.num_stages)


def test_forced_config_rejects_bad_arguments():
    cfg = triton_impl.kernel_configs()["fwd"][0]
    with pytest.raises(ValueError, match="unknown Triton kernel 'nope'"):
        with triton_impl.forced_config("nope", cfg):
            pass
    with pytest.raises(TypeError, match="expects a triton.Config, got dict"):
        with triton_impl.forced_config("fwd", {"BLOCK_M": 64}):
            pass
    import triton

    with pytest.raises(ValueError, match="BLOCK_N must be a power of two >= 16, got 24"):
        with triton_impl.forced_config("fwd", triton.Config({"BLOCK_M": 64, "BLOCK_N": 24})):
            pass


def test_rule_is_a_function_of_the_size_bucket():
    """Same bucket → same configuration (reproducible across processes); candidates only."""
    for name, cfgs in triton_impl.kernel_configs().items():
        allowed = [(c.kwargs, c.num_warps, c.num_stages) for c in cfgs]
        for dtype in (torch.float16, torch.float32):
            for n in (1, 100, 4097, 518_400):
                a = triton_configs.choose(name, n, n, 1, 32, 32, dtype, interpret=False)
                b = triton_configs.choose(name, triton_configs.size_bucket(n), triton_configs.size_bucket(n), 1,
                                          32, 32, dtype, interpret=False)
                assert (a.kwargs, a.num_warps, a.num_stages) == (b.kwargs, b.num_warps, b.num_stages)
                assert (a.kwargs, a.num_warps, a.num_stages) in allowed
    assert [triton_configs.size_bucket(x) for x in (0, 1, 2, 3, 64, 65)] == [1, 1, 2, 4, 64, 128]


@pytest.mark.parametrize(
    "min_programs, budget",
    [(1, 1 << 40), (4, 0), (264, 0), (6, 1 << 40)],
    ids=["one-program-walks-all", "2x2-groups-chunks", "one-tile-per-program", "key-groups-only"],
)
def test_backward_split_matches_the_oracle_and_repeats_bitwise(monkeypatch, min_programs, budget):
    """Every backward split (key groups × query chunks, dK/dV partials or direct) against the oracle, twice."""
    monkeypatch.setattr(triton_configs, "_MIN_PROGRAMS", min_programs)
    monkeypatch.setattr(triton_configs, "SCRATCH_BUDGET", budget)
    q, k, v, grad = _inputs(1, 16 * 4 + 3, 16 * 5 + 5, 24, 40, seed=11)
    inputs, same, oracle = _float32_cases(q, k, v, grad, -0.4)
    with triton_impl.nan_outputs():
        first = _run(_triton, *inputs, -0.4)
        second = _run(_triton, *inputs, -0.4)
    for label, a, b, s, o in zip(NAMES, first, second, same, oracle):
        assert torch.isfinite(a).all(), f"{label} has unwritten (NaN) elements"
        assert torch.equal(a, b), f"{label} differs between two runs"  # the same kernel run twice
        _assert_close(label, a, s, o)


def test_backward_split_rule():
    """The split covers every block, bounds the scratch by the budget, and reaches the program target."""
    for n_kb, n_qb, batch in [(1, 1, 1), (3, 5, 1), (8100, 8100, 1), (36, 36, 16), (2, 700, 3)]:
        groups, chunks, kpg, qpc = triton_configs.bwd_split(n_kb, n_qb, batch, n_qb * 64, n_kb * 64, 32, 32)
        assert (groups - 1) * kpg < n_kb <= groups * kpg and (chunks - 1) * qpc < n_qb <= chunks * qpc
        assert 2 * groups * chunks * batch >= min(triton_configs._MIN_PROGRAMS, n_kb * n_qb * batch)
        if chunks == 1:
            assert groups * batch * n_qb * 64 * 32 * 4 <= triton_configs.SCRATCH_BUDGET or n_qb == 1


def test_strides_past_the_32bit_in_block_range_are_copied():
    """In-block offsets are 32-bit (block × stride): a non-batch stride >= 2^24 gets a contiguous copy."""
    wide = torch.empty_strided((2, 3, 8), (1 << 40, 1 << 24, 1), device="meta")
    fine = torch.empty_strided((2, 3, 8), (1 << 40, (1 << 24) - 1, 1), device="meta")
    assert triton_impl._narrow_strides(wide).stride() == (24, 8, 1)
    assert triton_impl._narrow_strides(fine) is fine
