"""Run state of ``srops.models.train`` on disk: atomic checkpoint writes, RNG states, stale temporary files.

A checkpoint is written to ``.<name>.tmp<PID>`` in the same folder and then renamed onto ``<name>``, so
``last.pt`` is never half-written. A process killed inside ``torch.save`` leaves its temporary file
behind; :func:`clean_stale_temporaries` removes those of processes that are no longer running.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TMP = re.compile(r"^\..+\.tmp(\d+)$")


def rng_state() -> dict:
    """torch / numpy / python (and CUDA, when present) global RNG states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (tensors may live on any device)."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a file of ours that survived is stale by definition (we write one at a time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
