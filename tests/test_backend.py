"""The backend: device choice, clear errors, and the device code path run on a CuPy stand-in.

No GPU is needed here. The real GPU tests are in ``test_cuda.py`` (skipped without one). To check
the device code path anyway, ``fake_device`` builds a backend whose array module mimics CuPy's
strictness: its arrays refuse to mix with NumPy (host) arrays, as CuPy's do. Training and
predicting on it must then give exactly what the CPU gives: a layer, loss or optimizer that made
a NumPy array where it should have asked ``xp`` would raise.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import nnscratch.backend as backend_module
from nnscratch import Sequential, load_model
from nnscratch.backend import CPU, Backend, DeviceError, backend_of, get_backend, register
from nnscratch.cli import main
from nnscratch.data import RandomShift
from nnscratch.layers import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnscratch.losses import MeanSquaredError
from nnscratch.optim import SGD, Adam, AdamW, RMSprop

SRC = Path(__file__).resolve().parents[1] / "src" / "nnscratch"


# -- a strict stand-in for CuPy ------------------------------------------------------------------
class DeviceArray(np.ndarray):
    """An array "on the device": NumPy arithmetic, but no mixing with host (NumPy) arrays."""

    @staticmethod
    def _check(values, what):
        for v in values:
            if isinstance(v, (list, tuple)):
                DeviceArray._check(v, what)
            elif isinstance(v, np.ndarray) and not isinstance(v, DeviceArray):
                raise TypeError(f"a host (NumPy) array {v.shape} mixed with device arrays in {what}")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        self._check(inputs + (out or ()), f"{ufunc.__name__}.{method}")
        args = [a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _to_device_view(result)

    def __array_function__(self, func, types, args, kwargs):
        self._check(list(args) + list(kwargs.values()), func.__name__)
        return _to_device_view(super().__array_function__(func, types, args, kwargs))

    def __getitem__(self, index):
        self._check(index if isinstance(index, tuple) else (index,), "indexing")
        return super().__getitem__(index)

    def __setitem__(self, index, value):
        self._check((index if isinstance(index, tuple) else (index,)) + (value,), "assignment")
        super().__setitem__(index, value)


def _to_device_view(result):
    if isinstance(result, np.ndarray) and not isinstance(result, DeviceArray):
        return result.view(DeviceArray)
    if isinstance(result, tuple):
        return tuple(_to_device_view(r) for r in result)
    return result


def _host_views(values):
    return [v.view(np.ndarray) if isinstance(v, DeviceArray)
            else type(v)(_host_views(v)) if isinstance(v, (list, tuple)) else v for v in values]


def _make_fake_xp():
    """A module with NumPy's API on DeviceArrays, strict as CuPy's: its functions refuse host
    arrays (except ``asarray``/``array``, the host -> device copies) and return DeviceArrays.
    Ufuncs stay ufuncs: they dispatch through ``DeviceArray.__array_ufunc__``."""
    xp = types.ModuleType("fakecupy")

    def wrap(f):
        transfer = f.__name__ in ("asarray", "array")

        def on_device(*a, **k):
            if not transfer:
                DeviceArray._check(list(a) + list(k.values()), f.__name__)
            kw = dict(zip(k, _host_views(k.values()), strict=True))
            return _to_device_view(f(*_host_views(a), **kw))
        return on_device

    def getattr_(name):
        obj = getattr(np, name)
        if isinstance(obj, np.ufunc) or isinstance(obj, type) or not callable(obj):
            return obj
        return wrap(obj)

    xp.__getattr__ = getattr_
    return xp


def _asarray(a, dtype=None):
    if isinstance(a, DeviceArray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return np.array(a, dtype=dtype).view(DeviceArray)   # a copy, as a host -> device transfer


def _to_numpy(a):
    return np.array(a.view(np.ndarray) if isinstance(a, DeviceArray) else a)


def _upload(dst, src):
    assert isinstance(dst, DeviceArray) and type(src) is np.ndarray
    dst.view(np.ndarray)[...] = src


@pytest.fixture(scope="module")
def fake_device():
    from scipy.special import erf

    def swv(x, *a, **k):
        return np.lib.stride_tricks.sliding_window_view(x, *a, subok=True, **k)

    backend = Backend("fake", _make_fake_xp(), _asarray, _to_numpy, _upload,
                      lambda z: _to_device_view(erf(z.view(np.ndarray))), swv)
    register(backend, DeviceArray)
    yield backend


def test_the_stand_in_is_strict(fake_device):
    """The stand-in must catch what CuPy would: a host array inside a device computation."""
    xp = fake_device.xp
    a = xp.ones((2, 3), np.float32)
    assert isinstance(a, DeviceArray) and backend_of(a) is fake_device
    assert isinstance(a + 1, DeviceArray) and isinstance(xp.dot(a, a.T), DeviceArray)
    with pytest.raises(TypeError, match="host"):
        a + np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="host"):
        xp.dot(a, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="host"):
        np.multiply(a, 2, out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="host"):
        a[np.arange(2)]


# -- choosing a device ------------------------------------------------------------------------
def test_cpu_is_the_default_and_computes_with_numpy():
    model = Sequential([Dense(4, 3)], seed=0)
    assert model.backend is CPU and model.device == "cpu" and model.xp is np
    assert get_backend("cpu") is CPU and get_backend(None) is CPU and get_backend(CPU) is CPU
    assert all(layer.xp is np for layer in model.layers)
    assert type(model.layers[0].params["W"]) is np.ndarray


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda:-1", "CUDA", "", 3, "gpu0"])
def test_unknown_devices_are_refused_by_name(device):
    with pytest.raises(DeviceError, match="unknown device"):
        Sequential([Dense(4, 3)], device=device)


def test_cuda_without_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)   # "import cupy" raises ImportError
    monkeypatch.setattr("nnscratch.backend._CUDA", {})
    with pytest.raises(DeviceError, match=re.escape("pip install 'nnscratch[cuda]'")):
        get_backend("cuda")


def _fake_cupy(count=None, error=None):
    def get_device_count():
        if error is not None:
            raise error
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize("device, fake, match", [
    ("cuda", _fake_cupy(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device")),
     "no usable CUDA GPU.*cudaErrorNoDevice"),
    ("cuda", _fake_cupy(count=0), "no CUDA GPU is visible"),
    ("cuda:2", _fake_cupy(count=1), r"only 1 CUDA GPU\(s\)"),
])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, device, fake, match):
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr("nnscratch.backend._CUDA", {})
    with pytest.raises(DeviceError, match=match):
        Sequential([Dense(4, 3)], device=device)


def _install_fake_cupy_with_gpus(monkeypatch, count):
    """A CuPy look-alike that reports ``count`` GPUs (enough for ``get_backend`` to build one)."""
    used = []
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: count),
        Device=lambda i: types.SimpleNamespace(use=lambda: used.append(i)))
    cupy.ndarray = type("FakeCupyArray", (), {"set": lambda self, a: None})
    cupy.asarray, cupy.asnumpy = np.asarray, np.asarray
    cupy.lib = types.SimpleNamespace(stride_tricks=np.lib.stride_tricks)
    special = types.ModuleType("cupyx.scipy.special")
    special.erf = None
    for name, module in [("cupy", cupy), ("cupyx", types.ModuleType("cupyx")),
                         ("cupyx.scipy", types.ModuleType("cupyx.scipy")),
                         ("cupyx.scipy.special", special)]:
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr("nnscratch.backend._CUDA", {})
    monkeypatch.setattr("nnscratch.backend._BY_ARRAY_TYPE", dict(backend_module._BY_ARRAY_TYPE))
    return cupy, used


def test_a_found_gpu_becomes_the_current_device_and_one_process_uses_one_gpu(monkeypatch):
    cupy, used = _install_fake_cupy_with_gpus(monkeypatch, count=2)
    gpu = get_backend("cuda:1")
    assert gpu.device == "cuda:1" and gpu.xp is cupy and used == [1]
    assert get_backend("cuda:1") is gpu                      # made once
    assert backend_of(cupy.ndarray()) is gpu
    with pytest.raises(DeviceError, match="already computes on cuda:1; one GPU per process"):
        get_backend("cuda:0")
    with pytest.raises(DeviceError, match="only 2 CUDA GPU"):
        monkeypatch.setattr("nnscratch.backend._CUDA", {})
        get_backend("cuda:2")


def test_device_code_calls_numpy_only_where_it_means_the_host():
    """The stand-in cannot see NumPy functions applied to device arrays (its arrays are NumPy
    arrays underneath), so the modules that run during training and prediction may call ``np.``
    only for the host-side work listed here; everything else must go through ``xp``."""
    host_side = {   # file: NumPy functions it may call, and why
        "layers/dense.py": {"zeros", "zeros_like", "random.default_rng"},  # initial weights
        "layers/conv.py": {"zeros", "zeros_like", "random.default_rng"},
        "layers/normalization.py": {"ones", "zeros", "zeros_like", "dtype", "random.default_rng"},
        "layers/dropout.py": {"empty", "random.default_rng"},        # the host draw buffer
        "layers/activations.py": {"isfinite"},                       # a constructor argument
        "layers/reshape.py": {"prod"},                               # of a shape
        "losses.py": {"diag", "outer"},                              # teaching
        "optim/base.py": {"sqrt"},                                   # of a Python float
        "training.py": {"errstate", "isfinite"},                     # on the host float loss
        "model.py": {"empty", "isfinite", "prod", "random.default_rng"},  # host buffer, checks
        "accel/dense.py": {"finfo"},                                 # dtype limits
        "accel/convblock.py": set(), "accel/planner.py": set(), "accel/optim.py": set(),
        "accel/losses.py": {"finfo", "log"},                         # dtype limits
        "callbacks.py": {"array"},     # best weights read from a checkpoint, on the host (copied
        "data/augment.py": set(),      # to the device by _restore through backend.asarray)
        "optim/sgd.py": set(), "optim/adam.py": set(), "optim/rmsprop.py": set(),
        "layers/pooling.py": set(),
        # a value assigned to params[name] (a user's host array, checked on the host, then moved);
        # initial gradients (the model moves them)
        "layers/base.py": {"asarray", "isfinite", "dtype", "zeros_like"},
        "accel/kernels.py": {"empty"},                               # dropout's host draw buffer
        "accel/im2col.py": set(), "accel/layout.py": set(),
    }
    wrong = {}
    for name, allowed in host_side.items():
        text = (SRC / name).read_text()
        code = "\n".join(line for line in text.splitlines()   # skip comments and doctest lines
                         if not line.lstrip().startswith(("#", ">>>")))
        called = set(re.findall(r"\bnp\.([a-z_]+(?:\.[a-z_]+)?)\(", code))
        called.discard("ndarray")
        if called - allowed:
            wrong[name] = sorted(called - allowed)
        if re.search(r"isinstance\([^)]*np\.ndarray", code):
            wrong.setdefault(name, []).append("isinstance(..., np.ndarray)")
    assert not wrong, f"NumPy calls on the device path: {wrong}"


@pytest.mark.parametrize("argv", [["train", "--device", "tpu"], ["cv", "--device", "cuda:x"],
                                  ["train", "--device", "cuda"]])
def test_cli_device_errors_are_one_line_and_exit_non_zero(argv, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr("nnscratch.backend._CUDA", {})
    code = main(argv + ["--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "device" in err
    assert not (tmp_path / "run").exists()   # failed before any work


def test_cuda_with_cupy_installed_but_no_gpu_is_a_clear_error():
    """With the real CuPy (when installed) on a machine without a usable GPU."""
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:
        pass
    with pytest.raises(DeviceError, match="no usable CUDA GPU|no CUDA GPU is visible"):
        get_backend("cuda")


def test_every_array_function_the_package_calls_exists_in_cupy():
    """The layer code calls ``xp.<name>``: each name must be part of CuPy's NumPy-like API."""
    cupy = pytest.importorskip("cupy")
    names = set()
    for path in SRC.rglob("*.py"):
        names |= set(re.findall(r"\bxp\.([a-z_]+(?:\.[a-z_]+)?)\(", path.read_text()))
    assert {"dot", "empty", "copyto", "take", "einsum"} <= names   # the scan found the calls
    def has(module, dotted):
        for part in dotted.split("."):
            if not hasattr(module, part):
                return False
            module = getattr(module, part)
        return True

    missing = [n for n in sorted(names) if not has(cupy, n)]
    assert not missing, f"not in CuPy: {missing}"


# -- the device code path, on the stand-in --------------------------------------------------------
def _twins(make_layers, fake_device, **kw):
    return (Sequential(make_layers(), seed=3, **kw),
            Sequential(make_layers(), seed=3, device=fake_device, **kw))


def _assert_same_training(cpu, dev, X, y, make_optimizer, **fit):
    """Train both twins alike (each with its own optimizer) and compare everything."""
    h_cpu = cpu.fit(X, y, optimizer=make_optimizer(), **fit)
    h_dev = dev.fit(X, y, optimizer=make_optimizer(), **fit)
    p, q = cpu.parameters()[0][0], dev.parameters()[0][0]
    assert type(p) is np.ndarray and isinstance(q, DeviceArray)
    assert all(isinstance(a, DeviceArray) for layer in dev.layers for a in layer.params.values())
    np.testing.assert_allclose(_to_numpy(q), p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_dev["loss"], h_cpu["loss"], rtol=1e-5)
    proba = dev.predict_proba(X[:7])
    assert type(proba) is np.ndarray                     # results come back to the host
    np.testing.assert_allclose(proba, cpu.predict_proba(X[:7]), rtol=1e-4, atol=1e-6)
    assert (dev.predict(X) == cpu.predict(X)).all() and dev.score(X, y) == cpu.score(X, y)


def test_seed_mlp_fast_path_trains_identically_on_the_device(fake_device, scaled):
    X, y = scaled[0][:300], scaled[1][:300]
    cpu, dev = _twins(lambda: [Dense(64, 32), ReLU(), Dense(32, 10)], fake_device)
    from nnscratch.accel.planner import training_stages
    (stack,) = training_stages(dev)
    assert stack.xp is fake_device.xp
    _assert_same_training(cpu, dev, X, y, lambda: SGD(lr=0.1), epochs=3, batch_size=32,
                          validation_data=(X[:50], y[:50]))


@pytest.mark.parametrize("act", [Tanh, Sigmoid, LeakyReLU, GELU, lambda: GELU("tanh")])
def test_mlp_with_every_activation_batch_norm_dropout_and_adam(fake_device, scaled, act):
    X, y = scaled[0][:256], scaled[1][:256]
    cpu, dev = _twins(lambda: [Dense(64, 24), BatchNorm(24), act(), Dropout(0.2), Dense(24, 10)],
                      fake_device)
    _assert_same_training(cpu, dev, X, y, lambda: Adam(lr=1e-3, weight_decay=1e-4, clip_norm=1.0),
                          epochs=2, batch_size=64, validation_split=0.2)


@pytest.mark.parametrize("opt", [lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
                                 lambda: RMSprop(lr=1e-3, momentum=0.5, weight_decay=1e-4),
                                 lambda: AdamW(lr=1e-3)])
def test_optimizers_and_mse_on_the_device(fake_device, scaled, opt):
    X, y = scaled[0][:128], scaled[1][:128]
    cpu, dev = _twins(lambda: [Dense(64, 16), ReLU(), Dense(16, 10), Tanh()], fake_device)
    _assert_same_training(cpu, dev, X, y, opt, epochs=2, batch_size=32, loss=MeanSquaredError())


@pytest.mark.parametrize("make_layers", [
    # batch-last convolution (C*k*k >= 32), max-pool, batch norm on images, dropout
    lambda: [Conv2D(1, 4, 3, padding=1), ReLU(), Conv2D(4, 8, 3, padding=1), BatchNorm(8), ReLU(),
             MaxPool2D(2), Dropout(0.1), Flatten(), Dense(128, 10)],
    # conv blocks (convblock.py): with the patch-covariance fold and pooling, then general
    # without pooling (it computes an input gradient), and a fold that computes one
    lambda: [Conv2D(1, 12, 3, padding=1), BatchNorm(12), MaxPool2D(2), ReLU(),
             Conv2D(12, 8, 3, padding=1), BatchNorm(8), ReLU(), Conv2D(8, 8, 1), BatchNorm(8),
             ReLU(), Flatten(), Dense(128, 10)],
    # batch-first convolution (C*k*k < 32) with stride, average pools
    lambda: [Conv2D(1, 6, 3, stride=2), Sigmoid(), AvgPool2D(2, stride=1), Conv2D(6, 4, 1),
             GlobalAvgPool2D(), Dense(4, 10)],
])
def test_cnns_with_augmentation_train_identically_on_the_device(fake_device, scaled, make_layers):
    X, y = scaled[0][:96], scaled[1][:96]
    cpu, dev = _twins(make_layers, fake_device, input_shape=(1, 8, 8))
    _assert_same_training(cpu, dev, X.reshape(-1, 1, 8, 8), y, lambda: Adam(lr=1e-3), epochs=2,
                          batch_size=32, augment=RandomShift((1, 8, 8), 1))


def test_save_load_and_checkpoints_from_the_device(fake_device, scaled, tmp_path):
    from nnscratch.callbacks import ModelCheckpoint
    from nnscratch.training import restore_training_state

    X, y = scaled[0][:128], scaled[1][:128]
    dev = Sequential([Dense(64, 16), BatchNorm(16), ReLU(), Dense(16, 10)], seed=1,
                     device=fake_device)
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}.safetensors"), every=1, training_state=True)
    dev.fit(X, y, epochs=2, batch_size=32, optimizer=Adam(lr=1e-3), callbacks=[ckpt])
    dev.save(tmp_path / "m.safetensors")
    for device in ("cpu", fake_device):       # a file from the device loads anywhere
        back = load_model(tmp_path / "m.safetensors", device=device)
        np.testing.assert_array_equal(back.predict_proba(X), dev.predict_proba(X))
    resumed = load_model(tmp_path / "e1.safetensors", device=fake_device)
    info, arrays = resumed.training_state
    assert {"0.m", "0.v"} <= set(arrays)           # the Adam moments were saved from the device
    opt = Adam(lr=1e-3)
    epoch, history = restore_training_state(resumed, opt, None)
    assert epoch == 1 and opt.t == info["optimizer"]["t"] > 0
    assert opt.state[0] and all(isinstance(v, DeviceArray) for v in opt.state[0].values())
    resumed.fit(X, y, epochs=2, batch_size=32, optimizer=opt, initial_epoch=1, history=history)
    np.testing.assert_allclose(resumed.predict_proba(X), dev.predict_proba(X), rtol=1e-5,
                               atol=1e-7)
