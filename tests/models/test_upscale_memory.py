"""Out-of-memory on the CPU: the allocator's RuntimeError (not torch.OutOfMemoryError) triggers the tile
fallback, other RuntimeErrors do not; for real, under an address-space limit, in a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srops.models.upscale import is_out_of_memory, run_network
from tests.models.test_upscale import ROOT, SET5, read, write_checkpoint

# the message as torch 2.14 raises it (c10/core/impl/alloc_cpu.cpp)
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)")


class SmallMemory(nn.Module):
    """Nearest-neighbour ×2 that fails as the CPU allocator does above ``limit`` input pixels."""

    def __init__(self, limit: int, error: str = CPU_OOM) -> None:
        super().__init__()
        self.limit, self.error, self.seen = limit, error, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise RuntimeError(self.error)
        return x.repeat_interleave(2, -2).repeat_interleave(2, -1)


def test_cpu_allocator_error_is_out_of_memory() -> None:
    assert is_out_of_memory(RuntimeError(CPU_OOM))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected input"))
    assert not is_out_of_memory(ValueError(CPU_OOM))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_cpu_allocation_failure_falls_back_to_tiles(capsys) -> None:
    net = SmallMemory(limit=70 * 70)  # the fallback goes down to 64-pixel tiles
    x = torch.rand(1, 3, 150, 130)
    notes: list[str] = []
    sr = run_network(net, x, 2, tile=None, overlap=8, self_ensemble=False, device=torch.device("cpu"),
                     dtype=torch.float32, note=notes.append)
    torch.testing.assert_close(sr, x.repeat_interleave(2, -2).repeat_interleave(2, -1))
    assert net.seen[0] == (150, 130) and net.seen[1] == (75, 75) and net.seen[-1] == (64, 64)
    assert [n.split()[-1] for n in notes] == ["75", "64"] and "retrying with tiles" in notes[0]
    # any other RuntimeError is a real failure, not a reason to retry
    other = SmallMemory(limit=70 * 70, error="Expected 3 channels, got 4")
    with pytest.raises(RuntimeError, match="Expected 3 channels"):
        run_network(other, x, 2, tile=None, overlap=8, self_ensemble=False, device=torch.device("cpu"),
                    dtype=torch.float32, note=notes.append)
    assert len(other.seen) == 1


LIMITED = """
import os, resource, sys
import torch
from srops.models.upscale import load_network, main
model, _ = load_network(sys.argv[2], torch.device("cpu"), torch.float32)
with torch.inference_mode():
    model(torch.rand(1, 3, 64, 64))  # warm up: the allocator's and oneDNN's first mappings
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
headroom = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[3:]))
"""
# Address space needed above the warmed-up process, measured (AMD EPYC, torch 2.14.1, one thread) for
# the 768x768 image below and an ESPCN of 256 + 32 channels: 256-pixel tiles fit in 250 MiB, the whole
# image does not fit in 1000 MiB (its first activation alone is 576 MiB). 600 MiB sits between them.
HEADROOM_MIB = 600


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_address_space_limit_real_fallback(tmp_path: Path) -> None:
    ck = write_checkpoint(tmp_path / "wide.pt", {"name": "espcn", "scale": 2, "channels": [256, 32]}, iteration=1)
    tile = np.array(Image.open(SET5 / "butterfly.png").convert("RGB"))
    Image.fromarray(np.tile(tile, (3, 3, 1))).save(tmp_path / "big.png")  # 768 x 768
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def run(out: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", LIMITED, str(HEADROOM_MIB), str(tmp_path / "wide.pt"), str(tmp_path / "big.png"),
               "-o", str(tmp_path / out), "--checkpoint", str(tmp_path / "wide.pt"), "--threads", "1", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)

    tiled = run("tiled", "--tile", "256", "--tile-overlap", "16")
    assert tiled.returncode == 0, tiled.stderr
    auto = run("auto", "--tile-overlap", "16")
    assert auto.returncode == 0, auto.stderr
    assert "retrying with tiles" in auto.stderr and "Traceback" not in auto.stderr
    a, b = np.array(read(tmp_path / "auto" / "big.png")), np.array(read(tmp_path / "tiled" / "big.png"))
    assert a.shape == (1536, 1536, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_out_of_memory_on_one_image_does_not_end_the_batch(tmp_path: Path, monkeypatch, capsys) -> None:
    import srops.models.inference as inference
    from srops.models.upscale import main

    real = inference.upscale_tensor

    def no_memory_for_big(model, lr, scale, tile=None, **kw):
        if lr.shape[-1] > 100:  # the big image fails at every tile size, as the CPU allocator does
            raise RuntimeError(CPU_OOM)
        return real(model, lr, scale, tile=tile, **kw)

    monkeypatch.setattr(inference, "upscale_tensor", no_memory_for_big)
    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=1)
    d = tmp_path / "in"
    d.mkdir()
    rgb = np.array(Image.open(SET5 / "bird.png").convert("RGB"))
    Image.fromarray(rgb[:90, :120]).save(d / "a_big.png")
    Image.fromarray(rgb[:30, :40]).save(d / "b_small.png")
    assert main([str(d), "-o", str(tmp_path / "out"), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    errs = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errs) == 2 and "a_big.png" in errs[0] and "out of memory" in errs[0] and "Traceback" not in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b_small.png"]
