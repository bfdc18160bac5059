"""A neural network from scratch, step by step: the 8x8 digits with a 64-32-10 network.

This is the walkthrough the original README promised. It uses the ``nnscratch`` package for the
network itself and redoes by hand, in plain NumPy, one forward pass and one backward pass, checking
that the package computes the same numbers. Then it trains, evaluates and draws the pictures.

    python neural_network_from_scratch.py                 # 1000 epochs, pictures in runs/script
    python neural_network_from_scratch.py --epochs 50 --out /tmp/nn

Notation (the package's docstrings use the same): rows are examples, so for a batch of ``m``
examples ``X`` is (m, 64), and

    Z1 = X @ W1 + b1        (m, 32)     W1 (64, 32), b1 (32,)
    A1 = ReLU(Z1)           (m, 32)     ReLU(z) = max(z, 0)
    Z2 = A1 @ W2 + b2       (m, 10)     W2 (32, 10), b2 (10,)    the logits
    P  = softmax(Z2)        (m, 10)     P_ij = exp(Z2_ij) / sum_k exp(Z2_ik)
    L  = -(1/m) sum_i sum_j Y_ij log P_ij                        cross-entropy, Y one-hot (m, 10)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from nnscratch import Sequential, metrics, report
from nnscratch.data import apply_preprocessing, digits_preprocessing, load_digits_split
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import SoftmaxCrossEntropy
from nnscratch.optim import SGD

#: the model computes in float32, the hand computations below in float64: they agree to ~1e-6
TOL = {"rtol": 1e-4, "atol": 1e-6}

#: the README's example digit, a zero, in the dataset's raw 0..16 scale (ink per 4x4 block)
README_DIGIT = np.array([
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
], dtype=np.float64)


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 74 - len(text)))


def ascii_digit(image: np.ndarray) -> str:
    """An 8x8 image (or its 64 pixels) in 0..16 as text, denser characters for more ink."""
    shades = " .:-=+*#%@"
    levels = np.rint(np.reshape(image, (8, 8)) / 16 * (len(shades) - 1)).astype(int)
    levels = np.clip(levels, 0, len(shades) - 1)
    return "\n".join("    " + "".join(shades[v] * 2 for v in row) for row in levels)


def one_hot(y: np.ndarray, k: int = 10) -> np.ndarray:
    """(m,) integer labels -> (m, k) rows with a single 1 at the label."""
    Y = np.zeros((y.shape[0], k))
    Y[np.arange(y.shape[0]), y] = 1.0
    return Y


def forward_by_hand(model: Sequential, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass in plain NumPy, checked against ``model.forward``; returns the cache."""
    dense1, dense2 = model.layers[0], model.layers[2]
    # the model's parameters, as float64 copies (the model keeps them in one flat float32 buffer)
    W1, b1 = (dense1.params[k].astype(np.float64) for k in ("W", "b"))
    W2, b2 = (dense2.params[k].astype(np.float64) for k in ("W", "b"))
    X = x.astype(np.float64)
    m = X.shape[0]

    Z1 = X @ W1 + b1                                   # (m, 32)
    A1 = np.maximum(Z1, 0)                             # ReLU, (m, 32)
    Z2 = A1 @ W2 + b2                                  # logits, (m, 10)
    S = Z2 - Z2.max(axis=1, keepdims=True)             # subtract the row max: exp cannot overflow
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)   # softmax, rows sum to 1
    Y = one_hot(y)
    L = -(Y * np.log(P)).sum() / m                     # cross-entropy, mean over the batch

    print(f"X {X.shape} -> Z1 {Z1.shape} -> A1 {A1.shape} -> Z2 {Z2.shape} -> P {P.shape}")
    print(f"P[0] = {np.array2string(P[0], precision=3, suppress_small=True)}  (true label {y[0]})")
    print(f"rows of P sum to 1: {np.allclose(P.sum(axis=1), 1)}")
    print(f"loss L = {L:.6f}   (an untrained net guesses ~1/10: -log(0.1) = {np.log(10):.4f})")

    # The package must agree: logits, probabilities and loss.
    assert np.allclose(model.forward(x), Z2, **TOL), "model.forward differs from X@W1+b1 ..."
    assert np.allclose(model.predict_proba(x), P, **TOL), "predict_proba differs from softmax(Z2)"
    loss_pkg = SoftmaxCrossEntropy().forward(model.forward(x), y)
    assert np.isclose(loss_pkg, L, **TOL), f"SoftmaxCrossEntropy gives {loss_pkg}, by hand {L}"
    print("model.forward, model.predict_proba and SoftmaxCrossEntropy agree with the hand "
          "computation")
    return {"X": X, "Z1": Z1, "A1": A1, "P": P, "Y": Y, "W2": W2}


def backward_by_hand(model: Sequential, x: np.ndarray, y: np.ndarray,
                     cache: dict[str, np.ndarray]) -> None:
    """One backward pass in plain NumPy, checked against the layers' ``grads`` from backprop."""
    X, Z1, A1, P, Y, W2 = (cache[k] for k in ("X", "Z1", "A1", "P", "Y", "W2"))
    m = X.shape[0]

    # Softmax and cross-entropy together have the simple gradient dL/dZ2 = (P - Y) / m.
    dZ2 = (P - Y) / m                                  # (m, 10)
    dW2 = A1.T @ dZ2                                   # (32, 10)
    db2 = dZ2.sum(axis=0)                              # (10,)
    dA1 = dZ2 @ W2.T                                   # (m, 32)
    dZ1 = dA1 * (Z1 > 0)                               # ReLU passes the gradient where Z1 > 0
    dW1 = X.T @ dZ1                                    # (64, 32)
    db1 = dZ1.sum(axis=0)                              # (32,)

    # The package: a training-mode forward pass caches what backward needs, the loss gives
    # dL/dZ2, and model.backward fills every layer's grads dict.
    loss = SoftmaxCrossEntropy()
    z = model.forward(x, training=True)
    loss.forward(z, y)
    grad_z = loss.backward()                           # (P - Y) / m
    assert np.allclose(grad_z, dZ2, **TOL), "SoftmaxCrossEntropy.backward differs from (P - Y)/m"
    model.backward(grad_z)
    dense1, dense2 = model.layers[0], model.layers[2]
    for name, ours, theirs in [("dW2", dW2, dense2.grads["W"]), ("db2", db2, dense2.grads["b"]),
                               ("dW1", dW1, dense1.grads["W"]), ("db1", db1, dense1.grads["b"])]:
        assert np.allclose(theirs, ours, **TOL), f"{name}: backprop differs from the hand formula"
        print(f"{name} {str(ours.shape):9s} agrees  (largest entry {np.abs(ours).max():.4f})")

    # A check that cannot fail proves nothing: a gradient that forgot the 1/m must not pass.
    assert not np.allclose(dense2.grads["W"], A1.T @ (P - Y), **TOL)
    print("and a wrong gradient (without the 1/m) does not agree, as it must not")
    # The fast training path computes the same dL/dZ2 without the loss value.
    assert np.allclose(loss.gradient(z, Y.astype(z.dtype)), dZ2, **TOL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000, help="training epochs (1000)")
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling (0)")
    parser.add_argument("--out", type=Path, default=Path("runs/script"),
                        help="folder for the pictures (runs/script)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")

    heading("1. The data")
    # 1,797 digits of 8x8 pixels, each pixel the ink count 0..16 of a 4x4 block of a 32x32 bitmap.
    split = load_digits_split()
    prep = digits_preprocessing()                      # divide by 16: inputs in [0, 1]
    X_train = apply_preprocessing(split.X_train, prep)
    X_test = apply_preprocessing(split.X_test, prep)
    print(f"train {X_train.shape}, test {X_test.shape}, pixels scaled by {prep['scale']:g} "
          f"to [{X_train.min():g}, {X_train.max():g}]")
    print(f"the first training digit, a {split.y_train[0]}:\n{ascii_digit(split.X_train[0])}")

    heading("2. The model")
    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=args.seed)
    model.summary()                                    # 64*32+32 + 32*10+10 = 2,410 parameters

    heading("3. One forward pass by hand")
    m = 5
    x, y = X_train[:m].astype(model.dtype), split.y_train[:m]   # the model computes in float32
    cache = forward_by_hand(model, x, y)

    heading("4. One backward pass by hand")
    backward_by_hand(model, x, y, cache)

    heading(f"5. Training: {args.epochs} epochs of mini-batch SGD")
    # Each step: forward a batch of 32, dL/dZ2, backward, then W <- W - lr * dW for every W.
    # (The hand passes above changed no weight: forward and backward only fill the grads.)
    history = model.fit(X_train, split.y_train, epochs=args.epochs, batch_size=32,
                        optimizer=SGD(lr=0.1), loss=SoftmaxCrossEntropy())
    losses = history["loss"]
    for e in sorted({1, 2, 5, 10, 100, len(losses)} & set(range(1, len(losses) + 1))):
        print(f"epoch {e:5d}  loss {losses[e - 1]:.6f}  accuracy {history['accuracy'][e - 1]:.4f}")

    heading("6. Evaluation")
    pred_test, pred_train = model.predict(X_test), model.predict(X_train)
    test_acc = metrics.accuracy(split.y_test, pred_test)
    train_acc = metrics.accuracy(split.y_train, pred_train)
    print(f"test accuracy {test_acc:.4f} ({int((pred_test == split.y_test).sum())}/"
          f"{len(split.y_test)}), train accuracy {train_acc:.4f}")
    print(metrics.classification_report(split.y_test, pred_test, 10))

    heading("7. Pictures")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    proba_test = model.predict_proba(X_test)
    cm = metrics.confusion_matrix(split.y_test, pred_test, 10)
    report.plot_training_loss(history.history, out / "training_loss.png")
    report.plot_confusion_matrix(cm, out / "confusion_matrix.png")
    report.plot_sample_digits(split.X_test, split.y_test, out / "sample_digits.png")
    report.plot_sample_predictions(split.X_test, split.y_test, proba_test,
                                   out / "sample_predictions.png")
    for name in ("training_loss", "confusion_matrix", "sample_digits", "sample_predictions"):
        print(out / f"{name}.png")

    heading("8. The README's example digit")
    print(ascii_digit(README_DIGIT))
    p = model.predict_proba(apply_preprocessing(README_DIGIT.reshape(1, 64), prep))[0]
    top = np.argsort(-p)[:3]
    print(f"README example digit: predicted digit {top[0]} with probability {p[top[0]]:.1%} "
          f"(top 3: {', '.join(f'{k}: {p[k]:.1%}' for k in top)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
