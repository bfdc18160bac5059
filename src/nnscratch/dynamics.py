"""Training dynamics: why a network trains, or does not, seen once per epoch.

:class:`TrainingDynamics` is a callback. At the end of every epoch it records, per layer with
weights ``W``:

- ``grad_norm``: ``||dL/dW||`` (Frobenius norm) on a fixed *probe batch* of training examples,
  computed by the layers' own ``forward``/``backward`` (the plain code, whatever path trained);
- ``update_ratio``: ``||W_after - W_before|| / ||W_before||`` over the epoch (from the
  parameters before and after it: rules of thumb put a healthy value near ``1e-3`` per step);

per ReLU layer:

- ``dead_relu``: the fraction of units (features, or channels of images) whose output is 0 for
  every example of the probe batch (a dead unit gets no gradient and stops learning);

and, at up to ``n_histograms`` epochs spread over the run, a histogram of each ``W``.

To stay cheap on long runs of a small network (the seed task: 1000 epochs of about 1 ms), the
figures are taken at up to ``max_points`` epochs spread evenly over the run (every epoch for
runs of up to 200 epochs, every 5th for 1000) and always at the first and last epoch; the
update ratio is then over the sampled epoch alone (the parameters are copied just before it).

The probe changes nothing in training: the model's generator (dropout masks) and every layer's
``state`` (batch norm's running statistics) are put back as they were, and the gradients it
leaves in ``layer.grads`` are overwritten by the next step. It does not change which path
trains either: with acceleration on, the accelerated epochs still run; the probe only reads the
parameters between them. Its cost on the seed task is in ``docs/performance.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .callbacks import Callback


def _norm(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.vdot(a, a).real))


class TrainingDynamics(Callback):
    """Record gradient norms, update-to-weight ratios, dead ReLUs and weight histograms.

    ``X_probe`` and ``y_probe`` are a few training examples (already preprocessed, e.g. the
    first 256) and ``loss`` the training loss. The results are in :attr:`record` (plain lists,
    ready for JSON) after training.
    """

    def __init__(self, X_probe: np.ndarray, y_probe: np.ndarray, loss: Any,
                 n_histograms: int = 10, bins: int = 40, max_points: int = 200) -> None:
        if n_histograms < 1 or bins < 2 or max_points < 1:
            raise ValueError("n_histograms and max_points must be >= 1 and bins >= 2, got "
                             f"{n_histograms}, {max_points}, {bins}")
        self.X_probe, self.y_probe, self.loss = X_probe, np.asarray(y_probe), loss
        self.n_histograms, self.bins, self.max_points = n_histograms, bins, max_points
        self.record: dict[str, Any] = {}

    # -- the layers we watch ---------------------------------------------------------------
    def _weighted(self) -> list[tuple[str, Any]]:
        return [(f"{i}.{type(layer).__name__}", layer) for i, layer in enumerate(self.model.layers)
                if "W" in layer.params]

    def _relus(self) -> list[tuple[int, str]]:
        return [(i, f"{i}.{type(layer).__name__}") for i, layer in enumerate(self.model.layers)
                if type(layer).__name__ == "ReLU"]

    def _weights(self) -> dict[str, np.ndarray]:
        to_numpy = self.model.backend.to_numpy
        return {name: np.array(to_numpy(layer.params["W"]), dtype=np.float64)
                for name, layer in self._weighted()}

    def on_train_begin(self, epochs: int) -> None:
        model = self.model
        # the probe batch on the model's device and in its dtype, once: (N, C, H, W) images for
        # an image model (as Sequential.forward reshapes rows of C*H*W numbers)
        x = np.asarray(self.X_probe, dtype=model.dtype)
        if len(model.input_shape) > 1 and x.ndim == 2:
            x = x.reshape(x.shape[0], *model.input_shape)
        self._x, self._y = model.backend.asarray(x), model.backend.asarray(self.y_probe)
        start = len(self.run.get("history", ()) or ())
        todo = max(1, epochs - start)
        step = max(1, todo // self.n_histograms)
        self._hist_epochs = {start + e for e in range(step, todo + 1, step)} | {epochs}
        every = max(1, -(-todo // self.max_points))
        self._sampled = {start + e for e in range(every, todo + 1, every)} | {start + 1, epochs}
        self._before = self._weights()
        if not self.record:
            self.record = {"probe_examples": int(len(self.y_probe)), "epochs": [],
                           "grad_norm": {n: [] for n, _ in self._weighted()},
                           "update_ratio": {n: [] for n, _ in self._weighted()},
                           "dead_relu": {n: [] for _, n in self._relus()},
                           "histograms": {n: [] for n, _ in self._weighted()}}
        # histograms at the start, so the picture shows where the weights came from
        if start == 0:
            self._histograms(0, self._before)

    def _histogram(self, epoch: int, w: np.ndarray) -> dict[str, Any]:
        counts, edges = np.histogram(w, bins=self.bins)
        return {"epoch": epoch, "counts": counts.tolist(),
                "edges": [float(f"{e:.6g}") for e in edges]}

    def _histograms(self, epoch: int, weights: dict[str, np.ndarray]) -> None:
        for name, w in weights.items():
            self.record["histograms"][name].append(self._histogram(epoch, w))

    def _probe(self) -> tuple[dict[str, float], dict[str, float]]:
        """Gradient norms and dead-ReLU fractions on the probe batch, training left untouched."""
        model = self.model
        rng_state = model.rng.bit_generator.state
        saved = [{k: model.xp.array(v, copy=True) for k, v in layer.state.items()}
                 for layer in model.layers]
        try:
            h, dead = self._x, {}
            relus = dict(self._relus())
            for i, layer in enumerate(model.layers):
                h = layer.forward(h, True)
                if i in relus:
                    alive = model.backend.to_numpy(h != 0)
                    axes = tuple(a for a in range(alive.ndim) if a != 1)
                    dead[relus[i]] = float(1.0 - alive.any(axis=axes).mean())
            self.loss.forward(h, self._y)
            model.backward(self.loss.backward())
            grads = {name: _norm(model.backend.to_numpy(layer.grads["W"]))
                     for name, layer in self._weighted()}
        finally:
            model.rng.bit_generator.state = rng_state
            for layer, state in zip(model.layers, saved, strict=True):
                for k, v in state.items():
                    layer.state[k][...] = v
        return grads, dead

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if epoch not in self._sampled:
            if epoch + 1 in self._sampled:   # the start of a sampled epoch
                self._before = self._weights()
            return
        after = self._weights()
        rec = self.record
        rec["epochs"].append(epoch)
        for name, w in after.items():
            ratio = _norm(w - self._before[name]) / max(_norm(self._before[name]), 1e-30)
            rec["update_ratio"][name].append(float(f"{ratio:.4g}"))
        grads, dead = self._probe()
        for name, value in grads.items():
            rec["grad_norm"][name].append(float(f"{value:.4g}"))
        for name, value in dead.items():
            rec["dead_relu"][name].append(round(value, 4))
        if epoch in self._hist_epochs:
            self._histograms(epoch, after)
        self._before = after

    def on_train_end(self) -> None:
        """A last histogram where training stopped early (early stopping, a callback)."""
        rec = self.record
        if rec.get("epochs") and self.model is not None:
            last = rec["epochs"][-1]
            final = self._weights()
            for name, hists in rec["histograms"].items():
                if not hists or hists[-1]["epoch"] != last:
                    hists.append(self._histogram(last, final[name]))
