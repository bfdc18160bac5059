"""A public switch (issue 14): ``accelerate=False`` trains through the readable code only.

Counting spies wrap the methods of each layer *instance*, of the loss instance and of the
optimizer instance. With acceleration off, every batch of every epoch must run each layer's own
``forward`` and ``backward`` (in order, and in reverse), the loss's ``forward`` and ``backward``
and the optimizer's ``step``; with it on, the spies show that the accelerated kernels bypass
some of them (so this test can fail). Then the command line: ``--no-accelerate`` is recorded and
trains the same weights as ``--accelerate``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.cli import main
from nnscratch.io import read_model_file
from nnscratch.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
)
from nnscratch.losses import SoftmaxCrossEntropy
from nnscratch.optim import SGD, Adam

N, BATCH, EPOCHS = 100, 32, 2          # 4 batches (32, 32, 32, 4) per epoch
STEPS = math.ceil(N / BATCH) * EPOCHS


def seed_net(accelerate: bool) -> Sequential:
    return Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0, dtype="float64",
                      accelerate=accelerate)


def conv_net(accelerate: bool) -> Sequential:
    return Sequential([Conv2D(1, 8, 3, padding=1), BatchNorm(8), ReLU(), MaxPool2D(2),
                       Conv2D(8, 16, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.3),
                       Dense(64, 10)], input_shape=(1, 8, 8), seed=0, dtype="float64",
                      accelerate=accelerate)


def dropout_first_net(accelerate: bool) -> Sequential:
    """A layer without parameters before the first trainable one: its backward is skipped."""
    return Sequential([Dropout(0.2), Dense(64, 16), ReLU(), Dense(16, 10)], seed=0,
                      dtype="float64", accelerate=accelerate)


NETS = {"seed": (seed_net, lambda: SGD(lr=0.1)), "conv": (conv_net, lambda: Adam(lr=0.01)),
        "dropout-first": (dropout_first_net, lambda: SGD(lr=0.1, momentum=0.9))}


@pytest.fixture(scope="module")
def data(split):
    from nnscratch.data import apply_preprocessing, digits_preprocessing

    X = apply_preprocessing(split.X_train[:N], digits_preprocessing(), "float64")
    return X, split.y_train[:N]


def spy(obj, method: str, label: str, log: list) -> None:
    """Replace ``obj.method`` (on the instance) by a wrapper that logs (label, method, args)."""
    real = getattr(obj, method)

    def wrapper(*args, **kw):
        log.append((label, method, args[1:] + tuple(kw.values())))
        return real(*args, **kw)
    setattr(obj, method, wrapper)


def train_with_spies(build, make_optimizer, X, y, accelerate: bool):
    model, loss, optimizer = build(accelerate), SoftmaxCrossEntropy(), make_optimizer()
    log: list = []
    for i, layer in enumerate(model.layers):
        spy(layer, "forward", f"layer{i}", log)
        spy(layer, "backward", f"layer{i}", log)
    for method in ("forward", "backward", "gradient"):
        spy(loss, method, "loss", log)
    spy(optimizer, "step", "optimizer", log)
    model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, loss=loss)
    return model, log


def _count(log, label, method):
    return sum(1 for who, m, _ in log if (who, m) == (label, method))


@pytest.mark.parametrize("name", list(NETS))
def test_plain_mode_runs_every_layers_own_code_on_every_batch(name, data):
    build, make_optimizer = NETS[name]
    model, log = train_with_spies(build, make_optimizer, *data, accelerate=False)
    layers = model.layers
    first = next(i for i, la in enumerate(layers) if la.params)   # first trainable layer
    # one batch: each layer forward in order, the loss, each layer backward in reverse down to
    # the first trainable layer (which is asked for no input gradient), then one step
    batch = ([(f"layer{i}", "forward", True) for i in range(len(layers))]
             + [("loss", "forward", None), ("loss", "backward", None)]
             + [(f"layer{i}", "backward", i > first) for i in range(len(layers) - 1, first - 1, -1)]
             + [("optimizer", "step", None)])
    assert len(log) == STEPS * len(batch), (name, len(log), STEPS * len(batch))
    for k, (who, method, args) in enumerate(log):
        want_who, want_method, flag = batch[k % len(batch)]
        assert (who, method) == (want_who, want_method), (k, log[k], batch[k % len(batch)])
        if who.startswith("layer"):   # forward(x, training=True); backward(g, input_grad)
            assert args[-1] is flag, (k, who, method, args[-1], flag)
    for i in range(len(layers)):
        assert _count(log, f"layer{i}", "forward") == STEPS
        assert _count(log, f"layer{i}", "backward") == (STEPS if i >= first else 0), i
    assert _count(log, "loss", "forward") == _count(log, "loss", "backward") == STEPS
    assert _count(log, "loss", "gradient") == 0
    assert _count(log, "optimizer", "step") == STEPS
    if name == "dropout-first":
        assert first == 1 and _count(log, "layer0", "backward") == 0


def test_accelerated_mode_bypasses_the_layers(data):
    """The spies can fail: with acceleration on, the seed network trains in fused epochs (no
    Dense.forward/backward, no loss.backward, no optimizer.step of the instance), and the conv
    net's first block (Conv2D BatchNorm ReLU MaxPool2D) trains in a ConvBlock."""
    _, log = train_with_spies(*NETS["seed"], *data, accelerate=True)
    for i in range(3):
        assert _count(log, f"layer{i}", "backward") == 0
        assert _count(log, f"layer{i}", "forward") == 0
    assert _count(log, "loss", "backward") == 0 and _count(log, "optimizer", "step") == 0

    model, log = train_with_spies(*NETS["conv"], *data, accelerate=True)
    for i in range(4):   # Conv2D BatchNorm ReLU MaxPool2D: one ConvBlock
        assert _count(log, f"layer{i}", "forward") == 0, i
        assert _count(log, f"layer{i}", "backward") == 0, i
    assert _count(log, "loss", "backward") == 0


def test_switching_an_existing_model_off(data):
    """``model.accelerate = False`` after building: the plain loop, from the next fit on."""
    model = seed_net(True)
    model.fit(*data, epochs=1, batch_size=BATCH, optimizer=SGD(lr=0.1))
    model.accelerate = False
    calls = []
    real = model.layers[2].backward
    model.layers[2].backward = lambda g, input_grad=True: calls.append(1) or real(g, input_grad)
    model.fit(*data, epochs=1, batch_size=BATCH, optimizer=SGD(lr=0.1))
    assert len(calls) == math.ceil(N / BATCH)
    with pytest.raises(ValueError, match="accelerate"):
        model.accelerate = "no"


# -- the command line ------------------------------------------------------------------------------
def _train(tmp_path, flag: str) -> tuple[dict, dict]:
    out = tmp_path / flag.strip("-")
    assert main(["train", flag, "--epochs", "2", "--dtype", "float64", "--out", str(out),
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    tensors, _ = read_model_file(out / "model.safetensors")
    return metrics, tensors


def test_cli_no_accelerate_records_and_trains_the_same(tmp_path):
    plain_metrics, plain = _train(tmp_path, "--no-accelerate")
    acc_metrics, acc = _train(tmp_path, "--accelerate")
    assert plain_metrics["config"]["accelerate"] is False
    assert acc_metrics["config"]["accelerate"] is True
    assert set(plain) == set(acc)
    for name in plain:
        # float64; the fused epochs' bias trick and BLAS axpy round differently (~1e-15)
        scale = float(np.abs(plain[name]).max())
        np.testing.assert_allclose(acc[name], plain[name], rtol=1e-9, atol=1e-9 * scale,
                                   err_msg=name)
    assert acc_metrics["test_accuracy"] == plain_metrics["test_accuracy"]


def test_cli_cv_no_accelerate(tmp_path, capsys):
    assert main(["cv", "--no-accelerate", "--folds", "2", "--epochs", "2", "--out",
                 str(tmp_path / "cv"), "--quiet"]) == 0
    assert "2-fold CV accuracy" in capsys.readouterr().out
