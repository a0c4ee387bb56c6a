"""Full-image inference memory of AMMS with a global non-local block (``regions=1``).

Peak resident memory is measured in a fresh subprocess (``VmHWM`` of ``/proc/self/status``:
the high-water mark of the child's own address space), because torch's allocations are
invisible to tracemalloc. ``ru_maxrss`` would not do: Linux carries the parent's resident
size at fork over exec into it, so a large test process inflates the child's baseline. The child first runs a tiny warm-up forward and records its peak,
then runs the measured forward; the increase of the peak is what the big input cost.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, sys, time
import torch
import srops.models as M

size, scale, backend, depth = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.manual_seed(0)
net = M.build("amms", scale=scale, n_modules=depth, n_am=depth, nl_regions=1, backend=backend).eval()
for p in net.parameters():  # non-zero W so that the attention output matters
    torch.nn.init.normal_(p, std=0.02)

def peak_bytes():
    with open("/proc/self/status") as fh:  # VmHWM: this address space's peak, in kB
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) * 1024

with torch.no_grad():
    net(torch.rand(1, 3, 8, 8) * 255)
    before = peak_bytes()
    t0 = time.perf_counter()
    y = net(torch.rand(1, 3, size, size) * 255)
    seconds = time.perf_counter() - t0
after = peak_bytes()
ok = bool(torch.isfinite(y).all())
print(json.dumps({"before": before, "after": after, "seconds": seconds, "shape": list(y.shape), "finite": ok}))
"""


def run_child(size: int, scale: int, backend: str, depth: int = 4) -> dict:
    """Peak RSS (bytes) of a fresh process before/after one AMMS forward on a size² LR image;
    ``depth`` AMMS modules of ``depth`` attention modules each."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), str(scale), backend, str(depth)],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def score_bytes(size: int) -> int:
    """Bytes of one float32 N×M score matrix of a global non-local block on a size² map
    with 2×2 pooled keys (N = size², M = (size/2)²)."""
    return 4 * size * size * (size // 2) ** 2


def test_reference_backend_materialises_the_score_matrix() -> None:
    """Calibration: at 160² LR (N = 25600, M = 6400, 655 MB of scores) one global
    non-local block through ``reference`` raises the peak by more than the score matrix."""
    size = 160
    ref = run_child(size, 2, "reference", depth=1)
    assert ref["shape"] == [1, 3, 2 * size, 2 * size] and ref["finite"]
    assert ref["after"] - ref["before"] > score_bytes(size), ref


def test_global_nonlocal_memory_scales_below_score_matrix() -> None:
    """Through ``sdpa`` the same forward raises the peak by far less than one score matrix."""
    size = 160
    res = run_child(size, 2, "sdpa", depth=1)
    assert res["shape"] == [1, 3, 2 * size, 2 * size] and res["finite"]
    assert res["after"] - res["before"] < score_bytes(size) / 4, res


def test_one_module_amms_global_nonlocal_256_under_8gb() -> None:
    """A one-module, one-AM AMMS ×2 with a global non-local block on a 256² LR image
    (N = 65536, M = 16384: a 4.3 GB score matrix) stays far below 8 GB through ``sdpa``."""
    res = run_child(256, 2, "sdpa", depth=1)
    assert res["shape"] == [1, 3, 512, 512] and res["finite"]
    assert res["after"] < 8 * 2**30, res
    assert res["after"] - res["before"] < score_bytes(256) / 4, res


@pytest.mark.slow
def test_amms_global_nonlocal_full_image_256_under_8gb() -> None:
    """AMMS ×4 (N = M = 4 modules) with a global non-local block on a 256² LR image
    (N = 65536, M = 16384: a 4.3 GB score matrix per block) runs on CPU within 8 GB
    through ``sdpa``."""
    res = run_child(256, 4, "sdpa")
    assert res["shape"] == [1, 3, 1024, 1024] and res["finite"]
    assert res["after"] < 8 * 2**30, res
    print(f"\nAMMS x4 256x256 regions=1 sdpa: {res['seconds']:.1f} s, peak RSS {res['after'] / 2**30:.2f} GiB")
