"""Graceful interrupts: Ctrl-C (SIGINT) or SIGTERM stops training at the next batch boundary.

Nothing here is active until a face (the CLI) enters :func:`handle_signals`, which installs
handlers for SIGINT and SIGTERM in the main thread and puts the old ones back on exit. The first
signal only sets :data:`STOP`; the fit loop (:func:`nnscratch.training.fit`, its plain epochs and
the accelerated plans in :mod:`nnscratch.accel.planner`) looks at it after every batch, puts the
run back where the epoch began and raises :class:`TrainingInterrupted`, which carries what a
checkpoint needs. A second signal raises ``KeyboardInterrupt`` at once: the last complete
checkpoint stays (files are written atomically). A second signal that lands while a file is
being written (inside :func:`deferred`, which :func:`nnscratch.io.atomic_write` enters) waits for
the write to finish or be undone, so that no temporary file is left behind.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import NNScratchError

#: ``STOP[0]``: the number of the signal that asked training to stop, 0 while none has
STOP = [0]
#: ``ARMED[0]``: True while :func:`handle_signals` is active (the fit loop then keeps what it
#: needs to put an interrupted epoch back)
ARMED = [False]
#: ``DEFER[0]``: how many :func:`deferred` blocks are open; ``PENDING[0]``: a second signal that
#: arrived inside one and is raised when the outermost one closes
DEFER = [0]
PENDING = [0]


class TrainingInterrupted(NNScratchError):
    """Training stopped on a signal; the model, optimizer, schedule and generator are as they
    were at the end of epoch ``epoch - 1`` (the interrupted epoch ``epoch`` was undone, so that
    a resumed run computes exactly what an uninterrupted one does)."""

    def __init__(self, epoch: int, signum: int, run: dict[str, Any]) -> None:
        super().__init__(f"interrupted at epoch {epoch}")
        self.epoch, self.signum, self.run = epoch, signum, run


def requested() -> int:
    return STOP[0]


def exit_status(signum: int) -> int:
    """The shell's status for death by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """While active, SIGINT and SIGTERM ask training to stop (see the module docstring).

    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if STOP[0]:          # the second one: stop now (after a file write, see deferred())
            if DEFER[0]:
                PENDING[0] = signum
                return
            raise KeyboardInterrupt
        STOP[0] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    STOP[0], ARMED[0], PENDING[0] = 0, True, 0
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        STOP[0], ARMED[0] = 0, False


@contextmanager
def deferred() -> Iterator[None]:
    """A block that a second signal does not cut short: it is raised (``KeyboardInterrupt``)
    when the block ends. Only matters while :func:`handle_signals` is active."""
    DEFER[0] += 1
    try:
        yield
    finally:
        DEFER[0] -= 1
        if not DEFER[0] and PENDING[0]:
            PENDING[0] = 0
            if ARMED[0]:
                raise KeyboardInterrupt
