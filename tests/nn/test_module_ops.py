"""Each srops module names the ops it runs (class attribute ``OPS``); the networks derive their backend
checks from it, so it must name real ops, and every op with a module must be named by one."""
from __future__ import annotations

import inspect

import srops
import srops.nn
from srops.models.archs.common import srops_ops


def _modules() -> list[type]:
    return [c for _, c in inspect.getmembers(srops.nn, inspect.isclass) if hasattr(c, "OPS")]


def test_module_ops_are_registered_backend_ops() -> None:
    mods = _modules()
    assert {c.__name__ for c in mods} >= {"NonLocal2d", "SecondOrderAttention", "ChannelAttention",
                                          "SpatialAttention", "CBAM"}
    known = set(srops.backends("cpu"))
    for cls in mods:
        assert cls.OPS and set(cls.OPS) <= known, (cls.__name__, cls.OPS, sorted(known))


def test_networks_find_the_ops_of_their_modules() -> None:
    import srops.models as M

    assert srops_ops(M.build("amms", scale=2, n_modules=1, n_am=1, n_feats=16)) >= {"nonlocal_attention", "covpool_sqrtm"}
    assert srops_ops(M.build("edsr_cbam", scale=2, n_resblocks=1, n_feats=16)) == {
        "cbam", "channel_attention", "spatial_attention"}  # CBAM and its two gates
    assert srops_ops(M.build("edsr", scale=2, n_resblocks=1, n_feats=16)) == set()
