"""Load the compiled extension ``srops._C`` once, keeping the reason if it is missing.

Importing ``srops._C`` runs its ``TORCH_LIBRARY`` registrations, after which the
compiled ops are reachable as ``torch.ops.srops.<name>``. Nothing here touches
CUDA: the CUDA runtime is linked, not initialised.

Before loading, the torch that is running is compared with the torch the
extension was compiled against (``srops/_build_info.py``, written by every
build). When they differ the extension is not loaded (a binary of another torch
release may fail to load or misbehave), a RuntimeWarning says how to rebuild,
and the reference backends work as usual. ``SROPS_ALLOW_TORCH_MISMATCH=1``
tries to load it anyway.
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Callable, Sequence

import torch

REBUILD = (
    "rebuild srops against the torch in use: `pip install --force-reinstall --no-deps .` from the source "
    "(or `pip install --no-build-isolation -e .` in a checkout)"
)


def torch_mismatch(build_info: ModuleType | None, runtime: str) -> str | None:
    """Why the extension described by ``build_info`` must not be loaded beside torch ``runtime``, or None.

    ``build_info`` is ``srops._build_info`` (None when the build wrote none:
    then nothing is known and loading is tried). PyTorch keeps no C++ ABI between
    releases, so the versions must be equal, local label included.
    """
    built = getattr(build_info, "TORCH_VERSION", None)
    if build_info is None or built is None or built == runtime:
        return None
    return f"srops._C was built against torch {built} but torch {runtime} is running; {REBUILD}"


def _load() -> tuple[bool, str | None]:
    """Import ``srops._C`` unless that is known to fail; (loaded, why not). Warns when a build is unusable."""
    if os.environ.get("SROPS_NO_EXT", "0") == "1":
        return False, "SROPS_NO_EXT=1 is set"
    try:
        build_info = importlib.import_module("srops._build_info")
    except ImportError:
        build_info = None
    if build_info is not None and getattr(build_info, "WITH_EXT", True) is False:
        return False, "srops was installed without the extension (SROPS_NO_EXT=1 at build time)"
    mismatch = torch_mismatch(build_info, torch.__version__)
    if mismatch and os.environ.get("SROPS_ALLOW_TORCH_MISMATCH", "0") != "1":
        warnings.warn(mismatch + "; the reference backends still work", RuntimeWarning, stacklevel=3)
        return False, mismatch
    try:
        importlib.import_module("srops._C")
    except ModuleNotFoundError as exc:
        if exc.name != "srops._C":
            raise
        return False, f"srops._C is not built; {REBUILD}"
    except ImportError as exc:  # found but does not load (undefined symbol: another torch, a broken build)
        why = f"srops._C could not be loaded ({exc}); {REBUILD}"
        warnings.warn(why + "; the reference backends still work", RuntimeWarning, stacklevel=3)
        return False, why
    return True, None


HAS_EXT, EXT_ERROR = _load()
HAS_CUDA_EXT: bool = HAS_EXT and bool(torch.ops.srops._compiled_with_cuda())


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


# The ops srops._C declares, and the (op, dispatch key) pairs with a compiled kernel, read once when the
# extension loads, so that dispatch (which torch.compile traces) never calls into the dispatcher's registry.
_EXT_OPS: tuple[str, ...] = tuple(registered_ops()) if HAS_EXT else ()
_KERNELS: frozenset[tuple[str, str]] = frozenset(
    (op, key)
    for op in _EXT_OPS
    for key in ("CPU", "CUDA")
    if torch._C._dispatch_has_kernel_for_dispatch_key(f"srops::{op}", key)
)


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``srops::<op>`` has a compiled kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    return (op, dispatch_key) in _KERNELS


def kernels_missing(ops: Sequence[str], dispatch_key: str) -> str | None:
    """None if every ``srops::<op>`` of ``ops`` has a compiled ``dispatch_key`` kernel, else why not."""
    reason = ext_unavailable() if dispatch_key == "CPU" else cuda_ext_unavailable()
    if reason is None and not ops:
        reason = "srops._C declares none of the ops this backend runs"
    if reason is None:
        missing = [op for op in ops if not has_kernel(op, dispatch_key)]
        if missing:
            reason = f"srops._C has no {dispatch_key} kernel for {', '.join(missing)}"
    return reason


def fwd_bwd(op: str) -> tuple[str, str]:
    """The forward and backward schema names of ``op`` under the naming rule of ``csrc/srops.cpp``:
    ``<op>_fwd`` / ``<op>_bwd`` (a second implementation puts its backend before the suffix)."""
    return f"{op}_fwd", f"{op}_bwd"


def ops_with_prefix(prefix: str) -> tuple[str, ...]:
    """The registered ``srops::`` ops whose names start with ``prefix`` (e.g. every ``cbam_`` pass), as the
    extension declares them; empty without the extension."""
    return tuple(op for op in _EXT_OPS if op.startswith(prefix))


def kernel_availability(ops: Sequence[str], dispatch_key: str) -> Callable[[], str | None]:
    """A backend's ``available()`` for compiled ops, decided now: dispatch (which torch.compile
    traces) then only reads a constant."""
    reason = kernels_missing(ops, dispatch_key)
    return lambda: reason
