"""Layers: each has ``forward(x, training)`` and ``backward(grad_y)``; see :mod:`.base`."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .reshape import Flatten

__all__ = ["GELU", "AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout", "Flatten", "GlobalAvgPool2D",
           "Layer", "LeakyReLU", "MaxPool2D", "ReLU", "Sigmoid", "Tanh"]
