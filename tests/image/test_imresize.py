"""imresize against facts that do not depend on its implementation.

Hand values come from Keys' cubic kernel with a = -0.5:
cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125,
cubic(1.75) = -0.0234375, cubic(0.5) = 0.5625, cubic(1.5) = -0.0625.
MATLAB samples output pixel o (1-based) at input position
u = o / s + (1 - 1 / s) / 2 and mirrors the border half-sample symmetrically
(x[-1] = x[0], x[-2] = x[1]).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srops.image import imresize, quantize
from srops.image.imresize import contributions
from srops.testing import assert_close, assert_close_to_oracle, ulp_floor


def _keys(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def _dense_matrix(n_in: int, n_out: int, s: float, antialias: bool = True) -> np.ndarray:
    """Oracle [n_out, n_in] resampling matrix: pad the signal symmetrically and weigh every padded sample."""
    stretch = s if (s < 1 and antialias) else 1.0
    pad = int(math.ceil(4 / stretch)) + 2
    padded_src = np.pad(np.arange(n_in), pad, mode="symmetric")  # source index of every padded sample
    pos = np.arange(-pad, n_in + pad, dtype=np.float64)  # 0-based coordinate of every padded sample
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        u = (o + 0.5) / s - 0.5  # 0-based form of MATLAB's u
        w = stretch * _keys(stretch * (u - pos))
        w = w / w.sum()
        np.add.at(m[o], padded_src, w)
    return m


def test_cubic_hand_values_x2_up() -> None:
    x = torch.tensor([[[[1.0, 5.0, -2.0, 7.0, 3.0, 11.0]]]], dtype=torch.float64)
    y = imresize(x, scale=(1, 2))[0, 0, 0]
    x0, x1, x2, x3, x4 = (float(v) for v in x[0, 0, 0, :5])
    assert y.shape == (12,)
    expected = {
        0: 1.09375 * x0 - 0.09375 * x1,
        1: -0.0703125 * x0 + 0.8671875 * x0 + 0.2265625 * x1 - 0.0234375 * x2,  # tap at -1 mirrors to x0
        2: 0.203125 * x0 + 0.8671875 * x1 - 0.0703125 * x2,
        4: -0.0234375 * x0 + 0.2265625 * x1 + 0.8671875 * x2 - 0.0703125 * x3,
        5: -0.0703125 * x1 + 0.8671875 * x2 + 0.2265625 * x3 - 0.0234375 * x4,
    }
    for o, v in expected.items():
        assert float(y[o]) == pytest.approx(v, abs=1e-12), o


def test_cubic_hand_values_x2_up_rows_match_columns() -> None:
    x = torch.rand(2, 3, 1, 9, dtype=torch.float64)
    by_cols = imresize(x, scale=(1, 2))
    by_rows = imresize(x.transpose(-1, -2), scale=(2, 1)).transpose(-1, -2)
    assert_close(by_rows, by_cols)


@pytest.mark.parametrize("antialias", [True, False])
def test_half_downscale_hand_values(antialias: bool) -> None:
    x = torch.rand(1, 1, 1, 16, dtype=torch.float64)  # quadratics would not tell the two kernels apart
    y = imresize(x, scale=(1, 0.5), antialias=antialias)[0, 0, 0]
    v = x[0, 0, 0]
    o = 4  # interior output; its centre is between inputs 8 and 9
    c = 2 * o
    if antialias:
        w = (0.43359375, 0.11328125, -0.03515625, -0.01171875)  # cubic(t / 2) / 2 at t = 0.5, 1.5, 2.5, 3.5
    else:
        w = (0.5625, -0.0625, 0.0, 0.0)
    ref = sum(w[k] * (v[c - k] + v[c + 1 + k]) for k in range(4))
    assert float(y[o]) == pytest.approx(float(ref), abs=1e-10)
    assert sum(w) * 2 == pytest.approx(1.0)


@pytest.mark.parametrize(
    "shape,scale",
    [((7, 5), 2), ((7, 5), 3), ((13, 10), 0.5), ((17, 11), 1 / 3), ((16, 9), 0.25), ((9, 14), 1.5),
     ((12, 12), (0.75, 2.5)), ((5, 6), 0.3), ((1, 2), 3), ((2, 1), 4), ((2, 3), (2, 3)), ((1, 1), 2), ((8, 3), 4)],
)
def test_matches_dense_oracle(shape: tuple[int, int], scale) -> None:
    x = torch.rand(2, 3, *shape, dtype=torch.float64)
    y = imresize(x, scale)
    sh, sw = (scale, scale) if not isinstance(scale, tuple) else scale
    oh, ow = math.ceil(sh * shape[0]), math.ceil(sw * shape[1])
    mh = torch.from_numpy(_dense_matrix(shape[0], oh, sh))
    mw = torch.from_numpy(_dense_matrix(shape[1], ow, sw))
    assert_close(y, mh @ x @ mw.T, name=f"{shape} x{scale}")


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25, 1.7, 0.61, (0.5, 3)])
def test_constant_image_stays_constant(scale) -> None:
    x = torch.full((2, 3, 13, 10), 0.37, dtype=torch.float64)
    assert_close(imresize(x, scale), torch.full_like(imresize(x, scale), 0.37))


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25])
def test_linear_ramp_is_reproduced_in_the_interior(scale: float) -> None:
    n = 48
    x = torch.arange(1, n + 1, dtype=torch.float64).reshape(1, 1, 1, n).expand(1, 1, 3, n)
    y = imresize(x, scale=(1, scale))[0, 0, 0]
    inv = 1 / scale
    o = torch.arange(1, y.numel() + 1, dtype=torch.float64)
    u = o * inv + 0.5 * (1 - inv)  # MATLAB's 1-based sample positions
    reach = 2 * max(inv, 1) + 1
    inner = (u - reach >= 1) & (u + reach <= n)
    assert inner.sum() >= 5
    assert_close(y[inner], u[inner])


@pytest.mark.parametrize(
    "shape,scale,expected",
    [((7, 5), 0.5, (4, 3)), ((10, 11), 1 / 3, (4, 4)), ((7, 9), 1.5, (11, 14)), ((7, 5), 2, (14, 10)),
     ((255, 3), 1 / 3, (85, 1)), ((13, 13), (0.5, 2.0), (7, 26)), ((8, 8), 0.26, (3, 3))],
)
def test_output_size_is_matlab_ceil(shape, scale, expected) -> None:
    assert imresize(torch.rand(1, 1, *shape), scale).shape[-2:] == expected


def test_size_argument() -> None:
    x = torch.rand(1, 3, 10, 7, dtype=torch.float64)
    y = imresize(x, size=(4, 21))
    assert y.shape == (1, 3, 4, 21)
    mh = torch.from_numpy(_dense_matrix(10, 4, 0.4))
    mw = torch.from_numpy(_dense_matrix(7, 21, 3.0))
    assert_close(y, mh @ x @ mw.T)


def test_antialias_weights_sum_to_one_and_widen() -> None:
    for n_in, s in ((40, 0.25), (37, 1 / 3), (20, 0.5), (9, 0.7), (11, 2.0), (7, 3.0)):
        n_out = math.ceil(n_in * s)
        w, idx = contributions(n_in, n_out, s, antialias=True)
        assert_close(w.sum(dim=1), torch.ones(n_out, dtype=torch.float64))
        assert int(idx.min()) >= 0 and int(idx.max()) < n_in
        nonzero = (w != 0).sum(dim=1).max().item()
        assert nonzero <= math.ceil(4 / min(s, 1)) + 2
        if s < 1:
            row = n_out // 2  # interior row: no mirroring, so the indices are contiguous
            taps = idx[row][w[row] != 0]
            span = int(taps.max() - taps.min()) + 1
            assert span >= math.floor(4 / s) - 1  # the kernel really is widened by 1 / s
            w0, _ = contributions(n_in, n_out, s, antialias=False)
            assert (w0 != 0).sum(dim=1).max().item() <= 4


def test_flip_equivariance_for_exact_scales() -> None:
    x = torch.rand(2, 3, 12, 18, dtype=torch.float64)
    for s in (2, 3, 0.5, 1 / 3):
        y = imresize(x, s)
        assert_close(imresize(x.flip(-1, -2), s), y.flip(-1, -2), name=str(s))


def _dense_in(x: torch.Tensor, s: float) -> torch.Tensor:
    """The dense-matrix resampling of ``x`` [.., H, W] computed in x's dtype: the same-dtype reference."""
    mh = torch.from_numpy(_dense_matrix(x.shape[-2], math.ceil(s * x.shape[-2]), s)).to(x.dtype)
    mw = torch.from_numpy(_dense_matrix(x.shape[-1], math.ceil(s * x.shape[-1]), s)).to(x.dtype)
    return mh @ x @ mw.T


def test_float32_matches_float64() -> None:
    """float32 against the float64 result on the same (float32) values: at most twice the dense
    matrix product's own float32 error, plus 8 ulp of the image's scale."""
    x = torch.rand(2, 3, 21, 17, dtype=torch.float64).float()
    for s in (4, 0.25, 1 / 3):
        y64 = imresize(x.double(), s)
        y32 = imresize(x, s)
        assert y32.dtype == torch.float32
        assert_close_to_oracle(y32, _dense_in(x, s), y64, f"x{s}", floor=ulp_floor(torch.float32, y64))


def _by_index_tables(x: torch.Tensor, scale: tuple[int, int]) -> torch.Tensor:
    """Integer upscaling through the general path's per-output index tables (:func:`contributions`),
    summed in the tables' column order in ``x``'s dtype, dimensions in MATLAB's order."""
    out = x
    for d in sorted((0, 1), key=lambda d: scale[d]):  # stable: rows first on a tie
        if scale[d] == 1:
            continue
        n = out.shape[d - 2]
        w, idx = contributions(n, n * scale[d], float(scale[d]))
        w = w.to(x.dtype)
        shape = (-1, 1) if d == 0 else (-1,)
        out = sum(out.index_select(d - 2, idx[:, p]) * w[:, p].reshape(shape) for p in range(w.shape[1]))
    return out


INTEGER_CASES = [((h, w), s) for h, w in ((1, 1), (1, 2), (2, 1), (2, 2), (3, 5), (7, 4), (16, 9), (31, 17))
                 for s in ((2, 2), (3, 3), (4, 4))] + [((5, 6), (2, 3)), ((6, 5), (4, 1)), ((9, 2), (1, 3))]


@pytest.mark.parametrize("shape,scale", INTEGER_CASES)
def test_integer_upscale_matches_the_index_tables(shape, scale) -> None:
    """Integer factors use per-phase weights on a mirror-padded input; the general path's per-output
    tables (whose weights carry the rounding of each output's position) give the same image."""
    x = torch.rand(2, 3, *shape, dtype=torch.float64)
    y = imresize(x, scale)
    assert y.shape == (2, 3, shape[0] * scale[0], shape[1] * scale[1])
    assert_close(y, _by_index_tables(x, scale), name=f"{shape} x{scale}")
    if scale[0] == scale[1]:
        size = (shape[0] * scale[0], shape[1] * scale[1])
        assert torch.equal(imresize(x, size=size), y)  # the size= form takes the same path


@pytest.mark.parametrize("shape,scale", INTEGER_CASES)
def test_integer_upscale_float32_against_float64(shape, scale) -> None:
    x = torch.rand(2, 3, *shape, dtype=torch.float64).float()
    y32 = imresize(x, scale)
    oracle = _by_index_tables(x.double(), scale)
    assert_close_to_oracle(y32, _by_index_tables(x, scale), oracle, f"{shape} x{scale}",
                           floor=ulp_floor(torch.float32, oracle))


def test_integer_upscale_exports_with_dynamic_height_and_width() -> None:
    """No table depends on the input's size, so torch.export keeps H and W symbolic."""

    class Up(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return imresize(x, (2, 3))

    dims = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    prog = torch.export.export(Up(), (torch.rand(1, 3, 12, 10),), dynamic_shapes=(dims,)).module()
    for shape in ((2, 2), (7, 3), (31, 17)):
        x = torch.rand(1, 3, *shape)
        assert_close(prog(x), imresize(x, (2, 3)), name=str(shape), atol=0, rtol=0)


def test_half_precision_inputs() -> None:
    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    for dtype in (torch.float16, torch.bfloat16):
        xl = x.to(dtype)
        y = imresize(xl, 2)
        assert y.dtype == dtype
        oracle = imresize(xl.double(), 2)
        assert_close_to_oracle(y, _dense_in(xl, 2), oracle, str(dtype), floor=ulp_floor(dtype, oracle))


def test_non_contiguous_and_channels_last_inputs() -> None:
    x = torch.rand(2, 3, 12, 9, dtype=torch.float64)
    ref = imresize(x, 1 / 3)
    assert_close(imresize(x.to(memory_format=torch.channels_last), 1 / 3), ref)
    xt = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not xt.is_contiguous()
    assert_close(imresize(xt, 1 / 3), ref)


def test_batch_equals_per_image_and_ranks() -> None:
    x = torch.rand(3, 2, 11, 8, dtype=torch.float64)
    y = imresize(x, 0.5)
    for b in range(3):
        assert_close(y[b:b + 1], imresize(x[b:b + 1], 0.5))
        assert_close(y[b], imresize(x[b], 0.5))
        assert_close(y[b, 1], imresize(x[b, 1], 0.5))


def test_scale_one_is_identity_copy() -> None:
    x = torch.rand(1, 3, 6, 5)
    y = imresize(x, 1)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()


def test_single_pixel_upscale_is_constant() -> None:
    x = torch.tensor([[[[0.3]]]], dtype=torch.float64)
    assert_close(imresize(x, 3), torch.full((1, 1, 3, 3), 0.3, dtype=torch.float64))


def test_gradcheck() -> None:
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, (0.5, 1 / 3)), (x,))


def test_gradient_is_transpose_of_the_resampling_matrix() -> None:
    x = torch.rand(1, 1, 9, 7, dtype=torch.float64, requires_grad=True)
    g = torch.rand(1, 1, 5, 14, dtype=torch.float64)
    imresize(x, (0.5, 2)).backward(g)
    mh = torch.from_numpy(_dense_matrix(9, 5, 0.5))
    mw = torch.from_numpy(_dense_matrix(7, 14, 2.0))
    assert_close(x.grad, mh.T @ g @ mw)


def test_quantize() -> None:
    x = torch.tensor([-0.2, 0.0, 0.31, 0.5, 1.0, 1.7, 100.4 / 255, 100.6 / 255], dtype=torch.float64)
    q = quantize(x)
    # 0.31 * 255 = 79.05; 0.5 * 255 = 127.5 is a tie and rounds up (MATLAB), not to even
    exp = torch.tensor([0, 0, 79, 128, 255, 255, 100, 101], dtype=torch.float64) / 255
    assert_close(q, exp)
    assert torch.equal(quantize(q), q)  # idempotent
    assert quantize(torch.rand(3, 4)).dtype == torch.float32


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    x = torch.rand(2, 3, 23, 19, dtype=torch.float64)
    for s in (4, 1 / 3):
        assert_close(imresize(x.cuda(), s).cpu(), imresize(x, s))
    x32 = x.float()
    oracle = imresize(x32.double(), 2)
    assert_close_to_oracle(imresize(x32.cuda(), 2).cpu(), imresize(x32, 2), oracle, "float32",
                           floor=ulp_floor(torch.float32, oracle))


@pytest.mark.parametrize(
    "call,exc,text",
    [
        (lambda: imresize([[0.0]], 2), TypeError, "'x' must be a torch.Tensor"),
        (lambda: imresize(torch.rand(1, 1, 1, 3, 3), 2), ValueError, "2-D, 3-D or 4-D"),
        (lambda: imresize(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 2), TypeError, "floating"),
        (lambda: imresize(torch.rand(1, 3, 0, 4), 2), ValueError, "non-empty"),
        (lambda: imresize(torch.rand(1, 3, 4, 4)), ValueError, "exactly one of"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), 2, (8, 8)), ValueError, "exactly one of"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), -2), ValueError, "positive"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), float("inf")), ValueError, "positive"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), (1, 2, 3)), TypeError, "pair"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), size=(0, 3)), ValueError, "integers >= 1"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), size=(2.5, 3)), ValueError, "integers >= 1"),
        (lambda: imresize(torch.rand(1, 3, 4, 4), 2, antialias=1), TypeError, "antialias"),
    ],
)
def test_errors(call, exc, text: str) -> None:
    with pytest.raises(exc, match=text):
        call()
