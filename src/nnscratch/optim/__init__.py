"""Optimizers: bound to (param, grad) pairs, each ``step()`` updates the params in place."""

from .base import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Optimizer"]
