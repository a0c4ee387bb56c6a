"""Export a trained network to ONNX, with dynamic height and width.

    python -m srops.models.export --checkpoint runs/amms_x2/best.pt -o amms_x2.onnx

The network is rebuilt from the checkpoint (``config.model``, as srops.models.train writes it),
traced by ``torch.export`` and converted by ``torch.onnx.export(..., dynamo=True)``; under export
every srops module runs its ``reference`` backend (plain torch ops), so the file holds standard
ONNX operators only. Input ``lr`` is ``[N, 3, H, W]`` float32 with N, H and W dynamic; the last
output is the SR image (LapSRN's pyramid gives one output per level). The file is checked with
onnxruntime (where installed) at an odd size against PyTorch, and written through a temporary
file in its folder and ``os.replace``; an existing file is kept unless ``--overwrite`` is given.
Needs ``onnx`` and ``onnxscript`` (``pip install srops[onnx]``).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path

import torch
from torch import nn

from srops.models.inference import final_output

WHO = "srops.models.export"
OPSET = 18
CHECK_SIZE = (37, 29)  # odd, and not the example's: a program fixed to the example's shape fails here


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"ONNX export needs the packages {', '.join(missing)}, which are not installed "
                         "(pip install onnx onnxscript onnxruntime, or pip install srops[onnx])")


def onnx_program(net: nn.Module, example: torch.Tensor, opset: int = OPSET):
    """``torch.onnx.export(net, example, dynamo=True)`` with N, H and W dynamic (an ``ONNXProgram``)."""
    _require("onnx", "onnxscript")
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    return torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=["lr"],
                             dynamic_shapes=(dims,), verbose=False, optimize=True)


def check_with_onnxruntime(model_bytes: bytes, net: nn.Module, size: tuple[int, int] = CHECK_SIZE,
                           channels: int = 3) -> float | None:
    """Max |ONNX − PyTorch| of the last output over the output's range at ``size`` (None without onnxruntime)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x = torch.rand(1, channels, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = final_output(net(x)).float()
    out = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[-1])
    if out.shape != ref.shape:
        raise ValueError(f"the ONNX model gives shape {tuple(out.shape)} at {size}, PyTorch {tuple(ref.shape)}")
    span = max((ref.max() - ref.min()).item(), ref.abs().max().item(), 1e-12)  # one value per image: its size
    return (out - ref).abs().max().item() / span


def write_atomically(data: bytes, dst: Path, overwrite: bool) -> None:
    """``data`` to ``dst`` through a temporary file in its folder and ``os.replace`` (the file gets the
    usual permissions, 0o666 less the umask)."""
    from srops.image.files import write_atomic

    if dst.exists() and not overwrite:
        raise ValueError(f"'{dst}' exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise ValueError(f"the folder of '{dst}' does not exist")
    write_atomic(dst, lambda fh: fh.write(data))


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = OPSET, overwrite: bool = False,
           example: tuple[int, int] = (64, 64), check: bool = True) -> tuple[Path, float | None]:
    """Export the network of ``checkpoint`` to ``out``; returns the path and the onnxruntime check's error."""
    from srops.models.checkpoint import build_from_checkpoint

    dst = Path(out)
    if dst.exists() and not overwrite:  # before the (slow) export
        raise ValueError(f"'{dst}' exists; pass --overwrite to replace it")
    if dst.suffix.lower() != ".onnx":
        raise ValueError(f"the output must be a .onnx file, got '{dst}'")
    if not dst.parent.is_dir():
        raise ValueError(f"the folder of '{dst}' does not exist")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= 23:
        raise ValueError(f"--opset must be an int in [18, 23], got {opset!r}")
    _require("onnx", "onnxscript")
    net, spec = build_from_checkpoint(checkpoint, who=WHO)
    net = net.float().eval()
    channels = next((m.in_channels for m in net.modules() if isinstance(m, nn.Conv2d)), 3)
    prog = onnx_program(net, torch.rand(1, channels, *example), opset)
    data = prog.model_proto.SerializeToString()
    err = check_with_onnxruntime(data, net, channels=channels) if check else None
    if err is not None and not err <= 1e-4:
        raise ValueError(f"the exported model disagrees with PyTorch at {CHECK_SIZE}: max error {err:.3g} of the "
                         "output's range (> 1e-4); nothing was written")
    write_atomically(data, dst, overwrite)
    return dst, err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {WHO}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a checkpoint written by srops.models.train (best.pt, last.pt)")
    ap.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ap.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default {OPSET})")
    ap.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with PyTorch")
    args = ap.parse_args(argv)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on optional packages (torchvision)
    try:
        dst, err = export(args.checkpoint, args.output, args.opset, args.overwrite, check=not args.no_check)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    checked = (f"; onnxruntime at {CHECK_SIZE[0]}×{CHECK_SIZE[1]}: max error {err:.2g} of the output's range"
               if err is not None else "; not checked (onnxruntime not installed or --no-check)")
    print(f"wrote {dst} (opset {args.opset}, input 'lr' [N, C, H, W] with N, H, W dynamic{checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
