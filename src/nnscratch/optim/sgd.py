"""Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay."""

from __future__ import annotations

from typing import Any

from ..validation import check_positive_float
from .base import Optimizer


class SGD(Optimizer):
    r"""Gradient descent on each (param ``p``, grad ``g``) pair, as PyTorch's ``torch.optim.SGD``.

    With ``lr`` = eta, ``momentum`` = mu, ``weight_decay`` = lambda and velocity ``v`` (zero-free:
    ``v = g`` at the first step)::

        g = g + lambda * p                  (L2 weight decay, if lambda > 0)
        v = mu * v + g                      (if mu > 0)
        g = g + mu * v   if nesterov  else  g = v
        p = p - eta * g

    Plain SGD (mu = lambda = 0) is just ``p -= eta * g``. (In training with acceleration on,
    :func:`nnscratch.accel.optim.step_function` does that with one BLAS ``axpy`` call on the
    model's flat parameter buffer, and the fused epochs of :mod:`nnscratch.accel.dense` inside
    the products that compute the gradients.)
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

    def get_config(self) -> dict[str, Any]:
        cfg = {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
               "weight_decay": self.weight_decay}
        return cfg if self.clip_norm is None else {**cfg, "clip_norm": self.clip_norm}

    def plain_descent_lr(self) -> float | None:
        plain = (self.momentum == 0 and self.weight_decay == 0 and self.clip_norm is None
                 and type(self).step is SGD.step)     # (not a subclass with a step of its own)
        return self.lr if plain else None

    def step(self) -> None:
        lr, mu, wd, xp = self.lr, self.momentum, self.weight_decay, self.xp
        if self.clip_norm is not None:
            self.clip_gradients()
        for i, ((p, g), st) in enumerate(zip(self.pairs, self.state, strict=True)):
            d = self.buffer(i, "d")                         # the step, in a kept buffer
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
