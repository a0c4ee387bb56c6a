"""models/test.py (evaluation CLI), self-ensemble, the bicubic row, and the training objectives."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srops.image import imresize
from srops.models.objectives import NetIO, content_loss, model_rgb_range
from srops.models.test import main, super_resolve
from srops.models.train import load_config, run
from tests.train.helpers import tiny_cfg


def _y_psnr(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Independent PSNR on BT.601 Y (0-255 scale) of uint8 HxWx3 arrays, ``border`` pixels shaved."""
    def y(a):
        a = a.astype(np.float64) / 255
        return 16 + 65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]

    d = (y(sr) - y(hr))[border:-border, border:-border]
    return float(10 * np.log10(255.0 ** 2 / np.mean(d ** 2)))


def test_bicubic_row_and_outputs(tmp_path: Path, tiny_val: Path, capsys) -> None:
    out = tmp_path / "res"
    assert main(["--model", "bicubic", "--scale", "2", str(tiny_val), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| model (×2) | " in table and "| bicubic |" in table
    rows = list(csv.reader(open(out / "results_x2.csv")))
    assert rows[0][:3] == ["model", "scale", f"{tiny_val.name}_psnr"] and rows[1][0] == "bicubic"
    # independent recomputation: MATLAB bicubic down (uint8) and up, PSNR on Y
    expected = []
    for name in ("img0", "img1"):
        hr = np.array(Image.open(tiny_val / f"{name}.png"))
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        t = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
        lr = torch.floor(imresize(t, 0.5).clamp(0, 1) * 255 + 0.5) / 255
        sr = torch.floor(imresize(lr, 2.0).clamp(0, 1) * 255 + 0.5)[0].permute(1, 2, 0).byte().numpy()
        saved = np.asarray(Image.open(out / "bicubic" / tiny_val.name / f"{name}.png"))
        assert np.array_equal(saved, sr)
        expected.append(_y_psnr(sr, hr, 2))
    assert float(rows[1][2]) == pytest.approx(np.mean(expected), abs=1e-3)
    assert f"{np.mean(expected):.2f}/" in table


def test_checkpoint_rows_and_self_ensemble(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    trainer, _ = run(tiny_cfg(tmp_path / "run", tiny_train, None, iters=3))
    out = tmp_path / "res"
    args = ["--model", "bicubic", "--model", "tiny_sr", "--checkpoint", str(tmp_path / "run" / "last.pt"),
            "--scale", "2", str(tiny_val), str(tiny_train), "--out", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"| model (×2) | {tiny_val.name} | {tiny_train.name} |"
    assert table[2].startswith("| bicubic |") and table[3].startswith("| tiny_sr |")
    assert len(list((out / "tiny_sr" / tiny_train.name).glob("*.png"))) == 4
    assert main([*args, "--self-ensemble", "--no-save"]) == 0
    assert "| tiny_sr+ |" in capsys.readouterr().out
    assert main(["--model", "tiny_sr", "--checkpoint", str(tmp_path / "nope.pt"), "--scale", "2", str(tiny_val)]) == 1
    assert "nope.pt" in capsys.readouterr().err
    assert main(["--model", "tiny_sr", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--scale", "3",
                 str(tiny_val)]) == 1


def test_self_ensemble_average() -> None:
    x = torch.rand(1, 3, 5, 7)
    nearest = nn.Upsample(scale_factor=2, mode="nearest")  # commutes with flips and rotations
    torch.testing.assert_close(super_resolve(nearest, x, True), super_resolve(nearest, x, False))
    conv = nn.Conv2d(3, 3, 3, padding=1)  # not equivariant: the ensemble is the mean of 8 passes
    with torch.no_grad():
        plain = [torch.rot90(conv(torch.rot90(x, k, (-2, -1))), -k, (-2, -1)) for k in range(4)]
        flips = [torch.rot90(conv(torch.rot90(x.flip(-1), k, (-2, -1))), -k, (-2, -1)).flip(-1) for k in range(4)]
        expected = (sum(plain) + sum(flips)) / 8
    torch.testing.assert_close(super_resolve(conv, x, True), expected)
    assert not torch.allclose(super_resolve(conv, x, True), super_resolve(conv, x, False))


def test_pyramid_loss_and_rgb_range() -> None:
    hr = torch.rand(2, 3, 16, 16)
    outs = [torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 16, 16, requires_grad=True)]
    cfg = {"name": "charbonnier", "eps": 1e-3}
    down = imresize(hr, 0.5)
    expected = (torch.sqrt((outs[0] - down) ** 2 + 1e-6).mean() + torch.sqrt((outs[1] - hr) ** 2 + 1e-6).mean())
    torch.testing.assert_close(content_loss(cfg, outs, hr), expected)
    assert model_rgb_range("amms", {}) == 255.0 and model_rgb_range("amms", {"rgb_range": 1}) == 1.0
    assert model_rgb_range("lapsrn", {}) == 1.0

    class Probe(nn.Module):
        def forward(self, x):
            self.seen = x.max().item()
            return x * 2

    probe = Probe()
    y = NetIO(probe, 255.0)(torch.full((1, 3, 2, 2), 0.5))
    assert probe.seen == pytest.approx(127.5) and torch.allclose(y, torch.ones_like(y))
    assert load_config(None)["loss"]["name"] == "l1"
