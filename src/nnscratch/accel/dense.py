"""The training fast path of a ``Sequential`` made of ``Dense (ReLU Dense)*``: the bias trick.

The layer-by-layer path computes, for each Dense layer, ``Z = X @ W + b`` (two NumPy calls) and in
backward ``dW = X.T @ dZ`` and ``db = dZ.sum(axis=0)`` (two more). Appending a column of ones to
the layer's input folds the bias into the weights (the "bias trick")::

    [X, 1] @ [[W],      = X @ W + 1 b = X @ W + b         (one matrix product)
              [b]]

    [X, 1].T @ dZ       = [[X.T @ dZ],                     (one matrix product)
                           [dZ.sum(axis=0)]] = [[dW], [db]]

``[[W], [b]]`` is no copy: the model keeps every parameter in one flat buffer, each Dense layer's
``W`` (n_in * n_out numbers) directly followed by its ``b`` (n_out), which is exactly the
(n_in + 1, n_out) block ``[[W], [b]]`` in row-major order. The ones column is no copy either: each
ReLU writes its output straight into the left part of the next layer's ``[A, 1]`` buffer. Only
the network's input is copied once per batch into ``[X, 1]``.

The math is the same as the layers' own ``forward``/``backward`` (the tests check that both paths
give the same gradients); only the number of NumPy calls per step drops, from 12 to 9 for the
64-32-10 network, and the per-layer Python dispatch goes. Used by ``Sequential`` in training mode
when its layers have this shape; any other stack takes the layer-by-layer path.

Under softmax cross-entropy the fit loop goes one step further and hands whole epochs to
:class:`SoftmaxEpochs` (below), which stores the examples as columns and fuses the loss's
gradient into the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..layers import Dense, Layer, ReLU
from ..losses import cross_entropy_terms
from .blas import dot_of, host_blas, take_rows_of
from .optim import step_function


def applies(layers: Sequence[Layer]) -> bool:
    """True for ``Dense``, ``Dense ReLU Dense``, ``Dense ReLU Dense ReLU Dense``, ..."""
    return len(layers) % 2 == 1 and all(
        type(layer) is (Dense if i % 2 == 0 else ReLU) for i, layer in enumerate(layers))


class DenseReLUStack:
    """Forward and backward of ``Dense (ReLU Dense)*`` over blocks of the flat buffers.

    ``blocks[i]`` is the (params, grads) pair of 1-D views holding Dense layer i's ``W`` then
    ``b``. Buffers are kept per batch size; outputs are valid until the next call.
    """

    def __init__(self, dense_layers: Sequence[Dense],
                 blocks: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.sizes = [(d.n_in, d.n_out) for d in dense_layers]
        # [[W], [b]] and [[dW], [db]] as (n_in + 1, n_out) views of the flat buffers
        shapes = [(n_in + 1, n_out) for n_in, n_out in self.sizes]
        self.Wb = [p.reshape(shape) for (p, _), shape in zip(blocks, shapes, strict=True)]
        self.dWb = [g.reshape(shape) for (_, g), shape in zip(blocks, shapes, strict=True)]
        self.dtype = self.Wb[0].dtype
        self.backend = dense_layers[0].backend  # the model's backend (NumPy or CuPy)
        self.xp = self.backend.xp
        self.dot = dot_of(self.backend)
        self._plans: dict[int, tuple] = {}

    def _make_plan(self, m: int) -> tuple:
        """Buffers for batches of ``m`` and the per-layer argument tuples of the loops, made once."""
        dt, xp = self.dtype, self.xp
        layers = []
        for (n_in, n_out), Wb, dWb in zip(self.sizes, self.Wb, self.dWb, strict=True):
            A1 = xp.ones((m, n_in + 1), dt)   # [A, 1]: this layer's input and a column of ones
            layers.append({
                "A1": A1, "A": A1[:, :-1],    # A: the part the previous ReLU writes into
                "Z": xp.empty((m, n_out), dt),       # this layer's output
                "dA": xp.empty((m, n_in), dt),       # dL/dA
                "mask": xp.empty((m, n_in), dt),     # ReLU mask of A (unused for layer 0)
                "zeros": xp.zeros((m, n_out), dt),   # for ReLU(Z) = max(Z, 0)
                "Wb": Wb, "dWb": dWb, "A1T": A1.T, "WT": Wb[:-1].T})
        first, last = layers[0], layers[-1]
        hidden = [(L["A1"], L["Wb"], L["Z"], L["zeros"], nxt["A"])
                  for L, nxt in zip(layers[:-1], layers[1:], strict=True)]
        back = [(L["A1T"], L["dWb"], L["WT"], L["dA"], L["A"], L["mask"])
                for L in reversed(layers[1:])]
        plan = self._plans[m] = (first["A"], hidden, (last["A1"], last["Wb"], last["Z"]), back,
                                 (first["A1T"], first["dWb"], first["WT"], first["dA"]))
        return plan

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """The logits of the batch ``x`` (training only: the stack is never used to predict)."""
        plan = self._plan = self._plans.get(x.shape[0]) or self._make_plan(x.shape[0])
        x_in, hidden, (A1, Wb, Z), _, _ = plan
        xp = self.xp
        dot = self.dot
        xp.copyto(x_in, x)                               # [X, 1]
        for A1h, Wbh, Zh, zeros, A_next in hidden:
            dot(A1h, Wbh, out=Zh)                        # Z = [A, 1] @ [[W], [b]] = A @ W + b
            xp.maximum(Zh, zeros, out=A_next)            # next input: A = ReLU(Z), left of its ones
        dot(A1, Wb, out=Z)                               # the logits
        return Z

    def backward_params(self, grad_y: np.ndarray) -> None:
        """Fill the gradients of the parameters only (what a training step needs)."""
        g, xp, dot = grad_y, self.xp, self.dot
        for A1T, dWb, WT, dA, A, mask in self._plan[3]:
            dot(A1T, g, out=dWb)                         # [[dW], [db]] = [A, 1].T @ dZ
            dot(g, WT, out=dA)                           # dA = dZ @ W.T
            xp.sign(A, out=mask)                         # ReLU backward: dZ = dA * (A > 0)
            xp.multiply(dA, mask, out=dA)                #   (sign(A) is 1 where A > 0, else 0)
            g = dA
        A1T, dWb, _, _ = self._plan[4]
        dot(A1T, g, out=dWb)                             # first layer: [[dW], [db]]

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        self.backward_params(grad_y)
        if not input_grad:
            return None
        # dX of the first layer needs the gradient that reached it: recompute it from its dZ
        _, _, WT, dA = self._plan[4]
        dZ = self._plan[3][-1][3] if self._plan[3] else grad_y
        return self.xp.dot(dZ, WT, out=dA)                    # dX = dZ @ W.T


#: the fused epochs are used up to this many input features: they transpose the training set
#: every epoch and run the first layer's products in the transposed orientation, which on this
#: machine paid off up to 256 inputs (0.70-0.95x the step-by-step time for 64-256 inputs, up to
#: 0.89x for hidden layers of 1,024) and cost 1.03-1.33x from 512 on (MNIST's 784)
FUSED_MAX_INPUTS = 256


#: products up to this many multiply-adds may apply plain SGD's update themselves (SciPy's BLAS
#: ``gemm``): SciPy ships its own OpenBLAS, which runs products this small on one thread; larger
#: ones would start its threads, which fight NumPy's OpenBLAS threads for the cores (as
#: ``optim.sgd.AXPY_MAX_SIZE``)
UPDATE_GEMM_MAX = 2**18


def _update_gemm(stack: DenseReLUStack, batch_size: int) -> Callable[..., Any] | None:
    """SciPy's BLAS ``gemm`` for the parameters of a one-hidden-layer ``stack`` on the CPU whose
    products are all small, else ``None``."""
    Wb = stack.Wb
    if len(Wb) != 2 or any(w.size * batch_size > UPDATE_GEMM_MAX for w in Wb):
        return None
    # (C-contiguous, so that each w.T is the column-major C that gemm updates in place)
    return host_blas("gemm", Wb[0]) if Wb[1].flags.c_contiguous else None


class SoftmaxEpochs:
    r"""Whole training epochs of a ``Dense (ReLU Dense)*`` stack under softmax cross-entropy.

    The fit loop's generic step is ``forward``, ``loss.gradient``, ``backward``, ``step``: about
    20 NumPy calls for the seed network, several of them on strided views. This class runs the
    same mathematics in 13 calls per step (12 for the seed network under plain SGD, see 4.),
    all on contiguous arrays, by four changes:

    1. **Examples as columns.** Each batch is stored transposed, ``[X, 1].T`` of shape
       (n_in + 1, m), and every activation likewise: ``Z.T = [[W], [b]].T @ [A, 1].T``. The ReLU
       outputs and the masks are then contiguous blocks, where the row layout writes into a
       strided left part of ``[A, 1]``; NumPy is markedly faster on contiguous operands.
    2. **A softmax without its shift, checked once per epoch.** ``softmax(z) = exp(z) / sum(exp(z))``
       is exact mathematics; subtracting the maximum only guards ``exp`` against overflow
       (and all-zero sums). Here each step uses the plain form, the epoch's logits are kept, and
       at the end of the epoch ``figures`` checks that every one of them was in the range where
       the plain form is accurate. If one was not, the fit loop restores the parameters and the
       optimizer from the start of the epoch and runs it again with the textbook shift
       (``safe = True``, kept for the rest of the run). No step ever applies an inaccurate
       gradient; the check costs two reductions per epoch instead of two per step.
    3. **The 1/m of the mean folded into the data.** ``dL/dZ = (P - Y) / m`` is computed as
       ``E / S - Y/m`` where ``E = exp(Z)``, ``S = (m * ones(k, k)) @ E`` holds ``m`` times each
       column's sum in every row (one small matrix product, so the division needs no
       broadcasting), and the one-hot targets are stored already divided by ``m``.
    4. **Plain SGD inside the products** (one hidden layer, small products, on the CPU): BLAS
       ``gemm`` adds ``-lr * [A,1].T @ G.T`` to the parameters in the call that computes it
       (``_run_one_hidden_sgd``), instead of storing the gradient for the optimizer's ``step``.

    The logits and the ``S`` of each batch are written straight into the epoch's stores (no
    copy): the epoch's loss comes from them (see ``figures``) with no pass of its own over the
    logits' exponentials. One ``xp.take`` and one transposing copy per epoch lay out the
    shuffled batches.

    Per step, for the seed 64-32-10 network (``T`` is the transpose)::

        Z1.T = [[W1],[b1]].T @ [X,1].T      A.T = max(Z1.T, 0)         (into [A,1].T)
        Z.T  = [[W2],[b2]].T @ [A,1].T      E = exp(Z.T)   S = M @ E   G = E / S - Y.T/m
        [[dW2],[db2]] = [A,1].T @ G.T       dA.T = W2 @ G              dZ1.T = dA.T * sign(A.T)
        [[dW1],[db1]] = [X,1].T @ dZ1.T     parameters -= lr * gradients  (the optimizer's step;
                                            under plain SGD inside the two products above)

    The tests (``tests/test_fused.py``) check that a fit through this class gives the same
    weights and history as the step-by-step loop, with logits in range and out of it.
    """

    def __init__(self, stack: DenseReLUStack, X: np.ndarray, Y: np.ndarray,
                 batch_size: int) -> None:
        xp, dt = stack.xp, stack.dtype
        n, d = X.shape
        k = Y.shape[1]
        bs = min(batch_size, n)
        self.xp, self.n, self.k, self.bs = xp, n, k, bs
        self.dot = stack.dot
        self.take_rows = take_rows_of(stack.backend)
        self.safe = False     # True once an epoch had logits out of range: shift from then on
        info = np.finfo(dt)   # (see figures; exp(lo) = tiny * 1e8)
        self.logit_range = (math.log(float(info.max) / (k * bs)) - 4.0,
                            math.log(float(info.tiny)) + 18.4)
        F = d + 1 + k         # a column of the data: the input, a one, the one-hot target / m
        # the training set once, side by side: [X, 1, Y/bs]; the last (short) batch's targets
        # are rescaled to 1/m' each epoch in ``_fill``
        self.XY = xp.concatenate([X, xp.ones((n, 1), dt), Y * dt.type(1.0 / bs)], axis=1)
        self.XYs = xp.empty_like(self.XY)
        self.full, rest = divmod(n, bs)     # number of full batches, size of the short one
        sizes = [bs] * self.full + ([rest] if rest else [])
        self.data = xp.empty(n * F, dt)     # batch after batch, each (F, m) row-major
        self.logits = xp.empty(n * k, dt)   # the epoch's logits, batch after batch, each (k, m)
        self.sums = xp.empty(n * k, dt)     # and the steps' S (m * softmax denominators) likewise
        self.Z = xp.empty((n, k), dt, order="F")   # the same, example by example, for the loss
        self._Z_flat = self.Z.T.reshape(-1)        # (a view: Z[i, j] is _Z_flat[j * n + i])
        # for ``figures``: row maxima, 0..n-1, the loss of each example
        self._eval = (xp.empty(n, dt), xp.arange(n), xp.empty(n, dt))
        # (row 0 of each batch's S, m * sum(exp(z)) for every example: one (full, bs) view for
        # the full batches, one (rest,) for the short one; where their logarithms go among the
        # terms)
        terms, sums, full = self._eval[2], self.sums, self.full
        self._denominators = ([(sums[:full * k * bs].reshape(full, k, bs)[:, 0, :],
                               terms[:full * bs].reshape(full, bs))] if full else [])
        if rest:
            self._denominators.append((sums[full * k * bs:].reshape(k, rest)[0],
                                       terms[full * bs:]))
        # more for ``figures``: where each example's label logit sits in Z's column-major store,
        # that logit, log(m) of its batch, and (n, k) booleans for the tie check
        log_m = xp.full(n, math.log(bs), dt)
        log_m[full * bs:] = math.log(rest) if rest else 0.0
        self._figure_buffers = (xp.empty(n, np.intp), xp.empty(n, dt), log_m,
                                xp.empty(n, bool), xp.empty((n, k), bool, order="F"))
        self._labels_n: tuple[Any, Any] | None = None   # (labels, labels * n), see epoch_figures
        self.rest_scale = dt.type(bs / rest) if rest else None
        self.rest_Y = self.data[self.full * bs * F:].reshape(F, rest)[d + 1:] if rest else None
        Wb, dWb = stack.Wb, stack.dWb
        WbT = [w.T for w in Wb]
        W = [w[:-1] for w in Wb]              # the weights without the bias row
        shared: dict[int, tuple] = {}         # buffers for batches of m examples
        self.batches = []
        offset = 0
        for m in sizes:
            block = self.data[offset * F:(offset + m) * F].reshape(F, m)
            XT1, YT = block[:d + 1], block[d + 1:]
            ZT = self.logits[offset * k:(offset + m) * k].reshape(k, m)
            S = self.sums[offset * k:(offset + m) * k].reshape(k, m)
            offset += m
            if m not in shared:
                # [A, 1].T for each hidden layer's output: a row of ones under A.T
                HT = [xp.ones((n_out + 1, m), dt) for _, n_out in stack.sizes[:-1]]
                shared[m] = (
                    HT,
                    [xp.empty((n_out, m), dt) for _, n_out in stack.sizes[:-1]],   # Z.T
                    [xp.zeros((n_out, m), dt) for _, n_out in stack.sizes[:-1]],   # for max(Z, 0)
                    [xp.empty((n_out, m), dt) for _, n_out in stack.sizes[:-1]],   # dA.T
                    [xp.empty((n_out, m), dt) for _, n_out in stack.sizes[:-1]],   # mask
                    xp.empty((k, m), dt),                                            # E
                    xp.full((k, k), m, dt))                                          # M
            HT, ZhT, zeros, dAT, mask, E, M = shared[m]
            inputs = [XT1] + HT                  # [A, 1].T entering each Dense layer
            forward = [(WbT[i], inputs[i], ZhT[i], zeros[i], HT[i][:-1])
                       for i in range(len(HT))]
            # back through Dense layers L..2: (its input [A,1].T, the gradient at its output and
            # that gradient's transpose, its [[dW],[db]], W, then the ReLU below it: dA.T, A.T, mask)
            grads_out = [E] + dAT[::-1]          # dL/dZ.T at the output of layers L, L-1, ...
            backward = [(inputs[i], grads_out[j], grads_out[j].T, dWb[i], W[i], dAT[i - 1],
                         HT[i - 1][:-1], mask[i - 1], inputs[i].T)
                        for j, i in enumerate(range(len(HT), 0, -1))]
            last = (WbT[-1], inputs[-1], ZT)
            # (the last entries, [A,1] and [X,1] as column-major views, are for gemm)
            self.batches.append((forward, last, (E, S, M, YT), backward,
                                 (XT1, grads_out[-1].T, dWb[0], XT1.T)))
        # BLAS gemm for plain SGD's update inside the products (``_run_one_hidden_sgd``)
        self.update_gemm = _update_gemm(stack, bs)

    def _fill(self, perm: np.ndarray | None) -> None:
        """Lay the (shuffled) examples out batch after batch, each batch transposed."""
        xp, n, bs, full = self.xp, self.n, self.bs, self.full
        XY = self.XY
        if perm is not None:
            self.take_rows(XY, perm, self.XYs)
            XY = self.XYs
        F = XY.shape[1]
        if full:   # (full, bs, F) -> (full, F, bs) in one copy
            xp.copyto(self.data[:full * bs * F].reshape(full, F, bs),
                      XY[:full * bs].reshape(full, bs, F).transpose(0, 2, 1))
        if full * bs < n:
            rest = n - full * bs
            xp.copyto(self.data[full * bs * F:].reshape(F, rest), XY[full * bs:].T)
            self.rest_Y *= self.rest_scale        # targets / m' for the short batch

    def run(self, perm: np.ndarray | None, optimizer: Any) -> np.ndarray:
        """Train one epoch over the examples in order ``perm`` (``None``: as given), updating the
        parameters with ``optimizer`` (bound to them) after each batch. Returns the epoch's
        logits (n, k), row ``i`` for example ``perm[i]``, each computed with the weights of its
        batch's step.

        The ufuncs get their output as a positional argument (``exp(Z, E)`` is
        ``exp(Z, out=E)``): a keyword costs ~0.1 us more per call, 2-3% of a seed step.
        ``maximum`` keeps ``out=`` (NumPy deprecates a third positional argument there)."""
        xp = self.xp
        self._fill(perm)
        lr = optimizer.plain_descent_lr()
        if lr is not None and self.update_gemm is not None and not self.safe:
            self._run_one_hidden_sgd(lr)
            return self._epoch_logits()
        step = step_function(optimizer)
        dot, maximum, exp, divide = self.dot, xp.maximum, xp.exp, xp.divide
        subtract, multiply, sign = xp.subtract, xp.multiply, xp.sign
        safe = self.safe
        for forward, (WbT, HT, ZT), (E, S, M, YT), backward, (XT1, dZT, dWb, _) in self.batches:
            for WbTh, A1T, ZhT, zeros, AT in forward:
                dot(WbTh, A1T, ZhT)                   # Z.T = [[W],[b]].T @ [A,1].T
                maximum(ZhT, zeros, out=AT)           # A.T = ReLU(Z.T), above the ones row
            dot(WbT, HT, ZT)                          # logits.T, into the epoch's store
            if safe:   # the textbook shift: exp(Z - max) per example (column)
                subtract(ZT, ZT.max(axis=0), E)
                exp(E, E)
            else:
                exp(ZT, E)                            # E = exp(Z.T)
            dot(M, E, S)                              # S = m * column sums, in every row
            divide(E, S, E)                           # P / m
            subtract(E, YT, E)                        # G = (P - Y) / m = dL/dZ.T
            for A1T, G, GT, dWbh, W, dAT, AT, mask, _ in backward:
                dot(A1T, GT, dWbh)                    # [[dW],[db]] = [A,1].T @ G.T
                dot(W, G, dAT)                        # dA.T = W @ G
                sign(AT, mask)                        # ReLU backward: 1 where A > 0, else 0
                multiply(dAT, mask, dAT)              # dZ.T of the layer below
            dot(XT1, dZT, dWb)                        # first layer: [[dW1],[db1]]
            step()
        return self._epoch_logits()

    def _run_one_hidden_sgd(self, lr: float) -> None:
        """The loop of ``run`` for one hidden layer (the seed network) under plain SGD, without
        the shift. The same products, with the update inside two of them: BLAS ``gemm`` computes
        ``C <- alpha * A @ B + beta * C``, so with ``C`` the parameters, ``alpha = -lr`` and
        ``beta = 1`` one call does both ``[[dW],[db]] = [A,1].T @ G.T`` and ``p -= lr * g``::

            [[W2],[b2]] += -lr * [A,1].T @ G.T       (after dA.T = W2 @ G has used the old W2)
            [[W1],[b1]] += -lr * [X,1].T @ dZ1.T

        12 calls a step instead of 13, and the gradients are never stored (the gradient buffer
        keeps its last values). SciPy's ``gemm`` takes column-major arrays: the transposes of
        our row-major ones, so ``C`` is ``[[W],[b]].T`` and the products are written transposed
        (``C.T = G @ [A,1]``)."""
        xp = self.xp
        dot, maximum, exp, divide = self.dot, xp.maximum, xp.exp, xp.divide
        subtract, multiply, sign = xp.subtract, xp.multiply, xp.sign
        gemm, alpha = self.update_gemm, -lr
        for (((W1T, XT1, Z1T, zeros, AT),), (W2T, HT, ZT), (E, S, M, YT),
             ((_, G, GT, _, W2, dAT, _, mask, H1),), (_, dZT, _, X1)) in self.batches:
            dot(W1T, XT1, Z1T)                        # Z1.T = [[W1],[b1]].T @ [X,1].T
            maximum(Z1T, zeros, out=AT)               # A.T = ReLU(Z1.T), above the ones row
            dot(W2T, HT, ZT)                          # logits.T = [[W2],[b2]].T @ [A,1].T
            exp(ZT, E)                                # E = exp(Z.T)
            dot(M, E, S)                              # S = m * column sums
            divide(E, S, E)                           # P / m
            subtract(E, YT, E)                        # G = (P - Y) / m
            dot(W2, G, dAT)                           # dA.T = W2 @ G
            gemm(alpha, GT, H1, 1.0, W2T, 1, 0, 1)    # [[W2],[b2]] -= lr * [A,1].T @ G.T
            sign(AT, mask)                            # ReLU backward
            multiply(dAT, mask, dAT)                  # dZ1.T
            gemm(alpha, dZT, X1, 1.0, W1T, 1, 0, 1)   # [[W1],[b1]] -= lr * [X,1].T @ dZ1.T

    def _epoch_logits(self) -> np.ndarray:
        """The epoch's logits example by example: ``self.Z`` (n, k), column-major."""
        xp = self.xp
        # the logits example by example (a column-major (n, k) array): one copy
        n, k, bs, full = self.n, self.k, self.bs, self.full
        ZT = self.Z.T                                 # (k, n), row-major
        if full:
            xp.copyto(ZT[:, :full * bs].reshape(k, full, bs),
                      self.logits[:full * k * bs].reshape(full, k, bs).transpose(1, 0, 2))
        if full * bs < n:
            xp.copyto(ZT[:, full * bs:], self.logits[full * k * bs:].reshape(k, n - full * bs))
        return self.Z

    def figures(self, Z: np.ndarray, labels: np.ndarray) -> tuple[bool, float, float]:
        """``(in range, mean loss, accuracy)`` of an epoch's logits ``Z`` (n, k) for ``labels``.

        *In range*: were all the logits where the softmax without shift is accurate? The
        largest must leave ``m * sum(exp(z))`` finite (k terms, a margin of e^4); the largest of
        each example must keep its ``exp`` far above the smallest normal number, or the
        example's probabilities lose precision (and 0/0 when all its terms underflow). ``False``
        for NaN as well. Out of range (and not ``safe``), the loss and accuracy are ``nan``: the
        fit loop runs that epoch again with the shift (``planner.FusedEpochs``).

        The loss is softmax cross-entropy, ``logsumexp(z) - z_y`` averaged, and the accuracy
        that of argmax. For the epoch's own logits (``Z is self.Z``, see :meth:`epoch_figures`)
        the loss needs no pass over them: each step already computed ``S = m * sum(exp(z))`` for
        every example (of ``z - max`` in ``safe`` epochs), so ``logsumexp(z) = log(S) - log(m)``
        (``+ max``). Other logits go through ``losses.cross_entropy_terms``, as
        ``SoftmaxCrossEntropy.per_example``. All share the row maxima. ``self.Z`` must be,
        unchanged, what the last ``run`` returned (its ``S`` are those of that run)."""
        if Z is self.Z:
            return self.epoch_figures(None, labels)
        row_max, rows, _ = self._eval
        Z.max(axis=1, out=row_max)
        ok = self._in_range(row_max)
        if not (ok or self.safe):
            return False, math.nan, math.nan
        z_y = Z[rows, labels]
        loss = float(cross_entropy_terms(Z, row_max, z_y).sum()) / self.n
        return ok, loss, argmax_hits(Z, labels, row_max, z_y, self.xp) / self.n

    def epoch_figures(self, perm: np.ndarray | None, labels: np.ndarray) -> tuple[bool, float, float]:
        """``figures(Z, labels[perm])`` for the logits ``Z`` the last ``run(perm, ...)`` returned,
        ``labels`` in the training set's order: the label logits' places in ``Z``'s store come
        from one gather of ``labels * n`` (kept) in the epoch's order, plus the row numbers."""
        xp = self.xp
        index = self._figure_buffers[0]
        if self._labels_n is None or self._labels_n[0] is not labels:
            self._labels_n = (labels, labels.astype(np.intp) * self.n)
        if perm is None:
            xp.add(self._labels_n[1], self._eval[1], index)
        else:
            self.take_rows(self._labels_n[1], perm, index)
            xp.add(index, self._eval[1], index)
        return self._own_figures(index, lambda: labels if perm is None else labels[perm])

    def _in_range(self, row_max: np.ndarray) -> bool:
        hi, lo = self.logit_range
        return bool(float(row_max.max()) < hi) and bool(float(row_max.min()) > lo)

    def _own_figures(self, index: np.ndarray, labels: Callable[[], np.ndarray]) -> tuple[bool, float, float]:
        """``figures`` of ``self.Z``; ``index``: where each example's label logit sits in its
        column-major store (``label * n + row``); ``labels()``: the labels, for ties only."""
        xp, n, Z = self.xp, self.n, self.Z
        row_max, _, terms = self._eval
        _, z_y, log_m, is_max, at_max = self._figure_buffers
        Z.max(axis=1, out=row_max)
        ok = self._in_range(row_max)
        if not (ok or self.safe):
            return False, math.nan, math.nan
        self.take_rows(self._Z_flat, index, z_y)         # z_y = Z[i, label_i]
        hits = argmax_hits(Z, labels, row_max, z_y, xp, (is_max, at_max))
        for S0, log_s in self._denominators:
            xp.log(S0, log_s)                            # log(m * sum(exp(z)))  (z - max when safe)
        if self.safe:
            xp.add(terms, row_max, terms)
        xp.add(z_y, log_m, z_y)                          # loss = log(m sum(exp(z))) - (z_y + log(m))
        loss = float(xp.subtract(terms, z_y, terms).sum()) / n
        return ok, loss, hits / n


def argmax_hits(logits: np.ndarray, labels: Any, row_max: np.ndarray, z_y: np.ndarray,
                xp: Any, out: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """How many rows have ``argmax(logits[i]) == labels[i]``, given the row maxima and the
    labels' logits ``z_y``, without argmax along the rows of column-major logits (slow): the
    label's logit is its row's maximum and no row holds its maximum twice. With a tie or a NaN
    somewhere, argmax itself decides (the first index of the maximum, as ``predict``).
    ``labels`` may be a function returning them (called only then); ``out``: boolean buffers
    shaped as ``z_y`` and ``logits`` for the comparisons."""
    is_max, at_max = out if out is not None else (None, None)
    hits = int(xp.count_nonzero(xp.equal(z_y, row_max, out=is_max)))   # (faster than a sum)
    if int(xp.count_nonzero(xp.equal(logits, row_max[:, None], out=at_max))) != logits.shape[0]:
        hits = int(xp.count_nonzero(logits.argmax(axis=1) == (labels() if callable(labels)
                                                               else labels)))
    return hits
