"""``nnscratch sweep``: grid files, local joblib processes, a real Dask cluster (a ``dask
scheduler`` and two ``dask worker`` processes on 127.0.0.1, and a ``distributed.LocalCluster``)
giving the same results as the local run, halving and random searches, Ctrl-C, and the one-line
message without Dask."""

from __future__ import annotations

import csv
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
from test_interrupts import as_in_a_terminal

from nnscratch import cli
from nnscratch.errors import InputError
from nnscratch.sweep import read_grid, settings_of

GRID4 = """
dataset = "digits"
epochs = 4
optimizer = "adam"
lr = [0.01, 0.003]
hidden = [[16], [32, 16]]
"""


def _nnscratch(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "nnscratch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _results(path):
    """The rows without the timings (which differ from run to run)."""
    return [{k: v for k, v in r.items() if k != "fit_seconds"} for r in _rows(path)]


@pytest.fixture(scope="module")
def grid4(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grid.toml"
    path.write_text(GRID4)
    return path


@pytest.fixture(scope="module")
def local_run(grid4, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    start = time.perf_counter()
    proc = _nnscratch("sweep", "--grid", grid4, "--folds", "2", "--jobs", "2", "--out", out)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return out, proc, seconds


def test_grid_file_lists_are_swept_scalars_fixed(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('epochs = 5\nhidden = [64]\nlr = [0.1, 0.01]\nchannels = [[8], [8, 16]]\n')
    fixed, swept = read_grid(str(path))
    assert fixed == {"epochs": 5, "hidden": [64]}
    assert swept == {"lr": [0.1, 0.01], "channels": [[8], [8, 16]]}
    assert len(settings_of(fixed, swept, "grid", None)) == 4
    assert len(settings_of(fixed, swept, "random", 3)) == 3
    path.write_text("lr = [0.1, -1.0]\n")
    with pytest.raises(InputError, match="lr"):
        settings_of(*read_grid(str(path)), "grid", None)
    path.write_text("learning_rate = [0.1]\n")
    with pytest.raises(InputError, match="unknown setting 'learning_rate'"):
        read_grid(str(path))


def test_local_sweep_writes_csv_png_and_a_ready_to_run_command(local_run, tmp_path):
    out, proc, _ = local_run
    rows = _rows(out / "sweep.csv")
    assert list(rows[0]) == ["lr", "hidden", "mean_accuracy", "std_accuracy", "fit_seconds"]
    assert [(r["lr"], r["hidden"]) for r in rows] == [
        ("0.01", "16"), ("0.01", "32 16"), ("0.003", "16"), ("0.003", "32 16")]
    assert all(0.5 < float(r["mean_accuracy"]) <= 1 for r in rows)
    assert (out / "sweep.png").stat().st_size > 1000
    command = proc.stdout.strip().splitlines()[-1]
    assert command.startswith("nnscratch train ") and "--epochs 4" in command
    best = max(rows, key=lambda r: float(r["mean_accuracy"]))
    assert f"--lr {best['lr']}" in command and f"--hidden {best['hidden']}" in command
    args = shlex.split(command)[1:] + ["--out", str(tmp_path / "run"), "--quiet"]
    assert _nnscratch(*args).returncode == 0    # it runs as printed


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1;
    always terminated."""
    distributed = pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w")))
        for i in range(2):
            procs.append(subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--death-timeout", "60"],
                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{i}.log", "w")))
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
            assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())
        yield address
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_dask_cluster_sweep_equals_the_local_run(dask_cluster, grid4, local_run, tmp_path):
    out = tmp_path / "dask"
    start = time.perf_counter()
    proc = _nnscratch("sweep", "--grid", grid4, "--folds", "2", "--scheduler", dask_cluster,
                      "--out", out)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert dask_cluster in proc.stdout
    assert _results(out / "sweep.csv") == _results(local_run[0] / "sweep.csv")
    assert proc.stdout.splitlines()[-1] == local_run[1].stdout.splitlines()[-1]
    print(f"\n4-setting grid, 2 folds: local (2 processes) {local_run[2]:.1f} s, "
          f"dask (2 workers) {seconds:.1f} s")


def test_local_cluster_from_python_equals_the_local_run(grid4, local_run, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        rc = cli.main(["sweep", "--grid", str(grid4), "--folds", "2", "--quiet",
                       "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "lc")])
    assert rc == 0, capsys.readouterr().err
    assert _results(tmp_path / "lc" / "sweep.csv") == _results(local_run[0] / "sweep.csv")


def test_scheduler_without_dask_says_what_to_install(monkeypatch, grid4, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed fails
    rc = cli.main(["sweep", "--grid", str(grid4), "--scheduler", "tcp://127.0.0.1:1",
                   "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "pip install 'nnscratch[dask]'" in err


def test_unreachable_scheduler_is_one_line(grid4, tmp_path):
    pytest.importorskip("distributed")
    proc = _nnscratch("sweep", "--grid", grid4, "--scheduler", f"tcp://127.0.0.1:{_free_port()}",
                      "--scheduler-timeout", "2", "--out", tmp_path / "x", timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot connect" in proc.stderr


def test_bad_grid_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = [0.1, 'fast']\n")
    proc = _nnscratch("sweep", "--grid", bad, "--out", tmp_path / "x")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "lr" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_halving_and_random_searches(grid4, tmp_path, capsys):
    # (in this process, one job: no worker processes to start)
    rc = cli.main(["sweep", "--grid", str(grid4), "--folds", "2", "--search", "halving",
                   "--jobs", "1", "--quiet", "--out", str(tmp_path / "h")])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(tmp_path / "h" / "sweep.csv")
    # 4 settings for 1 epoch (4 // 3), then the best 2 for the full 4 epochs
    assert sorted((r["round"], r["epochs"]) for r in rows) == [
        ("0", "1"), ("0", "1"), ("1", "4"), ("1", "4")]
    rc = cli.main(["sweep", "--grid", str(grid4), "--folds", "2", "--search", "random",
                   "--n-iter", "2", "--jobs", "1", "--quiet", "--out", str(tmp_path / "r")])
    assert rc == 0, capsys.readouterr().err
    assert len(_rows(tmp_path / "r" / "sweep.csv")) == 2


def test_ctrl_c_keeps_the_finished_settings(tmp_path):
    grid = tmp_path / "long.toml"
    # 32 settings: when the first has finished, many are left
    lrs = ", ".join(f"{0.1 * 0.85 ** i:.6f}" for i in range(32))
    grid.write_text(f"epochs = 80\nlr = [{lrs}]\n")
    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "-m", "nnscratch", "sweep", "--grid", str(grid),
                             "--folds", "2", "--jobs", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_in_a_terminal)   # (SIGINT at its default in the child)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "sweep.csv").exists() and len(_rows(out / "sweep.csv")) >= 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no setting finished within 120 s")
        proc.send_signal(signal.SIGINT)
        stdout, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, (err, stdout, len(_rows(out / "sweep.csv")))
    assert "interrupted" in err and err.strip().count("\n") == 0 and "Traceback" not in err
    rows = _rows(out / "sweep.csv")
    assert 1 <= len(rows) < 32


def test_a_setting_trains_what_nnscratch_train_trains():
    """The sweep's estimator for a setting has the layers, seed, optimizer, schedule and
    dropout draws of the model nnscratch train builds from it: identical weights."""
    from nnscratch.config import build_optimizer, build_schedule, train_config
    from nnscratch.data import apply_preprocessing, load_dataset
    from nnscratch.estimator import NNClassifier
    from nnscratch.recipe import build_model
    from nnscratch.sweep import estimator_params

    cfg = train_config({"hidden": [16, 8], "dropout": 0.1, "optimizer": "adam", "lr": 0.01,
                        "schedule": "cosine", "epochs": 3, "seed": 5})
    split = load_dataset("digits")
    model = build_model(cfg, split.info)
    X = apply_preprocessing(split.X_train, model.preprocessing, model.dtype)
    model.fit(X, split.y_train, epochs=3, batch_size=32, optimizer=build_optimizer(cfg),
              schedule=build_schedule(cfg))
    est = NNClassifier(**estimator_params(cfg, split.info)).fit(X, split.y_train)
    assert [type(a) for a in est.model_.layers] == [type(b) for b in model.layers]
    assert (est.model_.parameters()[0][0] == model.parameters()[0][0]).all()
