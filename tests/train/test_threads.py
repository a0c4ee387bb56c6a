"""train.threads: a fixed count, or auto (the fastest count, re-measured as the load changes)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srops.models.threads import ThreadTuner, check_threads
from srops.models.train import run
from tests.train.helpers import FakeClock, logged, tiny_cfg


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _drive(tuner: ThreadTuner, clock: FakeClock, cost, steps: int) -> list[int]:
    """Run ``steps`` fake steps whose seconds are ``cost(threads, switched)``; the thread count of each."""
    used = []
    for _ in range(steps):
        before = torch.get_num_threads()
        n = tuner.before_step()
        assert torch.get_num_threads() == n
        seconds = cost(n, n != before)
        clock.now += seconds
        tuner.after_step(seconds)
        used.append(n)
    return used


def test_tuner_picks_the_fastest_count_and_follows_the_load(keep_threads) -> None:
    clock = FakeClock()
    tuner = ThreadTuner(4, clock, probe_steps=4, every=30.0)
    assert tuner.candidates == [4, 2, 1]
    busy = {4: 0.30, 2: 0.12, 1: 0.09}  # other work on the cores: fewer threads win
    # the first step after a switch is slow (thread pool start-up): it must not count
    used = _drive(tuner, clock, lambda n, switched: 5.0 if switched else busy[n], 12)
    assert used == [4] * 4 + [2] * 4 + [1] * 4 and tuner.current == 1
    assert tuner.history[0][1] == 1 and tuner.history[0][2] == pytest.approx(busy)
    used = _drive(tuner, clock, lambda n, switched: busy[n], 100)  # 9 s: no probe before 30 s
    assert set(used) == {1}
    idle = {4: 0.02, 2: 0.03, 1: 0.05}
    used = _drive(tuner, clock, lambda n, switched: idle[n], 1500)  # the load went away (>= 30 s later)
    assert tuner.current == 4 and used[-1] == 4 and len(tuner.history) >= 2
    assert len(tuner.history) == 2 and used[-900:] == [4] * 900  # kept after the probe that saw the change


def test_tuner_keeps_its_count_for_a_small_difference(keep_threads) -> None:
    """A probe where another count is only a few per cent faster (noise) does not switch."""
    clock = FakeClock()
    tuner = ThreadTuner(2, clock, probe_steps=4, every=30.0)
    used = _drive(tuner, clock, lambda n, switched: {2: 0.100, 1: 0.095}[n], 8)
    assert used == [2] * 4 + [1] * 4 and tuner.current == 2 and torch.get_num_threads() == 2
    _drive(tuner, clock, lambda n, switched: {2: 0.100, 1: 0.085}[n], 400)  # 15 % faster: a real gain
    assert tuner.current == 1


def test_single_thread_machine_never_probes(keep_threads) -> None:
    clock = FakeClock()
    tuner = ThreadTuner(1, clock)
    assert _drive(tuner, clock, lambda n, s: 0.1, 20) == [1] * 20 and tuner.history == []


@pytest.mark.parametrize("bad", [0, -2, 1.5, "fast", True])
def test_bad_threads_value(bad, tmp_path: Path, tiny_train: Path) -> None:
    with pytest.raises(ValueError, match=r"'train.threads' must be null, a positive int or 'auto'"):
        check_threads(bad)
    with pytest.raises(ValueError, match=r"train.threads"):
        run(tiny_cfg(tmp_path, tiny_train, None, iters=1, threads=bad))


def test_fixed_and_auto_threads_in_training(keep_threads, tmp_path: Path, tiny_train: Path) -> None:
    run(tiny_cfg(tmp_path / "a", tiny_train, None, iters=2, threads=1))
    assert torch.get_num_threads() == 1
    trainer, _ = run(tiny_cfg(tmp_path / "b", tiny_train, None, iters=30, log_every=5, threads="auto"))
    tuner = trainer.thread_tuner
    assert tuner is not None and tuner.history and torch.get_num_threads() == tuner.current
    counts = [v for _, v, _ in logged(tmp_path / "b" / "log.csv", "threads")]
    assert len(counts) == 6 and all(c in tuner.candidates for c in counts)
