"""Stage 3 of the device check: every CUDA C++ op against the reference (and the compiled ops against
their CPU kernels).

* covpool_sqrtm forward and backward at C = 64 (matrices in shared memory), C = 100 (the backward's six
  matrices pass the opt-in limit: global scratch) and C = 130 (the bmm path), float32 and float64, with
  and without SOCA's row mean; the path each size takes is recorded from the launch plan.
* covpool forward and backward.
* each CBAM module (channel, spatial, both) in float64 and float32, forward and the fused backward
  (output, x.grad and every parameter gradient), ties in the max pools against the CPU reference.
* each registered CBAM op on the GPU against the same op on the CPU (float32 and bfloat16).
Errors are ‖out − ref‖ / ‖ref‖. Dry run: the same cases with the ``cpu`` backend on CPU tensors.
"""
from __future__ import annotations

import copy

import torch

from tools.gpu_check_common import CaseFailed, SkipCase, Stage
from tools.gpu_check_triton import rel_err

REL_TOL = {torch.float64: 1e-10, torch.float32: 2e-4, torch.bfloat16: 2e-2}


def _need(backend: str, op: str) -> None:
    from srops import _backend

    reason = _backend._OPS[op].backends[backend].device_reason(backend)
    if reason:
        raise SkipCase(f"{op}/{backend}: {reason}")


def _check_errs(rec: dict, errs: dict[str, float], tol: float) -> None:
    rec["rel_err"] = {n: float(f"{e:.3e}") for n, e in errs.items()}
    bad = {n: e for n, e in errs.items() if not e <= tol}
    if bad:
        raise CaseFailed(f"rel. error above {tol:g}: " + ", ".join(f"{n} {e:.3e}" for n, e in bad.items()))


def sqrtm_path(C: int, dtype: torch.dtype, device: str) -> str:
    """The forward/backward paths covpool_sqrtm takes at this C on this GPU, from the compiled launch plan
    (``srops_launch.covpool_sqrtm_plan``; the backward kernel's static shared memory is its reduction buffer)."""
    launch = getattr(torch.ops, "srops_launch", None)
    if device != "cuda" or launch is None or not hasattr(launch, "covpool_sqrtm_plan"):
        return "n/a"
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    optin = int(getattr(props, "shared_memory_per_block_optin", 0))
    elem = torch.empty((), dtype=dtype).element_size()
    _, fwd_mats, bwd_mats, threads = launch.constants()
    fwd = launch.covpool_sqrtm_plan(C, elem, fwd_mats, 0, props.multi_processor_count, optin)[0]
    bwd = launch.covpool_sqrtm_plan(C, elem, bwd_mats, threads * elem, props.multi_processor_count, optin)[0]
    return f"fwd {fwd}, bwd {bwd}"


def run(stage: Stage) -> None:
    import srops.functional as F
    from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention

    dry = stage.dry_run
    device, backend = ("cpu", "cpu") if dry else ("cuda", "cuda")
    M = 37 if dry else 300

    def covpool_sqrtm(rec: dict, C: int, dtype: torch.dtype, row_mean: bool, m: int = M) -> None:
        _need(backend, "covpool_sqrtm")
        rec["path"] = sqrtm_path(C, dtype, device)
        x = torch.randn(3, C, m, device=device, dtype=dtype)
        xr, xf = x.double().clone().requires_grad_(), x.clone().requires_grad_()
        yr = F.covpool_sqrtm(xr, 5, 1e-5, row_mean, backend="reference")
        yf = F.covpool_sqrtm(xf, 5, 1e-5, row_mean, backend=backend)
        g = torch.randn_like(yr)
        yr.backward(g)
        yf.backward(g.to(dtype))
        _check_errs(rec, {"out": rel_err(yf, yr), "dx": rel_err(xf.grad, xr.grad)}, REL_TOL[dtype])

    sizes = (8, 20, 33) if dry else (64, 100, 130)
    for C in sizes:
        for dtype in (torch.float32, torch.float64):
            for row_mean in (False, True):
                stage.run(f"covpool_sqrtm C={C}{' row_mean' if row_mean else ''}", covpool_sqrtm, C, dtype,
                          row_mean, dtype=str(dtype))
    # M long enough for the Gram's split-K chunks (several GEMMs per sample, the last chunk zero-padded)
    long_m = 2 * 1024 + 5 if dry else 5000
    for dtype in (torch.float32, torch.bfloat16):
        stage.run(f"covpool_sqrtm C=64 M={long_m} (split-K)", covpool_sqrtm, 16 if dry else 64, dtype, False, long_m,
                  dtype=str(dtype))

    def covpool(rec: dict, C: int, dtype: torch.dtype) -> None:
        _need(backend, "covpool")
        x = torch.randn(2, C, M, device=device, dtype=dtype)
        xr, xf = x.double().clone().requires_grad_(), x.clone().requires_grad_()
        yr, yf = F.covpool(xr, backend="reference"), F.covpool(xf, backend=backend)
        g = torch.randn_like(yr)
        yr.backward(g)
        yf.backward(g.to(dtype))
        _check_errs(rec, {"out": rel_err(yf, yr), "dx": rel_err(xf.grad, xr.grad)}, REL_TOL[dtype])

    for dtype in (torch.float32, torch.float64):
        stage.run("covpool C=64", covpool, 16 if dry else 64, dtype, dtype=str(dtype))

    def module(kind: str, C: int, pool) -> torch.nn.Module:
        if kind == "cbam":
            return CBAM(C, reduction=4, pool=pool, mlp_bn=False, spatial_bn=True, backend="reference")
        if kind == "channel":
            return ChannelAttention(C, reduction=4, pool=pool, backend="reference")
        return SpatialAttention(7, bn=True, backend="reference")

    def cbam(rec: dict, kind: str, pool, dtype: torch.dtype, ties: bool, packs: bool = False) -> None:
        _need(backend, "cbam")
        # H*W odd: one element per thread; a multiple of 8: the 16-byte packs (cbam_vector_plan)
        shape = ((2, 9, 4, 6) if packs else (2, 9, 7, 5)) if dry else ((3, 64, 32, 48) if packs else (3, 64, 33, 47))
        ref_device = "cpu" if ties else device  # torch.max's tie rule is the CPU one
        ref = module(kind, shape[1], pool).to(ref_device, torch.float64).train()
        fused = copy.deepcopy(ref).to(device, dtype)
        for m in fused.modules():
            if hasattr(m, "backend"):
                m.backend = backend
        x = torch.randn(shape, dtype=torch.float64)
        if ties:
            x = (x * 2).round() / 2
        xr = x.to(ref_device).clone().requires_grad_()
        xf = x.to(device, dtype).clone().requires_grad_()
        yr, yf = ref(xr), fused(xf)
        g = torch.randn_like(yr)
        yr.backward(g)
        yf.backward(g.to(device, dtype))
        errs = {"out": rel_err(yf.cpu(), yr.cpu()), "dx": rel_err(xf.grad.cpu(), xr.grad.cpu())}
        for (name, pr), (_, pf) in zip(ref.named_parameters(), fused.named_parameters()):
            if pf.grad is None:
                raise CaseFailed(f"{name}: no gradient through the fused backend")
            errs[name] = rel_err(pf.grad.cpu(), pr.grad.cpu())
        _check_errs(rec, errs, REL_TOL[dtype])

    for kind in ("cbam", "channel", "spatial"):
        for pool in (("avg", "max"), ("avg",)) if kind != "spatial" else (("avg", "max"),):
            for dtype in (torch.float64, torch.float32):
                stage.run(f"{kind} {'+'.join(pool)}", cbam, kind, pool, dtype, False, dtype=str(dtype))
    for dtype in (torch.float64, torch.float32):  # bfloat16 packs: the raw ops against the CPU kernels below
        stage.run("cbam avg+max, 16-byte packs", cbam, "cbam", ("avg", "max"), dtype, False, True, dtype=str(dtype))
    stage.run("cbam ties", cbam, "cbam", ("avg", "max"), torch.float64, True, dtype="torch.float64")

    ops = torch.ops.srops

    def raw_ops(x, c, s, g, gs, gp) -> dict[str, tuple]:
        stats, carg = ops.cbam_channel_pool_fwd(x, True, True)
        pooled, sarg = ops.cbam_spatial_pool_fwd(x, c)
        return {
            "cbam_channel_pool_fwd": (stats, carg),
            "cbam_channel_pool_bwd": (ops.cbam_channel_pool_bwd(gs, x, carg, True, True),),
            "cbam_spatial_pool_fwd": (pooled, sarg),
            "cbam_spatial_pool_bwd": ops.cbam_spatial_pool_bwd(gp, x, c, sarg, True),
            "cbam_apply_fwd": (ops.cbam_apply_fwd(x, c, s),),
            "cbam_apply_bwd": ops.cbam_apply_bwd(g, x, c, s, True),
            "cbam_input_bwd": (ops.cbam_input_bwd(g, c, s, gp, sarg, gs, carg, True, True),),
        }

    def against_cpu(rec: dict, dtype: torch.dtype, packs: bool = False) -> None:
        from srops import _ext

        if not _ext.HAS_EXT:
            raise SkipCase(f"srops._C not loaded: {_ext.EXT_ERROR}")
        if not dry and not _ext.HAS_CUDA_EXT:
            raise SkipCase("srops._C has no CUDA kernels")
        B, C, H, W = ((2, 5, 4, 4) if packs else (2, 5, 3, 3)) if dry else ((2, 19, 16, 12) if packs else (2, 19, 13, 11))
        args = [torch.randn(B, C, H, W), torch.rand(B, C), torch.rand(B, H, W), torch.randn(B, C, H, W),
                torch.randn(B, C, 2), torch.randn(B, 2, H, W)]
        args = [a.to(dtype) for a in args]
        got = raw_ops(*[a.to(device) for a in args])
        want = raw_ops(*args)
        errs = {}
        for name, outs in got.items():
            for i, (a, e) in enumerate(zip(outs, want[name])):
                a = a.cpu()
                if not a.is_floating_point():
                    if not torch.equal(a, e):
                        raise CaseFailed(f"{name}[{i}]: indices differ from the CPU kernel's")
                elif a.numel():
                    errs[f"{name}[{i}]"] = rel_err(a, e)
        _check_errs(rec, errs, 1e-5 if dtype == torch.float32 else REL_TOL[dtype])

    for dtype in (torch.float32, torch.bfloat16):
        stage.run("CBAM ops vs CPU kernels", against_cpu, dtype, dtype=str(dtype))
        stage.run("CBAM ops vs CPU kernels, 16-byte packs", against_cpu, dtype, True, dtype=str(dtype))
    passed = sum(c["status"] == "pass" for c in stage.cases)
    paths = sorted({c["path"] for c in stage.cases if c.get("path", "n/a") != "n/a"})
    stage.info["headline"] = f"{passed}/{len(stage.cases)} pass" + (f"; sqrtm paths {paths}" if paths else "")
