"""The command line: train writes the run folder; evaluate; predict; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nnscratch.cli import main

REPORT_FILES = {"model.safetensors", "metrics.json", "history.csv", "classification_report.txt",
                "confusion_matrix.csv", "training_loss.png", "confusion_matrix.png",
                "sample_digits.png", "sample_predictions.png", "training_curves.png",
                "weight_histograms.png", "dynamics.png"}   # (a constant lr: no learning_rate.png)


def run_cli(*args, cwd=None):
    """Run the installed entry point in a fresh process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "nnscratch", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`nnscratch train` with no options but --out: the seed configuration, 1000 epochs."""
    out = tmp_path_factory.mktemp("run") / "default"
    proc = run_cli("train", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_writes_the_whole_report(default_run):
    out, proc = default_run
    assert REPORT_FILES <= {p.name for p in out.iterdir()}
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "initial_loss", "final_loss", "epochs",
                "train_seconds", "seed", "per_class"):
        assert key in m
    assert m["epochs"] == 1000 and m["seed"] == 0
    assert set(m["per_class"]) == {str(c) for c in range(10)}
    assert set(m["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert m["config"]["hidden"] == [32] and m["config"]["lr"] == 0.1
    assert m["config"]["optimizer"] == "sgd" and m["config"]["schedule"] == "constant"
    assert m["split"] == {"dataset": "digits", "test_size": 0.2, "random_state": 42,
                          "stratify": True, "n_train": 1437, "n_test": 360,
                          "input_shape": [1, 8, 8], "n_classes": 10, "raw_max": 16.0}
    assert m["blas"], "the BLAS in use is recorded"
    hist = (out / "history.csv").read_text().splitlines()
    assert hist[0] == "epoch,loss,accuracy,lr" and len(hist) == 1001
    cm = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", skiprows=1)
    assert cm.shape == (10, 10) and cm.sum() == 360
    assert np.trace(cm) / 360 == pytest.approx(m["test_accuracy"])
    assert "test accuracy" in proc.stdout and str(out) in proc.stdout
    for png in ("training_loss.png", "confusion_matrix.png", "sample_digits.png",
                "sample_predictions.png", "training_curves.png", "dynamics.png",
                "weight_histograms.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 200 and img.size[1] > 100


def test_default_model_reaches_the_seed_figures(default_run):
    m = json.loads((default_run[0] / "metrics.json").read_text())
    assert m["train_accuracy"] == 1.0
    assert m["test_accuracy"] >= 0.96
    assert m["final_loss"] <= 0.001 * m["initial_loss"]


def test_readme_zero_predicts_0_with_default_model(default_run, tmp_path, readme_zero):
    README_ZERO = readme_zero
    model = default_run[0] / "model.safetensors"
    np.save(tmp_path / "zero.npy", README_ZERO)
    np.savetxt(tmp_path / "zero.csv", README_ZERO, delimiter=",", fmt="%d")
    np.savetxt(tmp_path / "zero.txt", README_ZERO.reshape(1, -1), fmt="%d")
    proc = run_cli("predict", model, tmp_path / "zero.npy", tmp_path / "zero.csv",
                   tmp_path / "zero.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["prediction"] for r in results] == [0, 0, 0]
    r = results[0]
    assert len(r["top3"]) == 3 and r["top3"][0]["label"] == 0
    assert r["top3"][0]["probability"] >= r["top3"][1]["probability"] >= r["top3"][2]["probability"]
    assert sum(r["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    human = run_cli("predict", model, tmp_path / "zero.npy")
    assert human.returncode == 0 and "predicted digit 0" in human.stdout and "top 3" in human.stdout


def test_predict_many_digits_and_images(default_run, split, tmp_path):
    model = default_run[0] / "model.safetensors"
    np.save(tmp_path / "many.npy", split.X_test[:5].reshape(5, 8, 8))
    big = Image.fromarray((255 - split.X_test[0].reshape(8, 8) * 15).astype(np.uint8))
    big.resize((120, 120), Image.Resampling.BICUBIC).save(tmp_path / "digit.png")
    big.resize((90, 90), Image.Resampling.BICUBIC).convert("RGB").save(tmp_path / "digit.jpg")
    proc = run_cli("predict", model, tmp_path / "many.npy", tmp_path / "digit.png",
                   tmp_path / "digit.jpg", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 7
    assert results[0]["input"].endswith("many.npy[0]")
    preds = [r["prediction"] for r in results]
    assert preds[:5] == list(split.y_test[:5])


def test_evaluate_reports_the_same_test_accuracy(default_run):
    out = default_run[0]
    proc = run_cli("evaluate", out / "model.safetensors")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert f"test accuracy: {m['test_accuracy']:.4f}" in proc.stdout
    assert "precision" in proc.stdout and "recall" in proc.stdout


def test_train_flags(tmp_path, capsys):
    out = tmp_path / "flags"
    code = main(["train", "--epochs", "3", "--batch-size", "64", "--lr", "0.05", "--hidden",
                 "16", "8", "--seed", "7", "--dtype", "float64", "--out", str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out == ""  # --quiet
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 3 and m["seed"] == 7
    from nnscratch.config import TRAIN_DEFAULTS

    assert set(m["config"]) == set(TRAIN_DEFAULTS)  # the full config is recorded
    assert {k: m["config"][k] for k in ("hidden", "activation", "optimizer", "lr", "batch_size",
                                        "epochs", "seed", "dtype")} == {
        "hidden": [16, 8], "activation": "relu", "optimizer": "sgd", "lr": 0.05,
        "batch_size": 64, "epochs": 3, "seed": 7, "dtype": "float64"}
    from nnscratch import load_model

    model = load_model(out / "model.safetensors")
    assert [getattr(layer, "n_out", None) for layer in model.layers] == [16, None, 8, None, 10]
    assert model.dtype == np.float64


def test_train_default_out_is_a_timestamped_runs_folder(tmp_path):
    proc = run_cli("train", "--epochs", "2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name[:8].isdigit() and (run / "model.safetensors").exists()


def _bad(tmp_path, zero):
    t = tmp_path
    np.save(t / "range.npy", zero * 16)
    np.save(t / "shape.npy", np.zeros((3, 7)))
    np.save(t / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (t / "nan.csv").write_text(",".join(["1"] * 63 + ["nan"]) + "\n")
    (t / "words.txt").write_text("one two three\n")
    (t / "empty.txt").write_text("")
    (t / "fake.png").write_bytes(b"not an image at all")
    (t / "blank.png").write_bytes(b"")
    Image.new("L", (40, 40), 255).save(t / "white.png")
    (t / "model.safetensors").write_bytes(b"\x00" * 64)
    from safetensors.numpy import save_file

    header = {"architecture": [{"type": "Dense", "config": {"n_in": 64, "n_out": 10}}],
              "dtype": "float32", "preprocessing": [1, 2], "metadata": {}}
    save_file({"layers.0.W": np.zeros((64, 10), np.float32),
               "layers.0.b": np.zeros(10, np.float32)}, str(t / "badheader.safetensors"),
              metadata={"format": "nnscratch", "format_version": "1",
                        "nnscratch": json.dumps(header)})
    return t


@pytest.mark.parametrize("args,match", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "ten"], "--epochs"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--dtype", "float16"], "--dtype"),
    (["train", "--hidden"], "--hidden"),
    (["frobnicate"], "invalid choice"),
    (["predict", "{model}"], "no INPUT given"),
    (["predict", "{t}/missing.safetensors", "{t}/range.npy"], "no such model file"),
    (["predict", "{t}/model.safetensors", "{t}/range.npy"], "truncated or corrupt"),
    (["evaluate", "{t}/model.safetensors"], "truncated or corrupt"),
    (["predict", "{model}", "{t}/range.npy"], "0..16 scale"),
    (["predict", "{model}", "{t}/shape.npy"], "shape (3, 7)"),
    (["predict", "{model}", "{t}/obj.npy"], "obj.npy"),
    (["predict", "{model}", "{t}/nan.csv"], "NaN"),
    (["predict", "{model}", "{t}/words.txt"], "could not read numbers"),
    (["predict", "{model}", "{t}/empty.txt"], "empty"),
    (["predict", "{model}", "{t}/fake.png"], "not a readable image"),
    (["predict", "{model}", "{t}/blank.png"], "not a readable image"),
    (["predict", "{model}", "{t}/white.png"], "no digit"),
    (["predict", "{model}", "{t}/nothere.npy"], "no such file"),
    (["predict", "{model}", "{t}/nothere.png"], "no such file"),
    (["predict", "{t}/badheader.safetensors", "{t}/range.npy"], "preprocessing is not a mapping"),
    (["evaluate", "{t}/badheader.safetensors"], "preprocessing is not a mapping"),
    (["predict", "{model}", "{t}/white.png", "{t}/range.npy"], "white.png: no digit"),
])
def test_bad_input_exits_nonzero_with_one_line(default_run, tmp_path, readme_zero, args, match):
    t = _bad(tmp_path, readme_zero)
    model = default_run[0] / "model.safetensors"
    proc = run_cli(*[a.format(t=t, model=model) for a in args], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert match in lines[0], lines[0]


def test_diverging_run_fails_cleanly_and_leaves_no_folder(tmp_path):
    proc = run_cli("train", "--lr", "1e30", "--epochs", "5", "--out", tmp_path / "div")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "training loss became" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "div").exists()


def test_predict_notes_a_model_without_preprocessing(tmp_path, readme_zero):
    from nnscratch import Sequential
    from nnscratch.layers import Dense

    Sequential([Dense(64, 10)], seed=0).save(tmp_path / "raw.safetensors")
    np.save(tmp_path / "zero.npy", readme_zero)
    proc = run_cli("predict", tmp_path / "raw.safetensors", tmp_path / "zero.npy")
    assert proc.returncode == 0
    assert "records no preprocessing" in proc.stderr


def test_gradcheck_command_passes():
    proc = run_cli("gradcheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") == 18 and "FAIL" not in proc.stdout
