"""Things the fit loop calls at the end of each epoch: the progress bar for now."""

from __future__ import annotations

import sys
from typing import Any


class Callback:
    """Hooks called by the fit loop. ``on_epoch_end`` returning True stops training."""

    def on_train_begin(self, epochs: int) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None: ...

    def on_train_end(self) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar over epochs showing loss and accuracy; silent when stderr is not a TTY."""

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._bar: Any = None

    def on_train_begin(self, epochs: int) -> None:
        if not (self.force or sys.stderr.isatty()):
            return
        import shutil

        from tqdm import tqdm

        # some pseudo-terminals report a 0x0 screen, on which tqdm would hide the bar
        size = shutil.get_terminal_size()
        self._bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, mininterval=0.2,
                         ncols=min(size.columns or 100, 120), nrows=size.lines or 24)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if self._bar.n == self._bar.total or self._bar.n % 10 == 1:  # formatting costs ~20 us
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"},
                                  refresh=False)

    def on_train_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
