"""Layers: each has ``forward(x, training)`` and ``backward(grad_y)``; see :mod:`.base`."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm

__all__ = ["GELU", "BatchNorm", "Dense", "Dropout", "Layer", "LeakyReLU", "ReLU", "Sigmoid",
           "Tanh"]
