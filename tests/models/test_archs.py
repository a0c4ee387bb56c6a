"""Every registered network: builds at each supported scale, runs forward/backward, has docs/models.md's counts."""
from __future__ import annotations

import pytest
import torch

import srops.models as M
from srops.models.archs.amms_arch import AM, LSAM, MSFF
from srops.models.archs.common import MeanShift, Upsampler, count_params, resolve_backend
from srops.models.archs.lapsrn_arch import bilinear_kernel
from srops.testing import ulp_floor

SR_NETS = {  # name → supported scales
    "amms": (2, 3, 4),
    "drfn": (2, 3, 4),
    "srresnet": (2, 3, 4),
    "srgan_attention": (2, 3, 4),
    "edsr": (2, 3, 4),
    "edsr_cbam": (2, 3, 4),
    "espcn": (2, 3, 4),
    "espcn_cbam": (2, 3, 4),
    "srresnet_cbam": (2, 3, 4),
    "lapsrn": (2, 4),
    "lapsrn_cbam": (2, 4),
}
RGB_RANGE = {"amms": 255.0, "drfn": 255.0, "edsr": 255.0, "edsr_cbam": 255.0}

# (name, scale, constructor overrides) → trainable parameters, from docs/models.md.
COUNTS = [
    ("amms", 2, {}, 1_874_755), ("amms", 3, {}, 2_059_395), ("amms", 4, {}, 2_022_467),
    ("amms", 2, {"n_modules": 6}, 2_709_731), ("amms", 4, {"n_modules": 6}, 2_857_443),
    ("amms", 2, {"n_modules": 8}, 3_544_707), ("amms", 4, {"n_modules": 8}, 3_692_419),
    ("drfn", 2, {}, 5_075_712), ("drfn", 3, {}, 5_260_352), ("drfn", 4, {}, 5_223_424),
    ("drfn", 2, {"rb_convs": 2}, 9_802_496), ("drfn", 3, {"rb_convs": 2}, 9_987_136),
    ("drfn", 4, {"rb_convs": 2}, 9_950_208),
    ("drfn", 4, {"n_blocks": 4, "rb_convs": 2}, 5_223_424),
    ("drfn", 2, {"n_groups": 8, "rb_convs": 2}, 4_970_672), ("drfn", 3, {"n_groups": 8, "rb_convs": 2}, 5_155_312),
    ("drfn", 4, {"n_groups": 8, "rb_convs": 2}, 5_118_384),
    ("srresnet", 2, {}, 1_401_749), ("srresnet", 4, {}, 1_549_462),
    ("srresnet", 2, {"n_blocks": 5}, 586_506), ("srresnet", 4, {"n_blocks": 5}, 734_219),
    ("srresnet", 4, {"prelu_per_channel": True}, 1_550_659),
    ("srgan_discriminator", 4, {}, 5_215_425),
    ("srgan_attention", 2, {}, 774_691), ("srgan_attention", 4, {}, 922_404),
    ("srgan_attention", 2, {"n_blocks": 16}, 2_003_941), ("srgan_attention", 4, {"n_blocks": 16}, 2_151_654),
    ("edsr", 2, {}, 1_369_859), ("edsr", 3, {}, 1_554_499), ("edsr", 4, {}, 1_517_571),
    ("edsr_cbam", 2, {}, 1_380_867), ("edsr_cbam", 3, {}, 1_565_507), ("edsr_cbam", 4, {}, 1_528_579),
    ("srresnet_cbam", 2, {}, 1_412_757), ("srresnet_cbam", 4, {}, 1_560_470),
    ("espcn", 2, {}, 26_796), ("espcn", 3, {}, 31_131), ("espcn", 4, {}, 37_200),
    ("espcn_cbam", 2, {}, 27_889), ("espcn_cbam", 3, {}, 32_269), ("espcn_cbam", 4, {}, 38_599),
    ("lapsrn", 2, {}, 437_776), ("lapsrn", 4, {}, 873_824),
    ("lapsrn_cbam", 2, {}, 441_216), ("lapsrn_cbam", 4, {}, 880_704),
]


def test_registry_lists_every_network() -> None:
    assert set(SR_NETS) | {"srgan_discriminator"} <= set(M.list_models())


@pytest.mark.parametrize("name, scale, kwargs, expected", COUNTS, ids=lambda v: str(v))
def test_parameter_count(name: str, scale: int, kwargs: dict, expected: int) -> None:
    assert count_params(M.build(name, scale=scale, **kwargs)) == expected


def test_parameter_count_dense_discriminator() -> None:
    net = M.build("srgan_discriminator", head="dense", input_size=96)
    assert count_params(net) == 23_565_505


def test_block_parameter_counts() -> None:
    """docs/models.md's per-block figures (C = 64) and the shared upsampler's."""
    import srops

    assert count_params(MSFF(64)) == 155_904
    ams = [AM(srops.NonLocal2d(64, 32, regions=2), srops.SecondOrderAttention(64, 16), 64) for _ in range(4)]
    assert count_params(ams[0]) == 17_188
    assert count_params(LSAM(ams, 64)) == 105_680
    assert [count_params(Upsampler(s, 64)) for s in (2, 3, 4)] == [147_712, 332_352, 295_424]
    assert count_params(srops.CBAM(64, mlp_bn=True)) == 688
    net = M.build("edsr")
    assert count_params(net) == count_params(M.build("edsr_cbam")) - 16 * 688
    assert sum(b.numel() for b in net.buffers()) == 6  # the two MeanShifts, not trained


@pytest.mark.parametrize("name", sorted(SR_NETS))
def test_forward_backward_every_scale(name: str) -> None:
    for scale in SR_NETS[name]:
        net = M.build(name, scale=scale).train()
        x = (torch.rand(2, 3, 12, 12) * RGB_RANGE.get(name, 1.0)).requires_grad_()
        y = net(x)
        assert y.shape == (2, 3, 12 * scale, 12 * scale), (name, scale)
        assert torch.isfinite(y).all()
        y.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, scale, pname)


def test_default_scale_is_four() -> None:
    for name in SR_NETS:
        assert M.build(name).scale == 4


def test_discriminator_forward_backward() -> None:
    d = M.build("srgan_discriminator").train()
    x = torch.rand(2, 3, 24, 20, requires_grad=True)
    p = d(x)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    p.sum().backward()
    assert all(q.grad is not None for q in d.parameters()) and x.grad.abs().sum() > 0
    dense = M.build("srgan_discriminator", head="dense", input_size=32)
    assert dense(torch.rand(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="input_size|head='dense'"):
        dense(torch.rand(2, 3, 24, 24))


@pytest.mark.parametrize("name", ["lapsrn", "lapsrn_cbam"])
def test_lapsrn_rejects_scale_three(name: str) -> None:
    with pytest.raises(ValueError, match=rf"srops.models.{name}: 'scale' must be a power of two.*got 3"):
        M.build(name, scale=3)


@pytest.mark.parametrize("name", sorted(SR_NETS))
def test_bad_scale_raises(name: str) -> None:
    for bad in (1, 5, 8, "4", 2.0):
        with pytest.raises(ValueError, match=f"srops.models.{name}: 'scale'"):
            M.build(name, scale=bad)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="rb_convs"):
        M.build("drfn", rb_convs=3)
    with pytest.raises(ValueError, match="output"):
        M.build("srresnet", output="sigmoid")
    with pytest.raises(ValueError, match="act"):
        M.build("espcn", act="gelu")
    with pytest.raises(ValueError, match="n_modules"):
        M.build("amms", n_modules=0)
    with pytest.raises(ValueError, match="backend"):
        M.build("amms", backend="fast")


def test_lapsrn_pyramid_and_bilinear_image_branch() -> None:
    net = M.build("lapsrn", scale=4)
    x = torch.rand(1, 3, 8, 8)
    outs = net.forward_pyramid(x)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (32, 32)]
    assert torch.equal(outs[-1], net(x))
    k = bilinear_kernel(4)
    few_ops = dict(rtol=0.0, atol=ulp_floor(torch.float32, 1.0))  # a few float32 operations on values of scale 1
    torch.testing.assert_close(k[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]), **few_ops)
    # The image branch alone upsamples a constant image to the same constant away from the border.
    img = net.levels[0].image(torch.ones(1, 3, 6, 6))
    torch.testing.assert_close(img[..., 2:-2, 2:-2], torch.ones_like(img[..., 2:-2, 2:-2]), **few_ops)
    assert torch.count_nonzero(net.levels[0].image.weight[0, 1]) == 0  # per channel


def test_meanshift_round_trip() -> None:
    x = torch.rand(1, 3, 4, 4) * 255
    sub, add = MeanShift(255.0, sign=-1), MeanShift(255.0, sign=1)
    # a float32 round trip through values of scale 255 (a 1×1 convolution each way): 4 ulp at 255
    tol = dict(rtol=0.0, atol=ulp_floor(torch.float32, 255.0, ulps=4))
    torch.testing.assert_close(add(sub(x)), x, **tol)
    torch.testing.assert_close(sub(x)[0, :, 0, 0], x[0, :, 0, 0] - 255 * torch.tensor([0.4488, 0.4371, 0.4040]), **tol)


def test_srgan_outputs_in_unit_range() -> None:
    y = M.build("srresnet", n_blocks=1)(torch.rand(2, 3, 6, 6) * 50)
    assert (y >= 0).all() and (y <= 1).all()


def test_backend_is_passed_down() -> None:
    import srops

    net = M.build("amms", n_modules=1, n_am=1, backend="sdpa")
    nl = [m for m in net.modules() if isinstance(m, srops.NonLocal2d)]
    so = [m for m in net.modules() if isinstance(m, srops.SecondOrderAttention)]
    assert nl and all(m.backend == "sdpa" for m in nl)
    assert so and all(m.backend is None for m in so)  # covpool_sqrtm has no sdpa: default dispatch
    net = M.build("drfn", n_groups=2, n_blocks=1, backend="reference")
    kinds = (srops.ChannelAttention, srops.SpatialAttention)
    assert all(m.backend == "reference" for m in net.modules() if isinstance(m, kinds))
    assert resolve_backend({"cbam": "reference"}, ("cbam",)) == "reference"
    assert resolve_backend({"cbam": "reference"}, ("nonlocal_attention",)) is None
    for name in ("edsr_cbam", "espcn_cbam", "srresnet_cbam", "lapsrn_cbam"):
        cbams = [m for m in M.build(name, scale=2, backend="reference").modules() if isinstance(m, srops.CBAM)]
        assert cbams and all(m.backend == "reference" for m in cbams)


@pytest.mark.parametrize("name", ["edsr_cbam", "espcn_cbam", "lapsrn_cbam", "srresnet_cbam"])
def test_cbam_variant_takes_its_parents_arguments(name: str) -> None:
    """Each ``*_cbam`` network is its parent with ``cbam=True``: the same arguments in the same order (less
    ``cbam``), every one passed on by keyword, so a change to the parent cannot shift them silently."""
    import inspect

    from srops.models.registry import _REGISTRY

    cls = _REGISTRY[name]
    parent = cls.__mro__[1]
    ours = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    theirs = [p for p in inspect.signature(parent.__init__).parameters if p not in ("self", "cbam")]
    assert ours == theirs
    seen = {}

    def spy(self, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    orig = parent.__init__
    parent.__init__ = spy
    try:
        with pytest.raises(RuntimeError, match="stop"):
            cls()
    finally:
        parent.__init__ = orig
    defaults = {p: v.default for p, v in inspect.signature(cls.__init__).parameters.items() if p != "self"}
    assert seen == {**defaults, "cbam": True}
