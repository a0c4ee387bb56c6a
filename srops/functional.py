"""Public functional API: one function per op, each with a ``backend=`` argument.

Shapes follow ``[B, C, H, W]`` for feature maps; see each function's docstring.
"""
from srops.ops.cbam.frontend import cbam, channel_attention, channel_gate, spatial_attention, spatial_gate
from srops.ops.covpool.frontend import covpool, covpool_sqrtm, sqrtm_ns
from srops.ops.nonlocal_attention.frontend import nonlocal_attention

__all__ = [
    "nonlocal_attention",
    "covpool",
    "sqrtm_ns",
    "covpool_sqrtm",
    "channel_gate",
    "spatial_gate",
    "channel_attention",
    "spatial_attention",
    "cbam",
]
