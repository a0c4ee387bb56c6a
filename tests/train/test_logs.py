"""15.5 / 15.8: console output without a terminal, tidy log.csv, GAN d_loss window means, TensorBoard."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from srops.models.objectives import GanObjective
from srops.models.train import main, run
from tests.train.helpers import log_rows, logged, tiny_cfg, write_cfg


def test_no_progress_bar_without_terminal(tmp_path: Path, tiny_train: Path, capsys) -> None:
    """15.5: stderr is not a terminal here: log lines, no carriage-return frames."""
    cfg = tiny_cfg(tmp_path / "run", tiny_train, None, iters=4, log_every=2, progress=True)
    assert main(["-c", write_cfg(tmp_path / "c.yml", cfg)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if "iteration" in ln]
    assert len(lines) == 2 and "iteration 4/4" in lines[-1] and "loss" in lines[-1]


def test_tidy_csv_and_gan_window_mean(tmp_path: Path, tiny_train: Path, tiny_val: Path, monkeypatch) -> None:
    """15.8: no blank cells; d_loss is the mean over the logging window, like loss."""
    seen: list[float] = []
    real = GanObjective.discriminator_step

    def recording(self, *args):
        seen.append(real(self, *args))
        return seen[-1]

    monkeypatch.setattr(GanObjective, "discriminator_step", recording)
    cfg = tiny_cfg(tmp_path, tiny_train, tiny_val, iters=4, log_every=2)
    cfg["gan"] = {"discriminator": {"name": "srgan_discriminator"}, "adv_weight": 1e-3}
    cfg["val"].update({"every": 4, "max_images": 1})
    run(cfg)
    rows = log_rows(tmp_path / "log.csv")
    assert rows and all(all(v != "" for v in r.values()) for r in rows)
    assert {(r["phase"], r["metric"]) for r in rows} == {("train", "loss"), ("train", "d_loss"), ("train", "lr"),
                                                         ("val", "psnr"), ("val", "ssim")}
    d = logged(tmp_path / "log.csv", "d_loss")
    assert [i for i, _, _ in d] == [2, 4] and len(seen) == 4
    assert d[0][1] == pytest.approx((seen[0] + seen[1]) / 2, rel=1e-5)
    assert d[1][1] == pytest.approx((seen[2] + seen[3]) / 2, rel=1e-5)


def test_tensorboard_missing_warns(tmp_path: Path, tiny_train: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.warns(RuntimeWarning, match="TensorBoard is not installed"):
        run(tiny_cfg(tmp_path, tiny_train, None, iters=1, tensorboard=True))


def test_tensorboard_validation_crops(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg(tmp_path, tiny_train, tiny_val, iters=3, tensorboard=True)
    cfg["val"]["tb_crop"] = 16
    run(cfg)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["images"]
    assert sorted(tags) == ["val_images/img0", "val_images/img1"]
    img = acc.Images("val_images/img0")[-1]
    assert (img.height, img.width) == (16, 32)  # SR | HR side by side
