from __future__ import annotations

import sys

from nnscratch.callbacks import ProgressBar


def test_progress_bar_shows_epoch_loss_and_accuracy(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = ProgressBar()
    bar.on_train_begin(20)
    for epoch in range(1, 21):
        bar.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.875})
    bar.on_train_end()
    err = capsys.readouterr().err
    assert "20/20" in err and "loss=0.2500" in err and "accuracy=0.8750" in err


def test_progress_bar_is_silent_without_a_terminal(capsys):
    bar = ProgressBar()
    bar.on_train_begin(5)
    for epoch in range(1, 6):
        bar.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.5})
    bar.on_train_end()
    assert capsys.readouterr().err == ""
