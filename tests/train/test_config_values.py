"""Every config mistake is one ``error:`` line naming the key (or file), what it expects and what arrived,
before anything is written: the value rules of srops/models/config.py, network arguments of the wrong type, a
full disk while saving, a read-only output folder, a training image below one LR pixel."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from srops.models import config as config_mod
from srops.models.config import DEFAULTS, RULES, check_values, load_config
from srops.models.data import TrainPatches
from srops.models.train import main, run
from tests.train.conftest import write_folder
from tests.train.helpers import tiny_cfg, write_cfg


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "model":
            out += _leaves(value, path + ".")
        else:
            out.append(path)
    return out


def test_every_default_key_has_a_rule() -> None:
    keys = [k for k in _leaves(DEFAULTS) if k != "model"] + [f"model.{k}" for k in DEFAULTS["model"]]
    assert set(keys) <= set(RULES), sorted(set(keys) - set(RULES))
    check_values(load_config(None), "the defaults")  # the defaults obey their own rules
    for preset in config_mod.list_presets():
        load_config(preset)  # and so do the presets


@pytest.mark.parametrize("override, key, expected, got", [
    ("data.batch_size=0", "data.batch_size", "an integer >= 1", "got 0"),
    ("data.batch_size=-4", "data.batch_size", "an integer >= 1", "got -4"),
    ("data.batch_size=2.5", "data.batch_size", "an integer >= 1", "got 2.5"),
    ("train.ckpt_every=0", "train.ckpt_every", "an integer >= 1", "got 0"),
    ("train.log_every=0", "train.log_every", "an integer >= 1", "got 0"),
    ("val.every=0", "val.every", "an integer >= 1", "got 0"),
    ("data.iters_per_epoch=0", "data.iters_per_epoch", "an integer >= 1", "got 0"),
    ("optim.lr=two", "optim.lr", "a number > 0", "got 'two' (a string)"),
    ("data.augment=maybe", "data.augment", "true or false", "got 'maybe'"),
    ("train.device=tpu", "train.device", "one of 'auto', 'cpu', 'cuda'", "got 'tpu'"),
    ("train.iters=-5", "train.iters", "an integer >= 0 or null", "got -5"),
    ("train.time_budget=-1", "train.time_budget", "a number > 0 or null", "got -1"),
    ("optim.betas=[0.9]", "optim.betas", "a list of 2 numbers", "got [0.9]"),
    ("train.threads=some", "train.threads", "'auto'", "got 'some'"),
])
def test_bad_value_is_one_error_line(tmp_path: Path, capsys, override: str, key: str, expected: str,
                                     got: str) -> None:
    out = tmp_path / "run"
    assert main(["-c", "amms_x2", "--set", f"train.out_dir={out}", "--set", override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert f"'{key}'" in err[0] and expected in err[0] and got in err[0] and override in err[0]
    assert not out.exists()


def test_bad_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("data: {batch_size: 0}\n")
    with pytest.raises(ValueError, match=r"'data.batch_size' in config file .*c\.yml.*an integer >= 1, got 0"):
        load_config(path)


def test_integral_floats_are_integers() -> None:
    cfg = load_config(None, ["train.iters=1e3", "val.every=2.0e3"])
    assert cfg["train"]["iters"] == 1000 and isinstance(cfg["train"]["iters"], int) and cfg["val"]["every"] == 2000


def test_programmatic_config_is_checked_too(tmp_path: Path, tiny_train: Path) -> None:
    cfg = tiny_cfg(tmp_path / "run", tiny_train, None)
    cfg["data"]["batch_size"] = 0
    with pytest.raises(ValueError, match="'data.batch_size' in the config must be an integer >= 1, got 0"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def test_network_argument_of_the_wrong_type(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["-c", "espcn_cbam_x4", "--set", f"train.out_dir={out}", "--set", "model.channels=abc",
                 "--set", "data.train=[data/Set5]"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "model.channels='abc'" in err[0], err
    assert "espcn_cbam" in err[0] and not out.exists()


def _fill(folder: Path) -> None:
    """Write into ``folder`` until the file system is full."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (to simulate a full or read-only disk honestly)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def _unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # busy: detach it now, free it later


def test_full_disk_while_saving(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    """A real full file system (a 2 MiB tmpfs): the save fails with one error line, the previous last.pt
    stays intact and loads, no temporary file is left."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=2m")
    try:
        out = disk / "run"
        cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=3, ckpt_every=3))
        assert main(["-c", cfg_path]) == 0
        before = (out / "last.pt").read_bytes()
        _fill(disk)
        (disk / "filler").unlink()
        _fill(disk)  # full again, now with log.csv's next rows already in its page
        with open(disk / "filler", "r+b") as fh:
            fh.truncate(max(0, os.path.getsize(disk / "filler") - 16384))  # room for the lock and log rows
        capsys.readouterr()
        assert main(["-c", cfg_path, "--resume", "--set", "train.iters=6"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:") and "last.pt" in err[-1] and "No space left on device" in err[-1], err
        assert "previous 'last.pt' is unchanged" in err[-1] and "Traceback" not in "\n".join(err)
        assert (out / "last.pt").read_bytes() == before
        assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 3
        assert not list(out.glob(".*tmp*")) and not (out / "train.lock").exists()
    finally:
        _unmount(disk)


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, tiny_train: Path, monkeypatch) -> None:
    """The same without root: torch.save writes part of the file, then the disk is full."""
    run(tiny_cfg(tmp_path, tiny_train, None, iters=3, ckpt_every=3))
    before = (tmp_path / "last.pt").read_bytes()
    real = torch.save

    def full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"cannot write .*last\.pt.*No space left.*previous 'last\.pt' is unchanged"):
        run(tiny_cfg(tmp_path, tiny_train, None, iters=6, ckpt_every=3), resume=True)
    monkeypatch.setattr(torch, "save", real)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_read_only_output_folder(tmp_path: Path, tiny_train: Path, capsys) -> None:
    """Refused at the start, before any training: the folder itself, or a folder to be made inside one."""
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "ro,size=1m")
    try:
        for out in (disk, disk / "run"):
            cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=2))
            assert main(["-c", cfg_path]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error:") and "not writable" in err[0], err
            assert str(out) in err[0] and "Read-only file system" in err[0]
    finally:
        _unmount(disk)


def test_one_pixel_training_image_is_skipped(tmp_path: Path, tiny_train: Path) -> None:
    folder = write_folder(tmp_path / "imgs", [(40, 40), (1, 1), (30, 36)], seed=3)
    patches = TrainPatches(folder, 2, lr_patch=8, skip_small=True)
    assert patches.pairs.names == ["img0", "img2"]
    summary = patches.skip_summary()
    assert summary.startswith("data: skipped 1 of 3 training images") and "img1.png (0x0)" in summary
    with pytest.raises(ValueError, match=r"img1\.png.*too small.*1x1.*below one ×2 LR pixel.*data\.skip_small"):
        TrainPatches(folder, 2, lr_patch=8)
    cfg = tiny_cfg(tmp_path / "run", folder, None, iters=2)
    cfg["data"]["skip_small"] = True
    trainer, res = run(cfg)
    assert res["iteration"] == 2 and any("skipped 1 of 3" in n for n in trainer.notes)


def test_full_disk_while_logging_names_the_log(tmp_path: Path, tiny_train: Path, monkeypatch, capsys) -> None:
    """log.csv's rows cannot be written (the disk filled between checkpoints): one error line naming log.csv and
    the cause, the checkpoint of the last save kept, no traceback."""
    import csv
    import types

    import srops.models.logs as logs

    class FullAfterHeader:
        def __init__(self, fh):
            self.inner, self.rows = csv.writer(fh), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows > 1 and row[3] == "train" and int(row[0]) > 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.inner.writerow(row)

    monkeypatch.setattr(logs, "csv", types.SimpleNamespace(writer=FullAfterHeader, reader=csv.reader))
    out = tmp_path / "run"
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=8, ckpt_every=3))
    assert main(["-c", cfg_path, "--set", "train.log_every=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: srops.models.train: cannot write") and "log.csv" in err[-1], err
    assert "No space left on device" in err[-1] and "Traceback" not in "\n".join(err)
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 3
    assert not (out / "train.lock").exists()
