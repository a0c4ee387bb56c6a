"""Stop requests for ``srops.models.train``: SIGTERM (cluster preemption) and SIGINT (Ctrl-C).

While :class:`StopSignals` is active, the first SIGTERM/SIGINT only records itself; the training loop
checks :meth:`StopSignals.agreed` after every iteration, saves a checkpoint and returns. Under torchrun
the ranks agree by an all-reduce, so every rank stops after the same iteration even when the signal
reached them at different times (or only one of them). A second signal of the same kind gets the
default behaviour (a second Ctrl-C interrupts at once). DataLoader worker processes ignore both signals
(a scheduler that signals the whole process group must not kill them before the checkpoint is written).
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager recording SIGTERM/SIGINT; ``received`` is the first signal's number or None."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def agreed(self, world: int, device: torch.device) -> int | None:
        """The signal to stop for, identical on every rank (all-reduced when ``world > 1``)."""
        if world <= 1:
            return self.received
        flag = torch.tensor([float(self.received or 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        value = int(flag.item())
        return value or None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the training DataLoader: its workers leave SIGTERM/SIGINT to the main process."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
