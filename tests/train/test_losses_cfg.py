"""15.7: every loss is selectable from the config, VGG included; the SRGAN preset uses VGG when it can."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srops.models.losses import VGGFeatureLoss, charbonnier, vgg_features
from srops.models.objectives import ContentLoss
from srops.models.train import load_config, run
from tests.train.helpers import ROOT, tiny_cfg


def _tiny_vgg(path: Path) -> Path:
    torch.manual_seed(0)
    feats = vgg_features("vgg16", 4)
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    return path


def test_every_loss_from_config(tmp_path: Path) -> None:
    weights = _tiny_vgg(tmp_path / "vgg.pth")
    torch.manual_seed(1)
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    vgg = VGGFeatureLoss(weights, arch="vgg16", n_layers=4)
    for name, ref in [("l1", F.l1_loss(sr, hr)), ("mse", F.mse_loss(sr, hr)),
                      ("charbonnier", charbonnier(sr, hr, 1e-3)), ("vgg", vgg(sr, hr))]:
        cfg = {"name": name, "vgg": {"weights": str(weights), "arch": "vgg16", "n_layers": 4}}
        torch.testing.assert_close(ContentLoss(cfg)(sr, hr), ref)
    cfg = {"name": "l1+vgg", "weights": {"l1": 0.5, "vgg": 0.006},
           "vgg": {"weights": str(weights), "arch": "vgg16", "n_layers": 4}}
    loss = ContentLoss(cfg)
    torch.testing.assert_close(loss(sr, hr), 0.5 * F.l1_loss(sr, hr) + 0.006 * vgg(sr, hr))
    assert "0.006·vgg" in loss.description
    with pytest.raises(ValueError, match="'loss.name'.*'l2'"):
        ContentLoss({"name": "l1+l2"})
    with pytest.raises(ValueError, match="loss.weights.*'mse'"):
        ContentLoss({"name": "l1", "weights": {"mse": 1.0}})


def test_vgg_loss_trains_from_yaml(tmp_path: Path, tiny_train: Path) -> None:
    cfg = tiny_cfg(tmp_path, tiny_train, None, iters=2)
    cfg["loss"] = {"name": "l1+vgg", "weights": {"vgg": 0.01},
                   "vgg": {"weights": str(_tiny_vgg(tmp_path / "vgg.pth")), "arch": "vgg16", "n_layers": 4}}
    trainer, res = run(cfg)
    assert res["iteration"] == 2 and trainer.loss.vgg is not None


def test_srgan_preset_vgg_when_weights_present(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(ROOT / "srops" / "models" / "configs" / "srgan_attention_x4.yml")
    assert "vgg" in cfg["loss"]["name"] and cfg["loss"]["vgg"]["optional"] is True
    monkeypatch.delenv("SROPS_VGG_WEIGHTS", raising=False)
    off = ContentLoss(cfg["loss"])
    assert [n for n, _ in off.terms] == ["l1"] and "VGG term is off" in off.description
    assert "SROPS_VGG_WEIGHTS" in off.description
    vcfg = dict(cfg["loss"], vgg={**cfg["loss"]["vgg"], "n_layers": 4})
    monkeypatch.setenv("SROPS_VGG_WEIGHTS", str(_tiny_vgg(tmp_path / "vgg16.pth")))
    on = ContentLoss(vcfg)
    assert [n for n, _ in on.terms] == ["l1", "vgg"] and "off" not in on.description
    vcfg["vgg"]["optional"] = False
    monkeypatch.setenv("SROPS_VGG_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ContentLoss(vcfg)
