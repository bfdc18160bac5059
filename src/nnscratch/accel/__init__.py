"""Everything in nnscratch that exists only for speed, kept apart from the readable core.

The layers (:mod:`nnscratch.layers`), the losses and the optimizers are the specification: one
readable implementation each, the code a learner steps through. This package makes training
with them fast without changing what it computes, and is entered in one place:
:meth:`nnscratch.Sequential.training_plan` asks :func:`plan_training` for the epochs of a run,
and ``Sequential(..., accelerate=False)`` (``nnscratch train --no-accelerate``) turns it all off.

=====================  ==========================================================================
module                 what it holds
=====================  ==========================================================================
:mod:`.planner`        the pattern matching over a model's layer list (reorder, fuse, replace)
                       and the accelerated epoch loops
:mod:`.dense`          ``Dense (ReLU Dense)*`` stacks with the bias trick, and whole fused epochs
                       of such a network under softmax cross-entropy
:mod:`.convblock`      ``Conv2D BatchNorm [MaxPool2D] ReLU`` in few passes
:mod:`.convact`        ``Conv2D activation [MaxPool2D | AvgPool2D]`` in few passes
:mod:`.kernels`        fast kernels for single layers (memory layouts, kept buffers): ``KERNELS``
:mod:`.im2col`         window views and col2im for the convolution kernels
:mod:`.layout`         batch-last images (a (N, C, H, W) view of (C, H, W, N) memory)
:mod:`.losses`         the softmax cross-entropy gradient into kept buffers
:mod:`.optim`          optimizer steps: BLAS axpy for plain SGD, Adam on both cores
:mod:`.threads`        element-wise passes split over the cores (:func:`enable_threads`)
:mod:`.blas`           cheaper calls into BLAS and NumPy for the hot loops
=====================  ==========================================================================

Imports are lazy: ``import nnscratch.accel`` loads nothing heavy, so that :func:`enable_threads`
can run before NumPy is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["enable_threads", "inference_stages", "plan_training", "threads_status",
           "training_stages"]


def enable_threads(quiet: bool = False) -> bool:
    """Split large element-wise passes over the cores; see :func:`.threads.enable_threads`."""
    from .threads import enable_threads as _enable

    return _enable(quiet)


def threads_status() -> tuple[int, str]:
    """How many threads an element-wise pass is split into, and why."""
    from . import threads

    count, why = threads.default_threads()
    return (threads.THREADS or count), why


def __getattr__(name: str) -> Any:
    if name in ("plan_training", "training_stages", "inference_stages"):
        from . import planner

        return getattr(planner, name)
    raise AttributeError(f"module 'nnscratch.accel' has no attribute {name!r}")
