"""``Sequential``: a stack of layers trained as one model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .backend import Backend, get_backend, resolve_dtype
from .callbacks import Callback, ProgressBar
from .config import build_layer, layer_spec
from .errors import InputError, ModelFileError
from .io import read_model_file, write_model_file
from .layers.base import Layer
from .losses import MeanSquaredError, SoftmaxCrossEntropy, softmax
from .optim.base import Optimizer
from .optim.schedules import Schedule
from .optim.sgd import SGD
from .training import History, fit
from .validation import (
    check_features,
    check_labels,
    check_positive_int,
    check_seed,
    check_targets,
    is_real_valued,
)


class Sequential:
    """Layers applied one after the other; the last one outputs the logits.

    >>> from nnscratch.layers import Dense, ReLU
    >>> model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
    >>> model
    Sequential(
      (0): Dense(64, 32, init='he_normal')
      (1): ReLU()
      (2): Dense(32, 10, init='he_normal')
    )

    All parameters live in one flat buffer and each layer's ``params["W"]``/``params["b"]`` is a
    view into it (gradients likewise), so an optimizer updates the whole model in one call
    whatever its depth. ``parameters()`` returns that single (params, grads) pair.

    Parameters
    ----------
    layers : sequence of Layer
    input_shape : tuple of int, optional
        One example's shape, e.g. ``(1, 8, 8)`` for images (N, C, H, W); by default the input
        size of the first Dense layer. Image models take (N, C, H, W) arrays or flat rows.
    seed : int or None
        Seeds the generator that initialises the weights and shuffles the data in ``fit``.
    dtype : "float32" (default) or "float64"
    device : "cpu" (default), "cuda" or "cuda:N"
        Where the model computes: NumPy on the CPU, or CuPy on a CUDA GPU (``pip install
        'nnscratch[cuda]'``). Chosen once, here; :class:`~nnscratch.backend.DeviceError` says why
        a device cannot be used. Inputs and outputs of ``fit``/``predict`` are NumPy arrays
        whatever the device; the weights are drawn on the host, so a seed gives the same
        initial model on every device.
    accelerate : bool (default True)
        Train (and predict) through :mod:`nnscratch.accel`: kernels found by pattern in the layer
        list that compute what the layers compute, faster. ``False`` runs only the layers', the
        loss's and the optimizer's own ``forward``/``backward``/``step``: the code to read and
        step through. The results are the same (to rounding); see ``docs/architecture.md``.
        An attribute: ``model.accelerate = False`` switches an existing model.
    """

    def __init__(self, layers: Sequence[Layer], *, input_shape: Sequence[int] | None = None,
                 seed: int | None = None, dtype: str | type = "float32",
                 device: str | Backend = "cpu", accelerate: bool = True) -> None:
        layers = list(layers) if isinstance(layers, Iterable) else layers
        if not isinstance(layers, list) or not layers:
            raise ValueError("Sequential needs a non-empty list of layers")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential layer {i} is not a Layer: {layer!r}")
            if any(layer is other for other in layers[:i]):
                raise ValueError(f"Sequential layer {i} ({layer!r}) appears twice; "
                                 "create a new layer for each position")
            if getattr(layer, "_owner", None) is not None:
                raise ValueError(f"Sequential layer {i} ({layer!r}) already belongs to another "
                                 "model; create a new layer")
        seed = check_seed(seed, "seed")
        self.accelerate = accelerate
        self.backend = get_backend(device)
        self.device, self.xp = self.backend.device, self.backend.xp
        self.layers = layers
        self.seed = seed
        self.dtype = resolve_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.input_shape = self._input_shape(input_shape)
        self.output_shapes = self._trace_shapes()
        self.n_features_in = int(np.prod(self.input_shape))
        if len(self.output_shapes[-1]) != 1:
            raise ValueError(f"the last layer must output one vector per example, it outputs "
                             f"shape {self.output_shapes[-1]} (add Flatten and Dense?)")
        self.n_outputs = self.output_shapes[-1][0]
        self._image_input = len(self.input_shape) > 1
        if not any(layer.params for layer in layers):
            raise ValueError("Sequential needs at least one layer with parameters (e.g. Dense)")
        for layer in layers:
            layer.use_backend(self.backend)
            layer.reset_parameters(self.rng, self.dtype)
            layer._owner = self  # type: ignore[attr-defined]
        self._flatten()
        #: (accelerate flag, training stages, inference stages) of nnscratch.accel, made once
        self._accel: dict[str, list[Any]] = {}
        self.history: History | None = None
        #: how raw inputs become model inputs (set by the CLI, saved in the model file)
        self.preprocessing: dict[str, Any] = {}
        #: free-form facts saved with the model (dataset, split, config, ...)
        self.metadata: dict[str, Any] = {}
        #: a name for each output (saved in the model file; default "0", "1", ...)
        self.class_names: list[str] | None = None
        #: (info, optimizer arrays) when loaded from a checkpoint that holds a training state
        self.training_state: tuple[dict[str, Any] | None, dict[str, np.ndarray]] = (None, {})

    @property
    def accelerate(self) -> bool:
        """Whether training and prediction run through :mod:`nnscratch.accel` (see above)."""
        return self._accelerate

    @accelerate.setter
    def accelerate(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"accelerate must be True or False, got {value!r}")
        self._accelerate = bool(value)

    # -- structure ------------------------------------------------------------------------------
    def _input_shape(self, given: Sequence[int] | None) -> tuple[int, ...]:
        """One example's shape: ``given``, or the input size of the first Dense layer."""
        if given is not None:
            shape = tuple(given) if isinstance(given, (tuple, list)) else None
            if not shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                    and d > 0 for d in shape):
                raise ValueError(f"input_shape must be a tuple of positive integers, got {given!r}")
            return tuple(int(d) for d in shape)
        for layer in self.layers:
            if hasattr(layer, "n_in"):
                return (layer.n_in,)  # type: ignore[attr-defined]
            if hasattr(layer, "in_channels"):
                break
        raise ValueError("Sequential needs input_shape=(C, H, W) (or a Dense layer that fixes "
                         "the input size)")

    def _trace_shapes(self) -> list[tuple[int, ...]]:
        shapes, shape = [], self.input_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as exc:
                raise ValueError(f"layer {i} ({layer!r}) does not fit: {exc}") from None
            shapes.append(shape)
        return shapes

    def _flatten(self) -> None:
        """Move every parameter (and gradient) into one contiguous buffer, as views."""
        total = sum(p.size for layer in self.layers for p in layer.params.values())
        to_numpy = self.backend.to_numpy
        host = np.empty(total, dtype=self.dtype)   # filled on the host, then moved to the device
        offset = 0
        for layer in self.layers:
            for p in layer.params.values():
                host[offset:offset + p.size] = to_numpy(p).reshape(-1)
                offset += p.size
            layer.bind_state({k: self.backend.asarray(v) for k, v in layer.state.items()})
        self._flat_params = self.backend.asarray(host)   # (on the CPU: host itself)
        self._flat_grads = self.xp.zeros(total, dtype=self.dtype)
        offset = 0
        self._blocks = []  # each layer's (params, grads) as 1-D views, in layer order
        for layer in self.layers:
            start = offset
            views: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
            for name, p in layer.params.items():
                views[0][name] = self._flat_params[offset:offset + p.size].reshape(p.shape)
                views[1][name] = self._flat_grads[offset:offset + p.size].reshape(p.shape)
                offset += p.size
            layer.bind_params(*views)   # (``layer.params[name] = a`` would copy a into the array)
            if layer.params:
                self._blocks.append((self._flat_params[start:offset],
                                     self._flat_grads[start:offset]))
        self._accel = {}   # (kernels hold views of the old buffers)

    def _check_flat(self) -> None:
        """Re-flatten if a user replaced a parameter array (``layer.params["W"] = ...``)."""
        for layer in self.layers:
            for name, p in layer.params.items():
                if p.base is not self._flat_params or layer.grads[name].base is not self._flat_grads:
                    if p.dtype != self.dtype:
                        raise ValueError(f"{layer!r} params[{name!r}] has dtype {p.dtype}, "
                                         f"the model computes in {self.dtype}")
                    self._flatten()
                    return

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(all parameters, all gradients)]: one flat pair the layers' arrays are views of."""
        self._check_flat()
        return [(self._flat_params, self._flat_grads)]

    def named_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``("layers.<i>.<name>", param, grad)`` for every parameter, layer by layer."""
        return [(f"layers.{i}.{k}", p, layer.grads[k])
                for i, layer in enumerate(self.layers) for k, p in layer.params.items()]

    def parameter_blocks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each layer with parameters, in order, the 1-D (params, grads) views of the flat
        buffers that hold its arrays one after the other (``W`` then ``b`` for Dense)."""
        self._check_flat()
        return list(self._blocks)

    @property
    def n_params(self) -> int:
        return int(self._flat_params.size)

    # -- forward and backward ---------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Logits for the (already checked) batch ``x``, computed in the model's dtype: each
        layer's ``forward`` in turn. (Prediction with acceleration on runs each layer's fast
        kernel instead, where it has one; training's accelerated plan is :meth:`training_plan`.)
        """
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if self._image_input and x.ndim == 2:  # rows of C*H*W numbers -> (N, C, H, W), a view
            x = x.reshape(x.shape[0], *self.input_shape)
        stages = self.layers
        if not training and self.accelerate:
            stages = self._accel_stages("inference")
        for layer in stages:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate dL/dlogits through every layer (after ``forward(x, training=True)``);
        returns dL/dx (None if not asked).

        With ``input_grad=False`` the layers before the first trainable one are skipped and that
        one computes no input gradient: nothing needs the gradient of the data.
        """
        first = next(i for i, layer in enumerate(self.layers) if layer.params)
        for i in range(len(self.layers) - 1, -1, -1):
            if i < first and not input_grad:
                return None
            grad_y = self.layers[i].backward(grad_y, input_grad or i > first)
        return grad_y

    # -- training -------------------------------------------------------------------------------
    def _accel_stages(self, kind: str) -> list[Any]:
        """The accelerated stages for ``kind`` ("training" or "inference"), made once."""
        stages = self._accel.get(kind)
        if stages is None:
            from . import accel

            make = accel.training_stages if kind == "training" else accel.inference_stages
            stages = self._accel[kind] = make(self)
        return stages

    def training_plan(self, loss: Any, optimizer: Optimizer, X: Any, y: Any, Y: Any,
                      batch_size: int, augment: Any = None) -> Any:
        """The accelerated epochs (:func:`nnscratch.accel.plan_training`) for training on checked
        ``X``, labels ``y`` and one-hot ``Y`` with ``optimizer`` (bound to :meth:`parameters`);
        ``None`` when :attr:`accelerate` is off: the fit loop then runs the layers itself."""
        if not self.accelerate:
            return None
        from . import accel

        self._check_flat()
        return accel.plan_training(self, loss, optimizer, X, y, Y, batch_size, augment,
                                   stages=self._accel_stages("training"))

    def fit(self, X: Any, y: Any, *, epochs: int = 1, batch_size: int = 32,
            optimizer: Optimizer | None = None, loss: Any = None,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            schedule: Schedule | None = None, verbose: bool = False, initial_epoch: int = 0,
            history: History | None = None, augment: Any = None) -> History:
        """Mini-batch training; returns (and stores in ``self.history``) the :class:`History`.

        ``X`` (n, n_features) numbers; ``y`` (n,) integer labels in ``0..n_outputs-1``, or,
        with ``loss=MeanSquaredError()``, real-valued targets (regression): ``y`` of shape (n,)
        or (n, n_outputs) for a model with one output, float rows (n, n_outputs) otherwise
        (one-hot rows stay class labels). Regression records no accuracy in the History.
        ``optimizer`` defaults to ``SGD(lr=0.01)``, ``loss`` to :class:`SoftmaxCrossEntropy`.
        ``validation_split`` holds out that fraction of (X, y), stratified, as validation data.
        ``schedule`` sets the learning rate epoch by epoch (:mod:`nnscratch.optim.schedules`).
        ``augment(xb, rng)`` transforms each training batch (e.g. ``data.RandomShift``).
        ``verbose=True`` shows a progress bar (on a terminal).
        """
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
        for cb in callbacks or []:
            if not isinstance(cb, Callback):
                raise ValueError(f"callbacks must be nnscratch Callback objects, got {cb!r}")
        if optimizer is None:
            optimizer = SGD(lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer must be an nnscratch Optimizer, got {optimizer!r}")
        loss = SoftmaxCrossEntropy() if loss is None else loss
        if not all(hasattr(loss, a) for a in ("forward", "backward", "gradient", "per_example")):
            raise ValueError(f"loss must be an nnscratch loss, got {loss!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be an nnscratch Schedule, got {schedule!r}")
        X = check_features(X, self.n_features_in, self.dtype, input_shape=self.input_shape)
        # real-valued targets under mean squared error (regression), else class labels
        regression = isinstance(loss, MeanSquaredError) and is_real_valued(y, self.n_outputs)

        def targets(t: Any, n: int, name: str = "y") -> np.ndarray:
            if regression:
                return check_targets(t, n, self.n_outputs, self.dtype, name)
            return check_labels(t, n, self.n_outputs, name)

        y = targets(y, X.shape[0])
        val = None
        if validation_split:
            ok = isinstance(validation_split, float) and 0 < validation_split < 1
            if not ok:
                raise ValueError(f"validation_split must be a fraction in (0, 1), "
                                 f"got {validation_split!r}")
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            from sklearn.model_selection import train_test_split

            try:
                # seeded by the model's seed, not drawn from its generator: a resumed run
                # must see the same split and the same random stream
                X, Xv, y, yv = train_test_split(X, y, test_size=validation_split,
                                                stratify=None if regression else y,
                                                random_state=self.seed or 0)
            except ValueError as exc:
                raise InputError(f"validation_split={validation_split}: {exc}") from None
            val = (Xv, yv)
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise InputError("validation_data must be a pair (X_val, y_val)")
            Xv = check_features(validation_data[0], self.n_features_in, self.dtype, "X_val",
                                input_shape=self.input_shape)
            val = (Xv, targets(validation_data[1], Xv.shape[0], "y_val"))
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(ProgressBar())
        to_device = self.backend.asarray   # checked on the host, trained on the model's device
        X, y = to_device(X), to_device(y)
        if val is not None:
            val = (to_device(val[0]), to_device(val[1]))
        self.history = fit(self, X, y, n_classes=self.n_outputs, epochs=epochs,
                           batch_size=batch_size, optimizer=optimizer, loss=loss, rng=self.rng,
                           validation_data=val, shuffle=shuffle, callbacks=cbs,
                           schedule=schedule, initial_epoch=initial_epoch, history=history,
                           augment=augment)
        return self.history

    # -- prediction -----------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """Logits (n, n_outputs) for inputs ``X`` (n, n_features) or one example (n_features,)."""
        # (no np.errstate here: it would cost more than the whole forward pass of one digit)
        X = check_features(X, self.n_features_in, self.dtype, input_shape=self.input_shape)
        z = self.backend.to_numpy(self.forward(self.backend.asarray(X), False))
        if not np.isfinite(z).all():
            raise InputError("the model's outputs overflow for these inputs (values too large?)")
        return z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, n_outputs): softmax of the logits, rows sum to 1."""
        return softmax(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each example, integer labels of shape (n,)."""
        return self.decision_function(X).argmax(axis=1)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y)."""
        pred = self.predict(X)
        return float((pred == check_labels(y, pred.shape[0], self.n_outputs)).mean())

    # -- saving ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str],
             training_state: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None) -> None:
        """Write the model (architecture, weights, preprocessing, metadata) as safetensors.

        ``training_state`` (info, arrays), written by checkpoints, adds what resuming needs.
        """
        write_model_file(path, *self.file_payload(training_state))

    def file_payload(self, training_state: tuple[dict[str, Any], dict[str, np.ndarray]] | None
                     = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, header): what :meth:`save` writes, as NumPy arrays and a JSON-able dict
        (:func:`model_from_payload` is its inverse)."""
        from . import __version__

        tensors = {name: p for name, p, _ in self.named_parameters()}
        tensors.update({f"layers.{i}.state.{k}": v for i, layer in enumerate(self.layers)
                        for k, v in layer.state.items()})
        meta = self.metadata if isinstance(self.metadata, dict) else {}
        split = meta.get("split") if isinstance(meta.get("split"), dict) else None
        header = {"nnscratch_version": __version__,
                  "architecture": [layer_spec(layer) for layer in self.layers],
                  "dtype": self.dtype.name, "seed": self.seed, "input_shape": list(self.input_shape),
                  "preprocessing": self.preprocessing,
                  "class_names": [str(c) for c in (self.class_names
                                                   or range(self.n_outputs))],
                  "dataset": (split or {}).get("dataset"), "split": split,
                  "config": meta.get("config"), "metadata": self.metadata}
        if training_state is not None:
            info, arrays = training_state
            header["training_state"] = info
            tensors.update({k if k.startswith("callbacks.") else f"optimizer.{k}": v
                            for k, v in arrays.items()})
        to_numpy = self.backend.to_numpy
        return {k: to_numpy(v) for k, v in tensors.items()}, header

    def to_onnx(self, path: str | os.PathLike[str], *, probabilities: bool = False,
                raw_pixels: bool = False, flat_input: bool = False) -> Any:
        """Write the model as an ONNX file (``pip install 'nnscratch[onnx]'``); returns its path.

        Input ``"input"`` (batch, *input_shape) float32 (``flat_input``: rows of C*H*W for an
        image model; ``raw_pixels``: in the dataset's raw scale, the recorded preprocessing is
        the graph's first node); output ``"logits"`` and, with ``probabilities``,
        ``"probabilities"``. See :mod:`nnscratch.interop.onnx_export` and ``docs/interop.md``.
        """
        from .interop.onnx_export import export_onnx

        return export_onnx(self, path, probabilities=probabilities, raw_pixels=raw_pixels,
                           flat_input=flat_input)

    # -- display --------------------------------------------------------------------------------
    def summary(self) -> None:
        """Print a table of layers, output shapes and parameter counts (as Keras does)."""
        rows = []
        for i, (layer, shape) in enumerate(zip(self.layers, self.output_shapes, strict=True)):
            rows.append((f"({i}) {layer!r}", str((None, *shape)), f"{layer.n_params:,}"))
        w = [max(len(r[c]) for r in rows + [("Layer", "Output", "Params")]) for c in range(3)]
        lines = [f"{'Layer':<{w[0]}}  {'Output':<{w[1]}}  {'Params':>{w[2]}}", "-" * (sum(w) + 4)]
        lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}" for a, b, c in rows]
        lines += ["-" * (sum(w) + 4),
                  f"Total parameters: {self.n_params:,} ({self.dtype.name}, on {self.device})"]
        print("\n".join(lines))

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


def load_model(path: str | os.PathLike[str], device: str | Backend = "cpu") -> Sequential:
    """Read a model written by :meth:`Sequential.save`; bad files raise :class:`ModelFileError`.

    ``device`` is where the loaded model computes (see :class:`Sequential`); files are the same
    whichever device wrote them.
    """
    backend = get_backend(device)   # a bad device fails before the file is read
    tensors, header = read_model_file(path)
    return model_from_payload(tensors, header, path, backend)


def model_from_payload(tensors: dict[str, np.ndarray], header: dict[str, Any],
                       path: Any = "model", device: str | Backend = "cpu") -> Sequential:
    """The model that :meth:`Sequential.file_payload` described (``path`` names it in errors,
    which are :class:`ModelFileError`)."""
    backend = get_backend(device)
    if not isinstance(header, dict) or not isinstance(header.get("architecture"), list):
        raise ModelFileError(f"{path}: corrupt model header (no architecture list)")
    # the architecture's size, worked out from its specs before any layer allocates it: a
    # header may claim a layer far larger than the file's tensors (which were checked to fit)
    stored = sum(int(t.size) for k, t in tensors.items()
                 if not k.startswith(("optimizer.", "callbacks.")))
    needed = sum(_spec_elements(spec) for spec in header["architecture"])
    if needed > stored and needed > 1 << 20:   # (small ones get the exact message below)
        raise ModelFileError(f"{path}: tensors do not match the architecture (it needs "
                             f"{needed:,} values, the file holds {stored:,})")
    try:
        layers = [build_layer(spec) for spec in header["architecture"]]
        model = Sequential(layers, input_shape=header.get("input_shape"), seed=header.get("seed"),
                           dtype=header.get("dtype", "float32"), device=backend)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: invalid architecture in model header ({exc})") from None
    expected = {name: p for name, p, _ in model.named_parameters()}
    expected.update({f"layers.{i}.state.{k}": v for i, layer in enumerate(model.layers)
                     for k, v in layer.state.items()})
    # the training state of a checkpoint: optimizer arrays (by their own names) and callbacks'
    optimizer = {k[len("optimizer."):] if k.startswith("optimizer.") else k: v
                 for k, v in tensors.items() if k.startswith(("optimizer.", "callbacks."))}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(("optimizer.", "callbacks."))}
    if set(expected) != set(tensors):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {extra[0]}"
        raise ModelFileError(f"{path}: tensors do not match the architecture ({what})")
    for name, t in [*tensors.items(), *optimizer.items()]:
        if t.dtype != model.dtype:   # no silent casting: the file says what it holds
            raise ModelFileError(f"{path}: tensor {name} is stored as {t.dtype}, the model "
                                 f"computes in {model.dtype}")
        if not np.isfinite(t).all():
            raise ModelFileError(f"{path}: tensor {name} contains NaN or infinite values")
    for name, p in expected.items():
        t = tensors[name]
        if t.shape != p.shape:
            raise ModelFileError(
                f"{path}: tensor {name} has shape {t.shape}, the architecture needs {p.shape}")
        p[...] = backend.asarray(t)
    model.training_state = (header.get("training_state"), optimizer)
    model.preprocessing = dict(header.get("preprocessing") or {})
    model.metadata = dict(header.get("metadata") or {})
    names = header.get("class_names")
    if names is not None:
        if not (isinstance(names, list) and len(names) == model.n_outputs
                and all(isinstance(c, str) for c in names)):
            raise ModelFileError(f"{path}: corrupt model header (class_names is not a list of "
                                 f"{model.n_outputs} names)")
        model.class_names = list(names)
    return model


def _spec_elements(spec: Any) -> int:
    """The number of parameter and state values a layer spec asks for, without building it
    (0 for specs :func:`build_layer` will refuse anyway)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        return 0
    cfg = spec["config"]

    def num(key: str) -> int:
        v = cfg.get(key)
        return v if type(v) is int and v > 0 else 0

    kind = spec.get("type")
    if kind == "Dense":
        return num("n_in") * num("n_out") + num("n_out")
    if kind == "Conv2D":
        k = cfg.get("kernel_size")
        ks = [k, k] if type(k) is int else k if isinstance(k, list) else []
        area = 1
        for d in ks[:2]:
            area *= d if type(d) is int and d > 0 else 0
        return num("out_channels") * num("in_channels") * area + num("out_channels")
    if kind == "BatchNorm":
        return 4 * num("num_features")
    return 0
