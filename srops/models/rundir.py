"""The output folder of one ``srops.models.train`` run: refusing a used folder, archiving it, the run lock.

* A folder is *used* when it holds what an earlier run wrote (:data:`RUN_FILES`, or TensorBoard events under
  ``tb/``). A fresh run refuses it (:class:`RunDirError`) unless asked to archive: :func:`archive_run`
  renames the whole folder to ``<out_dir>_archived_<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when that name is
  taken) and the run starts in a new, empty ``out_dir``. Nothing is deleted.
* :class:`RunLock` is ``<out_dir>/train.lock``, created with ``O_CREAT | O_EXCL`` and holding the PID of
  the process that trains into the folder (rank 0 under torchrun). A second run into the folder is refused
  with the folder and that PID; a lock whose process no longer runs is taken over with one line on stderr.
  The lock is removed when the run ends (normally, by an error, SIGTERM or SIGINT) and at interpreter exit.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path

from srops.models.runstate import WHO, WriteError, pid_running, write_error  # noqa: F401  (the last two re-exported)

#: Files whose presence marks a folder as holding an earlier run.
RUN_FILES = ("last.pt", "best.pt", "log.csv")
LOCK_NAME = "train.lock"


class RunDirError(ValueError):
    """The output folder is in use, holds an earlier run, or cannot be written."""


def earlier_run(out: Path) -> list[str]:
    """Names (relative to ``out``) of what an earlier run left in ``out``; empty when there is none."""
    if not out.is_dir():
        return []
    found = [name for name in RUN_FILES if (out / name).exists()]
    tb = out / "tb"
    if tb.is_dir() and any(p.name.startswith("events.out.tfevents") for p in tb.rglob("*")):
        found.append("tb/")
    return found


def archive_name(out: Path, now: float | None = None) -> Path:
    """``<out>_archived_<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``, ... appended while that path exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    base = out.with_name(f"{out.name}_archived_{stamp}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def archive_run(out: Path) -> Path:
    """Rename folder ``out`` to a free :func:`archive_name` (never overwriting); returns the new path."""
    for _ in range(100):
        target = archive_name(out)
        try:
            # os.rename onto an existing empty folder would succeed on POSIX: make the target first, exclusively
            target.mkdir()
        except FileExistsError:
            continue
        try:
            os.rename(out, target)
        except OSError as exc:
            target.rmdir()
            raise RunDirError(f"{WHO}: cannot archive the earlier run in {str(out)!r} to {str(target)!r}: "
                              f"{exc.strerror or exc}") from exc
        return target
    raise RunDirError(f"{WHO}: cannot find a free archive name for {str(out)!r}")


def refuse_earlier_run(out: Path, found: list[str]) -> RunDirError:
    return RunDirError(
        f"{WHO}: output folder {str(out)!r} holds an earlier run ({', '.join(found)}); continue it with "
        f"--resume, choose another folder (--set train.out_dir=...), or keep it as "
        f"{out.name}_archived_<time> and start afresh with --archive")


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def writable_error(out: Path, exc: OSError) -> RunDirError:
    return RunDirError(f"{WHO}: output folder {str(out)!r} is not writable ({exc.strerror or exc}); "
                       f"choose another folder with --set train.out_dir=...")


class RunLock:
    """``<out>/train.lock`` holding this process's PID while a run trains into ``out``."""

    _held: set[Path] = set()  # locks this process holds (a lock with our own PID that is not here is stale)

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise writable_error(self.out, exc) from exc
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            self.path.unlink()
            raise writable_error(self.out, exc) from exc
        os.close(fd)
        return True

    def acquire(self) -> "RunLock":
        """Take the lock (creating ``out``); RunDirError when a running process holds it."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise writable_error(self.out, exc) from exc
        for _ in range(10):
            if self._create():
                self.held = True
                RunLock._held.add(self.path.resolve())
                atexit.register(self.release)
                return self
            pid = _read_pid(self.path)
            ours = pid == os.getpid() and self.path.resolve() not in RunLock._held
            if pid is not None and pid_running(pid) and not ours:
                raise RunDirError(f"{WHO}: output folder {str(self.out)!r} is in use by another training run "
                                  f"(PID {pid}, lock file {str(self.path)!r}); wait for it to end, choose "
                                  f"another folder, or remove the lock file if PID {pid} is not a training run")
            if pid is None and self._young():
                time.sleep(0.05)  # another process is writing its PID into a lock it has just created
                continue
            self._take_over(pid)
        raise RunDirError(f"{WHO}: cannot take the lock {str(self.path)!r}")

    def _young(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < 2.0
        except FileNotFoundError:
            return False

    def _take_over(self, pid: int | None) -> None:
        """Remove a lock left by process ``pid``, which no longer runs (moved aside first, so that a lock
        another process has just created in its place is put back instead of removed)."""
        aside = self.path.with_name(f".{LOCK_NAME}.stale{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read_pid(aside) != pid:
            try:
                os.link(aside, self.path)  # not ours to remove: put it back unless a new one is there
            except OSError:
                pass
            aside.unlink()
            return
        aside.unlink()
        print(f"{WHO}: took over the stale lock {str(self.path)!r} of process "
              f"{pid if pid is not None else '(unknown)'}, which is no longer running", file=sys.stderr, flush=True)

    def release(self) -> None:
        """Remove the lock if this object holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        RunLock._held.discard(self.path.resolve())
        try:
            atexit.unregister(self.release)
        except Exception:
            pass
        if _read_pid(self.path) == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
