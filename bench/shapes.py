"""SR shapes for the benchmarks: GPU sizes are the real ones, CPU sizes shrink the batch or the map.

Non-local attention, single head (q [B, N, d], k/v [B, M, d]):
  train-regions: B=16 patches × 2×2 regions of a 48² LR map, φ/g sub-sampled → N=576, M=144, d=32
  train-regions-d8: the same with SAN's inter channels C//8 = 8
  train-full:    B=16, whole 48² map without sub-sampling → N=M=2304, d=32
  infer-<size>:  B=1 full LR map, no regions, no sub-sampling, d=32
Covariance pooling: x [B, C, H, W] with C=64.
NonLocal2d module: x [B, C, H, W], SAN's region-level block (C=64, inter 8, 2×2 regions, φ/g max-pooled):
  train-48x48:   B=16 LR patches (per region N=576, M=144)
  infer-<W>x<H>: B=1 full LR image (256×256: N=16384, M=4096 per region; 960×540: N=129600, M=32400)
CBAM: x [B, C, H, W] with C=64: a training batch of 48² LR patches and a 960×540 LR image.
"""
from __future__ import annotations

NONLOCAL_GPU = {
    "train-regions": dict(B=64, N=576, M=144, d=32),
    "train-regions-d8": dict(B=64, N=576, M=144, d=8),
    "train-full": dict(B=16, N=2304, M=2304, d=32),
    "infer-256x256": dict(B=1, N=256 * 256, M=256 * 256, d=32),
    "infer-512x512": dict(B=1, N=512 * 512, M=512 * 512, d=32),
    "infer-960x540": dict(B=1, N=960 * 540, M=960 * 540, d=32),
}
NONLOCAL_CPU = {
    "train-regions": dict(B=16, N=576, M=144, d=32),
    "train-regions-d8": dict(B=64, N=576, M=144, d=8),
    "train-full": dict(B=2, N=2304, M=2304, d=32),
    "infer-128x128-sub": dict(B=1, N=128 * 128, M=64 * 64, d=32),
}
NONLOCAL_SMOKE = {"smoke": dict(B=2, N=64, M=16, d=8)}

NONLOCAL2D_GPU = {
    "train-48x48": dict(B=16, C=64, H=48, W=48),
    "infer-256x256": dict(B=1, C=64, H=256, W=256),
    "infer-960x540": dict(B=1, C=64, H=540, W=960),
}
NONLOCAL2D_CPU = {
    "train-48x48": dict(B=16, C=64, H=48, W=48),
    "infer-256x256": dict(B=1, C=64, H=256, W=256),
}
NONLOCAL2D_SMOKE = {"smoke": dict(B=2, C=16, H=12, W=10)}
NONLOCAL2D_CONFIG = dict(inter_channels=8, sub_sample=True, regions=2, scale=1.0)  # SAN's RL-NL
INFERENCE_PREFIX = "infer-"  # inference shapes are timed forward-only

COVPOOL_GPU = {
    "train-48x48": dict(B=16, C=64, H=48, W=48),
    "infer-512x512": dict(B=1, C=64, H=512, W=512),
}
COVPOOL_CPU = COVPOOL_GPU
COVPOOL_SMOKE = {"smoke": dict(B=2, C=8, H=7, W=9)}

# Covariance pooling + Newton–Schulz square root (SOCA), 5 iterations: training patches and a full LR image.
COVPOOL_SQRTM_GPU = {
    "train-48x48": dict(B=16, C=64, H=48, W=48),
    "infer-512x512": dict(B=1, C=64, H=512, W=512),
}
COVPOOL_SQRTM_CPU = COVPOOL_SQRTM_GPU
COVPOOL_SQRTM_SMOKE = {"smoke": dict(B=2, C=8, H=7, W=9)}
# CBAM (official semantics, C=64, r=16): training patches (module in train mode, fwd and fwd+bwd)
# and full-image inference (eval mode, fwd only).
CBAM_GPU = {
    "train-48x48": dict(B=16, C=64, H=48, W=48),
    "infer-960x540": dict(B=1, C=64, H=540, W=960),
}
CBAM_CPU = CBAM_GPU
CBAM_SMOKE = {"smoke": dict(B=2, C=17, H=7, W=5)}


def pick(gpu: dict, cpu: dict, smoke_shapes: dict, device_type: str, smoke: bool) -> dict:
    if smoke:
        return smoke_shapes
    return gpu if device_type == "cuda" else cpu

