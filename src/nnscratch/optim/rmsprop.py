"""RMSprop: divide each gradient by a running root mean square of its recent values."""

from __future__ import annotations

from typing import Any

from ..validation import check_positive_float
from .base import Optimizer


class RMSprop(Optimizer):
    r"""PyTorch's ``torch.optim.RMSprop`` (not centered), on each (param ``p``, grad ``g``).

    With ``lr`` = eta, ``alpha``, ``eps``, ``momentum`` = mu, ``weight_decay`` = lambda, and the
    square average ``v`` and buffer ``b`` starting at zero::

        g = g + lambda * p                      (if lambda > 0)
        v = alpha * v + (1 - alpha) * g**2
        if mu > 0:  b = mu * b + g / (sqrt(v) + eps);  p = p - eta * b
        else:       p = p - eta * g / (sqrt(v) + eps)
    """

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 clip_norm: float | None = None) -> None:
        super().__init__(lr, clip_norm)
        self.alpha = check_positive_float(alpha, "RMSprop alpha", allow_zero=True)
        if self.alpha >= 1:
            raise ValueError(f"RMSprop alpha must be in [0, 1), got {alpha!r}")
        self.eps = check_positive_float(eps, "RMSprop eps")
        self.momentum = check_positive_float(momentum, "RMSprop momentum", allow_zero=True)
        self.weight_decay = check_positive_float(weight_decay, "RMSprop weight_decay",
                                                 allow_zero=True)

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}

    def step(self) -> None:
        if self.clip_norm is not None:
            self.clip_gradients()
        lr, alpha, eps, mu, wd = self.lr, self.alpha, self.eps, self.momentum, self.weight_decay
        xp = self.xp
        for i, ((p, g), st) in enumerate(zip(self.pairs, self.state, strict=True)):
            if "v" not in st:
                st["v"] = xp.zeros_like(p)
                if mu:
                    st["b"] = xp.zeros_like(p)
            v, d, s = st["v"], self.buffer(i, "d"), self.buffer(i, "s")   # (d, s: scratch)
            if wd:
                xp.multiply(p, wd, out=d)        # g + lambda * p (no temporary)
                d += g
            else:
                xp.copyto(d, g)
            v *= alpha                           # v = alpha * v + (1 - alpha) * g**2
            xp.multiply(d, d, out=s)
            s *= 1 - alpha
            v += s
            xp.sqrt(v, out=s)                    # sqrt(v) + eps
            s += eps
            xp.divide(d, s, out=d)               # g / (sqrt(v) + eps)
            if mu:
                b = st["b"]
                b *= mu
                b += d
                d = b
            xp.multiply(d, lr, out=s)
            p -= s
