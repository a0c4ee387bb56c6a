"""``train.threads: auto``: the CPU thread count with the fastest training step, re-measured as the load changes.

On a machine whose cores are shared, the intra-op thread count that PyTorch picks (one per core) can be the
slowest choice: with the other core of a 2-core machine busy, a 2-thread step of the demo's network took 2.3×
as long as a 1-thread step (0.098 s against 0.043 s), because each parallel region waits for the thread that
is not scheduled. :class:`ThreadTuner` times real training steps at each candidate count (the default count,
then halvings down to 1) every ``every`` seconds and keeps the fastest; no step is spent on anything but
training.
"""
from __future__ import annotations

import statistics

import torch

#: PyTorch's own thread count, taken when this module is first imported (before any tuning changed it).
DEFAULT_THREADS = torch.get_num_threads()


def check_threads(value) -> int | str | None:
    """``train.threads``: None (PyTorch's default), a positive int, or ``"auto"``."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"srops.models.train: 'train.threads' must be null, a positive int or 'auto', got {value!r}")
    return value


class ThreadTuner:
    """Chooses ``torch.set_num_threads`` before each training step.

    A probe runs ``probe_steps`` steps at each candidate count, the first step after a switch not counted;
    the count with the lowest median step time is kept until the next probe, ``every`` seconds later, if it
    beats the current count's median by more than ``margin`` (10 %).
    ``history`` holds ``(seconds, chosen, {count: median step seconds})`` of each probe.
    """

    def __init__(self, max_threads: int, clock, probe_steps: int = 6, every: float = 30.0,
                 margin: float = 0.1) -> None:
        if max_threads < 1 or probe_steps < 2:
            raise ValueError(f"ThreadTuner needs max_threads >= 1 and probe_steps >= 2, got {max_threads}, "
                             f"{probe_steps}")
        self.candidates: list[int] = []
        n = int(max_threads)
        while n >= 1:
            self.candidates.append(n)
            n //= 2
        self.clock, self.probe_steps, self.every, self.margin = clock, int(probe_steps), float(every), float(margin)
        self.current = int(max_threads)
        self.history: list[tuple[float, int, dict[int, float]]] = []
        self._plan: list[int] = []
        self._samples: dict[int, list[float]] = {}
        self._probing: int | None = None
        self._switched = False
        self._next_probe: float | None = None
        self._t0 = clock()

    def before_step(self) -> int:
        """Set and return the thread count of the coming step."""
        if (not self._plan and len(self.candidates) > 1
                and (self._next_probe is None or self.clock() >= self._next_probe)):
            self._plan = [c for c in self.candidates for _ in range(self.probe_steps)]
            self._samples = {c: [] for c in self.candidates}
        self._probing = self._plan.pop(0) if self._plan else None
        n = self.current if self._probing is None else self._probing
        self._switched = torch.get_num_threads() != n
        if self._switched:
            torch.set_num_threads(n)
        return n

    def after_step(self, seconds: float) -> None:
        """Record the step's wall time; at the end of a probe, keep the fastest count."""
        if self._probing is None:
            return
        if not self._switched:
            self._samples[self._probing].append(float(seconds))
        if not self._plan:
            medians = {c: statistics.median(v) for c, v in self._samples.items() if v}
            best = min(medians, key=medians.__getitem__)
            # switch only for a clear gain: a probe that lands on a moment of noise must not move the count
            if self.current not in medians or medians[best] < (1.0 - self.margin) * medians[self.current]:
                self.current = best
            torch.set_num_threads(self.current)
            self._next_probe = self.clock() + self.every
            self.history.append((self.clock() - self._t0, self.current, medians))
            self._probing = None
