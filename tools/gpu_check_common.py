"""Pieces shared by the stages of ``tools/gpu_check.py``: the results folder, per-case records, deadlines.

A stage is a function ``run(stage: Stage) -> None`` that runs its cases through
:meth:`Stage.case`; every finished case is written to the stage's JSON file at
once (an atomic rename), so a stage stopped by its time limit keeps every case
it finished. Cases that start after the stage's soft deadline are recorded as
skipped, not run.

Nothing here imports torch: the parent process of ``gpu_check`` stays light.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MAX_FILES = 8  # result files gpu_check may write (the device machine returns at most 8)
MAX_FOLDERS = 2  # folders below the results folder a result file may sit in


class ResultLimitError(ValueError):
    """A result file would break the limits on count or depth."""


class ResultsDir:
    """The results folder with its limits: at most ``MAX_FILES`` files, at most ``MAX_FOLDERS`` folders deep.

    Files are counted by relative path; writing one again replaces it and does not count twice.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()

    def path(self, rel: str) -> Path:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            raise ResultLimitError(f"result file must be a relative path inside the results folder, got {rel!r}")
        if len(parts) - 1 > MAX_FOLDERS:
            raise ResultLimitError(
                f"result file must be at most {MAX_FOLDERS} folders deep, got {rel!r} ({len(parts) - 1} folders)"
            )
        if rel not in self.written and len(self.written) >= MAX_FILES:
            raise ResultLimitError(
                f"at most {MAX_FILES} result files, got a new one {rel!r} after {sorted(self.written)}"
            )
        self.written.add(rel)
        full = self.root / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        return full

    def write_text(self, rel: str, text: str) -> Path:
        full = self.path(rel)
        tmp = full.with_name(full.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, full)
        return full

    def write_json(self, rel: str, data: Any) -> Path:
        return self.write_text(rel, json.dumps(_finite(data), indent=1, sort_keys=False) + "\n")


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become strings (strict JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class CaseFailed(AssertionError):
    """A check inside a case failed; the message says what and by how much."""


@dataclass
class Stage:
    """One stage's run: its cases, deadline and options.

    Attributes:
        name: stage name (also its JSON file, ``<name>.json``).
        out: the results folder.
        deadline: ``time.time()`` after which no new case starts.
        dry_run: CPU tensors and tiny shapes (the CPU test of the whole script).
        options: stage-specific settings (device, shapes) chosen by gpu_check.
    """

    name: str
    out: ResultsDir
    deadline: float
    dry_run: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def file(self) -> str:
        return f"{self.name}.json"

    def time_left(self) -> float:
        return self.deadline - time.time()

    def flush(self, done: bool = False) -> None:
        counts = {s: sum(c["status"] == s for c in self.cases) for s in ("pass", "fail", "error", "skip")}
        self.out.write_json(self.file, {
            "stage": self.name, "done": done, "seconds": round(time.time() - self.started, 2),
            "counts": counts, "info": self.info, "cases": self.cases,
        })

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **params: Any) -> dict[str, Any]:
        """Run one case ``fn(record, *args)``; ``record`` (a dict holding ``params``) collects its measurements.

        ``fn`` raises :class:`CaseFailed` (or calls :meth:`check`) for a wrong result and :class:`SkipCase`
        to skip; any other exception is recorded as an error and the next case still runs. A case that
        would start after the deadline is recorded as skipped. Returns the record.
        """
        record: dict[str, Any] = {"case": name, **params}
        if self.time_left() <= 0:
            record.update(status="skip", reason="stage time budget spent")
        else:
            start = time.time()
            try:
                fn(record, *args)
                record.setdefault("status", "pass")
            except SkipCase as exc:
                record.update(status="skip", reason=str(exc))
            except CaseFailed as exc:
                record.update(status="fail", reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - every error is recorded, the next case still runs
                record.update(status="error", reason=f"{type(exc).__name__}: {exc}",
                              where=traceback.format_exc(limit=6).splitlines()[-4:])
            record["seconds"] = round(time.time() - start, 3)
        self.cases.append(record)
        self.flush()
        return record

    def should_run(self) -> bool:
        return self.time_left() > 0

    @staticmethod
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise CaseFailed(message)


class SkipCase(Exception):
    """The case cannot run here (missing tool, backend or device); the message says why."""


def load_stage_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
