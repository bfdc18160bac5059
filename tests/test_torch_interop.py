"""PyTorch state dicts both ways (issue 18): ``nnscratch.interop.torch_state_dict``,
``load_torch_state_dict``, ``to_torch_module``. The tests against torch skip without it; the
NumPy form and the error handling are tested either way."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from archgen import generate_architectures, randomize

from nnscratch import Sequential
from nnscratch.errors import InputError, MissingDependencyError
from nnscratch.interop import load_torch_state_dict, torch_state_dict
from nnscratch.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU

ROOT = Path(__file__).resolve().parents[1]
ARCHS = generate_architectures(seed=81, count=20)


def small_cnn(seed=0):
    return Sequential([Conv2D(1, 4, 3, padding=1), BatchNorm(4), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(4 * 4 * 4, 6), BatchNorm(6), ReLU(), Dense(6, 3)],
                      input_shape=(1, 8, 8), seed=seed)


# -- without torch ---------------------------------------------------------------------------
def test_numpy_state_dict_names_and_layouts():
    model = randomize(small_cnn(), np.random.default_rng(0))
    sd = torch_state_dict(model, numpy=True)
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "5.weight", "5.bias",
                        "6.weight", "6.bias", "6.running_mean", "6.running_var",
                        "6.num_batches_tracked", "8.weight", "8.bias"]
    np.testing.assert_array_equal(sd["0.weight"], model.layers[0].params["W"])   # (O, C, kH, kW)
    np.testing.assert_array_equal(sd["5.weight"], model.layers[5].params["W"].T)  # (out, in)
    np.testing.assert_array_equal(sd["1.running_var"], model.layers[1].state["running_var"])
    assert sd["1.num_batches_tracked"].dtype == np.int64
    sd["0.weight"][...] = 0                          # a copy, not a view of the model
    assert model.layers[0].params["W"].any()


def test_numpy_round_trip_is_exact():
    src = randomize(small_cnn(1), np.random.default_rng(1))
    dst = small_cnn(2)
    load_torch_state_dict(dst, torch_state_dict(src, numpy=True))
    X = np.random.default_rng(2).normal(size=(5, 64)).astype(np.float32)
    np.testing.assert_array_equal(dst.decision_function(X), src.decision_function(X))


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop("5.weight"), "missing"),
    (lambda sd: sd.update({"9.weight": np.zeros(3)}), "unexpected"),
    (lambda sd: sd.update({"5.weight": np.zeros((64, 6), np.float32)}), r"shape \(64, 6\).*\(6, 64\)"),
    (lambda sd: sd["6.running_var"].__setitem__(0, np.nan), "finite"),
    (lambda sd: sd.update({"0.bias": np.array(["a"] * 4)}), "finite real numbers"),
])
def test_bad_state_dicts_raise_input_error_and_change_nothing(change, message):
    model = small_cnn()
    before = [p.copy() for layer in model.layers for p in (*layer.params.values(),
                                                           *layer.state.values())]
    sd = torch_state_dict(randomize(small_cnn(3), np.random.default_rng(3)), numpy=True)
    change(sd)
    with pytest.raises(InputError, match=message):
        load_torch_state_dict(model, sd)
    after = [p for layer in model.layers for p in (*layer.params.values(), *layer.state.values())]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="mapping"):
        load_torch_state_dict(model, [1, 2])


def test_without_torch_the_message_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match="pip install torch"):
        torch_state_dict(small_cnn())
    from nnscratch.interop import to_torch_module

    with pytest.raises(MissingDependencyError, match="pip install torch"):
        to_torch_module(small_cnn())


# -- against torch ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_logits(torch, net, X, input_shape):
    with torch.no_grad():
        return net(torch.from_numpy(X.reshape(-1, *input_shape))).numpy()


@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_nnscratch_to_torch_same_logits(arch, torch):
    from nnscratch.interop import to_torch_module

    model = arch.model
    X = np.random.default_rng(4).normal(size=(7, *model.input_shape)).astype(np.float32)
    net = to_torch_module(model)
    assert not net.training
    np.testing.assert_allclose(_torch_logits(torch, net, X, model.input_shape),
                               model.decision_function(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS[:8], ids=repr)
def test_torch_to_nnscratch_same_logits(arch, torch):
    """A torch model with torch's own initial weights and random running statistics, loaded here."""
    from nnscratch.interop import to_torch_module

    model = arch.model
    torch.manual_seed(0)
    net = to_torch_module(model, load_weights=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    fresh = Sequential([type(la)(**la.get_config()) for la in model.layers],
                       input_shape=model.input_shape, seed=99)
    load_torch_state_dict(fresh, net.state_dict())
    X = np.random.default_rng(5).normal(size=(6, *model.input_shape)).astype(np.float32)
    np.testing.assert_allclose(fresh.decision_function(X),
                               _torch_logits(torch, net, X, model.input_shape),
                               rtol=1e-5, atol=1e-5)


def test_float64_models_match_to_1e12(torch):
    from nnscratch.interop import to_torch_module

    for arch in generate_architectures(seed=7, count=4, dtype="float64"):
        model = arch.model
        X = np.random.default_rng(6).normal(size=(5, *model.input_shape))
        net = to_torch_module(model)
        assert next(net.parameters()).dtype == torch.float64
        np.testing.assert_allclose(_torch_logits(torch, net, X, model.input_shape),
                                   model.decision_function(X), rtol=1e-10, atol=1e-12)


def test_a_wrong_layout_is_caught(torch):
    """Negative control: loading W instead of W.T (as a careless port would) is not equal."""
    model = Sequential([Dense(5, 5), ReLU(), Dense(5, 3)], seed=0)
    sd = torch_state_dict(model)
    sd["0.weight"] = sd["0.weight"].T.contiguous()       # (5, 5): the shape cannot tell
    from nnscratch.interop import to_torch_module

    net = to_torch_module(model, load_weights=False)
    net.load_state_dict(sd)
    X = np.random.default_rng(7).normal(size=(4, 5)).astype(np.float32)
    assert np.abs(_torch_logits(torch, net.eval(), X, (5,)) - model.decision_function(X)).max() > 1e-3


def test_trained_in_torch_predicts_the_same_here(torch):
    """A CNN trained 2 epochs in PyTorch (a hand-written nn.Sequential), then loaded here."""
    from nnscratch.data import apply_preprocessing, digits_preprocessing, load_digits_split

    split = load_digits_split()
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 4 * 4, 16),
                        nn.BatchNorm1d(16), nn.GELU(), nn.Linear(16, 10))
    prep = digits_preprocessing()
    X = apply_preprocessing(split.X_train, prep, np.float32).reshape(-1, 1, 8, 8)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(split.y_train).long()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(2):
        for i in range(0, len(Xt), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(Xt[i:i + 32]), yt[i:i + 32]).backward()
            opt.step()
    net.eval()
    from nnscratch.layers import GELU, Dropout

    ours = Sequential([Conv2D(1, 8, 3, padding=1), BatchNorm(8), ReLU(), MaxPool2D(2), Flatten(),
                       Dropout(0.2), Dense(128, 16), BatchNorm(16), GELU(), Dense(16, 10)],
                      input_shape=(1, 8, 8), seed=0)
    load_torch_state_dict(ours, net.state_dict())
    X_test = apply_preprocessing(split.X_test, prep, np.float32)
    theirs = _torch_logits(torch, net, X_test, (1, 8, 8))
    np.testing.assert_allclose(ours.decision_function(X_test), theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X_test), theirs.argmax(axis=1))
    assert ours.score(X_test, split.y_test) > 0.8
    # and back: nnscratch's state dict reproduces torch's, entry for entry
    back = torch_state_dict(ours)
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[k].numpy(), v.numpy())


def test_docs_example_runs(torch):
    """docs/interop.md's PyTorch example, as written (its asserts are the checks)."""
    text = (ROOT / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "load_torch_state_dict(ours" in b)
    exec(compile(example, "docs/interop.md", "exec"), {})
