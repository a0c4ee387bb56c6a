"""models/demo.py end to end on tiny data (3 iterations): table, CSV and pictures are written."""
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
    assert "| bicubic |" in text and "| srops AMMS (demo) |" in text and "margin over bicubic" in text
    rows = list(csv.DictReader(open(out / "results_x2.csv")))
    assert [r["model"] for r in rows] == ["bicubic", "srops_amms_demo"] and rows[1]["iterations"] == "3"
    for name in ("comparison.png", "training_curve.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert (out / "run" / "last.pt").exists() and len(list((out / "sr").glob("*.png"))) == 2
