"""Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ..backend import host_blas
from ..validation import check_positive_float
from .base import Optimizer

#: above this many parameters the plain update uses NumPy, not SciPy's BLAS ``axpy``: SciPy ships
#: its own OpenBLAS, whose threads (it threads large vectors) then fight NumPy's OpenBLAS threads
#: for the cores, which made an epoch of a 784-256-10 network 15x slower on 2 cores
AXPY_MAX_SIZE = 8192


def _axpy(p: np.ndarray):  # type: ignore[no-untyped-def]
    """BLAS ``axpy`` (y <- a*x + y, in place) for a small contiguous float32/64 NumPy ``p``, else
    ``None`` (also for CuPy arrays: SciPy's BLAS runs on the host)."""
    return host_blas("axpy", p) if p.size <= AXPY_MAX_SIZE else None


class SGD(Optimizer):
    r"""Gradient descent on each (param ``p``, grad ``g``) pair, as PyTorch's ``torch.optim.SGD``.

    With ``lr`` = eta, ``momentum`` = mu, ``weight_decay`` = lambda and velocity ``v`` (zero-free:
    ``v = g`` at the first step)::

        g = g + lambda * p                  (L2 weight decay, if lambda > 0)
        v = mu * v + g                      (if mu > 0)
        g = g + mu * v   if nesterov  else  g = v
        p = p - eta * g

    Plain SGD (mu = lambda = 0) is just ``p -= eta * g``; for small models it is done with one BLAS
    ``axpy`` call on the model's flat parameter buffer, the cheapest in-place update NumPy's stack
    offers (see :data:`AXPY_MAX_SIZE` for large ones).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, clip_norm)
        self.momentum = check_positive_float(momentum, "SGD momentum", allow_zero=True)
        self.weight_decay = check_positive_float(weight_decay, "SGD weight_decay", allow_zero=True)
        if not isinstance(nesterov, bool):
            raise ValueError(f"SGD nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("SGD nesterov=True needs momentum > 0")
        self.nesterov = nesterov
        self._plain: list | None = None

    def get_config(self) -> dict[str, Any]:
        cfg = {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
               "weight_decay": self.weight_decay}
        return cfg if self.clip_norm is None else {**cfg, "clip_norm": self.clip_norm}

    def bind(self, pairs) -> None:  # type: ignore[no-untyped-def]
        super().bind(pairs)
        self._plain: list | None = None

    def _plain_updates(self) -> list:
        """For each pair, ``(f, args)`` such that ``f(*args, -lr)`` does ``p -= lr * g`` in
        place: BLAS axpy where it can."""
        updates, xp = [], self.xp
        for p, g in self.pairs:
            axpy = _axpy(p)
            if axpy is not None:
                # y <- a*x + y with positional (x, y, n, a): half the call cost of keywords
                updates.append((axpy, (g.reshape(-1), p.reshape(-1), p.size)))
            else:   # p += (-lr) * g, into a scratch buffer: no allocation per step
                def update(p, g, d, a):  # type: ignore[no-untyped-def]
                    xp.add(p, xp.multiply(g, a, out=d), out=p)
                updates.append((update, (p, g, xp.empty_like(p))))
        self._plain = updates
        return updates

    def plain_descent_lr(self) -> float | None:
        plain = (self.momentum == 0 and self.weight_decay == 0 and self.clip_norm is None
                 and type(self).step is SGD.step)     # (not a subclass with a step of its own)
        return self.lr if plain else None

    def step_function(self) -> Callable[[], None]:
        """Plain SGD on one flat buffer: the axpy call itself, with ``-lr`` bound."""
        if self.plain_descent_lr() is not None:
            updates = self._plain or self._plain_updates()
            if len(updates) == 1:
                f, args = updates[0]
                return partial(f, *args, -self.lr)
        return self.step

    def step(self) -> None:
        lr, mu, wd, xp = self.lr, self.momentum, self.weight_decay, self.xp
        if self.clip_norm is not None:
            self.clip_gradients()
        if mu == 0 and wd == 0:                     # plain SGD: p = p - lr * g
            for f, args in self._plain or self._plain_updates():
                f(*args, -lr)
            return
        for (p, g), st in zip(self.pairs, self.state, strict=True):
            d = st.get("scratch")
            if d is None:
                d = st["scratch"] = xp.empty_like(p)
            if wd:
                xp.multiply(p, wd, out=d)                   # g + lambda * p (no temporary)
                d += g
            else:
                xp.copyto(d, g)
            if mu:
                v = st.get("velocity")
                if v is None:
                    v = st["velocity"] = d.copy()           # first step: v = g
                else:
                    v *= mu                                 # v = mu * v + g
                    v += d
                if self.nesterov:
                    d += mu * v                             # g + mu * v
                else:
                    xp.copyto(d, v)
            d *= lr
            p -= d
