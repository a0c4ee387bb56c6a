"""16: the GPU reproduction recipe (python -m srops.models.reproduce), dry-run on CPU: the amms_x2_30min
preset unchanged but for a 20-second budget, through the same training and evaluation code."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from srops.models.reproduce import PRESET, main
from srops.models.train import load_config
from tests.train.conftest import write_folder


def test_preset_is_paper_size_and_time_budgeted() -> None:
    cfg = load_config(PRESET)
    assert {k: cfg["model"][k] for k in ("name", "scale", "n_modules", "n_am", "n_feats")} == \
        {"name": "amms", "scale": 2, "n_modules": 4, "n_am": 4, "n_feats": 64}
    assert cfg["train"]["time_budget"] == 1800 and cfg["schedule"]["name"] == "cosine"
    assert cfg["data"]["train"] == ["data/T91"] and cfg["data"]["val"] is None  # never trains on a test set


def test_reproduce_dry_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the preset's data/T91 resolves to the bundled one from any folder
    sets = tmp_path / "sets"
    write_folder(sets / "Set5", [(50, 61), (48, 44)], seed=4)
    write_folder(sets / "BSD100", [(46, 52)], seed=5)
    results = tmp_path / "results"
    # a small AMMS and batch: many steps fit the 20 s budget, so that the budget, not one slow first step of
    # the paper-size network (up to 20 s on a loaded 2-core machine), decides where the run stops
    small = ["model.n_modules=1", "model.n_am=2", "model.n_feats=16", "data.batch_size=4", "data.lr_patch=24"]
    rc = main(["--data", str(sets), "--only-data", "--budget", "20", "--out", str(tmp_path / "run"), "--set", "train.progress=false",
               *[arg for kv in small for arg in ("--set", kv)], "--results-dir", str(results)])
    assert rc == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "test set Set14 not found" in err  # a missing set is said, not silently dropped
    assert "| model (×2) | Set5 | BSD100 |" in out
    its = int(re.search(r"\| srops AMMS, (\d+) iterations \|", out).group(1))
    assert its >= 1 and "| bicubic (ours) |" in out
    assert "| SRCNN (2014), published | 36.66/0.9542 | 31.36/0.8879 |" in out
    assert "| AMMS paper, full network, days of GPU training | 37.92/0.9623 | 32.23/0.8997 |" in out
    assert "Set5 target 37.0 dB NOT reached" in out
    md = (results / "reproduce_x2.md").read_text()
    assert "torch " in md and "missing test sets: Set14" in md and "train.time_budget=20" in md
    rows = list(csv.DictReader(open(results / "reproduce_x2.csv")))
    assert [r["iterations"] for r in rows] == ["", str(its)] and float(rows[1]["Set5_psnr"]) > 0
    assert its >= 5, rows  # the budget, not the first step, ends the run
    assert float(rows[1]["train_seconds"]) <= 20, rows
    assert (tmp_path / "run" / "last.pt").exists()


def test_reproduce_twice_keeps_the_first_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """make reproduce run again into the same folder: it works, and the first run is kept archived."""
    monkeypatch.chdir(tmp_path)
    sets = tmp_path / "sets"
    write_folder(sets / "Set5", [(50, 61), (48, 44)], seed=4)
    small = ["model.n_modules=1", "model.n_am=1", "model.n_feats=8", "data.batch_size=2", "data.lr_patch=16",
             "train.iters=1", "schedule.warmup_iters=0", "train.progress=false", "train.tensorboard=false"]
    args = ["--data", str(sets), "--only-data", "--out", str(tmp_path / "run"), "--results-dir",
            str(tmp_path / "results"), *[arg for kv in small for arg in ("--set", kv)]]
    assert main(args) == 0
    first = (tmp_path / "run" / "last.pt").read_bytes()
    assert main(args) == 0
    archived = list(tmp_path.glob("run_archived_*"))
    assert len(archived) == 1 and (archived[0] / "last.pt").read_bytes() == first
    assert (tmp_path / "run" / "last.pt").exists() and "was moved to" in capsys.readouterr().err


def test_reproduce_without_set5_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--data", str(tmp_path / "empty"), "--only-data"]) == 1
    assert "no Set5 folder" in capsys.readouterr().err
