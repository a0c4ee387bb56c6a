"""Backend registry and dispatch.

Every op has interchangeable backends with one signature. ``select`` walks the
op's preference order for the tensors' device type, skipping each backend whose
checks fail and logging why (``logging.getLogger("srops")`` at DEBUG). An
explicitly requested backend (the ``backend=`` argument, or ``SROPS_BACKEND``)
that cannot run raises :class:`BackendUnavailableError` with the reason.

``SROPS_BACKEND`` is either one backend name, applied to every op that has it
(ops without it keep their default order), or a comma list ``op=name,...``. A name
that is not a backend (``refernce``, ``REFERENCE``), an unknown op (``covpol=...``)
or a malformed item raises ValueError at the first dispatch.
Nothing here touches CUDA at import time.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

log = logging.getLogger("srops")

BACKEND_NAMES = ("cuda", "triton", "cpu", "sdpa", "reference")
DEVICE_TYPES = ("cpu", "cuda")


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run on the given tensors."""


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    ``available()`` answers for the whole process (compiled? installed?);
    ``devices`` and ``dtypes`` gate by tensor; ``can_run(tensors)`` adds any
    further per-call condition. Each returns ``None`` when fine, else a reason.
    """

    op: str
    name: str
    fn: Callable
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    available: Callable[[], str | None] = lambda: None
    can_run: Callable[[Sequence[torch.Tensor]], str | None] = lambda tensors: None

    def device_reason(self, device_type: str) -> str | None:
        reason = self.available()
        if reason:
            return reason
        if device_type not in self.devices:
            return f"runs on {'/'.join(self.devices)} tensors, not {device_type}"
        return None

    def reason(self, tensors: Sequence[torch.Tensor]) -> str | None:
        reason = self.device_reason(tensors[0].device.type)
        if reason:
            return reason
        bad = [t.dtype for t in tensors if t.dtype not in self.dtypes]
        if bad:
            return f"does not support dtype {bad[0]} (supports {', '.join(str(d) for d in self.dtypes)})"
        return self.can_run(tensors)


@dataclass
class _Op:
    backends: dict[str, Backend] = field(default_factory=dict)
    order: dict[str, tuple[str, ...]] = field(default_factory=dict)


_OPS: dict[str, _Op] = {}
_warned_reference: set[str] = set()


def not_built(*args: object, **kwargs: object) -> torch.Tensor:
    """The ``fn`` of a backend whose compiled code is not in this build; its ``available()`` says why, so
    ``select`` never returns it."""
    raise BackendUnavailableError("srops: this backend's compiled kernels are not in this build")


def register(backend: Backend) -> Backend:
    entry = _OPS.setdefault(backend.op, _Op())
    if backend.name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend name {backend.name!r}; expected one of {BACKEND_NAMES}")
    entry.backends[backend.name] = backend
    return backend


def set_order(op: str, device_type: str, order: Sequence[str]) -> None:
    """Preference order of ``op`` for tensors on ``device_type`` (from benchmark results)."""
    _OPS.setdefault(op, _Op()).order[device_type] = tuple(order)


def _parse_env(raw: str) -> tuple[str | None, dict[str, str]]:
    """``SROPS_BACKEND`` as (one backend for every op, or None; per-op requests), checked.

    Names are case-sensitive; an unknown backend or op, or an item not of the form ``op=backend``,
    raises ValueError naming what is valid.
    """
    valid = f"valid backends: {BACKEND_NAMES}"
    if "=" not in raw:
        if raw not in BACKEND_NAMES:
            raise ValueError(f"SROPS_BACKEND: unknown backend {raw!r}; {valid} (or a comma list op=backend)")
        return raw, {}
    requests: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not value:
            raise ValueError(f"SROPS_BACKEND: item {item.strip()!r} is not of the form op=backend (in {raw!r})")
        if name not in _OPS:
            raise ValueError(f"SROPS_BACKEND: unknown op {name!r}; valid ops: {sorted(_OPS)}")
        if value not in BACKEND_NAMES:
            raise ValueError(f"SROPS_BACKEND: unknown backend {value!r} for op {name!r}; {valid}")
        requests[name] = value
    return None, requests


def _env_request(op: str) -> str | None:
    raw = os.environ.get("SROPS_BACKEND", "").strip()
    if not raw:
        return None
    every, requests = _parse_env(raw)
    if every is not None:
        return every if every in _OPS[op].backends else None
    return requests.get(op)


def _check_name(op: str, name: str, source: str) -> None:
    if name not in BACKEND_NAMES:
        raise ValueError(f"srops.{op}: backend must be one of {BACKEND_NAMES} or None, got {name!r} ({source})")
    if name not in _OPS[op].backends:
        raise BackendUnavailableError(
            f"srops.{op}: backend {name!r} ({source}) is not implemented for this op; "
            f"it has {sorted(_OPS[op].backends)}"
        )


def select(op: str, tensors: Sequence[torch.Tensor], backend: str | None = None) -> Backend:
    """Pick the backend of ``op`` for ``tensors`` (see the module docstring)."""
    entry = _OPS[op]
    source = "backend= argument"
    if backend is None:
        backend, source = _env_request(op), "SROPS_BACKEND"
    if backend is not None:
        _check_name(op, backend, source)
        chosen = entry.backends[backend]
        reason = chosen.reason(tensors)
        if reason:
            raise BackendUnavailableError(f"srops.{op}: backend {backend!r} ({source}) cannot run here: {reason}")
        return chosen
    device_type = tensors[0].device.type
    order = entry.order.get(device_type, tuple(n for n in BACKEND_NAMES if n in entry.backends))
    skipped: list[str] = []
    for name in order:
        candidate = entry.backends.get(name)
        if candidate is None:
            continue
        reason = candidate.reason(tensors)
        if reason is None:
            if name == "reference" and device_type == "cuda" and op not in _warned_reference:
                _warned_reference.add(op)
                # stacklevel 3: select() is called by the op's public function; point at its caller
                warnings.warn(f"srops.{op}: falling back to the reference backend on CUDA ({'; '.join(skipped)})",
                              stacklevel=3)
            return candidate
        skipped.append(f"{name}: {reason}")
        log.debug("srops.%s: skipping backend %s: %s", op, name, reason)
    raise BackendUnavailableError(f"srops.{op}: no backend can run these inputs ({'; '.join(skipped)})")


def backends(device_type: str | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """For each op, each backend and each device type: ``"ok"`` or the reason it cannot run.

    Device types default to ``("cpu", "cuda")``; a CUDA entry that is otherwise
    fine says so when no CUDA device is visible to this process.
    """
    types = (device_type,) if device_type else DEVICE_TYPES
    cuda_visible = torch.cuda.is_available() if "cuda" in types else False
    report: dict[str, dict[str, dict[str, str]]] = {}
    for op, entry in _OPS.items():
        report[op] = {}
        for name, backend in entry.backends.items():
            row = {}
            for dt in types:
                reason = backend.device_reason(dt)
                if reason is None and dt == "cuda" and not cuda_visible:
                    reason = "no CUDA device visible to this process"
                row[dt] = reason or "ok"
            report[op][name] = row
    return report


def default_order(op: str, device_type: str) -> tuple[str, ...]:
    entry = _OPS[op]
    return entry.order.get(device_type, tuple(n for n in BACKEND_NAMES if n in entry.backends))
