"""Layers: each has ``forward(x, training)`` and ``backward(grad_y)``; see :mod:`.base`."""

from .activations import ReLU
from .base import Layer
from .dense import Dense

__all__ = ["Dense", "Layer", "ReLU"]
