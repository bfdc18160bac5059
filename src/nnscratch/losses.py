"""Loss functions. Targets are integer class labels (m,) or one-hot / probability rows (m, k)."""

from __future__ import annotations

import numpy as np

from .backend import backend_of

# These functions take their array module from their inputs (``backend_of``): NumPy arrays are
# computed with NumPy, CuPy arrays with CuPy.


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log softmax(z)`` row-wise, stable: ``(z - max) - log(sum(exp(z - max)))``."""
    xp = backend_of(z).xp
    s = z - z.max(axis=1, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    r"""Row-wise softmax ``p_ij = exp(z_ij) / sum_k exp(z_ik)``, computed as ``exp(z - max)``."""
    e = backend_of(z).xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_jacobian(p: np.ndarray) -> np.ndarray:
    r"""Jacobian of softmax for one row of probabilities ``p`` (k,): ``J = diag(p) - p p^T``.

    For teaching only: training never builds it, because composed with cross-entropy it collapses
    to ``dL/dz = p - y`` (see :class:`SoftmaxCrossEntropy`).
    """
    return np.diag(p) - np.outer(p, p)


def one_hot(labels: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
    """(m,) integer labels -> (m, n_classes) rows of zeros with a 1 at the label."""
    xp = backend_of(labels).xp
    Y = xp.zeros((labels.shape[0], n_classes), dtype=dtype)
    Y[xp.arange(labels.shape[0]), labels] = 1
    return Y


def _targets(target: np.ndarray, k: int, dtype: np.dtype) -> np.ndarray:
    """Integer labels (m,) as one-hot rows; rows already (m, k) (one-hot or soft) as they are."""
    return target.astype(dtype, copy=False) if target.ndim == 2 else one_hot(target, k, dtype)


def cross_entropy_terms(logits: np.ndarray, row_max: np.ndarray, z_y: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy of each example (m,), ``logsumexp(Z_i) - Z_i,y_i``, given the row
    maxima of ``logits`` (m, k) and the labels' logits ``z_y``: the shift by the row maximum
    keeps ``exp`` from overflowing."""
    xp = backend_of(logits).xp
    return xp.log(xp.exp(logits - row_max[:, None]).sum(axis=1)) + row_max - z_y


class SoftmaxCrossEntropy:
    r"""Softmax followed by cross-entropy, fused and computed from the logits.

    For logits ``Z`` (m, k) and one-hot targets ``Y`` (m, k), ``P = softmax(Z)`` row-wise::

        L  = -(1/m) * sum_i sum_j Y_ij * log P_ij
           = (1/m) * sum_i [ logsumexp(Z_i) - Z_i,y_i ]        (computed from log-softmax)
        dL/dZ = (P - Y) / m

    The row maximum is subtracted before ``exp`` so nothing overflows, and the loss is taken from
    log-softmax so ``log(0)`` never happens.
    """

    def __call__(self, logits: np.ndarray, target: np.ndarray) -> float:
        return self.forward(logits, target)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        """Mean loss over the batch; caches what :meth:`backward` needs."""
        xp = backend_of(logits).xp
        Y = _targets(xp.asarray(target), logits.shape[1], logits.dtype)
        logp = log_softmax(logits)
        self._p, self._Y = xp.exp(logp), Y
        return float(-(Y * logp).sum() / logits.shape[0])

    def backward(self) -> np.ndarray:
        """dL/dZ = (P - Y) / m for the batch of the last :meth:`forward`."""
        return (self._p - self._Y) / self._p.shape[0]

    def per_example(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Loss of each example (m,), for integer labels: ``logsumexp(Z_i) - Z_i,y_i``.

        Fast on column-major (Fortran-order) logits, which the fit loop uses for the epoch.
        """
        xp = backend_of(logits).xp
        return cross_entropy_terms(logits, logits.max(axis=1),
                                   logits[xp.arange(logits.shape[0]), labels])

    def gradient(self, logits: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """dL/dZ = (softmax(Z) - Y) / m for one-hot targets ``Y`` (m, k), without the loss.

        (In training with acceleration on, :class:`nnscratch.accel.losses.SoftmaxGradient`
        computes the same into kept buffers, with the max shift only where it is needed.)
        """
        return (softmax(logits) - Y) / logits.shape[0]

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy()"


class MeanSquaredError:
    r"""Mean squared error ``L = (1/m) * sum_i ||yhat_i - y_i||^2 / k`` (PyTorch's ``MSELoss``).

    ``dL/dyhat = 2 (yhat - y) / (m k)``. Integer labels are one-hot encoded first.
    """

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.forward(pred, target)

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        Y = _targets(backend_of(pred).xp.asarray(target), pred.shape[1], pred.dtype)
        self._diff = pred - Y
        return float((self._diff**2).mean())

    def backward(self) -> np.ndarray:
        return 2.0 * self._diff / self._diff.size

    def per_example(self, pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
        Y = _targets(labels, pred.shape[1], pred.dtype)
        return ((pred - Y) ** 2).mean(axis=1)

    def gradient(self, pred: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return 2.0 * (pred - Y) / pred.size

    def __repr__(self) -> str:
        return "MeanSquaredError()"
