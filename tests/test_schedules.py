"""Learning-rate schedules: closed forms, PyTorch's schedulers, and their use in fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.layers import Dense, ReLU
from nnscratch.optim import SGD
from nnscratch.optim.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    ReduceLROnPlateau,
    StepLR,
)

EPOCHS = 30


def lrs(schedule, base=0.1, losses=None):
    out = [schedule.start(base)]
    for e in range(1, EPOCHS):
        out.append(schedule.step(e, {"loss": losses[e - 1] if losses else 1.0}))
    return out


def test_closed_forms():
    np.testing.assert_allclose(lrs(StepLR(7, 0.5)), [0.1 * 0.5 ** (e // 7) for e in range(EPOCHS)])
    np.testing.assert_allclose(lrs(ExponentialLR(0.9)), [0.1 * 0.9**e for e in range(EPOCHS)])
    np.testing.assert_allclose(lrs(CosineAnnealingLR(20, 0.001)), [
        0.001 + 0.099 * (1 + math.cos(math.pi * e / 20)) / 2 for e in range(EPOCHS)])
    warm = lrs(LinearWarmup(5, 0.2, then=ExponentialLR(0.5)))
    np.testing.assert_allclose(warm[:5], [0.1 * (0.2 + 0.8 * e / 5) for e in range(5)])
    np.testing.assert_allclose(warm[5:8], [0.1, 0.05, 0.025])


def test_plateau_reduces_after_patience():
    losses = [1.0, 0.5, 0.5, 0.5, 0.5, 0.4] + [0.4] * 30
    out = lrs(ReduceLROnPlateau(factor=0.5, patience=2), losses=losses)
    # best at 1.0, 0.5; then 3 epochs without improvement (> patience 2): halved
    assert out[:7] == [0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]


def _torch_lrs(make, base=0.1, losses=None):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = make(torch, opt)
    out = []
    for e in range(EPOCHS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(losses[e]) if losses else sched.step()
    return out


@pytest.mark.parametrize("ours,theirs", [
    (lambda: StepLR(7, 0.5), lambda t, o: t.optim.lr_scheduler.StepLR(o, 7, 0.5)),
    (lambda: ExponentialLR(0.9), lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    (lambda: CosineAnnealingLR(20, 0.001),
     lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, 20, 0.001)),
    (lambda: LinearWarmup(5, 0.2, then=CosineAnnealingLR(10)),
     lambda t, o: t.optim.lr_scheduler.SequentialLR(o, [
         t.optim.lr_scheduler.LinearLR(o, 0.2, 1.0, total_iters=5),
         t.optim.lr_scheduler.CosineAnnealingLR(o, 10)], milestones=[5])),
])
def test_matches_pytorch(ours, theirs):
    np.testing.assert_allclose(lrs(ours()), _torch_lrs(theirs), rtol=1e-9, atol=1e-12)


def test_plateau_matches_pytorch():
    losses = list(np.random.default_rng(0).uniform(0.5, 1.0, EPOCHS))
    ours = lrs(ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1), losses=losses)
    theirs = _torch_lrs(lambda t, o: t.optim.lr_scheduler.ReduceLROnPlateau(
        o, factor=0.5, patience=2, cooldown=1), losses=losses)
    np.testing.assert_allclose(ours, theirs)


def test_fit_records_the_schedule(scaled):
    X, y, _, _ = scaled
    model = Sequential([Dense(64, 16), ReLU(), Dense(16, 10)], seed=0)
    h = model.fit(X[:300], y[:300], epochs=6, optimizer=SGD(lr=0.2), schedule=StepLR(2, 0.5))
    assert h["lr"] == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]


@pytest.mark.parametrize("make", [lambda: StepLR(0), lambda: ExponentialLR(1.5),
                                  lambda: CosineAnnealingLR(0), lambda: LinearWarmup(3, 0),
                                  lambda: LinearWarmup(3, then="cosine"),
                                  lambda: ReduceLROnPlateau(factor=1.0),
                                  lambda: ReduceLROnPlateau(patience=-1)])
def test_arguments_are_validated(make):
    with pytest.raises(ValueError):
        make()


def test_plateau_needs_a_recorded_value():
    s = ReduceLROnPlateau(monitor="val_loss")
    s.start(0.1)
    with pytest.raises(ValueError, match="val_loss"):
        s.step(1, {"loss": 1.0})
