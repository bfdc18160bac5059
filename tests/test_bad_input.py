"""fit and predict reject malformed data with a clear message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import InputError, Sequential
from nnscratch.layers import Dense, ReLU
from nnscratch.optim import SGD


@pytest.fixture
def model():
    return Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)


def _X(n=5):
    return np.random.default_rng(0).random((n, 64))


def _with(value):
    X = _X()
    X[2, 7] = value
    return X


BAD_X = [
    (np.zeros((5, 63)), "63 features.*expects 64"),
    (np.zeros((5, 65)), "65 features"),
    (np.zeros((0, 64)), "empty"),
    (np.zeros((2, 8, 8)), "2-D"),
    (np.zeros(10), "2-D"),
    (_with(np.nan), "NaN or infinite"),
    (_with(np.inf), "NaN or infinite"),
    (_with(-np.inf), "NaN or infinite"),
    (np.array([["a"] * 64]), "numeric"),
    (np.array([[object()] * 64]), "numeric"),
    ([[1, 2], [3]], "could not be read|numeric"),
    (np.zeros((3, 64), dtype=complex), "numeric"),
]


@pytest.mark.parametrize("X,match", BAD_X)
def test_predict_rejects(model, X, match):
    for method in (model.predict, model.predict_proba):
        with pytest.raises(InputError, match=match) as info:
            method(X)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("X,match", BAD_X)
def test_fit_rejects_bad_X(model, X, match):
    n = len(X) if hasattr(X, "__len__") else 1
    with pytest.raises(InputError, match=match):
        model.fit(X, np.zeros(n, dtype=int), optimizer=SGD(lr=0.1))


@pytest.mark.parametrize("y,match", [
    (np.array([0, 1, 2, 10, 4]), r"outside 0\.\.9"),
    (np.array([0, 1, -1, 3, 4]), r"outside 0\.\.9"),
    (np.array([0, 1, 2]), "3 labels but X has 5"),
    (np.array([0.5, 1, 2, 3, 4]), "integer"),
    (np.array([0, 1, np.nan, 3, 4]), "NaN"),
    (np.array(["a", "b", "c", "d", "e"]), "integer"),
    (np.zeros((5, 2), dtype=int), "1-D"),
])
def test_fit_rejects_bad_labels(model, y, match):
    with pytest.raises(InputError, match=match):
        model.fit(_X(), y, optimizer=SGD(lr=0.1))


def test_fit_accepts_float_integer_labels_and_column_vectors(model):
    model.fit(_X(), np.array([0.0, 1.0, 2.0, 3.0, 9.0]), optimizer=SGD(lr=0.1))
    model.fit(_X(), np.array([[0], [1], [2], [3], [9]]), optimizer=SGD(lr=0.1))


def test_validation_data_is_checked(model):
    with pytest.raises(InputError, match="X_val"):
        model.fit(_X(), np.zeros(5, int), validation_data=(np.zeros((3, 10)), np.zeros(3, int)))
    with pytest.raises(InputError, match="y_val"):
        model.fit(_X(), np.zeros(5, int), validation_data=(_X(3), np.array([0, 1, 11])))


def test_errors_are_value_errors_with_one_line_messages(model):
    with pytest.raises(ValueError) as info:
        model.predict(np.zeros((5, 63)))
    assert "\n" not in str(info.value)
