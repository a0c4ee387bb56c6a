"""srops/models/train.py: config handling, bit-identical resume, NaN stop, missing checkpoint, 2-process gloo."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from srops.models.objectives import ContentLoss
from srops.models.train import NonFiniteLossError, load_config, main, run
from tests.train.helpers import logged, tiny_cfg

ROOT = Path(__file__).resolve().parents[2]


def test_load_config_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"model": {"name": "x", "scale": 3, "n_feats": 8}, "optim": {"lr": 0.5}}))
    cfg = load_config(path, ["optim.lr=2e-4", "model.n_feats=16", "train.amp=bf16", "gan.adv_weight=0.1"])
    assert cfg["model"] == {"name": "x", "scale": 3, "n_feats": 16}
    assert cfg["optim"]["lr"] == 2e-4 and cfg["optim"]["betas"] == [0.9, 0.999]
    assert cfg["train"]["amp"] == "bf16" and cfg["gan"] == {"adv_weight": 0.1}
    with pytest.raises(ValueError, match="key.path=value"):
        load_config(path, ["optim.lr"])
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        load_config(tmp_path / "missing.yml")


def test_resume_bit_identical(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    straight, _ = run(tiny_cfg(tmp_path / "a", tiny_train, tiny_val, iters=6))
    first, _ = run(tiny_cfg(tmp_path / "b", tiny_train, tiny_val, iters=3))
    assert first.iteration == 3
    # perturb every global RNG: resume must restore them
    torch.manual_seed(1234)
    resumed, res = run(tiny_cfg(tmp_path / "b", tiny_train, tiny_val, iters=6), resume=True)
    assert resumed.iteration == 6 and res["iteration"] == 6
    sa, sb = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    oa, ob = straight.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    assert straight.sched.get_last_lr() == resumed.sched.get_last_lr() == [1e-3 * 0.25]
    assert torch.equal(straight.state()["rng"]["torch"], resumed.state()["rng"]["torch"])
    # a different seed really changes the weights (the comparison above can fail)
    other, _ = run(tiny_cfg(tmp_path / "c", tiny_train, None, iters=6, seed=1))
    assert not all(torch.equal(sa[k], other.net.state_dict()[k]) for k in sa)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0] == "iteration,epoch,seconds,phase,metric,value" and not any(",," in r for r in log)
    assert [i for i, _, _ in logged(tmp_path / "b" / "log.csv", "psnr")] == [3, 6]
    assert (tmp_path / "b" / "best.pt").exists()


def test_checkpoint_contents(tmp_path: Path, tiny_train: Path) -> None:
    trainer, _ = run(tiny_cfg(tmp_path, tiny_train, None, iters=3, amp="fp16", grad_clip=0.5, tensorboard=True))
    st = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(st) >= {"model", "optimizer", "scheduler", "scaler", "rng", "sampler", "iteration", "config"}
    assert set(st["rng"]) >= {"torch", "numpy", "python"} and st["sampler"]["next_step"] == 3
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    bf16, _ = run(tiny_cfg(tmp_path / "bf16", tiny_train, None, iters=2, amp="bf16"))
    assert bf16.iteration == 2 and all(torch.isfinite(p).all() for p in bf16.net.parameters())
    with pytest.raises(ValueError, match="train.amp"):
        run(tiny_cfg(tmp_path / "bad", tiny_train, None, amp="fp8"))


def test_nan_loss_stops_and_keeps_last_good(tmp_path: Path, tiny_train: Path, monkeypatch, capsys) -> None:
    calls = {"n": 0}
    real = ContentLoss.forward

    def poisoned(self, sr, hr):
        calls["n"] += 1
        loss = real(self, sr, hr)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(ContentLoss, "forward", poisoned)
    cfg = tiny_cfg(tmp_path, tiny_train, None, iters=8, ckpt_every=2)
    with pytest.raises(NonFiniteLossError, match="iteration 5.*last good checkpoint"):
        run(cfg)
    st = torch.load(tmp_path / "last.pt", weights_only=True)
    assert st["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in st["model"].values())
    calls["n"] = 0
    assert main(["-c", _write(tmp_path / "c.yml", cfg), "--set", "train.iters=9", "--archive"]) == 1
    err = capsys.readouterr().err
    assert "error: srops.models.train: loss is nan at iteration 5" in err and "Traceback" not in err


def _write(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_missing_checkpoint_clear_error(tmp_path: Path, tiny_train: Path, capsys) -> None:
    cfg_path = _write(tmp_path / "c.yml", tiny_cfg(tmp_path / "run", tiny_train, None))
    assert main(["-c", cfg_path, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "last.pt" in err and "does not exist" in err
    with pytest.raises(FileNotFoundError, match="last.pt"):
        run(load_config(cfg_path), resume=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        run(load_config(cfg_path), resume=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_matches_single(tmp_path: Path, tiny_train: Path) -> None:
    """torchrun, 2 CPU ranks (gloo), batch split 2+2: same weights as one process with batch 4."""
    cfg = tiny_cfg(tmp_path / "ddp", tiny_train, None, iters=3, ckpt_every=3, device="cpu")
    # Adam with a large eps is smooth in the gradient (its first steps are otherwise sign(g), which turns
    # float-rounding differences of near-zero gradients into +-lr jumps)
    cfg["optim"].update({"lr": 0.05, "eps": 1.0})
    cfg_path = _write(tmp_path / "ddp.yml", cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "srops.models.train", "-c", cfg_path]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert ddp["iteration"] == 3
    scfg = tiny_cfg(tmp_path / "single", tiny_train, None, iters=3)
    scfg["optim"].update({"lr": 0.05, "eps": 1.0})
    single, _ = run(scfg)
    init, _ = run(tiny_cfg(tmp_path / "init", tiny_train, None, iters=0))
    moved = max((v - init.net.state_dict()[k]).abs().max().item() for k, v in single.net.state_dict().items())
    assert moved > 1e-3  # training changed the weights far beyond the tolerance below
    for k, v in single.net.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-6)
    assert (tmp_path / "ddp" / "log.csv").read_text().count("\n") >= 2  # rank 0 logged
    assert not (tmp_path / "ddp" / "train.lock").exists()  # rank 0's lock, removed at the end


def test_loader_workers_same_batches(tmp_path: Path, tiny_train: Path) -> None:
    """Batches are a function of the step alone: worker processes give the same training run."""
    a, _ = run(tiny_cfg(tmp_path / "w0", tiny_train, None, iters=3))
    cfg = tiny_cfg(tmp_path / "w2", tiny_train, None, iters=3)
    cfg["data"]["num_workers"] = 2
    b, _ = run(cfg)
    assert all(torch.equal(v, b.net.state_dict()[k]) for k, v in a.net.state_dict().items())


def test_two_process_gloo_gan(tmp_path: Path, tiny_train: Path) -> None:
    """The GAN loop (D step, then G step) under DistributedDataParallel, 2 CPU ranks."""
    cfg = tiny_cfg(tmp_path / "gan", tiny_train, None, iters=2, ckpt_every=2, device="cpu")
    cfg["gan"] = {"discriminator": {"name": "srgan_discriminator"}, "adv_weight": 1e-3}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "srops.models.train", "-c", _write(tmp_path / "gan.yml", cfg)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = torch.load(tmp_path / "gan" / "last.pt", weights_only=True)
    assert st["iteration"] == 2 and st["gan"]["optimizer"]["state"]
