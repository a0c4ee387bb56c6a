"""Backend selection: preference order, SROPS_BACKEND, explicit requests, logged reasons, report."""
from __future__ import annotations

import logging

import pytest
import torch

import srops
import srops.functional as F
from srops import BackendUnavailableError, _backend


def test_backends_report_covers_every_op_and_backend():
    report = srops.backends()
    expected_ops = {"nonlocal_attention", "covpool", "sqrtm_ns", "covpool_sqrtm", "channel_gate", "spatial_gate",
                    "channel_attention", "spatial_attention", "cbam"}
    assert expected_ops <= set(report)
    for op, per_backend in report.items():
        assert per_backend["reference"]["cpu"] == "ok"
        for name, row in per_backend.items():
            assert set(row) == {"cpu", "cuda"}
            assert all(isinstance(v, str) and v for v in row.values())
    if not torch.cuda.is_available():
        assert report["nonlocal_attention"]["sdpa"]["cuda"] == "no CUDA device visible to this process"


def test_env_var_selects_backend(monkeypatch):
    q = torch.randn(1, 4, 8)
    monkeypatch.setenv("SROPS_BACKEND", "reference")
    assert _backend.select("nonlocal_attention", (q, q, q)).name == "reference"
    monkeypatch.setenv("SROPS_BACKEND", "covpool=reference,nonlocal_attention=sdpa")
    assert _backend.select("nonlocal_attention", (q, q, q)).name == "sdpa"
    assert _backend.select("covpool", (q,)).name == "reference"
    # a single name that an op lacks leaves that op on its default order
    monkeypatch.setenv("SROPS_BACKEND", "sdpa")
    assert _backend.select("covpool_sqrtm", (q,)).name in _backend.default_order("covpool_sqrtm", "cpu")


def test_env_var_request_that_cannot_run_raises(monkeypatch):
    monkeypatch.setenv("SROPS_BACKEND", "nonlocal_attention=cuda")
    q = torch.randn(1, 4, 8)
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda' \(SROPS_BACKEND\)"):
        F.nonlocal_attention(q, q, q)


def test_explicit_request_beats_env(monkeypatch):
    monkeypatch.setenv("SROPS_BACKEND", "reference")
    q = torch.randn(1, 4, 8)
    assert _backend.select("nonlocal_attention", (q, q, q), "sdpa").name == "sdpa"


@pytest.fixture
def toy_op():
    """A throw-away op with a CUDA-only backend ahead of the reference, removed afterwards."""
    _backend.register(_backend.Backend("toy", "cuda", lambda t: t + 1, devices=("cuda",)))
    _backend.register(_backend.Backend("toy", "reference", lambda t: t, devices=("cpu", "cuda")))
    _backend.set_order("toy", "cpu", ("cuda", "reference"))
    yield "toy"
    del _backend._OPS["toy"]


def test_skipped_backends_are_logged(caplog, toy_op):
    x = torch.randn(3)
    with caplog.at_level(logging.DEBUG, logger="srops"):
        chosen = _backend.select(toy_op, (x,))
    assert chosen.name == "reference"
    assert any("skipping backend cuda: runs on cuda tensors, not cpu" in r.getMessage() for r in caplog.records)


def test_explicit_request_raises_with_reason(toy_op):
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' .* cannot run here: runs on cuda tensors"):
        _backend.select(toy_op, (torch.randn(3),), "cuda")


def test_dtype_gate_reason():
    b = _backend.Backend("covpool", "cpu", lambda t: t, devices=("cpu",), dtypes=(torch.float32,))
    assert "does not support dtype torch.float64" in b.reason((torch.randn(1, dtype=torch.float64),))


def test_unknown_backend_name_is_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        F.covpool(torch.randn(1, 2, 3), backend="gpu")


def test_backend_names_public():
    """The public tuple of backend names names every backend any op registers."""
    import srops

    registered = {name for per_op in srops.backends().values() for name in per_op}
    assert registered <= set(srops.BACKEND_NAMES) and "reference" in registered
