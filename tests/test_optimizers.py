"""Optimizers against their update formulas written out independently, over many steps."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.layers import Dense, ReLU
from nnscratch.optim import SGD, Adam, AdamW, RMSprop

STEPS = 50


def reference(name, cfg, p0, grads):
    """The update rules as PyTorch documents them, one step at a time, nothing in place."""
    p, t = p0.copy(), 0
    m = v = b = None
    lr, wd = cfg["lr"], cfg.get("weight_decay", 0.01 if name == "adamw" else 0.0)
    for g in grads:
        t += 1
        if name == "sgd":
            d = g + wd * p
            mu = cfg.get("momentum", 0.0)
            if mu:
                b = d if b is None else mu * b + d
                d = d + mu * b if cfg.get("nesterov") else b
            p = p - lr * d
        elif name == "rmsprop":
            alpha, eps, mu = cfg.get("alpha", 0.99), cfg.get("eps", 1e-8), cfg.get("momentum", 0)
            d = g + wd * p
            v = (1 - alpha) * d**2 if v is None else alpha * v + (1 - alpha) * d**2
            step = d / (np.sqrt(v) + eps)
            if mu:
                b = step if b is None else mu * b + step
                step = b
            p = p - lr * step
        else:  # adam, adamw
            b1, b2 = cfg.get("betas", (0.9, 0.999))
            eps = cfg.get("eps", 1e-8)
            if name == "adamw":
                p = p - lr * wd * p
                d = g
            else:
                d = g + wd * p
            m = (1 - b1) * d if m is None else b1 * m + (1 - b1) * d
            v = (1 - b2) * d**2 if v is None else b2 * v + (1 - b2) * d**2
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


CASES = [
    ("sgd", SGD, {"lr": 0.1}),
    ("sgd", SGD, {"lr": 0.05, "momentum": 0.9}),
    ("sgd", SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("rmsprop", RMSprop, {"lr": 0.01}),
    ("rmsprop", RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "momentum": 0.5,
                          "weight_decay": 0.1}),
    ("adam", Adam, {"lr": 0.01}),
    ("adam", Adam, {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
    ("adamw", AdamW, {"lr": 0.01}),
    ("adamw", AdamW, {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.3}),
]


@pytest.mark.parametrize("name,cls,cfg", CASES, ids=lambda c: str(c))
def test_update_matches_the_formula_over_many_steps(name, cls, cfg, rng):
    p0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(STEPS)]
    p, g = p0.copy(), np.zeros_like(p0)
    opt = cls(**cfg)
    opt.bind([(p, g)])
    for gi in grads:
        g[...] = gi
        opt.step()
    np.testing.assert_allclose(p, reference(name, cfg, p0, grads), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,cls,cfg", CASES, ids=lambda c: str(c))
def test_against_pytorch_when_installed(name, cls, cfg, rng):
    torch = pytest.importorskip("torch")
    torch_cls = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                 "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    p0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(STEPS)]
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch_cls([tp], **cfg)
    p, g = p0.copy(), np.zeros_like(p0)
    opt = cls(**cfg)
    opt.bind([(p, g)])
    for gi in grads:
        tp.grad = torch.tensor(gi)
        topt.step()
        g[...] = gi
        opt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_state_lives_in_the_optimizer_and_is_kept_across_binds(rng):
    p, g = rng.standard_normal(5), rng.standard_normal(5)
    opt = Adam(lr=0.1)
    opt.bind([(p, g)])
    opt.step()
    m = opt.state[0]["m"].copy()
    opt.bind([(p, g)])  # same arrays: state kept
    assert np.array_equal(opt.state[0]["m"], m) and opt.t == 1


@pytest.mark.parametrize("cls", [SGD, RMSprop, Adam, AdamW])
def test_global_norm_clipping(cls, rng):
    """Gradients are scaled by clip_norm / (norm + 1e-6) when their joint norm is larger."""
    g1, g2 = rng.standard_normal(6) * 10, rng.standard_normal(3) * 10
    norm = np.sqrt((g1**2).sum() + (g2**2).sum())
    p1, p2 = np.zeros(6), np.zeros(3)
    opt = cls(lr=0.1, clip_norm=1.0)
    opt.bind([(p1, g1.copy()), (p2, g2.copy())])
    assert opt.clip_gradients() == pytest.approx(norm)
    clipped = np.concatenate([opt.pairs[0][1], opt.pairs[1][1]])
    np.testing.assert_allclose(clipped, np.concatenate([g1, g2]) / (norm + 1e-6))
    assert opt.clip_gradients() == pytest.approx(1.0, rel=1e-5)  # already small: unchanged


@pytest.mark.parametrize("make", [
    lambda: Adam(lr=0.1, betas=(0.9,)), lambda: Adam(lr=0.1, betas=(1.0, 0.9)),
    lambda: AdamW(lr=-1), lambda: Adam(lr=0.1, eps=0), lambda: RMSprop(lr=0.1, alpha=1.0),
    lambda: RMSprop(lr=0.1, momentum=-1), lambda: SGD(lr=0.1, clip_norm=0),
    lambda: AdamW(lr=0.1, weight_decay=-0.1),
])
def test_optimizer_arguments_are_validated(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("opt", [SGD(lr=0.05, momentum=0.9, nesterov=True), RMSprop(lr=0.001),
                                 Adam(lr=0.003), AdamW(lr=0.003)], ids=repr)
def test_each_optimizer_trains_the_digits_model(opt, scaled):
    X, y, Xt, yt = scaled
    model = Sequential([Dense(64, 64), ReLU(), Dense(64, 10)], seed=0)
    h = model.fit(X, y, epochs=15, batch_size=32, optimizer=opt)
    assert h["loss"][-1] < 0.2 * h["loss"][0]
    assert model.score(Xt, yt) > 0.93


@pytest.mark.parametrize("size", [100, 20_000])
@pytest.mark.parametrize("accelerated", [False, True])
def test_plain_sgd_on_small_and_large_buffers(size, accelerated, rng):
    # the accelerated step: small buffers take SciPy's BLAS axpy, large ones the optimizer's own
    # step (see accel.optim.AXPY_MAX_SIZE): all must do p <- p - lr * g, step after step, in
    # float32 and float64
    from nnscratch.accel.optim import AXPY_MAX_SIZE, step_function

    assert (size <= AXPY_MAX_SIZE) == (size == 100)
    for dtype in (np.float32, np.float64):
        p, g = rng.standard_normal(size).astype(dtype), np.zeros(size, dtype)
        expected = p.copy()
        opt = SGD(lr=0.05)
        opt.bind([(p, g)])
        step = step_function(opt) if accelerated else opt.step
        assert (step != opt.step) == (accelerated and size == 100)
        for _ in range(3):
            g[...] = rng.standard_normal(size)
            step()
            expected -= dtype(0.05) * g
            np.testing.assert_allclose(p, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_with_a_learning_rate_of_zero_leaves_the_parameters_and_updates_the_moments(cls):
    """A cosine schedule ends at lr = 0: no step, no division by zero, moments still updated."""
    p, g = np.ones(4), np.full(4, 0.5)
    opt = cls(lr=0.1)
    opt.bind([(p, g)])
    opt.lr = 0.0
    opt.step()
    np.testing.assert_array_equal(p, np.ones(4))
    np.testing.assert_allclose(opt.state[0]["m"], 0.05)     # (1 - 0.9) * g
