"""scikit-learn estimators around :class:`~nnscratch.model.Sequential`: :class:`NNClassifier`
and :class:`NNRegressor`.

They follow scikit-learn's estimator contract (``parametrize_with_checks`` passes with no
expected failures), so ``Pipeline``, ``GridSearchCV``, ``cross_val_score``, ``clone``,
``CalibratedClassifierCV`` and the rest work with them::

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from nnscratch import NNClassifier
    >>> clf = make_pipeline(StandardScaler(), NNClassifier(hidden_layer_sizes=(64,), epochs=50))

The network is built at ``fit`` from the hyper-parameters, with the same meaning as the keys of a
training config (:data:`nnscratch.config.TRAIN_DEFAULTS`): ``layers`` (optional layer specs, e.g.
conv layers, applied to rows reshaped to ``input_shape``), then Flatten if needed, then per
entry of ``hidden_layer_sizes`` Dense [BatchNorm] activation [Dropout], then a Dense output layer
(one output per class, or per target). Classifiers train under softmax cross-entropy,
regressors under mean squared error on real-valued targets.

Pickling (joblib, Dask) carries the weights and the optimizer's state as safetensors bytes, not
as pickled arrays; ``save``/``load`` write and read an nnscratch model file (no pickle at all).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .callbacks import Callback, EarlyStopping
from .config import build_layer, build_layers, build_optimizer, build_schedule, train_config
from .layers import Flatten
from .losses import MeanSquaredError, SoftmaxCrossEntropy, log_softmax, softmax
from .model import Sequential, load_model, model_from_payload

#: estimator parameter -> the training-config key it sets (nnscratch.config.TRAIN_DEFAULTS)
PARAM_TO_KEY = {
    "hidden_layer_sizes": "hidden", "layers": "layers", "activation": "activation",
    "optimizer": "optimizer", "lr": "lr", "momentum": "momentum", "weight_decay": "weight_decay",
    "clip_norm": "clip_norm", "epochs": "epochs", "batch_size": "batch_size",
    "dropout": "dropout", "batch_norm": "batch_norm", "schedule": "schedule", "warmup": "warmup",
    "early_stopping": "early_stopping", "validation_fraction": "validation_split",
    "augment": "augment", "dtype": "dtype", "accelerate": "accelerate",
    "random_state": "seed",
}
KEY_TO_PARAM = {v: k for k, v in PARAM_TO_KEY.items()}


class _ValidationScore(Callback):
    """Records ``score(X_val, y_val)`` of the estimator after every epoch (regressors: R^2)."""

    def __init__(self, score: Any, X: np.ndarray, y: np.ndarray) -> None:
        self.score, self.X, self.y, self.scores = score, X, y, []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.scores.append(float(self.score(self.X, self.y)))


class _NNBase(BaseEstimator):
    """What both estimators share: hyper-parameters, network, training, pickling, files."""

    _loss: type = SoftmaxCrossEntropy

    def __init__(self, hidden_layer_sizes: Any = (32,), *, layers: Any = None,
                 input_shape: Any = None, activation: str = "relu", optimizer: str = "adam",
                 lr: float = 0.001, momentum: float | None = None,
                 weight_decay: float | None = None, clip_norm: float | None = None,
                 epochs: int = 200, batch_size: int = 32, dropout: float = 0.0,
                 batch_norm: bool = False, schedule: str = "constant", warmup: int = 0,
                 early_stopping: int = 0, validation_fraction: float = 0.1, augment: int = 0,
                 dtype: str = "float64", accelerate: bool = True, warm_start: bool = False,
                 random_state: Any = None, verbose: bool = False) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.layers = layers
        self.input_shape = input_shape
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.schedule = schedule
        self.warmup = warmup
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.augment = augment
        self.dtype = dtype
        self.accelerate = accelerate
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # -- hyper-parameters -> configuration ---------------------------------------------------
    def _config(self) -> dict[str, Any]:
        """The training config these hyper-parameters mean, checked by
        :func:`nnscratch.config.train_config` (messages name the parameter)."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            hidden = [int(hidden)]
        elif isinstance(hidden, (list, tuple, np.ndarray)):
            hidden = [int(h) if isinstance(h, np.integer) else h for h in hidden]
        settings = {key: getattr(self, param) for param, key in PARAM_TO_KEY.items()
                    if param not in ("random_state", "validation_fraction")}
        settings["hidden"] = hidden
        if self.layers is not None:
            settings["layers"] = list(self.layers)
        if self.early_stopping:
            settings["validation_split"] = self.validation_fraction
        try:
            return train_config(settings)
        except ValueError as exc:
            msg = str(exc)
            for key, param in KEY_TO_PARAM.items():
                msg = msg.replace(f"setting {key!r}", f"{type(self).__name__} parameter {param}")
            raise ValueError(msg) from None

    def _input_shape(self, n_features: int) -> tuple[int, ...]:
        if self.input_shape is None:
            return (n_features,)
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else ()
        if not shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise ValueError(f"input_shape must be a tuple of positive integers, "
                             f"got {self.input_shape!r}")
        if int(np.prod(shape)) != n_features:
            raise ValueError(f"input_shape {shape} holds {int(np.prod(shape))} numbers but X has "
                             f"{n_features} features")
        return tuple(int(d) for d in shape)

    def _build_model(self, cfg: dict[str, Any], n_features: int, n_outputs: int,
                     seed: int) -> Sequential:
        """``layers`` (if given), Flatten (if needed), the hidden Dense layers, the output.
        Without ``layers`` the network takes flat rows (``input_shape`` then only serves
        ``augment``), as ``nnscratch train`` builds an MLP."""
        shape = self._input_shape(n_features)
        body = [build_layer(spec) for spec in (self.layers or [])]
        if not body:
            shape = (n_features,)
        out = shape
        for i, layer in enumerate(body):
            try:
                out = tuple(layer.output_shape(out))
            except ValueError as exc:
                raise ValueError(f"layers[{i}] ({layer!r}) does not fit: {exc}") from None
        if len(out) > 1:
            body.append(Flatten())
        head = build_layers({**cfg, "arch": "mlp", "layers": None}, int(np.prod(out)), n_outputs)
        return Sequential(body + head, input_shape=shape, seed=seed, dtype=cfg["dtype"],
                          accelerate=cfg["accelerate"])

    def _augment(self, cfg: dict[str, Any], model: Sequential) -> Any:
        """Random shifts of up to ``augment`` pixels of the ``input_shape`` images (flat models
        get the shifted images back as rows), or None."""
        if not cfg["augment"]:
            return None
        shape = self._input_shape(model.n_features_in)
        if len(shape) != 3:
            raise ValueError("augment shifts images: give input_shape=(C, H, W)")
        from .data import RandomShift

        shift = RandomShift(shape, cfg["augment"])
        if len(model.input_shape) > 1:
            return shift
        return lambda xb, rng: shift(xb, rng).reshape(len(xb), -1)

    # -- training ------------------------------------------------------------------------------
    def _targets(self, y: np.ndarray) -> np.ndarray:  # (subclasses)
        raise NotImplementedError

    def _fit(self, X: np.ndarray, y: np.ndarray, *, incremental: bool) -> _NNBase:
        cfg = self._config()
        fitted = hasattr(self, "model_")
        continue_ = fitted and (incremental or self.warm_start)
        if continue_ and self.model_.n_features_in != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.model_.n_features_in} features as input")
        targets = self._targets(y)
        rs = check_random_state(self.random_state)
        if not continue_:
            # an int random_state seeds the network itself, as --seed does for nnscratch train
            seed = (int(self.random_state) if isinstance(self.random_state, (int, np.integer))
                    else int(rs.randint(np.iinfo(np.int32).max)))
            self.model_ = self._build_model(cfg, X.shape[1], self._n_outputs, seed)
            if hasattr(self, "classes_"):   # (the model file names its outputs)
                self.model_.class_names = [str(c) for c in self.classes_]
            self._optimizer = build_optimizer(cfg)
            self.n_iter_ = 0
            self.loss_curve_: list[float] = []
            self.validation_scores_: list[float] | None = None
            self.history_: dict[str, list[float]] = {}
        elif not incremental:
            self._optimizer.lr = cfg["lr"]   # a warm-started fit runs its schedule again
        model = self.model_
        model.accelerate = cfg["accelerate"]
        callbacks: list[Callback] = []
        val = None
        if cfg["early_stopping"] and not incremental:
            from sklearn.model_selection import train_test_split

            split_seed = int(rs.randint(np.iinfo(np.int32).max))
            stratify = targets if isinstance(self, ClassifierMixin) else None
            try:
                X, Xv, targets, yv = train_test_split(
                    X, targets, test_size=cfg["validation_split"], random_state=split_seed,
                    stratify=stratify)
            except ValueError as exc:
                raise ValueError(f"validation_fraction={self.validation_fraction}: {exc}") from None
            val = (Xv, yv)
            callbacks.append(EarlyStopping("val_loss", patience=cfg["early_stopping"]))
            score = _ValidationScore(self._val_score, Xv, yv)
            callbacks.append(score)
        history = model.fit(
            X, targets, epochs=1 if incremental else cfg["epochs"],
            batch_size=cfg["batch_size"], optimizer=self._optimizer, loss=self._loss(),
            schedule=None if incremental else build_schedule(cfg), validation_data=val,
            callbacks=callbacks, verbose=bool(self.verbose),
            augment=self._augment(cfg, model))
        for key, values in history.history.items():
            self.history_.setdefault(key, []).extend(values)
        self.n_iter_ += len(history)
        self.loss_curve_ = list(self.history_["loss"])
        if val is not None:
            self.validation_scores_ = (self.validation_scores_ or []) + score.scores
        return self

    def _val_score(self, X: np.ndarray, y: np.ndarray) -> float:  # (subclasses)
        raise NotImplementedError

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs (n, k) in float64 for checked ``X``."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.decision_function(X).astype(np.float64)

    # -- pickling: the weights as safetensors bytes ----------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        model = state.pop("model_", None)
        optimizer = state.pop("_optimizer", None)
        if model is not None:
            from safetensors.numpy import save

            tensors, header = model.file_payload(self._training_state(optimizer))
            state["_model_safetensors"] = save(tensors)
            state["_model_header"] = json.dumps(header)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        data, header = state.pop("_model_safetensors", None), state.pop("_model_header", None)
        super().__setstate__(state)
        if data is not None:
            from safetensors.numpy import load

            self.model_ = model_from_payload(load(data), json.loads(header), type(self).__name__)
            self._restore_optimizer()

    def _training_state(self, optimizer: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What continuing to train needs beside the weights: the optimizer's state and the
        position of the model's generator (shuffling, dropout)."""
        info: dict[str, Any] = {"rng": self.model_.rng.bit_generator.state}
        arrays: dict[str, np.ndarray] = {}
        if optimizer is not None and optimizer.pairs:
            scalars, state = optimizer.state_dict()
            info["optimizer"] = scalars
            arrays = {k: self.model_.backend.to_numpy(v) for k, v in state.items()}
        return info, arrays

    def _restore_optimizer(self) -> None:
        """Rebuild the optimizer with the state saved beside the weights (or a fresh one) and
        put the model's generator where it was."""
        self._optimizer = build_optimizer(self._config())
        info, arrays = self.model_.training_state
        self._optimizer.bind(self.model_.parameters())
        if info is not None and "optimizer" in info:
            self._optimizer.load_state_dict(info["optimizer"], arrays)
        if info is not None and "rng" in info:
            self.model_.rng.bit_generator.state = info["rng"]
        self.model_.training_state = (None, {})

    # -- model files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted estimator as an nnscratch model file (safetensors; no pickle): the
        network, the optimizer's state, the hyper-parameters and the fitted attributes."""
        check_is_fitted(self, "model_")
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None
        if isinstance(params["hidden_layer_sizes"], (tuple, np.ndarray)):
            params["hidden_layer_sizes"] = [int(h) for h in params["hidden_layer_sizes"]]
        if params["input_shape"] is not None:
            params["input_shape"] = [int(d) for d in params["input_shape"]]
        fitted = {"n_iter_": self.n_iter_, "loss_curve_": self.loss_curve_,
                  "validation_scores_": self.validation_scores_, "history_": self.history_,
                  "n_features_in_": int(self.n_features_in_)}
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(f) for f in self.feature_names_in_]
        fitted.update(self._fitted_extra())
        training_state = self._training_state(self._optimizer)
        model = self.model_
        saved = model.metadata
        model.metadata = {**saved, "estimator": {"class": type(self).__name__, "params": params,
                                                 "fitted": fitted}}
        try:
            model.save(path, training_state=training_state)
        finally:
            model.metadata = saved

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Read an estimator written by :meth:`save` (``ModelFileError`` if it is not one)."""
        from .errors import ModelFileError

        model = load_model(path)
        meta = model.metadata.pop("estimator", None)
        if not isinstance(meta, dict) or meta.get("class") != cls.__name__:
            raise ModelFileError(f"{path}: not a saved {cls.__name__} (an nnscratch model file "
                                 "without the estimator's settings; use nnscratch.load_model)")
        try:
            params = dict(meta["params"])
            if isinstance(params.get("hidden_layer_sizes"), list):
                params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
            if isinstance(params.get("input_shape"), list):
                params["input_shape"] = tuple(params["input_shape"])
            est = cls(**params)
            fitted = dict(meta["fitted"])
            est.model_ = model
            est.n_iter_ = int(fitted.pop("n_iter_"))
            est.loss_curve_ = list(fitted.pop("loss_curve_"))
            est.validation_scores_ = fitted.pop("validation_scores_")
            est.history_ = dict(fitted.pop("history_"))
            est.n_features_in_ = int(fitted.pop("n_features_in_"))
            if "feature_names_in_" in fitted:
                est.feature_names_in_ = np.asarray(fitted.pop("feature_names_in_"), dtype=object)
            est._load_extra(fitted)
            est._restore_optimizer()
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: corrupt estimator settings ({exc})") from None
        return est

    def _fitted_extra(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, fitted: dict[str, Any]) -> None:
        pass


class NNClassifier(ClassifierMixin, _NNBase):
    """A neural-network classifier (softmax cross-entropy) with scikit-learn's interface.

    Parameters (all stored unchanged; checked at ``fit``)
    ---------------------------------------------------
    hidden_layer_sizes : int or tuple of int, default (32,)
        Hidden Dense layers, each followed by [BatchNorm] ``activation`` [Dropout].
    layers : list of layer specs, optional
        Layers before the hidden ones, as in a config file or model header, e.g.
        ``[{"type": "Conv2D", "config": {"in_channels": 1, "out_channels": 8, "kernel_size": 3,
        "padding": 1}}, {"type": "ReLU"}, {"type": "MaxPool2D", "config": {"pool_size": 2}}]``;
        the rows of ``X`` are reshaped to ``input_shape`` for them.
    input_shape : tuple of int, optional
        One example's shape, e.g. ``(1, 8, 8)``; X holds it flattened (C*H*W columns).
    activation, optimizer, lr, momentum, weight_decay, clip_norm, epochs, batch_size, dropout,
    batch_norm, schedule, warmup, augment, dtype, accelerate
        As the training config's keys and ``nnscratch train`` flags of the same names.
        Defaults as scikit-learn's MLP where it has them (adam, lr 0.001, 200 epochs), and
        float64 as it computes: scikit-learn's checks ask predictions on a subset to equal
        those on the whole to 1e-7, which float32 products of different sizes do not give
        (``dtype="float32"`` is faster and fine for training).
    early_stopping : int, default 0
        Patience in epochs (0: off): hold out ``validation_fraction`` of the data (stratified),
        stop when its loss has not improved for that many epochs, keep the best weights.
    warm_start : bool
        ``fit`` continues from the previous fit's weights and optimizer state.
    random_state : None, int or RandomState
        Seeds the weights, the shuffling and the validation split.
    verbose : bool
        A progress bar per ``fit`` (on a terminal).

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (DataFrames), n_iter_ (epochs trained),
    loss_curve_ (training loss per epoch), validation_scores_ (validation accuracy per epoch
    with early stopping, else None), history_ (every History figure per epoch), model_ (the
    :class:`~nnscratch.model.Sequential`).
    """

    _loss = SoftmaxCrossEntropy

    def fit(self, X: Any, y: Any) -> NNClassifier:
        """Train for ``epochs`` epochs (from scratch, unless ``warm_start``)."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if not (self.warm_start and hasattr(self, "classes_")):
            self.classes_ = np.unique(y)
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NNClassifier:
        """One epoch over (X, y). The first call fixes the classes: ``classes`` if given, else
        those of ``y``."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the first call "
                             f"to partial_fit, {self.classes_!r}")
        return self._fit(X, y, incremental=True)

    @property
    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if len(self.classes_) < 2:
            raise ValueError(f"NNClassifier needs samples of at least 2 classes in y; got one "
                             f"class: {self.classes_[0]!r}")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ValueError(f"y holds labels not among the classes {self.classes_.tolist()} "
                             f"(e.g. {y[unknown][0]!r})")
        return idx.astype(np.int64)

    def _val_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float((self.model_.predict(X) == y).mean())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of ``classes_``."""
        return softmax(self._outputs(X))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the outputs (log-softmax)."""
        return log_softmax(self._outputs(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each example (values of ``classes_``)."""
        best = self._outputs(X).argmax(axis=1)   # (first: it checks that the model is fitted)
        return self.classes_[best]

    def _fitted_extra(self) -> dict[str, Any]:
        return {"classes_": self.classes_.tolist()}

    def _load_extra(self, fitted: dict[str, Any]) -> None:
        self.classes_ = np.asarray(fitted["classes_"])


class NNRegressor(RegressorMixin, _NNBase):
    """A neural-network regressor (mean squared error) with scikit-learn's interface.

    The same parameters as :class:`NNClassifier`. Targets ``y`` of shape (n,) or (n, k) (one
    output per target); ``predict`` returns (n,) for a single target, as scikit-learn's
    ``MLPRegressor``. ``validation_scores_``: R^2 on the held-out fraction per epoch (with
    early stopping).
    """

    _loss = MeanSquaredError

    def fit(self, X: Any, y: Any) -> NNRegressor:
        """Train for ``epochs`` epochs (from scratch, unless ``warm_start``)."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=True)
        self._set_outputs(y)
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> NNRegressor:
        """One epoch over (X, y)."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=True, reset=first)
        if first:
            self._set_outputs(y)
        return self._fit(X, y, incremental=True)

    def _set_outputs(self, y: np.ndarray) -> None:
        k = 1 if y.ndim == 1 else y.shape[1]
        if hasattr(self, "model_") and self.warm_start and k != self._n_outputs_:
            raise ValueError(f"y has {k} targets, the warm-started model predicts "
                             f"{self._n_outputs_}")
        self._n_outputs_ = k

    @property
    def _n_outputs(self) -> int:
        return self._n_outputs_

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if y.shape[1] != self._n_outputs_:
            raise ValueError(f"y has {y.shape[1]} targets, the model predicts {self._n_outputs_}")
        return y

    def _val_score(self, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.model_.decision_function(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: (n,) for one target, (n, k) for k."""
        out = self._outputs(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _fitted_extra(self) -> dict[str, Any]:
        return {"n_outputs_": self._n_outputs_}

    def _load_extra(self, fitted: dict[str, Any]) -> None:
        self._n_outputs_ = int(fitted["n_outputs_"])


__all__ = ["NNClassifier", "NNRegressor"]
