"""Checkpoints never run code: every reader loads with ``weights_only=True``; a file that needs more is
refused with an ``error:`` line naming it and the explicit conversion command; training checkpoints
(numpy RNG state included) load safely and resume bit-identically; the conversion command turns an
old-form checkpoint into a safe one, and only when told the file is trusted."""
from __future__ import annotations

import pathlib
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from srops.models import test as eval_cli
from srops.models import upscale
from srops.models.checkpoint import CheckpointError, load_checkpoint
from srops.models.runstate import rng_state, set_rng_state
from srops.models.train import Trainer, load_config, run
from srops.models.train import main as train_main
from tests.train.helpers import signal_at, tiny_cfg, write_cfg

CONVERT = "srops.models.convert_checkpoint"


class Payload:
    """Unpickling this object touches ``marker``: the trace a checkpoint's code would leave."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def write_payload(path: Path, marker: Path, kind: str) -> Path:
    """A file that runs ``Payload`` when unpickled unsafely: a torch zip checkpoint dict, or a raw pickle."""
    if kind == "zip":
        torch.save({"model": {"w": torch.zeros(1)}, "config": {"model": {"name": "tiny_sr", "scale": 2}},
                    "iteration": 3, "extra": Payload(marker)}, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(Payload(marker), fh)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_train: Path, tiny_val: Path) -> Path:
    """A 3-iteration tiny_sr run with validation: ``last.pt`` and ``best.pt``."""
    out = tmp_path_factory.mktemp("run")
    run(tiny_cfg(out, tiny_train, tiny_val, iters=3))
    return out


def _refused(err: str, path: Path, marker: Path) -> None:
    assert not marker.exists(), "the checkpoint's code ran"
    assert err.startswith("error:") and str(path) in err and "Traceback" not in err, err


KINDS = ["zip", "raw"]


def test_payload_runs_when_loaded_unsafely(tmp_path: Path) -> None:
    """The payloads below are live: an unsafe load does create the marker (so the tests can fail)."""
    for kind in KINDS:
        marker = tmp_path / f"{kind}.marker"
        path = write_payload(tmp_path / f"{kind}.pt", marker, kind)
        try:
            torch.load(path, weights_only=False)
        except Exception:  # the raw pickle is no torch file: its code runs, then torch complains
            pass
        assert marker.exists(), kind


@pytest.mark.parametrize("kind", KINDS)
def test_upscale_refuses_payload(kind: str, tmp_path: Path, tiny_val: Path, capsys) -> None:
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "evil.pt", marker, kind)
    assert upscale.main([str(tiny_val), "-o", str(tmp_path / "out"), "--checkpoint", str(path)]) != 0
    err = capsys.readouterr().err
    _refused(err, path, marker)
    assert CONVERT in err and "--trust-this-file" in err


@pytest.mark.parametrize("kind", KINDS)
def test_eval_refuses_payload(kind: str, tmp_path: Path, tiny_val: Path, capsys) -> None:
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "evil.pt", marker, kind)
    assert eval_cli.main(["--checkpoint", str(path), str(tiny_val), "--out", str(tmp_path / "res")]) != 0
    err = capsys.readouterr().err
    _refused(err, path, marker)
    assert CONVERT in err


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_payload_last(kind: str, tmp_path: Path, tiny_train: Path, capsys) -> None:
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    out.mkdir()
    path = write_payload(out / "last.pt", marker, kind)
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None))
    assert train_main(["-c", cfg_path, "--resume"]) != 0
    err = capsys.readouterr().err
    _refused(err, path, marker)
    assert CONVERT in err


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_payload_best(kind: str, tmp_path: Path, trained: Path, tiny_train: Path, capsys) -> None:
    """A best.pt that cannot be read safely stops the resume (a later validation would overwrite it)."""
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes())
    path = write_payload(out / "best.pt", marker, kind)
    before = path.read_bytes()
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=4))
    assert train_main(["-c", cfg_path, "--resume"]) != 0
    err = capsys.readouterr().err
    _refused(err, path, marker)
    assert CONVERT in err and path.read_bytes() == before


@pytest.mark.parametrize("kind", KINDS)
def test_convert_without_trust_flag_refuses(kind: str, tmp_path: Path, capsys) -> None:
    from srops.models.convert_checkpoint import main as convert_main

    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "evil.pt", marker, kind)
    assert convert_main([str(path), str(tmp_path / "new.pt")]) != 0
    err = capsys.readouterr().err
    _refused(err, path, marker)
    assert "--trust-this-file" in err and not (tmp_path / "new.pt").exists()


def test_truncated_checkpoint(tmp_path: Path, trained: Path, tiny_val: Path, capsys) -> None:
    blob = (trained / "last.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint '{path}' is truncated or corrupt: "):
        load_checkpoint(path)
    assert upscale.main([str(tiny_val), "-o", str(tmp_path / "out"), "--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and f"'{path}' is truncated or corrupt" in err and "Traceback" not in err


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_foreign_files(tmp_path: Path) -> None:
    """Neither a zip archive nor a pickle (text, an old protocol-0 pickle), an empty file and a TorchScript
    archive: refused, naming the file, without offering a conversion."""
    marker = tmp_path / "marker"
    cases = {"text.pt": (b"not a checkpoint", "cannot read checkpoint"),
             "proto0.pt": (pickle.dumps(Payload(marker), protocol=0), "cannot read checkpoint"),
             "empty.pt": (b"", "is truncated or corrupt")}
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    cases["script.pt"] = (None, "TorchScript archive")
    for name, (data, says) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        msg = str(info.value)
        assert f"'{tmp_path / name}'" in msg and says in msg and CONVERT not in msg, msg
    assert not marker.exists()


@pytest.mark.parametrize("bad", [{"name": "espcn_cbam", "channels": "abc"}, {"name": "tiny_sr", "feats": -1}],
                         ids=["channels-abc", "feats-negative"])
def test_bad_model_arguments(bad: dict, tmp_path: Path, tiny_val: Path, capsys) -> None:
    """Whatever the constructor raises on a checkpoint's stored arguments becomes one error naming the
    file, the network and the arguments."""
    path = tmp_path / "bad.pt"
    mcfg = {**bad, "scale": 2, "imports": ["tests.train.tinynet"]}
    torch.save({"model": {"w": torch.zeros(1)}, "config": {"model": mcfg}, "iteration": 3}, path)
    arg = next(f"{k}': {v!r}" for k, v in bad.items() if k != "name")
    for cli in (lambda: upscale.main([str(tiny_val), "-o", str(tmp_path / "out"), "--checkpoint", str(path)]),
                lambda: eval_cli.main(["--checkpoint", str(path), str(tiny_val), "--out", str(tmp_path / "r")])):
        assert cli() == 1
        err = capsys.readouterr().err
        assert err.startswith("error:") and str(path) in err and repr(bad["name"]) in err, err
        assert arg in err and "Traceback" not in err, err


def test_rng_state_round_trip_is_safe_and_exact(tmp_path: Path) -> None:
    """The global RNG states survive torch.save / torch.load(weights_only=True) exactly, the numpy
    Gaussian cache included."""
    np.random.seed(7)
    np.random.standard_normal()  # leaves a cached second Gaussian (has_gauss = 1)
    torch.manual_seed(7)
    import random
    random.seed(7)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expect = (np.random.standard_normal(5), np.random.randint(0, 1 << 30, 5), torch.rand(5), random.random())
    np.random.seed(99)
    torch.manual_seed(99)
    random.seed(99)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (np.random.standard_normal(5), np.random.randint(0, 1 << 30, 5), torch.rand(5), random.random())
    assert np.array_equal(expect[0], got[0]) and np.array_equal(expect[1], got[1])
    assert torch.equal(expect[2], got[2]) and expect[3] == got[3]


def _assert_same_run(a, b) -> None:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    oa, ob = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    ra, rb = a.state()["rng"], b.state()["rng"]
    assert torch.equal(ra["torch"], rb["torch"]) and ra["python"] == rb["python"]
    assert torch.equal(ra["numpy"]["key"], rb["numpy"]["key"]) and ra["numpy"]["pos"] == rb["numpy"]["pos"]


def _rich_cfg(out: Path, train: Path, val: Path | None, iters: int) -> dict:
    """GAN, EMA, fp16 grad scaler, cosine schedule with progress milestones: every kind of saved state."""
    cfg = tiny_cfg(out, train, val, iters=iters, amp="fp16", ema_decay=0.9, grad_clip=0.5)
    cfg["gan"] = {"discriminator": {"name": "srgan_discriminator"}, "adv_weight": 1e-3}
    cfg["schedule"] = {"name": "cosine", "warmup_iters": 2, "min_lr": 1e-5, "progress_milestones": [0.5]}
    return cfg


def test_every_kind_of_state_loads_safely_and_resumes(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    straight, _ = run(_rich_cfg(tmp_path / "a", tiny_train, tiny_val, iters=4))
    # the first session is stopped after 2 of the 4 iterations (the cosine spans the run's 4)
    first = signal_at(Trainer(_rich_cfg(tmp_path / "b", tiny_train, tiny_val, iters=4)), 2, signal.SIGTERM)
    assert first.fit()["iteration"] == 2
    for path in (tmp_path / "a" / "last.pt", tmp_path / "a" / "best.pt"):
        torch.load(path, weights_only=True)  # raises if anything needs unpickling code
    st = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert {"gan", "ema", "scaler", "scheduler", "optimizer", "rng", "config"} <= set(st)
    assert st["scaler"] and st["gan"]["optimizer"]["state"]
    np.random.seed(1234)  # perturb every global RNG: the resume must restore them
    torch.manual_seed(1234)
    resumed, _ = run(_rich_cfg(tmp_path / "b", tiny_train, tiny_val, iters=4), resume=True)
    assert resumed.iteration == straight.iteration == 4
    _assert_same_run(straight, resumed)
    ea, eb = straight.ema.state_dict(), resumed.ema.state_dict()
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def _old_form(new: Path, old: Path) -> None:
    """``new`` rewritten as earlier versions wrote it: the numpy RNG state as np.random.get_state()'s tuple."""
    st = torch.load(new, weights_only=True)
    n = st["rng"]["numpy"]
    st["rng"]["numpy"] = (n["bit_generator"], n["key"].numpy().astype(np.uint32), int(n["pos"]),
                          int(n["has_gauss"]), float(n["gauss"]))
    torch.save(st, old)


def test_convert_old_checkpoint_then_resume(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    from srops.models.convert_checkpoint import main as convert_main

    straight, _ = run(tiny_cfg(tmp_path / "a", tiny_train, tiny_val, iters=6))
    run(tiny_cfg(tmp_path / "b", tiny_train, tiny_val, iters=3))
    old = tmp_path / "old.pt"
    _old_form(tmp_path / "b" / "last.pt", old)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(old, weights_only=True)
    # the old file is refused by resume, with the command that converts it
    (tmp_path / "b" / "last.pt").write_bytes(old.read_bytes())
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(tmp_path / "b", tiny_train, tiny_val, iters=6))
    capsys.readouterr()
    assert train_main(["-c", cfg_path, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(tmp_path / "b" / "last.pt") in err and CONVERT in err
    # conversion: only with the trust flag, never over an existing file without --overwrite
    new = tmp_path / "new.pt"
    assert convert_main([str(old), str(new)]) == 1
    assert "--trust-this-file" in capsys.readouterr().err and not new.exists()
    assert convert_main([str(old), str(new), "--trust-this-file"]) == 0
    assert str(new) in capsys.readouterr().out
    torch.load(new, weights_only=True)
    new.write_bytes(b"keep me")
    assert convert_main([str(old), str(new), "--trust-this-file"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(new) in err and "--overwrite" in err and new.read_bytes() == b"keep me"
    assert convert_main([str(old), str(new), "--trust-this-file", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["c.yml", "new.pt", "old.pt"]
    # a file that already loads safely needs no trust to be copied
    assert convert_main([str(new), str(tmp_path / "copy.pt")]) == 0
    assert torch.equal(torch.load(tmp_path / "copy.pt", weights_only=True)["rng"]["numpy"]["key"],
                       torch.load(new, weights_only=True)["rng"]["numpy"]["key"])
    # resume from the converted file: the same run as the one never interrupted
    (tmp_path / "b" / "last.pt").write_bytes(new.read_bytes())
    np.random.seed(1234)
    torch.manual_seed(1234)
    resumed, _ = run(load_config(cfg_path), resume=True)
    assert resumed.iteration == 6
    _assert_same_run(straight, resumed)


def test_convert_refuses_a_non_checkpoint(tmp_path: Path, capsys) -> None:
    from srops.models.convert_checkpoint import main as convert_main

    src = tmp_path / "list.pt"
    torch.save([1, 2], src)
    assert convert_main([str(src), str(tmp_path / "new.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(src) in err and not (tmp_path / "new.pt").exists()
    assert convert_main([str(tmp_path / "missing.pt"), str(tmp_path / "new.pt"), "--trust-this-file"]) == 1
    assert "missing.pt" in capsys.readouterr().err
