"""Adam and AdamW: momentum on the gradient and a per-parameter step size from its variance."""

from __future__ import annotations

import math
from typing import Any

from ..validation import check_positive_float
from .base import Optimizer


def _check_betas(betas: Any, name: str) -> tuple[float, float]:
    ok = isinstance(betas, (tuple, list)) and len(betas) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    if not ok:
        raise ValueError(f"{name} betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


class Adam(Optimizer):
    r"""PyTorch's ``torch.optim.Adam`` on each (param ``p``, grad ``g``); ``t`` counts steps.

    With ``betas`` = (b1, b2), ``weight_decay`` = lambda (L2, added to the gradient), and ``m``,
    ``v`` starting at zero::

        g = g + lambda * p                            (if lambda > 0)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t),  v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    computed, as PyTorch does, as ``p -= (lr / (1 - b1**t)) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)``
    (here with the step size divided into the denominator: the same value, one pass fewer).
    """

    decoupled = False  # AdamW: weight decay applied to the parameters, not the gradient

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 clip_norm: float | None = None) -> None:
        super().__init__(lr, clip_norm)
        name = type(self).__name__
        self.betas = _check_betas(betas, name)
        self.eps = check_positive_float(eps, f"{name} eps")
        self.weight_decay = check_positive_float(weight_decay, f"{name} weight_decay",
                                                 allow_zero=True)
        self.t = 0

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def step(self) -> None:
        if self.clip_norm is not None:
            self.clip_gradients()
        self.t += 1
        step_size, inv_sqrt_bc2 = self.step_constants()
        for i in range(len(self.pairs)):
            self.update(*self.arrays(i), step_size, inv_sqrt_bc2)

    def step_constants(self) -> tuple[float, float]:
        """``lr / (1 - b1**t)`` and ``1 / sqrt(1 - b2**t)`` for the current step ``t``."""
        (b1, b2), t = self.betas, self.t
        return self.lr / (1 - b1**t), 1 / math.sqrt(1 - b2**t)

    def arrays(self, i: int) -> tuple[Any, ...]:
        """``(p, g, m, v, d, s)`` of pair ``i``: the parameter, its gradient, the two moments
        (made at the first step) and two scratch arrays."""
        (p, g), st, xp = self.pairs[i], self.state[i], self.xp
        if "m" not in st:
            st.update(m=xp.zeros_like(p), v=xp.zeros_like(p))
        return p, g, st["m"], st["v"], self.buffer(i, "d"), self.buffer(i, "s")

    def update(self, p: Any, g: Any, m: Any, v: Any, d: Any, s: Any, step_size: float,
               inv_sqrt_bc2: float) -> None:
        """The update of one parameter ``p`` (or some of its rows) with gradient ``g``, moments
        ``m`` and ``v``, and scratch arrays ``d`` and ``s``, in place. Element-wise, so
        :func:`nnscratch.accel.optim.step_function` runs it on parts of the rows at once."""
        (b1, b2), lr, eps, wd, xp = self.betas, self.lr, self.eps, self.weight_decay, self.xp
        if wd and self.decoupled:
            p *= 1 - lr * wd                      # AdamW: p = p - lr * lambda * p
        if wd and not self.decoupled:
            xp.multiply(p, wd, out=d)             # Adam: g = g + lambda * p
            d += g
        else:
            d = g                                 # (read only below)
        m *= b1                                   # m = b1 * m + (1 - b1) * g
        xp.multiply(d, 1 - b1, out=s)
        m += s
        v *= b2                                   # v = b2 * v + (1 - b2) * g**2
        xp.multiply(d, d, out=s)
        s *= 1 - b2
        v += s
        if step_size == 0:                        # lr = 0 (e.g. the end of a cosine schedule)
            return
        # p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), with step_size moved into the
        # denominator: one pass fewer over the parameters
        xp.sqrt(v, out=s)                         # (sqrt(v) / sqrt(1 - b2**t) + eps) / step_size
        s *= inv_sqrt_bc2 / step_size
        s += eps / step_size
        xp.divide(m, s, out=s)
        p -= s


class AdamW(Adam):
    r"""PyTorch's ``torch.optim.AdamW``: Adam with decoupled weight decay (default 0.01)::

        p = p - lr * lambda * p            (first, on the parameters themselves)
        then the Adam update above with g unchanged (no L2 term in the gradient)
    """

    decoupled = True

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 clip_norm: float | None = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, clip_norm)
