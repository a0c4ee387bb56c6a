"""Losses against hand-written formulas; the VGG loss with and without a weights file."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import srops.models as M
from srops.image import imresize
from srops.models import losses as L
from srops.models.objectives import GanObjective, NetIO, content_loss
from srops.testing import assert_close_to_oracle, ulp_floor


def test_l1_and_mse_terms() -> None:
    a, b = torch.tensor([[1.0, -2.0], [0.5, 3.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert content_loss({"name": "l1"}, a, b).item() == pytest.approx((1 + 2 + 0.5 + 2) / 4)
    assert content_loss({"name": "mse"}, a, b).item() == pytest.approx((1 + 4 + 0.25 + 4) / 4)


def test_charbonnier_formula() -> None:
    a = torch.tensor([0.0, 0.3, -2.0, 1e-4])
    b = torch.zeros(4)
    expected = sum(math.sqrt(v * v + 1e-6) for v in (0.0, 0.3, -2.0, 1e-4)) / 4
    assert L.charbonnier(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert content_loss({"name": "charbonnier"}, a, b).item() == pytest.approx(expected, rel=1e-6)
    assert L.charbonnier(a, b, eps=0.5).item() == pytest.approx(
        sum(math.sqrt(v * v + 0.25) for v in (0.0, 0.3, -2.0, 1e-4)) / 4, rel=1e-6
    )
    with pytest.raises(ValueError, match="must match"):
        L.charbonnier(a, torch.zeros(3))


def test_pyramid_charbonnier_sums_levels() -> None:
    """LapSRN's loss as training computes it (``loss: {name: charbonnier}``, ``train.pyramid: true``): the Charbonnier
    loss of every pyramid level against HR downscaled to that level by MATLAB bicubic, summed."""
    net = M.build("lapsrn", scale=4, n_units=1)
    lr, hr = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 24, 24)
    outs = NetIO(net, pyramid=True)(lr)
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 12), (24, 24)]
    loss = content_loss({"name": "charbonnier"}, outs, hr)

    def formula(outs: list[torch.Tensor], hr: torch.Tensor) -> torch.Tensor:
        hr2 = imresize(hr, 0.5)
        d2, d4 = outs[0] - hr2, outs[1] - hr
        return torch.sqrt(d2 * d2 + 1e-6).mean() + torch.sqrt(d4 * d4 + 1e-6).mean()

    expected = formula([o.detach() for o in outs], hr)  # float32, as the loss; the oracle: float64
    oracle = formula([o.detach().double() for o in outs], hr.double())
    assert_close_to_oracle(loss.detach(), expected, oracle, "loss", floor=ulp_floor(torch.float32, oracle))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


class _FixedScores(torch.nn.Module):
    """A discriminator stand-in that scores any batch with the given values."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores


def test_attention_srgan_losses() -> None:
    """Generator: L1(SR, HR) + adv_weight · mean(1 − D(SR)); discriminator: 1 − mean D(HR) + mean D(SR)."""
    sr = torch.tensor([[0.2, 0.4], [0.9, 0.1]])
    hr = torch.tensor([[0.0, 0.5], [1.0, 0.1]])
    d_sr, d_hr = torch.tensor([0.3, 0.6]), torch.tensor([0.8, 0.9])
    l1 = (0.2 + 0.1 + 0.1 + 0.0) / 4
    gan = GanObjective.__new__(GanObjective)  # the generator term needs only the discriminator and the weight
    gan.disc, gan.adv_weight = _FixedScores(d_sr), 1e-3
    g = content_loss({"name": "l1"}, sr, hr) + gan.generator_adversarial(sr)
    assert g.item() == pytest.approx(l1 + 0.001 * ((0.7 + 0.4) / 2))
    d = L.SRGANDiscriminatorLoss()(d_hr, d_sr)
    assert d.item() == pytest.approx(1 - 0.85 + 0.45)


def test_discriminator_loss_gives_generator_no_gradient_with_detach() -> None:
    gen = M.build("srgan_attention", scale=2, n_blocks=1)
    disc = M.build("srgan_discriminator")
    sr = gen(torch.rand(2, 3, 8, 8))
    d_loss = L.SRGANDiscriminatorLoss()(disc(torch.rand(2, 3, 16, 16)), disc(sr.detach()))
    d_loss.backward()
    assert all(p.grad is None for p in gen.parameters())
    assert all(p.grad is not None for p in disc.parameters())


def test_vgg_loss_without_weights_says_how_to_provide_them(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(L.WEIGHTS_ENV, raising=False)
    with pytest.raises(ValueError, match=r"local state_dict file.*nothing is downloaded.*SROPS_VGG_WEIGHTS"):
        L.VGGFeatureLoss()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        L.VGGFeatureLoss(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks"):
        L.VGGFeatureLoss(tmp_path / "partial.pth")


def _manual_features(state: dict, x: torch.Tensor, arch: str, n_layers: int) -> torch.Tensor:
    """VGG features computed directly from the state dict with F.conv2d/relu/max_pool2d."""
    i = 0
    for v in L.VGG_CFGS[arch]:
        if i >= n_layers:
            break
        if v == "M":
            x, i = F.max_pool2d(x, 2), i + 1
        else:
            x = F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)
            i += 1
            if i < n_layers:
                x, i = F.relu(x), i + 1
    return x


@pytest.mark.parametrize("arch, n_layers, scale", [("vgg19", 9, 1 / 12.75), ("vgg16", 5, 1.0)])
def test_vgg_loss_with_saved_random_weights(tmp_path, monkeypatch, arch: str, n_layers: int, scale: float) -> None:
    every_layer = L.vgg_features(arch, {"vgg19": 37, "vgg16": 31}[arch])
    state = {f"features.{k}": torch.randn_like(v) * 0.1 for k, v in every_layer.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too
    path = tmp_path / f"{arch}.pth"
    torch.save(state, path)
    monkeypatch.setenv(L.WEIGHTS_ENV, str(path))
    loss_fn = L.VGGFeatureLoss(arch=arch, n_layers=n_layers).train()
    assert not loss_fn.features.training and all(not p.requires_grad for p in loss_fn.parameters())
    assert loss_fn.feature_scale == pytest.approx(scale)
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16)
    loss = loss_fn(sr, hr)
    mean, std = torch.tensor(L.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(L.IMAGENET_STD).view(1, 3, 1, 1)
    fa = _manual_features(state, (sr - mean) / std, arch, n_layers) * scale
    fb = _manual_features(state, (hr - mean) / std, arch, n_layers) * scale
    state64 = {k: v.double() for k, v in state.items()}
    oracle = ((_manual_features(state64, (sr.detach().double() - mean) / std, arch, n_layers)
               - _manual_features(state64, (hr.double() - mean) / std, arch, n_layers)) * scale).square().mean()
    assert_close_to_oracle(loss, ((fa - fb) ** 2).mean(), oracle, "loss", floor=ulp_floor(torch.float32, oracle))
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())


def test_vgg_features_layout_matches_torchvision_indices() -> None:
    f19, f16 = L.vgg_features("vgg19"), L.vgg_features("vgg16")
    assert len(f19) == 36 and isinstance(f19[34], torch.nn.Conv2d) and isinstance(f19[35], torch.nn.ReLU)
    assert len(f16) == 31 and isinstance(f16[30], torch.nn.MaxPool2d)
    assert sum(p.numel() for p in f19.parameters()) == 20_024_384  # VGG19 conv layers
    with pytest.raises(ValueError, match="arch"):
        L.vgg_features("vgg11")
