"""Training logs of ``srops.models.train``: ``log.csv``, TensorBoard and the console.

``<out_dir>/log.csv`` is tidy: one row per logged value, columns ``iteration, epoch, seconds, phase, metric,
value``; ``phase`` is ``train`` (``loss``, ``d_loss``, ``lr``, averaged over the logging window except
``lr``) or ``val`` (``psnr``, ``ssim``). ``seconds`` is training time, continued across resumes. On
resume, rows (and TensorBoard events, through ``purge_step``) after the checkpoint's iteration are
dropped, so a run that was killed and resumed has one row per value. :func:`read_log` reads it back.

The console gets a tqdm bar when stderr is a terminal and plain log lines otherwise (a log file then
holds no carriage-return frames).
"""
from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from srops.models.runstate import write_error

COLUMNS = ["iteration", "epoch", "seconds", "phase", "metric", "value"]


def read_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{"train/loss": [(iteration, value), ...], "val/psnr": [...], ...}`` of a ``log.csv``."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(f"{row['phase']}/{row['metric']}", []).append((int(row["iteration"]), float(row["value"])))
    return out


def _truncate_csv(path: Path, keep_upto: int) -> bool:
    """Drop rows after iteration ``keep_upto``; a file of another layout is moved to ``log.csv.old``.
    Returns whether the header must be written."""
    if not path.exists():
        return True
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != COLUMNS:
        path.replace(path.with_name(path.name + ".old"))
        return True
    kept = [r for r in rows[1:] if r and int(r[0]) <= keep_upto]
    if len(kept) != len(rows) - 1:
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows([COLUMNS, *kept])
    return False


class RunLog:
    """``log.csv`` + optional TensorBoard writer of one run (rank 0 only)."""

    def __init__(self, out: Path, resume_from: int | None, tensorboard: bool, iters_per_epoch: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.ipe = iters_per_epoch
        path = out / "log.csv"
        if resume_from is None:
            header = True
            if path.exists():
                path.unlink()  # a fresh run in a used folder starts a fresh log
        else:
            header = _truncate_csv(path, resume_from)
        self.path = path
        self._fh = open(path, "a", newline="")
        self._csv = csv.writer(self._fh)
        if header:
            self._csv.writerow(COLUMNS)
            self._fh.flush()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("srops.models.train: TensorBoard is not installed, so no TensorBoard logs are "
                              "written (pip install tensorboard, or set train.tensorboard=false to silence this)",
                              RuntimeWarning, stacklevel=2)
            else:
                self.writer = SummaryWriter(str(out / "tb"),
                                            purge_step=None if resume_from is None else resume_from + 1)

    def scalars(self, phase: str, iteration: int, seconds: float, values: dict[str, float]) -> None:
        try:
            for metric, value in values.items():
                self._csv.writerow([iteration, f"{iteration / self.ipe:.4g}", f"{seconds:.1f}", phase, metric,
                                    f"{value:.6g}"])
                if self.writer is not None:
                    self.writer.add_scalar(f"{phase}/{metric}", value, iteration)
            self._fh.flush()
        except OSError as exc:  # a full disk or quota, an I/O error: say which file, and what is kept
            raise write_error(self.path, exc, kept="its earlier rows and the last saved checkpoint are kept") from exc

    def image(self, tag: str, img: torch.Tensor, iteration: int) -> None:
        """``img``: float ``[3, H, W]`` in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, img.clamp(0, 1), iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self._fh.close()


class Progress:
    """tqdm bar on a terminal; one line per logging step otherwise; nothing when disabled."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.total, self.desc = enabled, total, desc
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=self.stream)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def logged(self, iteration: int, seconds: float, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}")
        elif self.enabled:
            parts = " ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"{self.desc}: iteration {iteration}/{self.total} {parts} ({seconds:.0f} s)", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
