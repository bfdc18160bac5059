"""The CuPy backend on a real GPU. Skipped unless CuPy is installed and a CUDA GPU is visible.

(Without a GPU, ``test_backend.py`` runs the same device code path on a strict CuPy stand-in.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.backend import DeviceError, get_backend
from nnscratch.cli import main
from nnscratch.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from nnscratch.optim import SGD, Adam

try:
    CUDA = get_backend("cuda")
except DeviceError as exc:
    pytest.skip(f"no CUDA device: {exc}", allow_module_level=True)

cupy = CUDA.xp


def test_seed_mlp_on_the_gpu_reaches_the_seed_accuracy(scaled):
    X_train, y_train, X_test, y_test = scaled
    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0, device="cuda")
    assert model.xp is cupy and isinstance(model.layers[0].params["W"], cupy.ndarray)
    model.fit(X_train, y_train, epochs=1000, batch_size=32, optimizer=SGD(lr=0.1))
    pred = model.predict(X_test)
    assert type(pred) is np.ndarray
    assert (pred == y_test).mean() >= 0.96


def _cnn():
    return [Conv2D(1, 8, 3, padding=1), BatchNorm(8), ReLU(), Conv2D(8, 16, 3, padding=1), ReLU(),
            MaxPool2D(2), Dropout(0.2), Flatten(), Dense(256, 10)]


def test_cpu_and_gpu_train_the_same_cnn_in_float64(scaled):
    X, y = scaled[0][:256].reshape(-1, 1, 8, 8), scaled[1][:256]
    cpu = Sequential(_cnn(), input_shape=(1, 8, 8), seed=2, dtype="float64")
    gpu = Sequential(_cnn(), input_shape=(1, 8, 8), seed=2, dtype="float64", device="cuda")
    for model in (cpu, gpu):
        model.fit(X, y, epochs=3, batch_size=32, optimizer=Adam(lr=1e-3))
    np.testing.assert_allclose(cupy.asnumpy(gpu.parameters()[0][0]), cpu.parameters()[0][0],
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-7, atol=1e-9)


def test_cli_trains_on_the_gpu(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--epochs", "50", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["device"].startswith("cuda") and report["test_accuracy"] > 0.9
