"""Element-wise work on the CPU split over the cores: :func:`split`.

NumPy runs an element-wise operation (a copy, an add, a comparison) on one core, while the
matrix products of a step already use them all (OpenBLAS's threads). Most of a conv net's time
outside those products is such passes over large feature maps, each bound by memory traffic
rather than arithmetic, and a second core doubles the traffic it can do. NumPy lets other Python
threads run while it works on a large array (it releases the GIL), so the conv blocks,
``Conv2D``, ``MaxPool2D``, ``BatchNorm`` (at inference) and ``Adam`` hand each such pass to
:func:`split` (through their backend's ``parallel``): it runs the pass on one part of the
channels (or of a parameter's rows) in each of ``THREADS`` threads (this one and a few kept
workers) and waits for all of them. The result is the same, bit for bit: every part writes its
own elements.

One catch makes this pay: after each matrix product, OpenBLAS keeps its worker threads spinning
for about 0.1 s (2**28 cycles) in case another product follows, so they hold the other cores
and a second thread of ours would just share a core with them (measured: col2im of the MNIST
CNN's second block 2.8 ms alone, 2.6 ms split; 1.5 ms once OpenBLAS's threads go to sleep
sooner). OpenBLAS reads how long they spin from the environment variable
``OPENBLAS_THREAD_TIMEOUT`` once, when NumPy loads it. So the split is off by default, and
``import nnscratch`` changes nothing in the process; :func:`enable_threads` turns it on: called
before NumPy is imported (the ``nnscratch`` command does so first thing) it sets that variable to
:data:`OPENBLAS_TIMEOUT` (2**N cycles) unless the user set it, and the passes split. Where it
cannot take effect (NumPy imported already with OpenBLAS's default timeout, a timeout above 2**20
cycles set by the user, or a BLAS other than OpenBLAS, whose threads may spin as long) it says so
in one line and the passes stay on one thread: split, they were measured slower there (a
784-256-128-10 MLP epoch with Adam: 130 ms split, 110 ms not; 95 ms split with the short
timeout). ``NNSCRATCH_THREADS`` overrides the choice. The results are the same either way.

Usage, in a script (before ``import numpy``, or anything that imports it)::

    import nnscratch
    nnscratch.enable_threads()        # -> True, or False with a warning saying why
    import numpy as np
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

#: OpenBLAS's idle threads spin for 2**N cycles after a product (its default: 28)
OPENBLAS_TIMEOUT = "18"


#: whether OpenBLAS's idle threads sleep soon after a product in this process (see
#: enable_threads); None until enable_threads has run
SHORT_TIMEOUT: bool | None = None
#: whether enable_threads set OPENBLAS_THREAD_TIMEOUT (benchmarks keep it from their peers)
SET_BY_NNSCRATCH = False


def _timeout_in_effect() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` (see the module docstring) unless the user did or NumPy,
    and with it OpenBLAS, is loaded already; True when the timeout in effect is short."""
    global SET_BY_NNSCRATCH
    user = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "").strip()
    if user:   # (set before NumPy loaded, or NumPy not loaded yet: either way it is what OpenBLAS uses)
        return user.isdigit() and int(user) <= 20
    if "numpy" in sys.modules:     # OpenBLAS loaded already, with its default of 2**28 cycles
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_TIMEOUT
    SET_BY_NNSCRATCH = True
    return True


def enable_threads(quiet: bool = False) -> bool:
    """Split large element-wise passes of training over the cores (see the module docstring).

    Call it before NumPy is imported. Returns True when the split is on; otherwise warns (unless
    ``quiet``) with one line saying why not, and returns False. The results are the same either
    way, bit for bit; only the speed differs.
    """
    global SHORT_TIMEOUT, THREADS
    SHORT_TIMEOUT = _timeout_in_effect()
    THREADS = None                 # decided again at the next split, from the new facts
    count, why = default_threads()
    THREADS = count
    if count < 2 and not quiet:
        warnings.warn(f"nnscratch.enable_threads: element-wise passes stay on one thread: {why}",
                      stacklevel=2)
    return count >= 2


def _numpy_blas_is_openblas() -> bool:
    try:
        import numpy as np

        name = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # an older NumPy or an unusual build: do not guess
        return False
    return "openblas" in str(name).lower()


def default_threads() -> tuple[int, str]:
    """The number of parts :func:`split` makes by default, and why."""
    value = os.environ.get("NNSCRATCH_THREADS", "").strip()
    if value:
        if value.isdigit() and int(value) >= 1:
            return int(value), "NNSCRATCH_THREADS"
        warnings.warn(f"NNSCRATCH_THREADS must be a whole number >= 1, got {value!r}; "
                      "ignoring it", stacklevel=2)
    if SHORT_TIMEOUT is None:
        return 1, "off by default; nnscratch.enable_threads() turns it on"
    if not SHORT_TIMEOUT:
        return 1, ("OpenBLAS's threads keep spinning after each product: NumPy was imported "
                   "before nnscratch.enable_threads() was called, or OPENBLAS_THREAD_TIMEOUT is "
                   "above 20 (call it before importing NumPy)")
    if not _numpy_blas_is_openblas():
        return 1, "NumPy's BLAS is not OpenBLAS"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4)), "the cores this process may use (at most 4)"


#: how many parts :func:`split` splits a pass into; None: :func:`default_threads`, decided at
#: the first split (``NNSCRATCH_THREADS`` if set, else, after :func:`enable_threads`, the cores
#: this process may use, at most 4, as memory-bound passes gain little beyond; else 1). Set it
#: to 1 to run everything in the calling thread
THREADS: int | None = None
#: passes that read and write fewer elements than this in all run in the calling thread: a
#: hand-over to the workers costs ~50 us here, a pass over 2**20 float32 values ~100-200 us
MIN_SIZE = 1 << 20
_workers: list[tuple[queue.SimpleQueue, queue.SimpleQueue]] = []
#: held while a split uses the workers: a split from another thread (two models trained at once)
#: or from inside a part runs in its own thread instead of waiting (or deadlocking) on them
_busy = threading.Lock()


def _after_fork_in_child() -> None:
    global _busy
    _busy = threading.Lock()     # (a lock held by a parent's thread would stay held here)
    _workers.clear()             # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _work(inbox: queue.SimpleQueue, outbox: queue.SimpleQueue) -> None:
    while True:
        fn, part = inbox.get()
        try:
            fn(part)
        except BaseException as exc:  # handed back to the caller, raised there
            outbox.put(exc)
        else:
            outbox.put(None)


def _get_workers(count: int) -> list[tuple[queue.SimpleQueue, queue.SimpleQueue]]:
    while len(_workers) < count:
        boxes: tuple[queue.SimpleQueue, queue.SimpleQueue] = (queue.SimpleQueue(),
                                                               queue.SimpleQueue())
        threading.Thread(target=_work, args=boxes, daemon=True,
                         name=f"nnscratch-{len(_workers) + 1}").start()
        _workers.append(boxes)
    return _workers[:count]


def split(fn: Callable[[slice], Any], n: int, size: int | None = None) -> None:
    """Call ``fn(part)`` for consecutive slices ``part`` that together cover ``range(n)``, in
    :data:`THREADS` threads at once, and return when all are done (re-raising the first error).
    ``fn`` must only write elements that belong to its part, and must not call BLAS (``@``,
    ``dot``) on products big enough for OpenBLAS to use its own threads (above ~2**18
    multiply-adds): those, called from two threads at once, ran 5-10x slower here. Smaller ones
    run side by side (:func:`nnscratch.accel.blas.dot_t_by_chunks`). ``size``, the
    number of elements the pass reads and writes (about), lets small passes run as one call
    ``fn(slice(0, n))`` in this thread; so does a split made while another one is under way
    (from another thread, or from inside a part)."""
    global THREADS
    if THREADS is None:
        THREADS = default_threads()[0]
    parts = min(THREADS, n)
    if parts < 2 or (size is not None and size < MIN_SIZE) or not _busy.acquire(blocking=False):
        fn(slice(0, n))
        return
    try:
        _split(fn, n, parts)
    finally:
        _busy.release()


def _split(fn: Callable[[slice], Any], n: int, parts: int) -> None:
    bounds = [n * i // parts for i in range(parts + 1)]
    workers = _get_workers(parts - 1)
    for (inbox, _), lo, hi in zip(workers, bounds[1:-1], bounds[2:], strict=True):
        inbox.put((fn, slice(lo, hi)))
    error: BaseException | None = None
    try:
        fn(slice(bounds[0], bounds[1]))
    except BaseException as exc:
        error = exc
    for _, outbox in workers:   # wait for every part, even after an error here
        result = outbox.get()
        error = error or result
    if error is not None:
        raise error


def serial(fn: Callable[[slice], Any], n: int, size: int | None = None) -> None:
    """:func:`split` in one call, for backends that parallelise by themselves (CuPy)."""
    fn(slice(0, n))


def parallel_of(backend: Any) -> Callable[..., None]:
    """How the accelerated kernels run an element-wise pass over parts of a range on
    ``backend``: :func:`split` on the CPU, one call (:func:`serial`) on a GPU, which
    parallelises each operation by itself."""
    return split if backend.device == "cpu" else serial
