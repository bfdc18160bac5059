"""Conv2D and its kernel FastConv2D (both layouts): a naive loop reference, gradient checks with
negative controls, PyTorch, validation."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch.accel import im2col
from nnscratch.accel.kernels import FastConv2D
from nnscratch.errors import InputError
from nnscratch.gradcheck import check_layer
from nnscratch.layers.conv import Conv2D


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad(x, ph, pw):
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def naive_conv(x, W, b, stride, padding):
    """The definition, one output pixel at a time: loops over examples, channels and pixels."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    xp = _pad(x, ph, pw)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for a in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    total = b[f]
                    for ch in range(c):
                        total += np.sum(W[f, ch] * xp[a, ch, i * sh:i * sh + kh, j * sw:j * sw + kw])
                    y[a, f, i, j] = total
    return y


def naive_conv_backward(x, W, stride, padding, g):
    """dX, dW, db by the chain rule, one output pixel at a time (each pixel adds its share)."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    xp = _pad(x, ph, pw)
    dxp, dW, db = np.zeros_like(xp), np.zeros(W.shape), np.zeros(o)
    for a in range(n):
        for f in range(o):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    db[f] += g[a, f, i, j]
                    for ch in range(c):
                        dW[f, ch] += g[a, f, i, j] * xp[a, ch, rows, cols]
                        dxp[a, ch, rows, cols] += g[a, f, i, j] * W[f, ch]
    return dxp[:, :, ph:ph + h, pw:pw + w], dW, db


def _impl(layer, impl):
    """The plain layer, or its kernel in one of the two layouts (forced: by default chosen from
    C*kH*kW)."""
    if impl == "layer":
        return layer
    kernel = FastConv2D(layer)
    kernel.batch_first = impl == "kernel-batch-first"
    return kernel


def _layer(c, o, k, s, p, rng, dtype="float64", impl="layer"):
    layer = Conv2D(c, o, k, s, p, seed=int(rng.integers(1000)), dtype=dtype)
    layer.params["b"][...] = rng.standard_normal(o)  # a non-zero bias too
    return _impl(layer, impl)


LAYOUTS = pytest.mark.parametrize("impl", ["layer", "kernel-batch-first", "kernel-batch-last"])


# (N, C, H, W, O, kernel_size, stride, padding)
CASES = [
    (2, 3, 7, 6, 4, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 1, 1),
    (3, 2, 9, 8, 3, (3, 2), 2, 1),
    (2, 2, 8, 11, 3, (2, 4), (1, 3), (2, 0)),
    (1, 4, 10, 10, 2, 3, 3, 2),
    (2, 2, 9, 9, 2, 2, 3, 0),            # stride > kernel: some pixels are never seen
    (2, 1, 5, 5, 2, 1, 1, 0),            # 1x1 kernel
    (2, 3, 6, 7, 2, 1, 2, 1),            # 1x1 kernel with stride and padding (border = bias)
    (2, 2, 5, 4, 3, (5, 4), 1, 0),       # kernel == image: one output pixel
    (2, 2, 5, 4, 3, (5, 4), 2, 2),       # kernel == image, padded
    (4, 1, 8, 8, 6, 3, 1, 1),            # a digits-sized first layer
]


def _random_case(seed):
    r = np.random.default_rng(seed)
    kh, kw = (int(v) for v in r.integers(1, 5, 2))
    s = (int(r.choice([1, 2, 3])), int(r.choice([1, 2, 3])))
    p = (int(r.choice([0, 1, 2])), int(r.choice([0, 1, 2])))
    h, w = int(max(1, kh - 2 * p[0]) + r.integers(0, 6)), int(max(1, kw - 2 * p[1]) + r.integers(0, 6))
    return (int(r.integers(1, 4)), int(r.integers(1, 4)), h, w, int(r.integers(1, 5)), (kh, kw), s, p)


CASES += [_random_case(seed) for seed in range(8)]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p", CASES)
@LAYOUTS
def test_vectorised_equals_naive(n, c, h, w, o, k, s, p, rng, impl):
    layer = _layer(c, o, k, s, p, rng, impl=impl)
    x = rng.standard_normal((n, c, h, w))
    Wt, b = layer.params["W"], layer.params["b"]
    y = layer.forward(x, training=True)
    expected = naive_conv(x, Wt, b, s, p)
    assert y.shape == expected.shape == (n, *Conv2D(c, o, k, s, p).output_shape((c, h, w)))
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-10)  # prediction path
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    dx_ref, dW_ref, db_ref = naive_conv_backward(x, Wt, s, p, g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["W"], dW_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["b"], db_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k,s,p", [(3, 1, 0), (3, 1, 1), (3, 2, 1), ((3, 2), (2, 1), (0, 2)),
                                   (2, 3, 2), (1, 2, 1)])
@LAYOUTS
def test_gradients(k, s, p, rng, impl):
    layer = _layer(2, 3, k, s, p, rng, impl=impl)
    result = check_layer(layer, rng.standard_normal((2, 2, 6, 5)), rng)
    assert result.ok, str(result)
    assert set(result.errors) == {"x", "W", "b"}


class _FlippedKernelGrad(Conv2D):
    """Negative control: dW of a true convolution (flipped kernel), the classic mix-up."""

    def backward(self, grad_y, input_grad=True):
        dx = super().backward(grad_y, input_grad)
        self.grads["W"][...] = self.grads["W"][:, :, ::-1, ::-1].copy()
        return dx


class _ShiftedInputGrad(Conv2D):
    """Negative control: dX off by one pixel (a wrong padding crop)."""

    def backward(self, grad_y, input_grad=True):
        return np.roll(super().backward(grad_y, input_grad), 1, axis=3)


@pytest.mark.parametrize("cls,broken", [(_FlippedKernelGrad, "W"), (_ShiftedInputGrad, "x")])
def test_negative_controls_fail_the_check(cls, broken, rng):
    layer = cls(2, 3, 3, 1, 1, seed=0, dtype="float64")
    result = check_layer(layer, rng.standard_normal((2, 2, 5, 6)), rng)
    assert not result.ok and result.errors[broken] > 1e-2, str(result)
    assert all(e < 1e-6 for name, e in result.errors.items() if name != broken)  # only that part


@pytest.mark.parametrize("n,c,h,w,o,k,s,p", [CASES[i] for i in (1, 2, 3, 4, 7, 9)])
@LAYOUTS
def test_matches_pytorch(n, c, h, w, o, k, s, p, rng, impl):
    torch = pytest.importorskip("torch")
    layer = _layer(c, o, k, s, p, rng, impl=impl)
    conv = torch.nn.Conv2d(c, o, k, s, p).double()
    with torch.no_grad():  # the same weight layout: (out, in, kH, kW)
        conv.weight.copy_(torch.tensor(layer.params["W"]))
        conv.bias.copy_(torch.tensor(layer.params["b"]))
    x = rng.standard_normal((n, c, h, w))
    tx = torch.tensor(x, requires_grad=True)
    ty = conv(tx)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["W"], conv.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["b"], conv.bias.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": 0}, r"kernel_size must be a positive integer or a pair of them, got 0"),
    ({"kernel_size": (3, 0)}, r"kernel_size .* got \(3, 0\)"),
    ({"kernel_size": (3,)}, r"kernel_size .* got \(3,\)"),
    ({"kernel_size": 2.5}, r"kernel_size .* got 2\.5"),
    ({"kernel_size": True}, r"kernel_size .* got True"),
    ({"stride": 0}, r"stride must be a positive integer .* got 0"),
    ({"padding": -1}, r"padding must be a non-negative integer or a pair of them, got -1"),
    ({"padding": (1, -2)}, r"padding .* got \(1, -2\)"),
    ({"in_channels": 0}, r"in_channels must be a positive integer, got 0"),
    ({"out_channels": -3}, r"out_channels must be a positive integer, got -3"),
    ({"init": "zeros"}, r"unknown initializer 'zeros'"),
    ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64', got 'float16'"),
    ({"seed": -1}, r"seed must be a non-negative integer or None, got -1"),
])
def test_bad_arguments(kwargs, message):
    args = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        Conv2D(**args)


@pytest.mark.parametrize("shape,message", [
    ((2, 2, 8, 8), r"expects \(N, 3, H, W\) images, got shape \(2, 2, 8, 8\)"),
    ((2, 3, 4, 8), r"kernel 5x3 with padding \(0, 1\) does not fit a 4x8 image.* output would be 0x8"),
    ((3, 8, 8), r"expects \(N, 3, H, W\) images.*, got shape \(3, 8, 8\)"),
])
@pytest.mark.parametrize("impl", ["layer", "kernel"])
def test_bad_input(shape, message, impl):
    layer = Conv2D(3, 2, (5, 3), padding=(0, 1))
    run = layer if impl == "layer" else FastConv2D(layer)
    for training in (False, True):
        with pytest.raises(InputError, match=message):
            run.forward(np.zeros(shape, dtype=np.float32), training=training)
    assert issubclass(InputError, ValueError)


def test_output_shape():
    layer = Conv2D(3, 8, (5, 3), stride=(2, 1), padding=(1, 0))
    assert layer.output_shape((3, 10, 7)) == (8, 4, 5)  # (10 + 2 - 5)//2 + 1, (7 - 3)//1 + 1
    assert Conv2D(1, 16, 3, padding=1).output_shape((1, 8, 8)) == (16, 8, 8)
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        layer.output_shape((1, 10, 7))
    with pytest.raises(ValueError, match=r"does not fit a 2x7 image"):
        layer.output_shape((3, 2, 7))


def test_float32_stays_float32(rng):
    layer = Conv2D(3, 4, 3, stride=2, padding=1, seed=0)
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    assert layer.params["W"].dtype == layer.params["b"].dtype == np.float32
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.grads["W"].dtype == layer.grads["b"].dtype == np.float32
    assert layer.forward(x).dtype == np.float32
    expected = naive_conv(x.astype(np.float64), layer.params["W"].astype(np.float64),
                          layer.params["b"].astype(np.float64), 2, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@LAYOUTS
def test_workspaces_do_not_leak_between_calls(rng, impl):
    """Alternating batch sizes, and a prediction between forward and backward, change nothing."""
    layer = _layer(2, 3, 3, 1, 1, rng, impl=impl)
    Wt, b = layer.params["W"], layer.params["b"]
    xs = [rng.standard_normal((n, 2, 6, 6)) for n in (4, 3, 4)]
    for x in xs:
        g = rng.standard_normal((x.shape[0], 3, 6, 6))
        y = layer.forward(x, training=True).copy()
        kept = layer.forward(xs[1])           # prediction: fresh arrays, its own scratch
        layer.forward(xs[0] * 2)
        assert not np.shares_memory(kept, layer.forward(xs[1]))
        np.testing.assert_allclose(kept, naive_conv(xs[1], Wt, b, 1, 1), atol=1e-10)
        np.testing.assert_allclose(y, naive_conv(x, Wt, b, 1, 1), atol=1e-10)
        dx_ref, dW_ref, db_ref = naive_conv_backward(x, Wt, 1, 1, g)
        np.testing.assert_allclose(layer.backward(g), dx_ref, atol=1e-10)
        np.testing.assert_allclose(layer.grads["W"], dW_ref, atol=1e-10)
    assert layer.backward(g, input_grad=False) is None   # grads are still filled
    np.testing.assert_allclose(layer.grads["b"], db_ref, atol=1e-10)


def test_the_kernel_layout_is_chosen_from_the_product_size():
    assert FastConv2D(Conv2D(1, 32, 3)).batch_first and FastConv2D(Conv2D(3, 32, 3)).batch_first
    assert not FastConv2D(Conv2D(32, 64, 3)).batch_first                   # K = 9, 27; 288


@pytest.mark.parametrize("init,std", [("he_normal", np.sqrt(2 / (16 * 9))),
                                      ("glorot_normal", np.sqrt(2 / (16 * 9 + 32 * 9)))])
def test_initialisation_uses_convolution_fans(init, std):
    layer = Conv2D(16, 32, 3, init=init, seed=0)
    assert layer.params["W"].shape == layer.grads["W"].shape == (32, 16, 3, 3)
    assert layer.params["b"].shape == (32,) and not layer.params["b"].any()
    assert layer.params["W"].std() == pytest.approx(std, rel=0.05)
    assert layer.n_params == 32 * 16 * 9 + 32
    np.testing.assert_array_equal(layer.params["W"], Conv2D(16, 32, 3, init=init, seed=0).params["W"])


def test_config_and_repr_rebuild_the_layer():
    layer = Conv2D(3, 8, (5, 3), stride=2, padding=(1, 0), init="glorot_uniform", seed=1)
    config = layer.get_config()
    assert config == {"in_channels": 3, "out_channels": 8, "kernel_size": (5, 3), "stride": 2,
                      "padding": (1, 0), "init": "glorot_uniform"}
    rebuilt = Conv2D(**{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()})  # JSON
    assert rebuilt.get_config() == config
    assert repr(layer) == "Conv2D(3, 8, (5, 3), stride=2, padding=(1, 0), init='glorot_uniform')"
    assert repr(Conv2D(1, 16, 3, padding=1)) == "Conv2D(1, 16, 3, stride=1, padding=1, init='he_normal')"


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (1, 1, 1), (3, 1, 1), (3, 2, 1), (3, 3, 0), (2, 3, 0),
                                   ((3, 2), 1, 2), (5, 2, 2), (3, 1, 2)])
def test_col2im_straight_into_the_image_equals_the_padded_sum(k, s, p, rng):
    """col2im cut to the image (no padded buffer) = col2im into the padded buffer, cropped;
    including strides that skip pixels (which get zero) and padding wider than the kernel."""
    conv = Conv2D(2, 3, k, stride=s, padding=p, dtype="float64")
    for h, w in [(7, 7), (8, 5), (6, 9)]:
        ho, wo = conv.output_shape((2, h, w))[1:]
        kh, kw = conv.kernel_size
        dcol = rng.standard_normal((2, kh, kw, ho, wo, 3))
        dxp = np.zeros((2, h + 2 * p, w + 2 * p, 3))
        im2col.col2im(dcol, dxp, conv.kernel_size, conv.stride, lead=1)
        out = np.full((2, h, w, 3), np.nan)
        im2col.col2im_unpadded(dcol, out, conv.kernel_size, conv.stride, conv.padding, np)
        np.testing.assert_allclose(out, dxp[:, p:p + h, p:p + w], rtol=1e-12, atol=1e-12)
