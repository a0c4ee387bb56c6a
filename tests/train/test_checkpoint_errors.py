"""Checkpoints that do not fit: ``--resume`` and ``srops.models.test`` give one ``error:`` line naming the
file and what does not match; ``srops.models.test`` refuses untrained weights and reads model and scale
from the checkpoint; checkpoints written by training upscale with ``srops-upscale``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from srops.models import test as eval_cli
from srops.models import upscale
from srops.models.train import load_config, main, run
from tests.train.test_train import tiny_cfg


def _write(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_train: Path, tiny_val: Path) -> Path:
    """A 3-iteration tiny_sr run with validation: ``last.pt`` and ``best.pt``."""
    out = tmp_path_factory.mktemp("run")
    run(tiny_cfg(out, tiny_train, tiny_val, iters=3))
    return out


def test_resume_without_optimizer_state(tmp_path: Path, trained: Path, tiny_train: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "best.pt").read_bytes())  # weights-only file
    cfg_path = _write(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None))
    with pytest.raises(ValueError, match=r"last\.pt.*'optimizer'.*--resume"):
        run(load_config(cfg_path), resume=True)
    assert main(["-c", cfg_path, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "last.pt" in err and "optimizer" in err and "Traceback" not in err


def test_resume_of_another_width(tmp_path: Path, trained: Path, tiny_train: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes())
    cfg = tiny_cfg(out, tiny_train, None)
    cfg["model"]["feats"] = 16
    cfg_path = _write(tmp_path / "c.yml", cfg)
    with pytest.raises(ValueError, match=r"last\.pt.*does not fit.*body\.0\.weight: checkpoint \(8, 3, 3, 3\) "
                                         r"vs network \(16, 3, 3, 3\)"):
        run(load_config(cfg_path), resume=True)
    assert main(["-c", cfg_path, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not fit" in err and "Traceback" not in err


def test_eval_reads_model_and_scale_from_checkpoint(trained: Path, tiny_val: Path, tmp_path: Path, capsys) -> None:
    assert eval_cli.main(["--checkpoint", str(trained / "best.pt"), str(tiny_val), "--out", str(tmp_path),
                          "--no-save"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert lines[0].startswith("| model (×2) |") and lines[2].startswith("| tiny_sr |")
    assert "WARNING" not in cap.err


def test_eval_refuses_random_weights(tiny_val: Path, tmp_path: Path, capsys) -> None:
    args = ["--model", "tiny_sr", "--scale", "2", str(tiny_val), "--out", str(tmp_path), "--no-save"]
    import tests.train.tinynet  # noqa: F401  (registers tiny_sr)

    assert eval_cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "tiny_sr" in err and "random" in err and "--random-weights" in err
    assert eval_cli.main([*args, "--random-weights"]) == 0
    assert "RANDOM, UNTRAINED" in capsys.readouterr().err
    assert eval_cli.main(["--model", "bicubic", str(tiny_val), "--out", str(tmp_path)]) == 1
    assert "--scale" in capsys.readouterr().err


def test_eval_checkpoint_that_does_not_fit(trained: Path, tiny_val: Path, tmp_path: Path, capsys) -> None:
    blob = torch.load(trained / "last.pt", weights_only=True)
    blob["config"]["model"]["feats"] = 4  # the config no longer matches the weights
    torch.save(blob, tmp_path / "odd.pt")
    blob["iteration"] = 0
    blob["config"]["model"]["feats"] = 8
    torch.save(blob, tmp_path / "zero.pt")
    assert eval_cli.main(["--checkpoint", str(tmp_path / "odd.pt"), str(tiny_val), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "odd.pt" in err and "does not fit" in err and "Traceback" not in err
    assert eval_cli.main(["--checkpoint", str(tmp_path / "zero.pt"), str(tiny_val), "--out", str(tmp_path),
                          "--no-save"]) == 0
    assert "iteration 0" in capsys.readouterr().err


def test_training_checkpoints_upscale(trained: Path, tiny_val: Path, tmp_path: Path) -> None:
    for name in ("last.pt", "best.pt"):
        out = tmp_path / name
        assert upscale.main([str(tiny_val), "-o", str(out), "--checkpoint", str(trained / name)]) == 0
        for src in sorted(tiny_val.glob("*.png")):
            with Image.open(src) as a, Image.open(out / src.name) as b:
                assert b.size == (2 * a.size[0], 2 * a.size[1]) and b.mode == "RGB"
                assert np.asarray(b).std() > 1  # a real image, not a constant
