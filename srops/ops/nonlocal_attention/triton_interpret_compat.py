"""Triton interpreter compatibility: loop bounds held in one-element arrays under numpy >= 2.4.

Under ``TRITON_INTERPRET=1`` every scalar kernel argument (``N``, ``M``, ...) is a one-element 1-D numpy
array, and so is anything computed from one (``full = M // BLOCK_N``). Our kernels loop over runtime
bounds (``for _ in range(0, full)``), which calls the interpreter's ``tensor.__index__``. Up to triton 3.7
that is ``int(handle.data)``, which numpy 2.4 turned from a deprecation into ``TypeError: only
0-dimensional arrays can be converted to Python scalars``; triton 3.8 squeezes the array first. The
compiled kernels are unaffected (a runtime ``range`` is an ``scf.for`` loop there).

:func:`install` wraps the interpreter's tensor patching so that ``__index__`` reads the one element, and
only where a probe of the installed interpreter shows the failure. Nothing changes outside the
interpreter or on a triton/numpy pair that works as it is.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

_MARK = "_srops_one_element_index"


def _index(self) -> int:
    """``__index__`` of an interpreter tensor: the value of a one-element array of any rank."""
    data = self.handle.data
    if isinstance(data, np.ndarray) and data.size == 1:
        return int(data.reshape(-1)[0])
    return int(data)  # a block tensor is no index: numpy's own error


def _broken(interpreter, tl) -> bool:
    """True when the interpreter's patched ``tensor.__index__`` rejects a one-element 1-D array."""
    scope = interpreter._LangPatchScope()
    try:
        interpreter._patch_lang_tensor(tl.core.tensor, scope)
        fake = SimpleNamespace(handle=SimpleNamespace(data=np.array([3], dtype=np.int32)))
        try:
            return tl.core.tensor.__index__(fake) != 3
        except TypeError:
            return True
    finally:
        scope.restore()


def install() -> bool:
    """Patch the Triton interpreter where its ``__index__`` fails on one-element arrays.

    Returns True when the patch is (or already was) in place, False when the interpreter needs none
    or has no such hook (a triton whose interpreter is organised differently is left alone).
    """
    try:
        import triton.language as tl
        from triton.runtime import interpreter
    except ImportError:
        return False
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or not hasattr(interpreter, "_LangPatchScope"):
        return False
    if getattr(original, _MARK, False):
        return True
    if not _broken(interpreter, tl):
        return False

    def patch_lang_tensor(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", _index)

    setattr(patch_lang_tensor, _MARK, True)
    interpreter._patch_lang_tensor = patch_lang_tensor
    return True
