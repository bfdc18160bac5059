"""nnscratch: neural networks from scratch in NumPy.

>>> from nnscratch import Sequential, load_model
>>> from nnscratch.layers import Dense, ReLU
"""

import os as _os

from .threads import OPENBLAS_TIMEOUT as _OPENBLAS_TIMEOUT

# OpenBLAS reads this when NumPy loads it: its idle threads then free the other cores soon
# after a matrix product, for nnscratch's own element-wise threads (see nnscratch.threads)
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", _OPENBLAS_TIMEOUT)

from .errors import DeviceError, InputError, ModelFileError, NNScratchError, TrainingDiverged
from .model import Sequential, load_model
from .training import History

__version__ = "0.1.0"

__all__ = ["DeviceError", "History", "InputError", "ModelFileError", "NNScratchError", "Sequential",
           "TrainingDiverged", "load_model", "__version__"]
