"""Every preset in models/configs starts training (2 iterations on tiny data via --set overrides)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srops.models import list_models
from srops.models.train import load_config, main

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "models" / "configs").glob("*.yml"))


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert names >= {"amms_x2", "amms_x3", "amms_x4", "drfn_x4", "srgan_attention_x4", "edsr_cbam_x4",
                     "espcn_cbam_x4", "srresnet_cbam_x4", "lapsrn_cbam_x4"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_trains(preset: Path, tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    cfg = load_config(preset)
    assert cfg["model"]["name"] in list_models()
    overrides = [f"data.train=[{tiny_train}]", f"data.val=[{tiny_val}]", "data.lr_patch=8", "data.batch_size=2",
                 "train.iters=2", "val.every=2", "val.max_images=1", f"train.out_dir={tmp_path}",
                 "train.progress=false", "train.tensorboard=false", "train.log_every=1"]
    assert main(["-c", str(preset), *[a for o in overrides for a in ("--set", o)]]) == 0
    st = torch.load(tmp_path / "last.pt", weights_only=False)
    assert st["iteration"] == 2 and st["config"]["model"] == cfg["model"]
    if cfg.get("gan"):
        assert "gan" in st and st["gan"]["optimizer"]["state"]  # the discriminator was stepped
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) >= 3  # header, two training rows, one validation row
