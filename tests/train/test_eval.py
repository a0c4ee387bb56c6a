"""srops/models/test.py (evaluation CLI), self-ensemble, the bicubic row, and the training objectives."""
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
    assert main([*args, "--self-ensemble", "--no-save", "--overwrite"]) == 0  # the same CSV again
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


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_out_naming_a_file_is_refused(tmp_path: Path, tiny_val: Path, capsys) -> None:
    target = tmp_path / "results.csv"
    target.write_text("keep me")
    assert main(["--model", "bicubic", "--scale", "2", str(tiny_val), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and str(target) in err and "folder" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_rerun_needs_overwrite_and_writes_atomically(tmp_path: Path, tiny_val: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "res"
    args = ["--model", "bicubic", "--scale", "2", str(tiny_val), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(files) == 3  # the CSV and two SR images
    (out / "results_x2.csv").write_text("an earlier table the user edited")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "--overwrite" in err and str(out / "results_x2.csv") in err
    assert (out / "results_x2.csv").read_text() == "an earlier table the user edited"
    # --overwrite replaces them, through temporary files: a failing write leaves the old CSV whole
    import errno
    import os

    real_writer = csv.writer

    def full_disk(fh, *a, **k):
        fh.write("model,sc")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(csv, "writer", full_disk)
    assert main([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and "results_x2.csv" in err and "Traceback" not in err
    assert (out / "results_x2.csv").read_text() == "an earlier table the user edited"
    assert sorted(p.name for p in out.iterdir()) == ["bicubic", "results_x2.csv"]  # no temporary file left
    monkeypatch.setattr(csv, "writer", real_writer)
    assert main([*args, "--overwrite"]) == 0
    assert list(csv.reader(open(out / "results_x2.csv")))[1][0] == "bicubic"


def test_image_too_small_for_the_network(tmp_path: Path, capsys) -> None:
    import srops.models

    spec = {"name": "amms", "scale": 2, "n_modules": 1, "n_am": 1, "n_feats": 8, "nl_regions": 5}  # LR >= 10x10
    kw = dict(spec)
    net = srops.models.build(kw.pop("name"), scale=kw.pop("scale"), **kw)
    ck = tmp_path / "amms.pt"
    torch.save({"model": net.state_dict(), "config": {"model": spec}, "iteration": 1}, ck)
    data = tmp_path / "set"
    data.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / "big.png")
    Image.fromarray(rng.integers(0, 256, (16, 18, 3), dtype=np.uint8)).save(data / "small.png")  # LR 9x8
    out = tmp_path / "res"
    assert main(["--checkpoint", str(ck), str(data), "--out", str(out)]) == 1
    cap = capsys.readouterr()
    errs = _error_lines(cap.err)
    assert len(errs) == 2 and "Traceback" not in cap.err, cap.err
    assert "small" in errs[0] and "9x8" in errs[0] and "10x10" in errs[0] and "amms" in errs[0]
    assert str(data) in errs[0] and "1 model/dataset" in errs[1]
    assert "| amms | n/a |" in cap.out
    assert list(csv.reader(open(out / "results_x2.csv")))[1] == ["amms", "2", "n/a", "n/a"]


def test_unwritable_out_is_refused_before_work(tmp_path: Path, tiny_val: Path, monkeypatch, capsys,
                                               make_read_only) -> None:
    import srops.models.test as evaluation

    out = tmp_path / "res"
    out.mkdir()
    make_read_only(out)  # a read-only file system: creating anything under `out` fails
    ran = []
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: ran.append(a))
    assert main(["--model", "bicubic", "--scale", "2", str(tiny_val), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and str(out) in err and "Read-only" in err and ran == []
    assert list(out.iterdir()) == []
