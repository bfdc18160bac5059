"""Classification metrics: a thin layer over ``sklearn.metrics``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> str:
    return skm.classification_report(y_true, y_pred, labels=np.arange(n_classes), digits=4,
                                     zero_division=0)


def per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """``{"0": {"precision", "recall", "f1", "support"}, ...}`` for every class."""
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), zero_division=0)
    return {str(c): {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                     "support": int(s[c])} for c in range(n_classes)}
