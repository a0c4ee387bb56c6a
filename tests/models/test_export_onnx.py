"""ONNX export of every registered network with its default backends, run by onnxruntime at other sizes.

Each network (small widths and depths, attention blocks kept) is exported by
``torch.onnx.export(..., dynamo=True)`` with dynamic H and W from one even example, and run by
onnxruntime at odd and unequal sizes: the srops modules must neither leave ``srops::`` ops in the
program nor fix it to the example's region tiling. Also ``python -m srops.models.export``.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import warnings

import pytest
import torch

import srops.models
from srops.models.export import main, onnx_program

_MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"ONNX export tests need {', '.join(_MISSING)} "
                                "(pip install srops[onnx])")

SMALL = {  # constructor overrides that keep each network's attention blocks at a test's size
    "amms": dict(n_modules=1, n_am=1, n_feats=16), "drfn": dict(n_groups=1, n_blocks=1, n_feats=16),
    "edsr": dict(n_resblocks=1, n_feats=16), "edsr_cbam": dict(n_resblocks=1, n_feats=16),
    "lapsrn": dict(n_feats=16, n_units=1), "lapsrn_cbam": dict(n_feats=16, n_units=1),
    "srgan_attention": dict(n_blocks=1, n_feats=32), "srresnet": dict(n_blocks=1, n_feats=16),
    "srresnet_cbam": dict(n_blocks=1, n_feats=16),
}
SIZES = [(31, 17), (16, 33), (40, 40)]


def _final(out):
    return out[-1] if isinstance(out, (list, tuple)) else out


def _run(sess, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[-1])


@pytest.mark.parametrize("name", srops.models.list_models())
def test_every_network_exports_with_dynamic_sizes(name):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = srops.models.build(name, scale=2, **SMALL.get(name, {})).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = onnx_program(net, torch.rand(1, 3, 24, 20))
    ops = {node.domain for node in prog.model_proto.graph.node}
    assert not any("srops" in d for d in ops), ops
    sess = ort.InferenceSession(prog.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for size in SIZES:
        x = torch.rand(2 if size == (40, 40) else 1, 3, *size)
        with torch.no_grad():
            ref = _final(net(x))
        out = _run(sess, x)
        assert out.shape == ref.shape
        span = max((ref.max() - ref.min()).item(), ref.abs().max().item())  # a discriminator's [N, 1]: its size
        err = (out - ref).abs().max().item() / span
        assert err <= 1e-4, f"{name} at {size}: max error {err:.3g} of the output's range"


def _checkpoint(path, name="amms", **kwargs):
    torch.manual_seed(1)
    net = srops.models.build(name, scale=2, **kwargs)
    torch.save({"model": net.state_dict(), "config": {"model": {"name": name, "scale": 2, **kwargs}}}, path)
    return net.eval()


def test_export_command_writes_a_model_onnxruntime_runs(tmp_path, capsys):
    import onnxruntime as ort

    net = _checkpoint(tmp_path / "best.pt", **SMALL["amms"])
    out = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(tmp_path / "best.pt"), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "opset 18" in said and "max error" in said
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # a normal new file, not a private temporary's 0600
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 23, 18)
    with torch.no_grad():
        ref = net(x)
    err = ((_run(sess, x) - ref).abs().max() / (ref.max() - ref.min())).item()
    assert err <= 1e-4


def test_export_command_refuses_mistakes_in_one_line(tmp_path, capsys):
    _checkpoint(tmp_path / "best.pt", "espcn")
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"keep me")

    def err(*args: str) -> str:
        assert main(list(args)) == 1
        text = capsys.readouterr().err
        assert text.startswith("error: ") and text.count("\n") == 1, text
        return text

    assert "exists; pass --overwrite" in err("--checkpoint", str(tmp_path / "best.pt"), "-o", str(existing))
    assert existing.read_bytes() == b"keep me"
    assert "nope.pt" in err("--checkpoint", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "a.onnx"))
    assert ".onnx" in err("--checkpoint", str(tmp_path / "best.pt"), "-o", str(tmp_path / "a.bin"))
    assert "--opset" in err("--checkpoint", str(tmp_path / "best.pt"), "-o", str(tmp_path / "a.onnx"), "--opset", "9")
    assert "does not exist" in err("--checkpoint", str(tmp_path / "best.pt"), "-o", str(tmp_path / "no" / "a.onnx"))
    assert main(["--checkpoint", str(tmp_path / "best.pt"), "-o", str(existing), "--overwrite"]) == 0
    assert existing.read_bytes() != b"keep me"


def test_torch_export_of_a_network_with_default_backends_runs_at_other_sizes():
    torch.manual_seed(0)
    net = srops.models.build("amms", scale=2, **SMALL["amms"]).eval()
    dims = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    prog = torch.export.export(net, (torch.rand(1, 3, 24, 20),), dynamic_shapes=(dims,))
    assert not any("srops" in str(n.target) for n in prog.graph.nodes)
    x = torch.rand(1, 3, 31, 17)
    with torch.no_grad():
        torch.testing.assert_close(prog.module()(x), net(x), rtol=1e-5, atol=1e-5)
