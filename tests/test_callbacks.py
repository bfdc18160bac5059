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


def _net():
    from nnscratch import Sequential
    from nnscratch.layers import Dense, ReLU

    return Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)


def test_early_stopping_stops_and_restores_the_best_weights(scaled):
    import numpy as np

    from nnscratch.callbacks import EarlyStopping
    from nnscratch.optim import SGD

    X, y, Xv, yv = scaled
    stop = EarlyStopping(monitor="val_loss", patience=3)
    model = _net()
    # a learning rate far too high: validation loss gets worse quickly
    h = model.fit(X, y, epochs=200, optimizer=SGD(lr=3.0), validation_data=(Xv, yv),
                  callbacks=[stop])
    assert len(h) < 200 and stop.stopped_epoch == len(h)
    best = int(np.argmin(h["val_loss"])) + 1
    assert stop.best_epoch == best and len(h) == best + 3
    from nnscratch.losses import SoftmaxCrossEntropy

    restored = SoftmaxCrossEntropy()(model.decision_function(Xv), yv)
    assert restored == __import__("pytest").approx(min(h["val_loss"]), rel=1e-5)


def test_model_checkpoint_every_and_best(scaled, tmp_path):
    from nnscratch import load_model
    from nnscratch.callbacks import ModelCheckpoint
    from nnscratch.optim import SGD

    X, y, _, _ = scaled
    every = ModelCheckpoint(str(tmp_path / "ep{epoch:02d}.safetensors"), every=2)
    best = ModelCheckpoint(str(tmp_path / "best.safetensors"), best_only=True, monitor="loss")
    model = _net()
    model.fit(X, y, epochs=5, optimizer=SGD(lr=0.1), callbacks=[every, best])
    assert sorted(p.name for p in tmp_path.glob("ep*")) == ["ep02.safetensors", "ep04.safetensors"]
    assert len(best.saved) == 5  # the training loss fell every epoch
    load_model(tmp_path / "best.safetensors")


def test_validation_split_is_stratified_and_exclusive(scaled):
    import pytest

    from nnscratch.optim import SGD

    X, y, Xv, yv = scaled
    h = _net().fit(X, y, epochs=2, optimizer=SGD(lr=0.1), validation_split=0.2)
    assert "val_accuracy" in h
    with pytest.raises(ValueError, match="not both"):
        _net().fit(X, y, validation_split=0.2, validation_data=(Xv, yv))
    with pytest.raises(ValueError, match="validation_split"):
        _net().fit(X, y, validation_split=1.5)
    with pytest.raises(ValueError, match="monitor"):
        from nnscratch.callbacks import EarlyStopping

        _net().fit(X, y, epochs=2, callbacks=[EarlyStopping(monitor="val_loss")])
