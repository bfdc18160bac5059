"""Layers: each has ``forward(x, training)`` and ``backward(grad_y)``; see :mod:`.base`."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer
from .dense import Dense

__all__ = ["GELU", "Dense", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Tanh"]
