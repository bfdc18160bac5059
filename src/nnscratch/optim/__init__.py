"""Optimizers: bound to (param, grad) pairs, each ``step()`` updates the params in place."""

from .adam import Adam, AdamW
from .base import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]
