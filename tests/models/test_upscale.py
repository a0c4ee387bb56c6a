"""srops-upscale end to end: real images (RGB, grey, grey+alpha, RGBA, 16-bit, odd sizes, a JPEG and a
PNG of one stem) through the CLI; output names, modes and sizes; tiled = whole on a convolutional
network; self-ensemble; clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import srops.models
from srops.models.inference import axis_weights, tile_starts, upscale_tensor
from srops.models.objectives import NetIO
from srops.models.upscale import main

ROOT = Path(__file__).resolve().parents[2]
SET5 = ROOT / "data" / "Set5"
TINY = {"name": "espcn", "scale": 2, "channels": [8, 4]}  # receptive field: 4 LR pixels


def write_checkpoint(path: Path, spec: dict = TINY, iteration: int = 0, seed: int = 0) -> Path:
    """A checkpoint in the layout srops.models.train writes (weights + config.model + iteration)."""
    torch.manual_seed(seed)
    kw = dict(spec)
    net = srops.models.build(kw.pop("name"), scale=kw.pop("scale"), **kw)
    torch.save({"model": net.state_dict(), "config": {"model": dict(spec)}, "iteration": iteration}, path)
    return path


def crop(name: str, h: int, w: int) -> np.ndarray:
    return np.array(Image.open(SET5 / f"{name}.png").convert("RGB"))[:h, :w]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """One folder of real images in every mode the command keeps, odd sizes."""
    d = tmp_path / "in"
    d.mkdir()
    rgb = crop("butterfly", 37, 45)
    Image.fromarray(rgb).save(d / "butterfly.png")
    Image.fromarray(crop("bird", 41, 29)).save(d / "butterfly.jpg", quality=95)  # same stem, other content
    Image.fromarray(crop("head", 33, 39)).convert("L").save(d / "head_grey.png")
    grey = np.array(Image.fromarray(crop("baby", 35, 31)).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(d / "baby16.png")
    Image.fromarray(grey).save(d / "baby8.png")
    alpha = np.tile(np.linspace(0, 255, 43).round().astype(np.uint8), (39, 1))
    Image.fromarray(np.dstack([crop("woman", 39, 43), alpha])).save(d / "woman_rgba.png")
    Image.fromarray(np.dstack([grey[:, :29], alpha[:35, :29]])).save(d / "baby_la.png")
    return d


def read(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


def test_folder_names_modes_sizes(tmp_path: Path, photos: Path, capsys) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    assert main([str(photos), "-o", str(out), "--checkpoint", str(ck)]) == 0
    cap = capsys.readouterr()
    assert "iteration 0" in cap.err and "untrained" in cap.err  # loud warning on untrained weights
    assert "\r" not in cap.err  # no progress bar when stderr is not a terminal
    expect = {"butterfly_png.png": ("RGB", 37, 45), "butterfly_jpg.png": ("RGB", 41, 29),
              "head_grey.png": ("L", 33, 39), "baby16.png": ("I;16", 35, 31), "baby8.png": ("L", 35, 31),
              "woman_rgba.png": ("RGBA", 39, 43), "baby_la.png": ("LA", 35, 29)}
    assert sorted(p.name for p in out.iterdir()) == sorted(expect)
    for name, (mode, h, w) in expect.items():
        img = read(out / name)
        assert img.mode == mode, name
        assert img.size == (2 * w, 2 * h), name
    # the network's own output on the RGB image, computed here without the command
    blob = torch.load(ck, weights_only=True)
    net = srops.models.build("espcn", scale=2, channels=(8, 4))
    net.load_state_dict(blob["model"])
    net.eval()

    def sr_of(rgb: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
            return net(x).clamp(0, 1)[0].double()

    want = torch.floor(sr_of(crop("butterfly", 37, 45)) * 255 + 0.5).permute(1, 2, 0).byte().numpy()
    got = np.array(read(out / "butterfly_png.png"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # grey output = BT.601 luma of the RGB result on the replicated grey image
    grey = np.array(Image.fromarray(crop("baby", 35, 31)).convert("L"))
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]
    y = (sr_of(np.repeat(grey[..., None], 3, 2)) * luma).sum(0)
    g8 = np.array(read(out / "baby8.png")).astype(int)
    assert np.abs(g8 - torch.floor(y * 255 + 0.5).numpy()).max() <= 1
    # 16-bit in, 16-bit out with the same content at 65535 levels (8-bit input × 257)
    g16 = np.array(read(out / "baby16.png")).astype(np.float64)
    assert g16.max() > 255 and len(np.unique(g16)) > 256
    assert np.abs(g16 / 257 - g8).max() <= 0.51
    # alpha: bicubic upscale of the input alpha (a horizontal ramp stays a ramp, rows identical)
    rgba = np.array(read(out / "woman_rgba.png"))
    a = rgba[..., 3].astype(int)
    assert (a == a[:1]).all() and np.all(np.diff(a[0]) >= 0) and a[0, 0] <= 3 and a[0, -1] >= 252
    ramp = torch.linspace(0, 255, 43).round()[None, None, None, :] / 255
    ref = F.interpolate(ramp.expand(1, 1, 39, 43), scale_factor=2, mode="bicubic", align_corners=False)
    assert np.abs(a - torch.floor(ref.clamp(0, 1) * 255 + 0.5)[0, 0].numpy()).max() <= 1


def test_tiled_matches_whole(tmp_path: Path, photos: Path) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt", seed=3)
    whole, tiled = tmp_path / "whole", tmp_path / "tiled"
    Image.fromarray(crop("butterfly", 70, 95)).save(photos / "big.png")  # a 3 × 4 grid of 36-pixel tiles
    names = ("big.png", "woman_rgba.png", "head_grey.png")
    files = [str(photos / n) for n in names]
    assert main([*files, "-o", str(whole), "--checkpoint", str(ck)]) == 0
    assert main([*files, "-o", str(tiled), "--checkpoint", str(ck), "--tile", "36", "--tile-overlap", "16"]) == 0
    for name in names:
        a, b = np.array(read(whole / name)).astype(int), np.array(read(tiled / name)).astype(int)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3, name
    # too little overlap for the receptive field: seams appear (the comparison above can fail)
    seams = tmp_path / "seams"
    assert main([files[0], "-o", str(seams), "--checkpoint", str(ck), "--tile", "12", "--tile-overlap", "4"]) == 0
    a, b = np.array(read(seams / "big.png")).astype(int), np.array(read(whole / "big.png")).astype(int)
    assert np.abs(a - b).max() > 1


def test_tiling_covers_and_blends() -> None:
    for length, tile, overlap in [(100, 40, 16), (161, 100, 40), (41, 40, 16), (30, 40, 8), (77, 20, 9)]:
        starts = tile_starts(length, tile, overlap)
        ends = [min(s + tile, length) for s in starts]
        assert starts[0] == 0 and ends[-1] == length
        assert all(e - s2 >= min(overlap, tile) for s2, e in zip(starts[1:], ends[:-1]))
        total = torch.zeros(length * 3, dtype=torch.float64)
        for s, wt in zip(starts, axis_weights(length, starts, tile, 3)):
            total[s * 3:s * 3 + wt.numel()] += wt
            if s > 0:  # the outer overlap/4 of an interior edge is discarded
                assert wt[: overlap * 3 // 4].abs().max() == 0
        assert bool((total > 0).all())


def test_self_ensemble_is_mean_of_eight_transforms() -> None:
    torch.manual_seed(0)
    net = NetIO(srops.models.build("espcn", scale=2, channels=(8, 4)).eval())
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        outs = []
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(torch.flip(x, [-1]) if flip else x, k, [-2, -1])
                y = torch.rot90(net(t), -k, [-2, -1])
                outs.append(torch.flip(y, [-1]) if flip else y)
    want = torch.stack(outs).mean(0)
    got = upscale_tensor(net, x, 2, self_ensemble=True)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, upscale_tensor(net, x, 2), atol=1e-4)
    tiled = upscale_tensor(net, x, 2, tile=9, overlap=4, self_ensemble=True)
    assert tiled.shape == want.shape


def test_same_output_name_is_an_error(tmp_path: Path, capsys) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(crop("bird", 20, 22)).save(tmp_path / sub / "photo.png")
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "o"), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path / "a" / "photo.png") in err and str(tmp_path / "b" / "photo.png") in err
    assert not (tmp_path / "o").exists()
    # a glob and a folder naming the same file: upscaled once
    assert main([str(tmp_path / "a"), str(tmp_path / "a" / "*.png"), "-o", str(tmp_path / "o"),
                 "--checkpoint", str(ck)]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["photo.png"]


def test_clear_errors(tmp_path: Path, photos: Path, capsys) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=5)
    out = str(tmp_path / "out")
    img = str(photos / "butterfly.png")

    def err_of(*args: str) -> str:
        assert main(list(args)) == 1
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err
        return err

    assert "nope.pt" in err_of(img, "-o", out, "--checkpoint", str(tmp_path / "nope.pt"))
    torch.save(srops.models.build("espcn", scale=2).state_dict(), tmp_path / "bare.pt")
    assert "no model metadata" in err_of(img, "-o", out, "--checkpoint", str(tmp_path / "bare.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in err_of(img, "-o", out, "--checkpoint", str(tmp_path / "junk.pt"))
    wide = dict(TINY, channels=[16, 4])
    blob = torch.load(write_checkpoint(tmp_path / "w.pt", wide), weights_only=True)
    blob["config"]["model"] = dict(TINY)  # weights of another width than the config says
    torch.save(blob, tmp_path / "w.pt")
    e = err_of(img, "-o", out, "--checkpoint", str(tmp_path / "w.pt"))
    assert "w.pt" in e and "does not fit" in e and "body.0.weight" in e
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    e = err_of(str(tmp_path / "broken.png"), "-o", out, "--checkpoint", str(ck))
    assert "cannot read image" in e and "broken.png" in e
    assert "missing.png" in err_of(str(tmp_path / "missing.png"), "-o", out, "--checkpoint", str(ck))
    assert "--half" in err_of(img, "-o", out, "--checkpoint", str(ck), "--device", "cpu", "--half")
    assert "tile_overlap" in err_of(img, "-o", out, "--checkpoint", str(ck), "--tile", "16", "--tile-overlap", "8")


def test_decompression_bomb_guard(tmp_path: Path, monkeypatch, capsys) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt")
    Image.fromarray(crop("bird", 40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1600 pixels > 2 × limit: Pillow's hard error
    args = [str(tmp_path / "big.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ck)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot read image" in err and "big.png" in err and "--allow-large-images" in err
    assert main([*args, "--allow-large-images"]) == 0
    assert Image.MAX_IMAGE_PIXELS == 500  # the limit is restored after the read
    monkeypatch.undo()
    assert read(tmp_path / "o" / "big.png").size == (80, 80)


def _levels_apart(a: Path, b: Path) -> int:
    return int(np.abs(np.array(read(a)).astype(int) - np.array(read(b)).astype(int)).max())


def test_bf16_on_cpu_close_to_float32(tmp_path: Path, photos: Path) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=1)
    img = str(photos / "butterfly.png")
    assert main([img, "-o", str(tmp_path / "f32"), "--checkpoint", str(ck), "--device", "cpu"]) == 0
    assert main([img, "-o", str(tmp_path / "bf16"), "--checkpoint", str(ck), "--device", "cpu", "--bf16"]) == 0
    assert _levels_apart(tmp_path / "f32" / "butterfly.png", tmp_path / "bf16" / "butterfly.png") <= 4


@pytest.mark.gpu
def test_cuda_half_and_bf16_close_to_cpu(tmp_path: Path, photos: Path) -> None:
    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=1)
    img = str(photos / "woman_rgba.png")
    assert main([img, "-o", str(tmp_path / "cpu"), "--checkpoint", str(ck), "--device", "cpu"]) == 0
    for flag in ("--half", "--bf16"):
        out = tmp_path / flag.strip("-")
        assert main([img, "-o", str(out), "--checkpoint", str(ck), "--device", "cuda", flag,
                     "--tile", "24", "--tile-overlap", "8"]) == 0
        assert _levels_apart(tmp_path / "cpu" / "woman_rgba.png", out / "woman_rgba.png") <= 4


def test_out_of_memory_falls_back_to_tiles(tmp_path: Path, photos: Path, monkeypatch, capsys) -> None:
    import srops.models.inference as inference

    real, tiles = inference.upscale_tensor, []

    def small_memory(model, lr, scale, tile=None, **kw):
        tiles.append(tile)
        if tile is None or tile > 64:
            raise torch.OutOfMemoryError("simulated: not enough memory")
        return real(model, lr, scale, tile=tile, **kw)

    monkeypatch.setattr(inference, "upscale_tensor", small_memory)
    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=1)
    Image.fromarray(crop("butterfly", 150, 140)).save(tmp_path / "big.png")
    assert main([str(tmp_path / "big.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ck),
                 "--tile-overlap", "16"]) == 0
    assert tiles == [None, 75, 64] and "retrying with tiles of 64" in capsys.readouterr().err
    assert read(tmp_path / "o" / "big.png").size == (280, 300)
    tiles.clear()  # the default overlap (32) keeps tiles above 64: the command gives up with a clear error
    assert main([str(tmp_path / "big.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ck), "--overwrite"]) == 1
    assert tiles == [None, 75, 65] and "out of memory" in capsys.readouterr().err
    monkeypatch.setattr(inference, "upscale_tensor", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    assert main([str(tmp_path / "big.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ck), "--tile", "100",
                 "--overwrite"]) == 1
    assert "out of memory" in capsys.readouterr().err
