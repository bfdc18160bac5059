"""Training configuration: TOML files, flags over files, validation naming the key."""

from __future__ import annotations

import json

import pytest

from nnscratch.callbacks import EarlyStopping
from nnscratch.cli import main
from nnscratch.config import (
    build_layers,
    build_optimizer,
    build_schedule,
    load_toml,
    train_config,
)
from nnscratch.layers import BatchNorm, Dense, Dropout, Tanh
from nnscratch.optim import SGD, Adam, AdamW, RMSprop
from nnscratch.optim.schedules import CosineAnnealingLR, LinearWarmup


def test_defaults_are_the_seed_configuration():
    cfg = train_config()
    assert cfg["hidden"] == [32] and cfg["optimizer"] == "sgd" and cfg["lr"] == 0.1
    assert cfg["epochs"] == 1000 and cfg["batch_size"] == 32 and cfg["seed"] == 0
    assert build_schedule(cfg) is None
    opt = build_optimizer(cfg)
    assert isinstance(opt, SGD) and opt.momentum == 0


def test_later_settings_win():
    cfg = train_config({"lr": 0.5, "hidden": [8]}, {"lr": 0.01})
    assert cfg["lr"] == 0.01 and cfg["hidden"] == [8]


@pytest.mark.parametrize("settings,match", [
    ({"learning_rate": 0.1}, "unknown setting 'learning_rate'"),
    ({"hidden": 32}, "'hidden' must be a list"),
    ({"hidden": []}, "at least one layer size"),
    ({"hidden": [32, 0]}, "'hidden'"),
    ({"lr": -1}, "'lr' must be a number > 0"),
    ({"lr": "fast"}, "'lr'"),
    ({"optimizer": "lbfgs"}, "'optimizer' must be one of"),
    ({"dropout": 1.0}, "'dropout'"),
    ({"batch_norm": "yes"}, "'batch_norm' must be true or false"),
    ({"epochs": 10, "warmup": 10}, "warmup"),
    ({"seed": -1}, "'seed'"),
])
def test_bad_settings_name_the_key(settings, match):
    with pytest.raises(ValueError, match=match):
        train_config(settings)


def test_everything_is_built_from_names():
    cfg = train_config({"hidden": [16, 8], "activation": "tanh", "batch_norm": True,
                        "dropout": 0.1, "optimizer": "adamw", "schedule": "cosine",
                        "warmup": 3, "epochs": 20})
    layers = build_layers(cfg, 64, 10)
    assert [type(layer) for layer in layers] == [Dense, BatchNorm, Tanh, Dropout,
                                                 Dense, BatchNorm, Tanh, Dropout, Dense]
    assert layers[0].init == "glorot_uniform"  # Glorot for tanh, He for the ReLU family
    opt = build_optimizer(cfg)
    assert isinstance(opt, AdamW) and opt.weight_decay == 0.01  # AdamW's own default
    sched = build_schedule(cfg)
    assert isinstance(sched, LinearWarmup) and isinstance(sched.then, CosineAnnealingLR)
    assert sched.then.T_max == 17
    assert isinstance(build_optimizer(train_config({"optimizer": "adam"})), Adam)
    nesterov = build_optimizer(train_config({"optimizer": "nesterov"}))
    assert nesterov.nesterov and nesterov.momentum == 0.9
    assert isinstance(build_optimizer(train_config({"optimizer": "rmsprop"})), RMSprop)


def test_early_stopping_holds_out_validation_data():
    assert train_config({"early_stopping": 5})["validation_split"] == 0.1
    assert EarlyStopping  # the CLI wires it; see the CLI test below


def test_toml_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such config file"):
        load_toml(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("hidden = [256, \n")
    with pytest.raises(ValueError, match="bad.toml: not a valid TOML"):
        load_toml(str(bad))


def test_cli_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('hidden = [24]\noptimizer = "adam"\nlr = 0.002\nepochs = 4\n'
                   'batch_norm = true\ndropout = 0.1\nschedule = "cosine"\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs", "3", "--early-stopping", "2",
                 "--checkpoint-every", "1", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["epochs"] == 3 and m["config"]["hidden"] == [24]
    assert m["config"]["optimizer"] == "adam" and m["config"]["batch_norm"] is True
    assert m["config"]["validation_split"] == 0.1
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[0] == "epoch0001.safetensors"
    hist = (out / "history.csv").read_text().splitlines()[0]
    assert hist == "epoch,loss,accuracy,lr,val_loss,val_accuracy"


def test_cli_rejects_bad_config_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", str(cfg), "--quiet", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown setting 'learning_rate'" in err[0]
    assert not (tmp_path / "r").exists()


def test_cv_command_reports_each_fold_and_mean_std(tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", "--folds", "3", "--epochs", "5", "--hidden", "16", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.count("fold ") >= 3 and "3-fold CV accuracy:" in text and "+-" in text
    summary = json.loads((out / "cv.json").read_text())
    accs = [f["val_accuracy"] for f in summary["folds"]]
    assert len(accs) == 3 and sum(f["n_val"] for f in summary["folds"]) == 1797
    import numpy as np

    assert summary["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert summary["std_accuracy"] == pytest.approx(np.std(accs, ddof=1))
    assert (out / "cv_curves.png").stat().st_size > 10_000


def test_cv_rejects_one_fold():
    with pytest.raises(SystemExit) as info:
        main(["cv", "--folds", "1"])
    assert info.value.code == 2
