"""Every preset in srops/models/configs starts training on the bundled data (data/T91), as shipped: its own
patch size and batch, with the networks made narrow through --set so that one step stays cheap."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from srops.models import list_models
from srops.models.train import load_config, main

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "srops" / "models" / "configs").glob("*.yml"))
T91 = ROOT / "data" / "T91"
#: network arguments that keep each preset's structure but shrink its width/depth
NARROW = {"amms": ["model.n_modules=1", "model.n_am=1", "model.n_feats=16"],
          "drfn": ["model.n_groups=1", "model.n_blocks=1", "model.n_feats=16"],
          "edsr_cbam": ["model.n_resblocks=1", "model.n_feats=16"],
          "espcn_cbam": ["model.channels=[16, 8]"],
          "lapsrn_cbam": ["model.n_feats=16", "model.n_units=1"],
          "srgan_attention": ["model.n_blocks=1", "model.n_feats=32"],
          "srresnet_cbam": ["model.n_blocks=1", "model.n_feats=16"]}


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert names >= {"amms_x2", "amms_x3", "amms_x4", "drfn_x4", "srgan_attention_x4", "edsr_cbam_x4",
                     "espcn_cbam_x4", "srresnet_cbam_x4", "lapsrn_cbam_x4"}
    assert {load_config(p)["model"]["name"] for p in PRESETS} <= set(NARROW)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_patch_fits_bundled_data(preset: Path) -> None:
    """Every preset trains on data/T91 as shipped: its LR patch fits enough of T91's images (header sizes)."""
    cfg = load_config(preset)
    # validation on the bundled Set5, or none at all for a recipe that scores the test sets once at the end
    val = None if cfg["train"].get("time_budget") else ["data/Set5"]
    assert cfg["data"]["train"] == ["data/T91"] and cfg["data"]["val"] == val and cfg["data"]["skip_small"]
    s, p = cfg["model"]["scale"], cfg["data"]["lr_patch"]
    fits = [f for f in T91.glob("*.png") if min(Image.open(f).size) // s >= p]
    assert len(fits) >= cfg["data"]["batch_size"], (preset.stem, len(fits))


@pytest.fixture(scope="module")
def bundled_subset(tmp_path_factory) -> Path:
    """T91's smallest image (t20, 78 px) and three others, linked from the bundled folder."""
    folder = tmp_path_factory.mktemp("t91")
    for name in ("t20.png", "t9.png", "tt26.png", "tt27.png"):
        os.symlink(T91 / name, folder / name)
    return folder


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_trains(preset: Path, tmp_path: Path, bundled_subset: Path, tiny_val: Path, capsys) -> None:
    cfg = load_config(preset)
    assert cfg["model"]["name"] in list_models()
    overrides = [f"data.train=[{bundled_subset}]", f"data.val=[{tiny_val}]", "data.batch_size=2",
                 "train.iters=1", "val.max_images=1", f"train.out_dir={tmp_path}",
                 "train.progress=false", "train.tensorboard=false", "train.log_every=1",
                 *NARROW[cfg["model"]["name"]]]
    if cfg["schedule"].get("name") == "cosine":
        overrides.append("schedule.warmup_iters=0")  # one iteration: no room for the warm-up
    assert main(["-c", preset.stem, *[a for o in overrides for a in ("--set", o)]]) == 0
    err = capsys.readouterr().err
    s, p = cfg["model"]["scale"], cfg["data"]["lr_patch"]
    if 78 // s < p:  # t20 is too small for this preset's patch: one summary line says so
        skip = [ln for ln in err.splitlines() if ln.startswith("data: skipped")]
        assert len(skip) == 1 and "t20.png" in skip[0] and f"data.lr_patch <= {78 // s}" in skip[0]
    st = torch.load(tmp_path / "last.pt", weights_only=True)
    assert st["iteration"] == 1
    if cfg.get("gan"):
        assert "gan" in st and st["gan"]["optimizer"]["state"]  # the discriminator was stepped
    assert (tmp_path / "log.csv").read_text().count("\n") >= 3  # header, training rows, validation rows
