"""One naming rule for the compiled schemas (csrc/srops.cpp): ``<op>_fwd`` / ``<op>_bwd``, a second
implementation's backend before the suffix; build facts start with ``_``. The backends derive the ops they
need from the rule (``srops._ext.fwd_bwd``, ``ops_with_prefix``), so a schema off the rule would be missed."""
from __future__ import annotations

import re

import pytest

from srops import _ext

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason="srops._C not built: no compiled schemas to check")

RULE = re.compile(r"^[a-z][a-z0-9_]*_(fwd|bwd)$")


def test_every_schema_follows_the_naming_rule() -> None:
    ops = [op for op in _ext.registered_ops() if not op.startswith("_")]
    assert ops, "srops._C registered no ops"
    off = [op for op in ops if not RULE.match(op)]
    assert not off, f"schemas off the <op>_fwd/<op>_bwd rule: {off}"
    fwd = {op[:-4] for op in ops if op.endswith("_fwd")}
    bwd = {op[:-4] for op in ops if op.endswith("_bwd")}
    assert fwd <= bwd, f"forward ops without a backward: {sorted(fwd - bwd)}"


def test_backends_find_their_ops_by_the_rule() -> None:
    assert _ext.fwd_bwd("covpool") == ("covpool_fwd", "covpool_bwd")
    registered = set(_ext.registered_ops())
    for op in ("covpool", "covpool_sqrtm", "nonlocal_attention"):
        assert set(_ext.fwd_bwd(op)) <= registered, op
    cbam = _ext.ops_with_prefix("cbam_")
    assert {"cbam_apply_fwd", "cbam_apply_bwd", "cbam_channel_pool_fwd", "cbam_spatial_pool_bwd"} <= set(cbam)
    assert all(op.startswith("cbam_") for op in cbam)
    assert _ext.kernels_missing((), "CPU") is not None  # an empty op list is never "available"
