"""Training dynamics (nnscratch.dynamics) and the run report's last-mile pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.cli import main
from nnscratch.data import load_digits_split
from nnscratch.dynamics import TrainingDynamics
from nnscratch.layers import BatchNorm, Dense, Dropout, ReLU
from nnscratch.losses import SoftmaxCrossEntropy
from nnscratch.optim import SGD


@pytest.fixture(scope="module")
def digits():
    s = load_digits_split()
    return (s.X_train / 16).astype(np.float32), s.y_train


def _fit(layers, X, y, accelerate, callbacks=(), epochs=4, opt=None):
    model = Sequential(layers(), seed=0, accelerate=accelerate)
    model.fit(X, y, epochs=epochs, batch_size=32, optimizer=opt or SGD(lr=0.1),
              callbacks=list(callbacks), verbose=False)
    return model


SEED = lambda: [Dense(64, 32), ReLU(), Dense(32, 10)]  # noqa: E731
NOISY = lambda: [Dense(64, 32), BatchNorm(32), ReLU(), Dropout(0.3), Dense(32, 10)]  # noqa: E731


@pytest.mark.parametrize("layers", [SEED, NOISY], ids=["seed", "bn-dropout"])
@pytest.mark.parametrize("accelerate", [True, False])
def test_watching_changes_nothing(digits, layers, accelerate):
    """The probe restores the generator and batch norm's state: the weights are bit for bit
    those of a run without it, on the accelerated and the plain path."""
    X, y = digits
    plain = _fit(layers, X, y, accelerate)
    dyn = TrainingDynamics(X[:64], y[:64], SoftmaxCrossEntropy())
    watched = _fit(layers, X, y, accelerate, [dyn])
    for (_, a, _), (_, b, _) in zip(plain.named_parameters(), watched.named_parameters(),
                                    strict=True):
        np.testing.assert_array_equal(a, b)
    for la, lb in zip(plain.layers, watched.layers, strict=True):
        for k in la.state:
            np.testing.assert_array_equal(la.state[k], lb.state[k])
    rec = dyn.record
    assert rec["epochs"] == [1, 2, 3, 4]
    assert set(rec["grad_norm"]) == {f"{i}.Dense" for i, la in enumerate(watched.layers)
                                     if isinstance(la, Dense)}
    for name in rec["grad_norm"]:
        assert len(rec["grad_norm"][name]) == len(rec["update_ratio"][name]) == 4
        assert all(v > 0 for v in rec["grad_norm"][name] + rec["update_ratio"][name])
        assert rec["histograms"][name][0]["epoch"] == 0 and rec["histograms"][name][-1]["epoch"] == 4
    assert all(0 <= v <= 1 for v in next(iter(rec["dead_relu"].values())))


def test_figures_are_right(digits):
    """Grad norm equals the norm of the layer's own gradient on the probe; the update ratio is
    ||W_after - W_before|| / ||W_before||; units pushed negative are dead."""
    X, y = digits
    model = Sequential(SEED(), seed=0)
    dyn = TrainingDynamics(X[:50], y[:50], SoftmaxCrossEntropy())
    model.fit(X, y, epochs=1, optimizer=SGD(lr=0.1), callbacks=[dyn], verbose=False)
    before = model.layers[0].params["W"].astype(np.float64).copy()
    model.layers[0].params["b"][:8] = -1e3          # 8 of 32 units can never fire
    dyn.set_run({"history": [1]})
    dyn.on_train_begin(2)
    model.layers[0].params["W"][...] *= 1.5         # an "update" of half the weights' norm
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(X[:50], training=True), y[:50])
    model.backward(loss.backward())
    expected = float(np.linalg.norm(model.layers[2].grads["W"].astype(np.float64)))
    dyn.on_epoch_end(2, {})
    rec = dyn.record
    assert rec["dead_relu"]["1.ReLU"][-1] >= 8 / 32
    assert rec["update_ratio"]["0.Dense"][-1] == pytest.approx(0.5, rel=1e-3)
    assert rec["grad_norm"]["2.Dense"][-1] == pytest.approx(expected, rel=1e-3)
    assert before.shape == (64, 32)


def test_sampled_on_long_runs(digits):
    X, y = digits
    dyn = TrainingDynamics(X[:32], y[:32], SoftmaxCrossEntropy(), max_points=5)
    _fit(SEED, X, y, True, [dyn], epochs=20)
    assert dyn.record["epochs"] == [1, 4, 8, 12, 16, 20]


def test_cli_dynamics_on_and_off(tmp_path, capsys):
    assert main(["train", "--epochs", "3", "--out", str(tmp_path / "on"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert metrics["dynamics"]["epochs"] == [1, 2, 3]
    assert (tmp_path / "on" / "dynamics.png").is_file()
    assert not (tmp_path / "on" / "learning_rate.png").exists()   # a constant rate: no chart
    assert main(["train", "--epochs", "3", "--out", str(tmp_path / "off"), "--quiet",
                 "--no-dynamics"]) == 0
    assert "dynamics" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert not (tmp_path / "off" / "dynamics.png").exists()


def test_cli_schedule_draws_the_rate(tmp_path):
    assert main(["train", "--epochs", "3", "--schedule", "cosine", "--out", str(tmp_path / "r"),
                 "--quiet", "--no-dynamics", "--validation-split", "0.2"]) == 0
    assert (tmp_path / "r" / "learning_rate.png").is_file()


def test_curves_titles_and_ticks(tmp_path):
    from matplotlib.figure import Figure

    from nnscratch import report

    seen = {}
    real = Figure.suptitle

    def spy(self, text, *a, **k):
        seen.setdefault("titles", []).append(text)
        seen["ticks"] = [ax.get_xticks() for ax in self.axes]
        return real(self, text, *a, **k)

    Figure.suptitle = spy
    try:
        h = {"loss": [1.0, 0.5, 0.3], "accuracy": [0.5, 0.7, 0.8]}
        report.plot_curves(h, tmp_path / "a.png", train_note="dropout on")
        ticks = seen["ticks"]
        report.plot_curves({**h, "val_loss": [1, 0.6, 0.4], "val_accuracy": [0.4, 0.6, 0.7]},
                           tmp_path / "b.png")
    finally:
        Figure.suptitle = real
    assert seen["titles"] == ["Training curves (no validation data)",
                              "Training and validation curves"]
    for t in ticks:
        assert np.all(t == np.round(t)), t   # whole epochs only


# -- the last mile of the command line ------------------------------------------------------

def test_unknown_flag_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epocs", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--epocs (did you mean --epochs?)" in err and "see nnscratch train --help" in err
    assert ", 3" not in err


def test_gradcheck_checks_every_layer_and_loss(capsys):
    import nnscratch.layers as L
    from nnscratch.gradcheck import catalogue

    covered = {type(layer) for _, layer, _, _ in catalogue(np.random.default_rng(0))}
    every = {getattr(L, n) for n in L.__all__} - {L.Layer}
    assert every <= covered, every - covered
    assert main(["gradcheck", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "18 of 18 checks passed" in out and "MeanSquaredError()" in out
    assert "numeric" in out and "analytic" in out


def test_gradcheck_fails_on_a_wrong_gradient(monkeypatch, capsys):
    from nnscratch.layers import Tanh

    monkeypatch.setattr(Tanh, "backward", lambda self, g, input_grad=True: g)
    assert main(["gradcheck"]) == 1
    assert "failed: Tanh()" in capsys.readouterr().out


def test_npy_that_is_not_numpy(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet",
                 "--no-dynamics"]) == 0
    (tmp_path / "r" / "model.safetensors").rename(model)
    bad = tmp_path / "x.npy"
    bad.write_text("1 2 3\n")
    assert main(["predict", str(model), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "is not a NumPy .npy file" in err and "pickle" not in err


def test_predict_newest_run_and_the_mnist_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "digit.png"]) == 1
    assert "none in ./runs" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "--out", "runs/a", "--quiet", "--no-dynamics"]) == 0
    from pathlib import Path

    seven = Path(__file__).resolve().parents[1] / "docs" / "examples" / "seven.png"
    assert main(["predict", str(seven)]) == 0
    err = capsys.readouterr().err
    assert "using the newest run's model, runs/a/model.safetensors" in err
    assert "configs/mnist5k_cnn.toml" in err


def test_report_cut_short_says_so(tmp_path, monkeypatch, capsys):
    from nnscratch import report

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 130
    assert (tmp_path / "r" / "model.safetensors").is_file()
    assert "cut short by Ctrl-C" in (tmp_path / "r" / "REPORT_INCOMPLETE.txt").read_text()
    assert "the report is incomplete" in capsys.readouterr().err
