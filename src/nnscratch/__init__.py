"""nnscratch: neural networks from scratch in NumPy.

>>> from nnscratch import Sequential, load_model
>>> from nnscratch.layers import Dense, ReLU
"""

from .errors import DeviceError, InputError, ModelFileError, NNScratchError, TrainingDiverged
from .model import Sequential, load_model
from .training import History

__version__ = "0.1.0"

__all__ = ["DeviceError", "History", "InputError", "ModelFileError", "NNScratchError", "Sequential",
           "TrainingDiverged", "load_model", "__version__"]
