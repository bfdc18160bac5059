"""scikit-learn's 8x8 digits (1,797 images, 64 features in 0..16), and the seed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: pixel values of the digits dataset run from 0 to this (ink count in a 4x4 block)
DIGITS_MAX = 16.0


@dataclass(frozen=True)
class Split:
    """A train/test split plus what made it (recorded in model files to redo it exactly)."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    info: dict


def load_digits_split(test_size: float = 0.2, random_state: int = 42) -> Split:
    """The digits in their raw 0..16 scale, split stratified by class (the seed split)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=random_state)
    info = {"dataset": "digits", "test_size": test_size, "random_state": random_state,
            "stratify": True, "n_train": int(len(y_train)), "n_test": int(len(y_test))}
    return Split(X_train, X_test, y_train.astype(np.int64), y_test.astype(np.int64), info)


def digits_preprocessing() -> dict:
    """The preprocessing the default model records: divide the 0..16 pixels by 16."""
    return {"input": "digits8x8", "n_features": 64, "shape": [8, 8], "raw_max": DIGITS_MAX,
            "scale": 1.0 / DIGITS_MAX}


def apply_preprocessing(X_raw: np.ndarray, preprocessing: dict,
                        dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Raw dataset-scale inputs -> model inputs (in ``dtype``), as recorded in a model's
    ``preprocessing``: ``X_raw * scale``."""
    X = np.array(X_raw, dtype=dtype)
    X *= np.asarray(float(preprocessing.get("scale", 1.0)), dtype=X.dtype)
    return X
