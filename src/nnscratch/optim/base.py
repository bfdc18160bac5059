"""What every optimizer shares: (param, grad) pairs bound once, updated in place by ``step``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..validation import check_positive_float

Pairs = Sequence[tuple[np.ndarray, np.ndarray]]


class Optimizer:
    """Base class. ``bind(pairs)`` hands over the (param, grad) pairs; ``step()`` updates them.

    State (momentum buffers and the like) lives here, one dict per pair, never in the layers.
    """

    def __init__(self, lr: float) -> None:
        self.lr = check_positive_float(lr, f"{type(self).__name__} lr")
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.state: list[dict[str, Any]] = []

    def bind(self, pairs: Pairs) -> None:
        """Attach the optimizer to ``pairs``; keeps its state if they are the same arrays."""
        pairs = [(p, g) for p, g in pairs]
        same = len(pairs) == len(self.pairs) and all(
            p is q and g is h for (p, g), (q, h) in zip(pairs, self.pairs, strict=True))
        if not same:
            for p, g in pairs:
                if p.shape != g.shape or p.dtype != g.dtype:
                    raise ValueError("each parameter and its gradient must match in shape and dtype")
            self.pairs = pairs
            self.state = [{} for _ in pairs]

    def step(self) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
