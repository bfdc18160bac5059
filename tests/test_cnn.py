"""Convolutional networks in a Sequential: shapes traced, images or flat rows, train, save."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import InputError, Sequential, load_model
from nnscratch.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from nnscratch.optim import Adam


def small_cnn(seed=0):
    return Sequential([Conv2D(1, 8, 3, padding=1), BatchNorm(8), ReLU(), MaxPool2D(2), Flatten(),
                       Dropout(0.1), Dense(8 * 4 * 4, 10)], input_shape=(1, 8, 8), seed=seed)


def test_shapes_are_traced(capsys):
    model = small_cnn()
    assert model.output_shapes[0] == (8, 8, 8) and model.output_shapes[3] == (8, 4, 4)
    assert model.output_shapes[-1] == (10,) and model.n_features_in == 64
    model.summary()
    assert "(None, 8, 4, 4)" in capsys.readouterr().out


def test_a_cnn_trains_on_digits_from_images_or_rows(split, tmp_path):
    X = split.X_train.reshape(-1, 1, 8, 8) / 16
    Xt = split.X_test.reshape(-1, 1, 8, 8) / 16
    model = small_cnn()
    h = model.fit(X, split.y_train, epochs=6, batch_size=32, optimizer=Adam(lr=3e-3),
                  validation_data=(Xt, split.y_test))
    assert h["loss"][-1] < 0.3 * h["loss"][0]
    assert model.score(Xt, split.y_test) > 0.95
    np.testing.assert_array_equal(model.predict(Xt), model.predict(split.X_test / 16))
    assert model.predict(Xt[0]).shape == (1,)  # one (C, H, W) image
    model.save(tmp_path / "cnn.safetensors")
    loaded = load_model(tmp_path / "cnn.safetensors")
    assert loaded.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))


def test_bad_shapes():
    model = small_cnn()
    with pytest.raises(InputError, match=r"images of shape \(1, 8, 8\)"):
        model.predict(np.zeros((2, 3, 8, 8)))
    with pytest.raises(InputError, match="features"):
        model.predict(np.zeros((2, 63)))
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([Conv2D(1, 4, 3), Flatten(), Dense(4 * 6 * 6, 10)])
    with pytest.raises(ValueError, match="does not fit"):
        Sequential([Conv2D(1, 4, 3), Dense(144, 10)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="one vector per example"):
        Sequential([Conv2D(1, 4, 3)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="input_shape must be"):
        Sequential([Dense(4, 2)], input_shape=(0,))
