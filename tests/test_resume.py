"""Checkpoints and resume: a killed run continues to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from nnscratch import Sequential, TrainingDiverged, load_model
from nnscratch.callbacks import Callback, ModelCheckpoint
from nnscratch.layers import Dense, ReLU
from nnscratch.optim import SGD

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_mlp.toml"
FLAGS = ["--config", str(CONFIG), "--epochs", "150", "--checkpoint-every", "10", "--quiet",
         "--no-dynamics"]


def _train(*args):
    return subprocess.Popen([sys.executable, "-m", "nnscratch", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_gives_the_same_final_weights(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _train(*FLAGS, "--out", killed)
    target = killed / "checkpoints" / "epoch0020.safetensors"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed (machine too fast)")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()

    resumed = subprocess.run([sys.executable, "-m", "nnscratch", "train", "--resume",
                              str(killed)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    full = _train(*FLAGS, "--out", whole)
    assert full.wait() == 0, full.stderr.read()

    a = load_file(str(whole / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    import json

    ha = (whole / "history.csv").read_text()
    hb = (killed / "history.csv").read_text()
    assert ha == hb and len(ha.splitlines()) == 151
    assert json.loads((killed / "metrics.json").read_text())["resumed_at_epoch"] >= 20


def test_resume_errors_are_one_line(tmp_path):
    for args, match in ([["--resume", str(tmp_path)], "no checkpoints"],
                        [["--resume", str(tmp_path), "--epochs", "5"], "give no other settings"]):
        proc = subprocess.run([sys.executable, "-m", "nnscratch", "train", *args],
                              capture_output=True, text=True)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and match in lines[0]


class _Explode(Callback):
    """Sets an absurd learning rate after epoch 3: epoch 4 diverges."""

    def on_epoch_end(self, epoch, logs):
        if epoch == 3:
            self.run["optimizer"].lr = 1e30


def test_divergence_stops_at_the_first_bad_epoch_and_keeps_good_checkpoints(scaled, tmp_path):
    X, y, Xt, _ = scaled
    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
    ckpt = ModelCheckpoint(str(tmp_path / "epoch{epoch}.safetensors"), every=1,
                           training_state=True)
    with pytest.raises(TrainingDiverged, match="epoch 4"):
        model.fit(X, y, epochs=10, optimizer=SGD(lr=0.1), callbacks=[_Explode(), ckpt])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch1.safetensors", "epoch2.safetensors", "epoch3.safetensors"]
    good = load_model(tmp_path / "epoch3.safetensors")
    assert np.isfinite(good.predict_proba(Xt)).all()
    assert good.training_state[0]["epoch"] == 3


def _mlp():
    from nnscratch.layers import Dropout

    return Sequential([Dense(64, 32), ReLU(), Dropout(0.2), Dense(32, 10)], seed=4)


def _cnn():   # trained through conv blocks (nnscratch.convblock): fold, then general
    from nnscratch.layers import BatchNorm, Conv2D, Dropout, Flatten, MaxPool2D

    return Sequential([Conv2D(1, 12, 3, padding=1), BatchNorm(12), MaxPool2D(2), ReLU(),
                       Conv2D(12, 8, 3, padding=1), BatchNorm(8), ReLU(), Flatten(),
                       Dropout(0.2), Dense(128, 10)], input_shape=(1, 8, 8), seed=4)


@pytest.mark.parametrize("net", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_resume_through_the_python_api(net, scaled, tmp_path):
    from nnscratch.optim import Adam
    from nnscratch.optim.schedules import CosineAnnealingLR
    from nnscratch.training import restore_training_state

    X, y, _, _ = scaled
    if net is _cnn:
        X, y = X[:300], y[:300]

    whole = net()
    whole.fit(X, y, epochs=6, optimizer=Adam(lr=0.01), schedule=CosineAnnealingLR(6))
    first = net()
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}.safetensors"), every=3, training_state=True)
    first.fit(X, y, epochs=3, optimizer=Adam(lr=0.01), schedule=CosineAnnealingLR(6),
              callbacks=[ckpt])
    model = load_model(tmp_path / "e3.safetensors")
    opt, sched = Adam(lr=0.01), CosineAnnealingLR(6)
    epoch, history = restore_training_state(model, opt, sched)
    model.fit(X, y, epochs=6, optimizer=opt, schedule=sched, initial_epoch=epoch, history=history)
    assert np.array_equal(model.parameters()[0][0], whole.parameters()[0][0])
    assert model.history["loss"] == whole.history["loss"]
    with pytest.raises(ValueError, match="no training state"):
        restore_training_state(net(), SGD(lr=0.1), None)
