"""The Triton interpreter runs kernels whose loops have runtime bounds, on every supported triton/numpy.

Triton <= 3.7's interpreter turns a loop bound into an int with ``int(array)``, which numpy >= 2.4 rejects
for the one-element arrays the interpreter keeps scalars in; srops patches that
(:mod:`srops.ops.nonlocal_attention.triton_interpret_compat`). These tests fail without the patch on
triton 3.6 with numpy 2.4 (the oldest-torch CI leg) and pass trivially where triton is fixed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.triton

KERNEL = textwrap.dedent('''
    import torch
    import triton
    import triton.language as tl

    import srops.ops.nonlocal_attention.triton_impl  # noqa: F401  (installs the interpreter patch)


    @triton.jit
    def block_sums(X, OUT, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        acc = tl.zeros([BLOCK], tl.float32)
        full = n // BLOCK
        for b in range(0, full):  # a runtime bound: the construct the interpreter must index
            acc += tl.load(X + b * BLOCK + offs)
        if full * BLOCK < n:
            acc += tl.load(X + full * BLOCK + offs, mask=offs < n - full * BLOCK, other=0.0)
        tl.store(OUT + offs, acc)


    x = torch.arange(37, dtype=torch.float32)
    out = torch.empty(8)
    block_sums[(1,)](x, out, x.numel(), BLOCK=8)
    want = torch.nn.functional.pad(x, (0, 3)).view(5, 8).sum(0)
    assert torch.equal(out, want), (out, want)
    print("ok", triton.__version__, __import__("numpy").__version__)
''')


def test_runtime_loop_bound_under_interpreter(tmp_path: Path) -> None:
    """A kernel with ``for _ in range(0, n // BLOCK)`` runs under ``TRITON_INTERPRET=1`` and sums right."""
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stdout + res.stderr


def test_patched_index_reads_one_element_arrays() -> None:
    """After install(), the interpreter's ``tensor.__index__`` accepts 0-d and one-element 1-D arrays and
    still refuses a block (several elements)."""
    import triton.language as tl
    from triton.runtime import interpreter

    from srops.ops.nonlocal_attention import triton_interpret_compat as compat

    compat.install()
    scope = interpreter._LangPatchScope()
    try:
        interpreter._patch_lang_tensor(tl.core.tensor, scope)
        fake = lambda data: SimpleNamespace(handle=SimpleNamespace(data=data))  # noqa: E731
        assert tl.core.tensor.__index__(fake(np.array([5], dtype=np.int32))) == 5
        assert tl.core.tensor.__index__(fake(np.array(7, dtype=np.int64))) == 7
        with pytest.raises(TypeError):
            tl.core.tensor.__index__(fake(np.array([1, 2], dtype=np.int32)))
    finally:
        scope.restore()
    assert not compat._broken(interpreter, tl)
