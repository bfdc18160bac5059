"""ONNX export of a :class:`~nnscratch.Sequential` (``model.to_onnx(path)``, ``nnscratch export``).

One graph node (or a few) per inference-time layer, in the layers' order, in float32:

============================  =================================================================
nnscratch layer               ONNX nodes (opset 17)
============================  =================================================================
Dense (W (n_in, n_out), b)    ``Gemm(X, W, b)``: ``Z = X @ W + b``, the weights as stored
ReLU, LeakyReLU, Tanh,        ``Relu``, ``LeakyRelu(alpha=negative_slope)``, ``Tanh``,
Sigmoid                       ``Sigmoid``
GELU("none")                  ``0.5 * Z * (1 + Erf(Z / sqrt(2)))``  (``Div``, ``Erf``, ``Add``,
                              ``Mul``: opset 20's ``Gelu`` is not used, older runtimes lack it)
GELU("tanh")                  ``0.5 * Z * (1 + Tanh(sqrt(2/pi) * (Z + 0.044715 * Z**3)))``
Dropout                       nothing: the identity at inference
BatchNorm (rows or images)    ``BatchNormalization`` (inference form: the running statistics,
                              the layer's ``eps``)
Conv2D                        ``Conv`` (strides, symmetric ``pads``; W (O, C, kH, kW) as stored)
MaxPool2D, AvgPool2D          ``MaxPool`` / ``AveragePool`` (no padding, floor output size)
GlobalAvgPool2D               ``GlobalAveragePool`` then ``Flatten``: (N, C, H, W) -> (N, C)
Flatten                       ``Flatten(axis=1)`` (row-major (C, H, W), as nnscratch)
============================  =================================================================

The graph (documented in ``docs/interop.md``):

- input ``"input"``, float32: ``("batch", *model.input_shape)`` -- ``(batch, 64)`` for an MLP
  on the digits, ``(batch, C, H, W)`` for an image model -- or, with ``flat_input=True`` for an
  image model, ``(batch, C*H*W)`` rows (a ``Reshape`` node makes the images). With
  ``raw_pixels=True`` the input is in the dataset's raw scale (0..16 for the digits, 0..255 for
  MNIST) and a first ``Mul`` node applies the model's recorded ``preprocessing["scale"]``.
- output ``"logits"``, float32 ``(batch, n_outputs)``; with ``probabilities=True`` a second
  output ``"probabilities"``: ``Softmax(logits, axis=1)``.
- The batch dimension is symbolic (``"batch"``): any number of examples per call.
- ``opset 17`` and ``ir_version 8``, loadable by every onnxruntime since 1.11.
- ``metadata_props``: the nnscratch version, the model's ``preprocessing`` (JSON), the input
  layout and scale, and the architecture (JSON), so a deployment can check what it was given.

Only :mod:`onnx` is needed to export (``pip install 'nnscratch[onnx]'``); it is imported when an
export runs, never by ``import nnscratch``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, MissingDependencyError

#: the operator set the graphs use and the IR version written (IR 8 goes with opset 17)
OPSET = 17
IR_VERSION = 8
INPUT, LOGITS, PROBABILITIES = "input", "logits", "probabilities"
INSTALL_HINT = "ONNX export needs the onnx package: pip install 'nnscratch[onnx]'"


def require_onnx() -> Any:
    """The onnx module, or :class:`~nnscratch.errors.MissingDependencyError` saying what to install."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return onnx


class _Graph:
    """Nodes and initializers being collected, with unique names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _gelu(g: _Graph, x: str, p: str, approximate: str) -> str:
    """GELU from opset-9 operators (both of PyTorch's forms, as :class:`~nnscratch.layers.GELU`)."""
    if approximate == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x], f"{p}.z2"), x], f"{p}.z3")
        inner = g.node("Add", [x, g.node("Mul", [cube, g.const(f"{p}.c3", 0.044715)], f"{p}.cz3")],
                       f"{p}.inner")
        u = g.node("Mul", [inner, g.const(f"{p}.k", math.sqrt(2.0 / math.pi))], f"{p}.u")
        phi2 = g.node("Tanh", [u], f"{p}.tanh")
    else:
        phi2 = g.node("Erf", [g.node("Div", [x, g.const(f"{p}.sqrt2", math.sqrt(2.0))],
                                     f"{p}.scaled")], f"{p}.erf")
    one_plus = g.node("Add", [phi2, g.const(f"{p}.one", 1.0)], f"{p}.one_plus")
    half_x = g.node("Mul", [x, g.const(f"{p}.half", 0.5)], f"{p}.half_x")
    return g.node("Mul", [half_x, one_plus], f"{p}.out")


def _layer_nodes(g: _Graph, layer: Any, x: str, p: str, arrays: dict[str, np.ndarray]) -> str:
    """Append the nodes computing ``layer`` on tensor ``x``; return the output's name.

    ``p`` prefixes every name (``layers.<i>``); ``arrays`` are the layer's params and state as
    float32 host arrays.
    """
    from ..config import LAYERS

    kind = type(layer).__name__
    if LAYERS.get(kind) is not type(layer):
        raise ExportError(f"{p} ({layer!r}): no ONNX export for layer type {kind} "
                          "(not one of nnscratch's layers)")
    if kind == "Dense":
        return g.node("Gemm", [x, g.const(f"{p}.W", arrays["W"]), g.const(f"{p}.b", arrays["b"])],
                      f"{p}.Gemm")
    if kind == "ReLU":
        return g.node("Relu", [x], f"{p}.Relu")
    if kind == "LeakyReLU":
        return g.node("LeakyRelu", [x], f"{p}.LeakyRelu", alpha=float(layer.negative_slope))
    if kind == "Tanh":
        return g.node("Tanh", [x], f"{p}.Tanh")
    if kind == "Sigmoid":
        return g.node("Sigmoid", [x], f"{p}.Sigmoid")
    if kind == "GELU":
        return _gelu(g, x, f"{p}.GELU", layer.approximate)
    if kind == "Dropout":
        return x
    if kind == "BatchNorm":
        names = [g.const(f"{p}.{k}", arrays[k])
                 for k in ("gamma", "beta", "running_mean", "running_var")]
        return g.node("BatchNormalization", [x, *names], f"{p}.BatchNormalization",
                      epsilon=float(layer.eps))
    if kind == "Conv2D":
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        return g.node("Conv", [x, g.const(f"{p}.W", arrays["W"]), g.const(f"{p}.b", arrays["b"])],
                      f"{p}.Conv", kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
    if kind in ("MaxPool2D", "AvgPool2D"):
        k, s = layer.kernel_size, layer.stride
        op = "MaxPool" if kind == "MaxPool2D" else "AveragePool"
        return g.node(op, [x], f"{p}.{op}", kernel_shape=[k, k], strides=[s, s])
    if kind == "GlobalAvgPool2D":
        pooled = g.node("GlobalAveragePool", [x], f"{p}.GlobalAveragePool")
        return g.node("Flatten", [pooled], f"{p}.Flatten", axis=1)
    if kind == "Flatten":
        return g.node("Flatten", [x], f"{p}.Flatten", axis=1)
    raise ExportError(f"{p} ({layer!r}): no ONNX export for layer type {kind}")


def to_onnx_model(model: Any, *, probabilities: bool = False, raw_pixels: bool = False,
                  flat_input: bool = False, check: bool = True) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (see the module docstring for the graph).

    ``check`` runs ``onnx.checker.check_model(full_check=True)`` on the result.
    Raises :class:`~nnscratch.errors.ExportError` for a layer with no ONNX form (or raw-pixel
    input for a model that records no preprocessing) and
    :class:`~nnscratch.errors.MissingDependencyError` when onnx is not installed.
    """
    for name, value in (("probabilities", probabilities), ("raw_pixels", raw_pixels),
                        ("flat_input", flat_input), ("check", check)):
        if not isinstance(value, (bool, np.bool_)):
            raise ExportError(f"{name} must be True or False, got {value!r}")
    onnx = require_onnx()
    from .. import __version__
    from ..config import layer_spec

    helper, TensorProto = onnx.helper, onnx.TensorProto
    g = _Graph(onnx)
    shape = tuple(int(d) for d in model.input_shape)
    image = len(shape) > 1
    in_shape: list[Any] = ["batch", int(np.prod(shape))] if image and flat_input else ["batch", *shape]
    x = INPUT
    scale = 1.0
    if raw_pixels:
        if "scale" not in (model.preprocessing or {}):
            raise ExportError("raw_pixels: the model records no preprocessing (pixel scale); "
                              "export it without raw_pixels and scale the inputs yourself")
        scale = float(model.preprocessing["scale"])
        # nnscratch's apply_preprocessing multiplies by the scale in the model's dtype: the same
        x = g.node("Mul", [x, g.const("preprocessing.scale", scale)], "preprocessing.Mul")
    if image and flat_input:
        x = g.node("Reshape", [x, g.const("input.image_shape", [-1, *shape], np.int64)],
                   "input.Reshape")
    to_numpy = model.backend.to_numpy
    for i, layer in enumerate(model.layers):
        arrays = {k: to_numpy(v).astype(np.float32)
                  for k, v in {**layer.params, **layer.state}.items()}
        x = _layer_nodes(g, layer, x, f"layers.{i}", arrays)
    n_out = int(model.n_outputs)
    g.nodes.append(helper.make_node("Identity", [x], [LOGITS], name=LOGITS))
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", n_out])]
    if probabilities:
        g.node("Softmax", [LOGITS], PROBABILITIES, axis=1)
        outputs.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT,
                                                     ["batch", n_out]))
    outputs[0].doc_string = "class scores before the softmax"
    if probabilities:
        outputs[1].doc_string = "softmax of the logits: rows sum to 1"
    inp = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_shape)
    inp.doc_string = (f"raw pixels (the dataset's scale; multiplied by {scale!r} first)"
                      if raw_pixels else "model inputs (pixels already scaled)")
    if image and flat_input:
        inp.doc_string += f", rows of {in_shape[1]} values"
    graph = helper.make_graph(g.nodes, "nnscratch.Sequential", [inp], outputs,
                              initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nnscratch", producer_version=__version__,
                              doc_string="exported by nnscratch " + __version__)
    proto.ir_version = IR_VERSION
    meta = {
        "nnscratch.version": __version__,
        "nnscratch.input_shape": json.dumps(list(shape)),
        "nnscratch.input_layout": "rows" if (not image or flat_input) else "images",
        "nnscratch.input_scale": "raw pixels" if raw_pixels else "preprocessed",
        "nnscratch.preprocessing": json.dumps(model.preprocessing or {}),
        "nnscratch.architecture": json.dumps([layer_spec(layer) for layer in model.layers]),
    }
    helper.set_model_props(proto, meta)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Any, path: str | os.PathLike[str], *, probabilities: bool = False,
                raw_pixels: bool = False, flat_input: bool = False) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (checked first); returns the path."""
    proto = to_onnx_model(model, probabilities=probabilities, raw_pixels=raw_pixels,
                          flat_input=flat_input)
    path = Path(path)
    from ..io import write_bytes_atomic

    write_bytes_atomic(path, proto.SerializeToString())   # temp file, fsync, os.replace
    return path
