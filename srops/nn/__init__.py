"""Modules: each owns its parameters and calls its op's frontend in ``srops/ops/<op>/frontend.py``
(:mod:`srops.ops.cbam.frontend`, :mod:`srops.ops.covpool.frontend`, :mod:`srops.ops.nonlocal_attention.frontend`),
the same functions :mod:`srops.functional` re-exports."""
from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from srops.nn.nonlocal2d import NonLocal2d
from srops.nn.peer_keys import load_state_dict, peer_state_dict
from srops.nn.second_order import SecondOrderAttention
from srops.nn.swap import SwapReport, swap

__all__ = ["NonLocal2d", "SecondOrderAttention", "CBAM", "ChannelAttention", "SpatialAttention",
           "swap", "SwapReport", "peer_state_dict", "load_state_dict"]
