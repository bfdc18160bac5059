"""nnscratch: neural networks from scratch in NumPy.

>>> from nnscratch import Sequential, load_model
>>> from nnscratch.layers import Dense, ReLU
"""

from .threads import configure_openblas as _configure_openblas

# before NumPy is imported: OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it loads; a short one
# frees the cores soon after a matrix product, for nnscratch's own element-wise threads
_configure_openblas()

from .errors import (  # noqa: E402
    DeviceError,
    InputError,
    ModelFileError,
    NNScratchError,
    TrainingDiverged,
)
from .model import Sequential, load_model  # noqa: E402
from .training import History  # noqa: E402

__version__ = "0.1.0"

__all__ = ["DeviceError", "History", "InputError", "ModelFileError", "NNScratchError", "Sequential",
           "TrainingDiverged", "load_model", "__version__"]
