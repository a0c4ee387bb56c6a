"""Run state of ``srops.models.train`` on disk: atomic checkpoint writes, RNG states, stale temporary files.

A checkpoint is written to ``.<name>.tmp<PID>`` in the same folder and then renamed onto ``<name>``, so
``last.pt`` is never half-written. A process killed inside ``torch.save`` leaves its temporary file
behind; :func:`clean_stale_temporaries` removes those of processes that are no longer running.
"""
from __future__ import annotations

import errno
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Who the run-folder and write errors name.
WHO = "srops.models.train"
_TMP = re.compile(r"^\..+\.tmp(\d+)$")


def numpy_rng_state(state: Any = None) -> dict:
    """The legacy numpy global RNG state as tensors and plain data, so that it loads with
    ``torch.load(weights_only=True)``.

    ``state`` is what ``np.random.get_state()`` returns (``('MT19937', uint32[624] key, pos, has_gauss,
    cached_gaussian)``; the current state when None). Returns ``{"bit_generator": str, "key": int64 tensor
    [624], "pos": int, "has_gauss": int, "gauss": float}``; an already converted dict is returned as is.
    """
    if isinstance(state, dict):
        return state
    name, key, pos, has_gauss, gauss = np.random.get_state() if state is None else state
    return {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_rng_state(state: Any) -> None:
    """Restore :func:`numpy_rng_state`'s dict (or ``np.random.get_state()``'s tuple) exactly."""
    if isinstance(state, dict):
        key = state["key"].cpu().numpy().astype(np.uint32)
        state = (state["bit_generator"], key, int(state["pos"]), int(state["has_gauss"]), float(state["gauss"]))
    np.random.set_state(state)


def rng_state() -> dict:
    """torch / numpy / python (and CUDA, when present) global RNG states, as tensors and plain data only
    (``torch.load(weights_only=True)`` reads them back): torch and CUDA states are uint8 tensors, numpy's is
    :func:`numpy_rng_state`'s dict, python's is ``random.getstate()`` (tuples of ints)."""
    state = {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (tensors may live on any device). The python state may
    come back with lists where tuples were saved; ``random.setstate`` needs tuples."""
    torch.set_rng_state(state["torch"].cpu())
    _set_numpy_rng_state(state["numpy"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (torch.save reports a failed write as a RuntimeError whose context it is)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, flushed to disk, then os.replace onto ``path``.

    A failed write (full disk, quota, I/O error) raises :class:`WriteError` naming
    ``path``; the temporary file is removed and an earlier ``path`` is left as it was.
    """
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        cause = _os_error(exc)
        if cause is None:
            raise
        raise write_error(path, cause) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def pid_running(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user counts); False for PIDs <= 0."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(pid: int) -> bool:
    # a file of ours that survived is stale by definition (we write one at a time)
    return pid != os.getpid() and pid_running(pid)


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.<name>.tmp<PID>`` files in ``folder`` whose process is gone; returns the deleted paths."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_file() and not _running(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


class WriteError(OSError):
    """A checkpoint could not be written (full disk, quota, I/O error); its text is one readable line."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_error(path: Path, exc: OSError, kept: str | None = None) -> WriteError:
    """A :class:`WriteError` naming ``path``, the cause, and what is kept: ``kept``, or by default whether an
    earlier file at ``path`` is unchanged (for files replaced whole)."""
    if kept is None:
        kept = (f"the previous {path.name!r} is unchanged" if path.exists() else f"no {path.name!r} was written")
    hint = "; free some space or choose another folder" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return WriteError(exc.errno, f"{WHO}: cannot write {str(path)!r}: {exc.strerror or exc}; {kept}{hint}")
