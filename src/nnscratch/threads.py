"""Element-wise work on the CPU split over the cores: :func:`split`.

NumPy runs an element-wise operation (a copy, an add, a comparison) on one core, while the
matrix products of a step already use them all (OpenBLAS's threads). Most of a conv net's time
outside those products is such passes over large feature maps, each bound by memory traffic
rather than arithmetic, and a second core doubles the traffic it can do. NumPy lets other Python
threads run while it works on a large array (it releases the GIL), so the conv layers hand each
such pass to :func:`split` (through their backend's ``parallel``): it runs the pass on one
part of the channels in each of ``THREADS`` threads (this one and a few kept workers) and waits
for all of them. The result is the same, bit for bit: every part writes its own elements.

One catch makes this pay: after each matrix product, OpenBLAS keeps its worker threads spinning
for about 0.1 s (2**28 cycles) in case another product follows, so they hold the other cores
and a second thread of ours would just share a core with them (measured: col2im of the MNIST
CNN's second block 2.8 ms alone, 2.6 ms split; 1.5 ms once OpenBLAS's threads go to sleep
sooner). ``import nnscratch`` therefore sets the environment variable OpenBLAS reads when it
loads, ``OPENBLAS_THREAD_TIMEOUT``, to :data:`OPENBLAS_TIMEOUT` (2**N cycles) unless it is
already set. It takes effect only if NumPy was not imported before nnscratch (as with the
``nnscratch`` command); otherwise the split still gives the same results, with less gain.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Callable
from typing import Any

#: OpenBLAS's idle threads spin for 2**N cycles after a product (its default: 28)
OPENBLAS_TIMEOUT = "18"


def _default_threads() -> int:
    value = os.environ.get("NNSCRATCH_THREADS", "").strip()
    if value:
        if value.isdigit() and int(value) >= 1:
            return int(value)
        warnings.warn(f"NNSCRATCH_THREADS must be a whole number >= 1, got {value!r}; "
                      "ignoring it", stacklevel=2)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


#: how many parts :func:`split` splits a pass into: the environment variable
#: ``NNSCRATCH_THREADS`` if set, else the cores this process may use, at most 4 (memory-bound
#: passes gain little beyond); 1 runs everything in the calling thread
THREADS = _default_threads()
#: passes that read and write fewer elements than this in all run in the calling thread: a
#: hand-over to the workers costs ~50 us here, a pass over 2**20 float32 values ~100-200 us
MIN_SIZE = 1 << 20

_workers: list[tuple[queue.SimpleQueue, queue.SimpleQueue]] = []
_owner_pid: int | None = None


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
    global _owner_pid
    if _owner_pid != os.getpid():   # a forked child has none of its parent's threads
        _workers.clear()
        _owner_pid = os.getpid()
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
    ``dot``): OpenBLAS called from two threads at once ran 5-10x slower here. ``size``, the
    number of elements the pass reads and writes (about), lets small passes run as one call
    ``fn(slice(0, n))`` in this thread."""
    parts = min(THREADS, n)
    if parts < 2 or (size is not None and size < MIN_SIZE):
        fn(slice(0, n))
        return
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
