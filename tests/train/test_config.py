"""Config keys are checked (files, --set, network arguments); presets resolve by name; --list."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from srops.models.train import Trainer, load_config, main
from tests.train.helpers import ROOT, tiny_cfg


@pytest.mark.parametrize("override, wrong, near", [
    ("optim.lrr=0.5", "optim.lrr", "optim.lr"),
    ("trian.amp=bf16", "trian", "train"),
    ("train.time_budgett=5", "train.time_budgett", "train.time_budget"),
    ("schedule.warmup=10", "schedule.warmup", "schedule.warmup_iters"),
    ("gan.adv_wieght=0.1", "gan.adv_wieght", "gan.adv_weight"),
])
def test_unknown_set_key_names_nearest(override: str, wrong: str, near: str) -> None:
    """15.1: a typo in --set is an error naming the key and the nearest valid one."""
    with pytest.raises(ValueError, match=rf"unknown config key '{wrong}'.*did you mean '{near}'"):
        load_config(None, [override])


def test_unknown_file_key_and_cli(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"optim": {"lr": 1e-4, "beats": [0.9, 0.99]}}))
    with pytest.raises(ValueError, match=r"'optim.beats'.*c\.yml.*did you mean 'optim.betas'"):
        load_config(path)
    assert main(["-c", str(ROOT / "srops/models/configs/amms_x2.yml"), "--set", "optim.lrr=0.5"]) == 1
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
    cfg = load_config(None, ["optim.lr=0.5", "train.amp=bf16", "model.n_feats=8", "loss.vgg.arch=vgg16",
                             "loss.weights={l1: 1.0}"])
    assert cfg["optim"]["lr"] == 0.5 and cfg["loss"]["vgg"] == {"arch": "vgg16"}


def test_unknown_network_argument(tmp_path: Path, tiny_train: Path) -> None:
    with pytest.raises(ValueError, match=r"'model.n_feat' in --set 'model.n_feat=8'.*did you mean 'model.n_feats'"):
        load_config("drfn_x4", ["model.n_feat=8"])
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"model": {"name": "drfn", "scale": 4, "n_group": 2}}))
    with pytest.raises(ValueError, match=r"'model.n_group' in config file.*did you mean 'model.n_groups'"):
        load_config(path)
    """15.1: model keys are checked against the network's constructor once its module is imported."""
    cfg = tiny_cfg(tmp_path, tiny_train, None)
    cfg["model"]["feat"] = 16
    with pytest.raises(ValueError, match=r"unknown config key 'model.feat'.*did you mean 'model.feats'"):
        Trainer(cfg)


def test_preset_by_name_and_list(capsys) -> None:
    """15.3: -c takes an installed preset's name; --list shows them."""
    by_name = load_config("drfn_x4")
    assert by_name == load_config(ROOT / "srops" / "models" / "configs" / "drfn_x4.yml")
    assert load_config("drfn_x4.yml")["model"]["name"] == "drfn"
    with pytest.raises(FileNotFoundError, match="drfn_x5.*installed preset.*drfn_x4"):
        load_config("drfn_x5")
    assert main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in out]
    assert names == sorted(p.stem for p in (ROOT / "srops" / "models" / "configs").glob("*.yml")) and "drfn_x4" in names


def test_pyramid_is_a_training_key_and_the_old_loss_key_still_loads(tmp_path: Path, tiny_train: Path) -> None:
    """``train.pyramid`` (what the loss is applied to) replaces ``loss.pyramid``, which loads with a warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the preset uses the new key: no warning
        cfg = load_config("lapsrn_cbam_x4")
    assert cfg["train"]["pyramid"] is True and "pyramid" not in cfg["loss"]
    old = tmp_path / "old.yml"
    old.write_text(yaml.safe_dump({"loss": {"name": "charbonnier", "pyramid": True}}))
    with pytest.warns(FutureWarning, match=r"'loss\.pyramid' in config file .*old\.yml.* deprecated.*'train\.pyramid: true'"):
        cfg = load_config(old)
    assert cfg["train"]["pyramid"] is True and cfg["loss"] == {"name": "charbonnier"}
    with pytest.warns(FutureWarning, match=r"'loss\.pyramid' in --set 'loss\.pyramid=true'"):
        cfg = load_config("lapsrn_cbam_x4", ["train.pyramid=false", "loss.pyramid=true"])
    assert cfg["train"]["pyramid"] is True and "pyramid" not in cfg["loss"]  # the later --set wins
    both = tmp_path / "both.yml"
    both.write_text(yaml.safe_dump({"loss": {"pyramid": True}, "train": {"pyramid": False}}))
    with pytest.raises(ValueError, match=r"'loss\.pyramid' .* old name of 'train\.pyramid'.*different values"):
        load_config(both)
    with pytest.raises(ValueError, match=r"'train\.pyramid' .* must be true or false"):
        load_config(None, ["train.pyramid=3"])
    # a config built in Python (or saved by an older version) with the old key trains on the pyramid too
    from tests.train.helpers import tiny_cfg

    cfg = tiny_cfg(tmp_path / "run", tiny_train, None)
    cfg["model"] = {"name": "lapsrn", "scale": 2, "n_feats": 8, "n_units": 1}
    cfg["loss"] = {"name": "charbonnier", "pyramid": True}
    with pytest.warns(FutureWarning, match=r"'loss\.pyramid' in the config"):
        trainer = Trainer(cfg)
    try:
        assert trainer.model.pyramid is True and trainer.cfg["train"]["pyramid"] is True
        assert cfg["loss"]["pyramid"] is True  # the caller's dict is left as it was
    finally:
        trainer.release()
