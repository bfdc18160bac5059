from __future__ import annotations

import nnscratch

# as the nnscratch command does first (before NumPy loads): OpenBLAS's idle threads sleep soon
# after a product instead of spinning for 0.1 s, so the suite's in-process training runs (and
# any other process on the machine) do not lose the cores to them; nnscratch's element-wise
# split is on, as for a CLI user (results are the same bit for bit either way)
nnscratch.enable_threads(quiet=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnscratch import Sequential  # noqa: E402
from nnscratch.data import apply_preprocessing, digits_preprocessing, load_digits_split  # noqa: E402
from nnscratch.layers import Dense, ReLU  # noqa: E402
from nnscratch.losses import SoftmaxCrossEntropy  # noqa: E402
from nnscratch.optim import SGD  # noqa: E402

#: the 8x8 digit of the original README (a zero), in the dataset's 0..16 scale
README_ZERO = np.array([[0, 0, 5, 13, 9, 1, 0, 0],
                        [0, 0, 13, 15, 10, 15, 5, 0],
                        [0, 3, 15, 2, 0, 11, 8, 0],
                        [0, 4, 12, 0, 0, 8, 8, 0],
                        [0, 5, 8, 0, 0, 9, 8, 0],
                        [0, 4, 11, 0, 1, 12, 7, 0],
                        [0, 2, 14, 5, 10, 12, 0, 0],
                        [0, 0, 6, 13, 10, 0, 0, 0]])


@pytest.fixture(scope="session")
def split():
    return load_digits_split()


@pytest.fixture(scope="session")
def scaled(split):
    prep = digits_preprocessing()
    return (apply_preprocessing(split.X_train, prep), split.y_train,
            apply_preprocessing(split.X_test, prep), split.y_test)


@pytest.fixture(scope="session")
def trained_model(scaled):
    """The seed configuration, fully trained (about 2 s)."""
    X_train, y_train, _, _ = scaled
    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
    model.preprocessing = digits_preprocessing()
    model.fit(X_train, y_train, epochs=1000, batch_size=32, optimizer=SGD(lr=0.1),
              loss=SoftmaxCrossEntropy())
    return model


@pytest.fixture(scope="session")
def model_file(trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    trained_model.save(path)
    return path


@pytest.fixture
def readme_zero():
    return README_ZERO.copy()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
