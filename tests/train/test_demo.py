"""srops/models/demo.py end to end on tiny data (3 iterations): table, CSV and pictures are written."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from PIL import Image

from srops.models.demo import main


def test_demo_smoke(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_train, data / "T91")
    shutil.copytree(tiny_val, data / "Set5")
    out = tmp_path / "demo_out"
    assert main(["--budget", "60", "--iters", "3", "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| bicubic (ours) |" in text and "| srops AMMS (demo, 3 iterations) |" in text
    assert "| SRCNN (2014), published | 36.66/0.9542 |" in text and "| AMMS paper, full network" in text
    assert "dB over bicubic" in text and "SRCNN's published 36.66 dB" in text
    rows = list(csv.DictReader(open(out / "results_x2.csv")))
    assert [r["model"] for r in rows] == ["bicubic", "srops_amms_demo"] and rows[1]["iterations"] == "3"
    for name in ("comparison.png", "training_curve.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert (out / "run" / "last.pt").exists() and len(list((out / "sr").glob("*.png"))) == 2


def test_demo_twice_keeps_the_first_run(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    """make demo run again: it works, and the first training run is kept as run_archived_<time>."""
    data = tmp_path / "data"
    shutil.copytree(tiny_train, data / "T91")
    shutil.copytree(tiny_val, data / "Set5")
    out = tmp_path / "demo_out"
    args = ["--budget", "60", "--data", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--iters", "2"]) == 0
    first = (out / "run" / "last.pt").read_bytes()
    assert main([*args, "--iters", "3"]) == 0
    archived = list(out.glob("run_archived_*"))
    assert len(archived) == 1 and (archived[0] / "last.pt").read_bytes() == first
    assert (out / "run" / "last.pt").exists() and "demo, 3 iterations" in capsys.readouterr().out


def test_demo_holds_the_whole_job_to_its_total(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys,
                                               monkeypatch) -> None:
    """16: make demo's start time (SROPS_DEMO_T0) counts: the training budget is what the set-up left."""
    import time

    from srops.models import demo

    assert demo.training_budget(600, 1000.0, 1200.0) == (600 - 200 - demo.RESERVE_S, 200.0)
    assert demo.training_budget(600, 1000.0, 1590.0)[0] == demo.MIN_BUDGET_S  # always some training
    assert demo.training_budget(600, None, 1590.0) == (600 - demo.RESERVE_S, 0.0)
    data = tmp_path / "data"
    shutil.copytree(tiny_train, data / "T91")
    shutil.copytree(tiny_val, data / "Set5")
    monkeypatch.setenv("SROPS_DEMO_T0", f"{time.time() - 500:.3f}")
    assert main(["--total", "600", "--iters", "2", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "set-up took 500 s; 70 s of training left in the 600 s job" in text and "(set-up included)" in text
    cfg = __import__("torch").load(tmp_path / "o" / "run" / "last.pt", weights_only=True)["config"]
    assert abs(cfg["train"]["time_budget"] - 70) < 1 and cfg["schedule"]["name"] == "cosine"
    assert cfg["train"]["threads"] == "auto" and cfg["train"]["channels_last"]
    monkeypatch.setenv("SROPS_DEMO_T0", "yesterday")
    assert main(["--data", str(data), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 1
    assert "SROPS_DEMO_T0 must be a time" in capsys.readouterr().err
