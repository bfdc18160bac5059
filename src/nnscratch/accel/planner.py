"""Which code trains a model: the layers' own, or accelerated kernels found by pattern.

The fit loop (:func:`nnscratch.training.fit`) asks for one thing, :func:`plan_training`, and gets
either ``None`` (acceleration off: it runs its plain loop over the layers) or a plan whose
``run_epoch`` trains one epoch. The planner reads the model's layer list, whatever built it
(Python, a TOML config, the command line, a model file), in three passes:

1. **Reorder** (:func:`reorder`): an activation that is non-decreasing (ReLU, LeakyReLU, Tanh,
   Sigmoid) followed by a ``MaxPool2D`` is run after the pool instead: ``max(f(z)) = f(max(z))``,
   the same function, with ``f`` applied to 4x fewer values. The gradients are the same too,
   except where rounding makes two activations of a window equal that were not equal before
   (then the gradient goes to the larger input rather than the first; ``f'`` is ~0 there).
2. **Fuse** runs of layers that form a known pattern into one kernel (``BLOCKS``, tried in order
   at each position): ``Dense (ReLU Dense)*`` stacks (:mod:`.dense`), ``Conv2D BatchNorm
   [MaxPool2D] ReLU`` (:mod:`.convblock`), ``Conv2D activation [MaxPool2D | AvgPool2D]``
   (:mod:`.convact`).
3. **Replace** each remaining layer by its fast kernel (:data:`nnscratch.accel.kernels.KERNELS`,
   by exact type), or keep the layer itself.

Then the loop around the steps: a model that is one ``Dense (ReLU Dense)*`` stack under softmax
cross-entropy trains whole epochs in :class:`.dense.SoftmaxEpochs`; any other model steps through
its stages in :class:`StepEpochs` (kept buffers, the loss's gradient from
:class:`.losses.SoftmaxGradient`, the optimizer's step from :func:`.optim.step_function`).

Every kernel computes what the layers it replaces compute (``tests/test_accelerate.py`` trains
many architectures both ways and compares the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import backend_of
from ..interrupts import STOP
from ..layers import Dense, Layer, LeakyReLU, MaxPool2D, ReLU, Sigmoid, Tanh
from ..losses import SoftmaxCrossEntropy
from . import convact, convblock
from .blas import take_rows_of
from .dense import FUSED_MAX_INPUTS, DenseReLUStack, SoftmaxEpochs, argmax_hits
from .kernels import KERNELS
from .losses import SoftmaxGradient
from .optim import step_function

#: activations f with f(max(z)) = max(f(z)): a max-pool after one may run before it
NON_DECREASING = (ReLU, LeakyReLU, Tanh, Sigmoid)


def reorder(layers: Sequence[Layer]) -> list[Layer]:
    """``layers`` with each (non-decreasing activation, ``MaxPool2D``) pair swapped."""
    out = list(layers)
    i = 0
    while i + 1 < len(out):
        if type(out[i]) in NON_DECREASING and type(out[i + 1]) is MaxPool2D:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


def output_shapes(layers: Sequence[Layer], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """One example's output shape after each layer."""
    shapes, shape = [], tuple(input_shape)
    for layer in layers:
        shape = tuple(layer.output_shape(shape))
        shapes.append(shape)
    return shapes


def _dense_blocks(model: Any) -> dict[int, tuple[Any, Any]]:
    """For each Dense layer (by ``id``) whose ``W`` and ``b`` lie one after the other in the
    model's flat buffers, the 1-D (params, grads) views holding them: ``[[W], [b]]``."""
    blocks = {}
    for layer, (p, g) in zip([la for la in model.layers if la.params],
                             model.parameter_blocks(), strict=True):
        if type(layer) is Dense and list(layer.params) == ["W", "b"] and p.size == layer.n_params:
            blocks[id(layer)] = (p, g)
    return blocks


def _match_dense(layers: Sequence[Layer], i: int) -> int | None:
    """End of the ``Dense (ReLU Dense)+`` run starting at ``i``, or None."""
    if type(layers[i]) is not Dense:
        return None
    stop = i + 1
    while stop + 1 < len(layers) and type(layers[stop]) is ReLU and type(layers[stop + 1]) is Dense:
        stop += 2
    return stop if stop - i >= 3 else None


def training_stages(model: Any) -> list[Any]:
    """What runs each layer of ``model`` in accelerated training: fused kernels, per-layer
    kernels and (where neither applies) the layers themselves, in order."""
    layers = reorder(model.layers)
    shapes = output_shapes(layers, model.input_shape)
    blocks = _dense_blocks(model)
    whole = len(model.layers) == 1 and type(model.layers[0]) is Dense
    stages: list[Any] = []
    i = 0
    while i < len(layers):
        stop = 1 if whole else _match_dense(layers, i)
        if stop is not None:
            dense = layers[i:stop:2]
            if all(id(d) in blocks for d in dense):
                stages.append(DenseReLUStack(dense, [blocks[id(d)] for d in dense]))  # type: ignore[arg-type]
                i = stop
                continue
        for module in (convblock, convact):
            stop = module.match(layers, i, shapes)
            if stop is not None:
                stages.append(module.build(layers[i:stop]))
                i = stop
                break
        else:
            kernel = KERNELS.get(type(layers[i]))
            stages.append(kernel(layers[i]) if kernel is not None else layers[i])
            i += 1
    return stages


def inference_stages(model: Any) -> list[Any]:
    """What runs each layer in prediction with acceleration on: its kernel, or itself."""
    return [KERNELS[type(la)](la) if type(la) in KERNELS else la for la in model.layers]


def _has_params(stage: Any) -> bool:
    """Does ``stage`` (a layer, a single-layer kernel or a fused block) train parameters?"""
    if isinstance(stage, Layer):
        return bool(stage.params)
    layer = getattr(stage, "layer", None)       # a single-layer kernel
    return bool(layer.params) if isinstance(layer, Layer) else True   # (fused blocks: yes)


class StepEpochs:
    """Epochs of steps through accelerated ``stages``: the plain loop's mathematics, with

    - the training set (inputs and one-hot labels side by side) shuffled once per epoch into a
      kept copy (``take``), the batches views into that copy, made once;
    - the loss's gradient from :class:`.losses.SoftmaxGradient` (softmax cross-entropy) and the
      optimizer's step from :func:`.optim.step_function`;
    - no loss computed per step: each batch's logits are copied into an epoch-long column-major
      array, and the epoch's mean loss and accuracy come from it in one pass (the running
      figures Keras and scikit-learn report, as the plain loop's);
    - no gradient of the input data.
    """

    def __init__(self, model: Any, stages: list[Any], loss: Any, optimizer: Any, X: Any, y: Any,
                 Y: Any, batch_size: int, augment: Any) -> None:
        xp = model.xp
        n, d = X.shape
        self.model, self.loss, self.optimizer, self.augment = model, loss, optimizer, augment
        self.y = y
        self.ys = xp.empty_like(y)                  # the labels in the order of the epoch
        self.XY = xp.concatenate([X, Y], axis=1)    # one take shuffles both
        self.XYs = xp.empty_like(self.XY)
        xp.copyto(self.XYs, self.XY)                # (the order of an epoch without shuffling)
        self.take_rows = take_rows_of(model.backend)
        # the epoch's logits, row i for example ys[i]; column-major because row-wise reductions
        # over 10 columns are 5x faster that way, and copying a batch into it costs the same
        self.Z = xp.empty((n, Y.shape[1]), dtype=X.dtype, order="F")
        self.batches = [(self.XYs[i:i + batch_size, :d], self.XYs[i:i + batch_size, d:],
                         self.Z[i:i + batch_size]) for i in range(0, n, batch_size)]
        self.gradient = (SoftmaxGradient() if type(loss) is SoftmaxCrossEntropy
                         else loss.gradient)
        if len(stages) == 1 and isinstance(stages[0], DenseReLUStack):
            self.forward, self.backward = stages[0].forward, stages[0].backward_params
        else:
            first = next(i for i, st in enumerate(stages) if _has_params(st))
            tail = [(st, i > first) for i, st in enumerate(stages) if i >= first][::-1]
            shape = tuple(model.input_shape)
            image = len(shape) > 1

            def forward(x: Any) -> Any:
                if image and x.ndim == 2:   # rows of C*H*W numbers -> (N, C, H, W), a view
                    x = x.reshape(x.shape[0], *shape)
                for st in stages:
                    x = st.forward(x, True)
                return x

            def backward(g: Any) -> None:
                for st, input_grad in tail:
                    g = st.backward(g, input_grad)
            self.forward, self.backward = forward, backward

    def run_epoch(self, perm: Any, rng: np.random.Generator) -> tuple[float, float | None]:
        if perm is not None:
            self.take_rows(self.XY, perm, self.XYs)
            self.take_rows(self.y, perm, self.ys)
        else:                         # (XYs holds the examples in order since __init__)
            self.ys = self.y
        forward, backward, gradient, augment = self.forward, self.backward, self.gradient, self.augment
        step, copyto = step_function(self.optimizer), self.model.xp.copyto
        for xb, yb, zb in self.batches:
            if augment is not None:   # e.g. random shifts, drawn from the run's generator
                xb = augment(xb, rng)
            z = forward(xb)           # logits of the batch
            copyto(zb, z)             # kept for the epoch's loss and accuracy
            backward(gradient(z, yb))  # dL/dZ, then back through the stages
            step()                    # parameters -= lr * gradients (or Adam, ...)
            if STOP[0]:               # Ctrl-C / SIGTERM: stop after this batch (the fit loop
                break                 # undoes the epoch; see nnscratch.interrupts)
        return evaluate_logits(self.loss, self.Z, self.ys)


def evaluate_logits(loss: Any, logits: Any, labels: Any) -> tuple[float, float | None]:
    """Mean loss and accuracy (``argmax == label``) of ``logits`` (n, k), argmax avoided; for
    real-valued targets ``labels`` (n, k) the loss alone (accuracy None), as the plain loop."""
    n = logits.shape[0]
    if labels.ndim == 2:
        return float(loss.per_example(logits, labels).sum()) / n, None
    xp = backend_of(logits).xp
    row_max = logits.max(axis=1)
    hits = argmax_hits(logits, labels, row_max, logits[xp.arange(n), labels], xp)
    return float(loss.per_example(logits, labels).sum()) / n, hits / n


class FusedEpochs:
    """Whole epochs of one ``Dense (ReLU Dense)*`` stack under softmax cross-entropy
    (:class:`.dense.SoftmaxEpochs`). Its steps use the softmax without the max shift; if an
    epoch's logits show that was inaccurate somewhere, the parameters and the optimizer are put
    back as they were at the start of the epoch and the epoch runs again with the shift, as
    every later epoch will. A signal (:mod:`nnscratch.interrupts`) is seen at the end of the
    epoch, not after a batch: the fused epoch has no batch boundary to stop at (it takes a few
    milliseconds)."""

    def __init__(self, model: Any, fused: SoftmaxEpochs, optimizer: Any, y: Any) -> None:
        self.model, self.fused, self.optimizer = model, fused, optimizer
        self.y = y
        # the parameters at the start of the epoch, for the rerun with the shift: one copy of
        # the model's flat buffer, kept (the fused epochs train views of that buffer)
        ((self.params, _),) = model.parameters()
        self.saved = model.xp.empty_like(self.params)

    def run_epoch(self, perm: Any, rng: np.random.Generator) -> tuple[float, float]:
        fused, optimizer, labels = self.fused, self.optimizer, self.y

        def epoch() -> tuple[bool, float, float]:   # (in range, loss, accuracy)
            fused.run(perm, optimizer)
            return fused.epoch_figures(perm, labels)

        if fused.safe:
            return epoch()[1:]
        copyto = self.model.xp.copyto
        copyto(self.saved, self.params)
        scalars, arrays = optimizer.state_dict()
        arrays = {name: a.copy() for name, a in arrays.items()}
        in_range, loss, accuracy = epoch()
        if in_range:
            return loss, accuracy
        copyto(self.params, self.saved)
        optimizer.load_state_dict(scalars, arrays)
        fused.safe = True
        return epoch()[1:]


def plan_training(model: Any, loss: Any, optimizer: Any, X: Any, y: Any, Y: Any,
                  batch_size: int, augment: Any = None,
                  stages: list[Any] | None = None) -> StepEpochs | FusedEpochs:
    """The accelerated epochs for training ``model`` (its optimizer bound) on checked ``X``,
    integer labels ``y`` and their one-hot rows ``Y`` (or real-valued targets ``y`` = ``Y``
    (n, k), under a loss such as mean squared error): an object whose ``run_epoch(perm, rng)``
    trains one epoch over the examples in order ``perm`` (None: as given) and returns its mean
    loss and accuracy."""
    stages = training_stages(model) if stages is None else stages
    if (len(stages) == 1 and isinstance(stages[0], DenseReLUStack) and augment is None
            and type(loss) is SoftmaxCrossEntropy and y.ndim == 1
            and stages[0].sizes[0][0] <= FUSED_MAX_INPUTS):
        return FusedEpochs(model, SoftmaxEpochs(stages[0], X, Y, batch_size), optimizer, y)
    return StepEpochs(model, stages, loss, optimizer, X, y, Y, batch_size, augment)


__all__ = ["FusedEpochs", "StepEpochs", "inference_stages", "plan_training", "reorder",
           "training_stages"]
