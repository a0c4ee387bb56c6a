"""Load the compiled extension ``srops._C`` once, keeping the reason if it is missing.

Importing ``srops._C`` runs its ``TORCH_LIBRARY`` registrations, after which the
compiled ops are reachable as ``torch.ops.srops.<name>``. Nothing here touches
CUDA: the CUDA runtime is linked, not initialised.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch

HAS_EXT: bool = False
HAS_CUDA_EXT: bool = False
EXT_ERROR: str | None = None

if os.environ.get("SROPS_NO_EXT", "0") == "1":
    EXT_ERROR = "SROPS_NO_EXT=1 is set"
else:
    try:
        from srops import _C  # noqa: F401

        HAS_EXT = True
        HAS_CUDA_EXT = bool(torch.ops.srops._compiled_with_cuda())
    except ImportError as exc:  # the package was installed without the extension, or it failed to load
        EXT_ERROR = (
            f"srops._C could not be imported ({exc}); rebuild with "
            "`pip install --no-build-isolation -e .` against the installed torch"
        )


def ext_unavailable() -> str | None:
    """None if the compiled extension is loaded, else why not."""
    return None if HAS_EXT else EXT_ERROR


def cuda_ext_unavailable() -> str | None:
    """None if the extension carries CUDA kernels, else why not."""
    if not HAS_EXT:
        return EXT_ERROR
    if not HAS_CUDA_EXT:
        return "srops._C was compiled without CUDA (no nvcc or a CPU-only torch at build time)"
    return None


def registered_ops() -> list[str]:
    """Names of every ``srops::`` operator known to the dispatcher."""
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("srops::"))


# (op, dispatch key) pairs with a compiled kernel, read once so that dispatch
# (which torch.compile traces) never calls into the dispatcher's registry.
_KERNELS: frozenset[tuple[str, str]] = frozenset(
    (op, key)
    for op in (registered_ops() if HAS_EXT else [])
    for key in ("CPU", "CUDA")
    if torch._C._dispatch_has_kernel_for_dispatch_key(f"srops::{op}", key)
)


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``srops::<op>`` has a compiled kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    return (op, dispatch_key) in _KERNELS


def kernels_missing(ops: Sequence[str], dispatch_key: str) -> str | None:
    """None if every ``srops::<op>`` of ``ops`` has a compiled ``dispatch_key`` kernel, else why not."""
    reason = ext_unavailable() if dispatch_key == "CPU" else cuda_ext_unavailable()
    if reason is None:
        missing = [op for op in ops if not has_kernel(op, dispatch_key)]
        if missing:
            reason = f"srops._C has no {dispatch_key} kernel for {', '.join(missing)}"
    return reason


def kernel_availability(ops: Sequence[str], dispatch_key: str) -> Callable[[], str | None]:
    """A backend's ``available()`` for compiled ops, decided now: dispatch (which torch.compile
    traces) then only reads a constant."""
    reason = kernels_missing(ops, dispatch_key)
    return lambda: reason
