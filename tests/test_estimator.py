"""NNClassifier and NNRegressor: scikit-learn's estimator checks (no expected failures), the
ecosystem (Pipeline, searches, cross-validation, calibration, voting, pandas), pickling with
safetensors bytes, model files, classes, partial_fit and warm_start."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits, make_regression
from sklearn.ensemble import VotingClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnscratch import ModelFileError, NNClassifier, NNRegressor

# tiny epochs keep the checks quick; lr 0.01 lets them reach the accuracy the checks demand
CHECKED = [NNClassifier(epochs=20, lr=0.01, random_state=0),
           NNRegressor(epochs=20, lr=0.01, random_state=0)]


def test_minimum_scikit_learn():
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    assert (major, minor) >= (1, 6)


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: {})
def test_sklearn_conformance(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def _clf(**kw):
    return NNClassifier(**{"hidden_layer_sizes": (32,), "epochs": 15, "lr": 0.01,
                           "random_state": 0, **kw})


def test_pipeline_with_scaler(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), _clf()).fit(X[:450], y[:450])
    assert pipe.score(X[450:], y[450:]) > 0.85


def test_grid_and_randomized_search_with_two_jobs(digits):
    X, y = digits
    grid = GridSearchCV(_clf(epochs=5), {"lr": [0.01, 0.001], "hidden_layer_sizes": [(16,), (32,)]},
                        cv=3, n_jobs=2).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4 and grid.best_score_ > 0.5
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    rnd = RandomizedSearchCV(_clf(epochs=5), {"lr": [0.03, 0.01, 0.003], "batch_size": [16, 32]},
                             n_iter=3, cv=3, n_jobs=2, random_state=0).fit(X, y)
    assert len(rnd.cv_results_["params"]) == 3 and rnd.best_score_ > 0.5


def test_halving_search_uses_epochs_as_the_resource(digits):
    X, y = digits
    lrs = [0.03, 0.02, 0.01, 0.006, 0.003, 0.002, 0.001, 0.0006, 0.0003]
    search = HalvingRandomSearchCV(_clf(), {"lr": lrs}, n_candidates=9, resource="epochs",
                                   min_resources=2, max_resources=18, factor=3, cv=3,
                                   random_state=0).fit(X, y)   # 9 settings, 3, then 1
    assert sorted(set(search.cv_results_["param_epochs"])) == [2, 6, 18]
    assert search.best_estimator_.n_iter_ == search.best_params_["epochs"]


def test_cross_val_score_and_clone(digits):
    X, y = digits
    est = _clf(epochs=10)
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7
    assert not hasattr(est, "model_")
    fitted = clone(est).fit(X, y)
    copy = clone(fitted)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")


def test_calibrated_and_voting_classifiers(digits):
    X, y = digits
    cal = CalibratedClassifierCV(_clf(epochs=10), cv=3).fit(X[:450], y[:450])
    proba = cal.predict_proba(X[450:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert cal.score(X[450:], y[450:]) > 0.8
    vote = VotingClassifier([("nn", _clf(epochs=10)),
                             ("lr", LogisticRegression(max_iter=2000))], voting="soft")
    assert vote.fit(X[:450], y[:450]).score(X[450:], y[450:]) > 0.85


def test_pandas_in_and_out(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    labels = pd.Series(np.array(list("abcdefghij"))[y], name="digit")
    pipe = make_pipeline(StandardScaler().set_output(transform="pandas"), _clf())
    pipe.fit(df, labels)
    est = pipe[-1]
    assert list(est.feature_names_in_) == list(df.columns)
    assert list(est.classes_) == list("abcdefghij")
    proba = pd.DataFrame(pipe.predict_proba(df), columns=est.classes_, index=df.index)
    assert proba.shape == (600, 10) and (proba.idxmax(axis=1) == pipe.predict(df)).all()
    assert (pipe.predict(df) == labels).mean() > 0.9
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(X)   # fitted with names, given none


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 10, -7])])
def test_any_label_values(labels):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 4)) + np.repeat(np.eye(3, 4) * 4, 30, axis=0)
    y = np.repeat(labels, 30)
    est = _clf(epochs=30).fit(X, y)
    assert set(est.classes_) == set(labels)
    assert est.score(X, y) > 0.9
    assert set(est.predict(X)) <= set(labels)
    assert est.predict_proba(X).shape == (90, 3)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), est.predict_proba(X))


def test_fitted_attributes(digits):
    X, y = digits
    est = _clf(early_stopping=3, epochs=40).fit(X, y)
    assert est.n_features_in_ == 64 and est.n_iter_ == len(est.loss_curve_) <= 40
    assert len(est.validation_scores_) == est.n_iter_
    assert set(est.history_) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert est.model_.n_outputs == 10


def test_pickle_carries_safetensors_bytes_and_continues_identically(digits):
    X, y = digits
    a = _clf(epochs=3).fit(X, y)
    state = a.__getstate__()
    assert isinstance(state["_model_safetensors"], bytes)
    assert not any(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in state.values())
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a.partial_fit(X, y)   # the optimizer's state (Adam's moments) came along
    b.partial_fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = pickle.loads(pickle.dumps(_clf(epochs=3).fit(X, y)))
    c._optimizer = type(c._optimizer)(lr=0.01)   # negative control: Adam's moments lost
    c._optimizer.bind(c.model_.parameters())
    c.partial_fit(X, y)
    assert not np.array_equal(c.predict_proba(X), a.predict_proba(X))


def test_save_and_load_model_file(digits, tmp_path):
    X, y = digits
    est = _clf(epochs=3).fit(X, y)
    est.save(tmp_path / "clf.safetensors")
    back = NNClassifier.load(tmp_path / "clf.safetensors")
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.get_params() == est.get_params() and back.n_iter_ == 3
    raw = open(tmp_path / "clf.safetensors", "rb").read()
    assert b"pickle" not in raw and not raw.startswith(b"\x80")
    from nnscratch import load_model

    plain = load_model(tmp_path / "clf.safetensors")
    plain.metadata = {}
    plain.save(tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a saved NNClassifier"):
        NNClassifier.load(tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a saved NNRegressor"):
        NNRegressor.load(tmp_path / "clf.safetensors")


def test_partial_fit_and_warm_start(digits):
    X, y = digits
    inc = _clf(epochs=1)
    for _ in range(3):
        inc.partial_fit(X, y, classes=np.arange(10))
    assert inc.n_iter_ == 3 and len(inc.loss_curve_) == 3
    assert inc.loss_curve_[-1] < inc.loss_curve_[0]
    with pytest.raises(ValueError, match="features"):
        inc.partial_fit(X[:, :10], y)
    warm = _clf(epochs=2, warm_start=True).fit(X, y)
    w = warm.model_.parameters()[0][0].copy()
    warm.fit(X, y)
    assert warm.n_iter_ == 4
    cold = _clf(epochs=2).fit(X, y)
    cold.fit(X, y)
    np.testing.assert_array_equal(cold.model_.parameters()[0][0].size, w.size)
    assert cold.n_iter_ == 2


def test_cnn_from_layer_specs_with_augmentation(digits):
    X, y = digits
    conv = [{"type": "Conv2D", "config": {"in_channels": 1, "out_channels": 4, "kernel_size": 3,
                                          "padding": 1}},
            {"type": "ReLU"}, {"type": "MaxPool2D", "config": {"kernel_size": 2}}]
    est = NNClassifier(layers=conv, input_shape=(1, 8, 8), hidden_layer_sizes=(), epochs=5,
                       lr=0.01, augment=1, random_state=0).fit(X / 16, y)
    names = [type(la).__name__ for la in est.model_.layers]
    assert names == ["Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense"]
    assert est.score(X / 16, y) > 0.6


def test_mlp_takes_rows_as_train_builds_it(digits):
    """Without layer specs the network is the one nnscratch train builds (flat rows, no
    Flatten), input_shape only serving augmentation; the fused epochs apply to it."""
    X, y = digits
    est = _clf(input_shape=(1, 8, 8), augment=1, epochs=2).fit(X / 16, y)
    assert [type(la).__name__ for la in est.model_.layers] == ["Dense", "ReLU", "Dense"]
    assert est.model_.input_shape == (64,)
    plain = _clf(epochs=2).fit(X / 16, y)
    assert not np.array_equal(est.predict_proba(X / 16), plain.predict_proba(X / 16))  # shifted


def test_bad_hyper_parameters_name_the_parameter(digits):
    X, y = digits
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        NNClassifier(hidden_layer_sizes=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="lr"):
        NNClassifier(lr=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="input_shape"):
        NNClassifier(input_shape=(1, 7, 7)).fit(X, y)


def test_regressor_single_and_multi_output():
    X, y = make_regression(n_samples=300, n_features=6, n_targets=2, noise=1.0, random_state=0)
    y = y / y.std(axis=0)
    multi = make_pipeline(StandardScaler(), NNRegressor(epochs=60, lr=0.01, random_state=0))
    multi.fit(X, y)
    assert multi.predict(X).shape == (300, 2) and multi.score(X, y) > 0.9
    single = NNRegressor(epochs=60, lr=0.01, random_state=0, early_stopping=5).fit(X, y[:, 0])
    assert single.predict(X).shape == (300,) and single.score(X, y[:, 0]) > 0.8
    assert single.validation_scores_ and max(single.validation_scores_) > 0.8
    assert "accuracy" not in single.history_
    b = pickle.loads(pickle.dumps(single))
    np.testing.assert_array_equal(b.predict(X), single.predict(X))
