"""Modules: each owns its parameters and calls :mod:`srops.functional`."""
from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from srops.nn.nonlocal2d import NonLocal2d
from srops.nn.second_order import SecondOrderAttention

__all__ = ["NonLocal2d", "SecondOrderAttention", "CBAM", "ChannelAttention", "SpatialAttention"]
