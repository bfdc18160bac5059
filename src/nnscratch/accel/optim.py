"""Optimizer steps for the accelerated training loop: :func:`step_function`.

The optimizers' own ``step`` (``nnscratch.optim``) is the readable form. Here the same updates,
as one callable per epoch (the learning rate can change between epochs):

- plain SGD (``p -= lr * g``) on a small flat buffer: one BLAS ``axpy`` call (``y <- a*x + y``
  in place), the cheapest in-place update NumPy's stack offers;
- Adam and AdamW: the optimizer's own element-wise :meth:`~nnscratch.optim.Adam.update`, run on
  parts of each parameter's rows at once on the CPU's cores (:mod:`nnscratch.accel.threads`);
- anything else: the optimizer's ``step`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ..optim import SGD, Adam, AdamW
from .blas import host_blas
from .threads import parallel_of

#: above this many parameters the plain update uses NumPy, not SciPy's BLAS ``axpy``: SciPy ships
#: its own OpenBLAS, whose threads (it threads large vectors) then fight NumPy's OpenBLAS threads
#: for the cores, which made an epoch of a 784-256-10 network 15x slower on 2 cores
AXPY_MAX_SIZE = 8192


def _sgd_step(optimizer: SGD) -> Callable[[], None] | None:
    """Plain SGD as BLAS axpy on each (small) pair, ``-lr`` bound; None if a pair is too big."""
    lr = optimizer.plain_descent_lr()
    if lr is None:
        return None
    calls = []
    for p, g in optimizer.pairs:
        axpy = host_blas("axpy", p) if p.size <= AXPY_MAX_SIZE else None
        if axpy is None:
            return None
        # y <- a*x + y with positional (x, y, n, a): half the call cost of keywords
        calls.append(partial(axpy, g.reshape(-1), p.reshape(-1), p.size, -lr))
    if len(calls) == 1:
        return calls[0]

    def step() -> None:
        for call in calls:
            call()
    return step


def _adam_step(optimizer: Adam) -> Callable[[], None]:
    """Adam's step with each parameter's update split over its rows on the cores (CPU)."""
    par = parallel_of(optimizer.backend)

    def step() -> None:
        if optimizer.clip_norm is not None:
            optimizer.clip_gradients()
        optimizer.t += 1
        constants = optimizer.step_constants()
        for i in range(len(optimizer.pairs)):
            arrays = optimizer.arrays(i)
            # about 15 reads and writes per element
            par(lambda rows, arrays=arrays: optimizer.update(*(a[rows] for a in arrays),
                                                             *constants),
                len(arrays[0]), 15 * arrays[0].size)
    return step


def step_function(optimizer: Any) -> Callable[[], None]:
    """``optimizer``'s step for the current learning rate, as fast as can be (see above). Only
    exact SGD, Adam and AdamW are replaced: a subclass may have changed what a step does."""
    if type(optimizer) is SGD:
        fast = _sgd_step(optimizer)
        if fast is not None:
            return fast
    if type(optimizer) in (Adam, AdamW):
        return _adam_step(optimizer)
    return optimizer.step
