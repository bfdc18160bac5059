"""Kill writers with SIGKILL at random moments: every file left is absent or complete (issue 15).

One writer process (started once: imports cost seconds) forks a child per trial; the child
rewrites, in a loop, a model file, a checkpoint, and the run report (metrics.json, history.csv,
classification_report.txt, confusion_matrix.csv and the pictures) through the code the CLI
uses. The test kills the child after a random delay (fixed-seed generator) and checks every
file: absent, or complete and loadable. 200+ trials.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

TRIALS = 200

WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from pathlib import Path
    from nnscratch import Sequential
    from nnscratch.callbacks import ModelCheckpoint
    from nnscratch.layers import Dense, ReLU
    from nnscratch.optim import Adam
    from nnscratch.report import plot_training_loss, write_history_csv, write_report

    out = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    model = Sequential([Dense(16, 8), ReLU(), Dense(8, 3)], seed=0)
    X, y = rng.standard_normal((30, 16)), rng.integers(0, 3, 30)
    ckpt = ModelCheckpoint(str(out / "checkpoints" / "epoch{epoch:04d}.safetensors"), every=1,
                           training_state=True)
    model.fit(X, y, epochs=1, optimizer=Adam(lr=0.01), callbacks=[ckpt])   # (imports warm)
    history = {"loss": list(np.linspace(2, 0.1, 40)), "accuracy": list(np.linspace(0, 1, 40))}
    proba = model.predict_proba(X)

    def report(folder):   # the run report's files, as write_report writes them
        write_report(folder, history=history, n_classes=3, y_train=y, pred_train=y, y_test=y,
                     proba_test=proba, X_test_raw=np.abs(X), extra={"pad": "x" * 5000},
                     image_shape=(1, 4, 4))

    actions = [
        lambda: model.fit(X, y, epochs=1, optimizer=Adam(lr=0.01), callbacks=[ckpt]),
        lambda: model.save(out / "model.safetensors"),
        lambda: report(out),
        lambda: plot_training_loss(history, out / "training_loss.png"),
        lambda: write_history_csv(history, out / "history.csv"),
    ]
    report(out.parent / "warm-up")   # (matplotlib imported and its fonts found before forking)

    def work():
        i = os.getpid()   # each child starts at another point of the cycle
        while True:
            actions[i % len(actions)]()
            i += 1

    print("ready", flush=True)
    for line in sys.stdin:   # "go": fork a child that writes; "reap PID": wait for its death
        if line.startswith("reap"):
            os.waitpid(int(line.split()[1]), 0)
            print("dead", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                work()
            finally:
                os._exit(0)
        print(pid, flush=True)
""")


def _check_folder(out, names_seen):
    """Every file in ``out`` is complete and loadable (temporary files aside)."""
    from PIL import Image

    from nnscratch import load_model

    for path in sorted(out.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue   # (a temporary file a killed writer left: never read, renamed or not)
        names_seen.add(path.name)
        if path.suffix == ".safetensors":
            model = load_model(path)
            if "checkpoints" in path.parts:
                assert model.training_state[0]["epoch"] == 1
        elif path.suffix == ".json":
            assert json.loads(path.read_text())["pad"] == "x" * 5000
        elif path.name == "history.csv":
            rows = list(csv.reader(path.open()))
            assert rows[0] == ["epoch", "loss", "accuracy"] and len(rows) == 41
        elif path.name == "confusion_matrix.csv":
            rows = path.read_text().splitlines()
            assert len(rows) == 4 and all(len(r.split(",")) == 3 for r in rows)
        elif path.suffix == ".txt":
            assert path.read_text().rstrip().splitlines()[-1].split()[0] == "weighted"
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.verify()      # every chunk's CRC and the IEND chunk
        else:
            raise AssertionError(f"unexpected file {path}")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_while_writing_leaves_no_torn_file(tmp_path):
    rng = np.random.default_rng(15)
    out = tmp_path / "run"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}   # (fork-safe)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert writer.stdout.readline().strip() == "ready"
        names, corrupt = set(), 0
        for _ in range(TRIALS):
            writer.stdin.write("go\n")
            writer.stdin.flush()
            pid = int(writer.stdout.readline())
            time.sleep(float(rng.uniform(0, 0.12) if rng.random() < 0.85 else rng.uniform(0.12, 0.5)))
            os.kill(pid, signal.SIGKILL)
            writer.stdin.write(f"reap {pid}\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "dead"
            try:
                _check_folder(out, names)
            except Exception as exc:  # noqa: BLE001
                corrupt += 1
                print(f"corrupt: {type(exc).__name__}: {exc}")
        print(f"\nkill-while-writing: {TRIALS} SIGKILLs, {corrupt} corrupt files; files seen: "
              f"{sorted(names)}")
        assert corrupt == 0
        # the kills landed while every kind of file was being written at some point
        assert {"model.safetensors", "epoch0001.safetensors", "metrics.json", "history.csv",
                "classification_report.txt", "confusion_matrix.csv",
                "training_loss.png"} <= names
    finally:
        writer.stdin.close()
        writer.kill()
        writer.wait()


def test_the_check_finds_a_torn_file(tmp_path):
    """Negative control: a file written in place and cut short fails the check."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("epoch,loss,accuracy\n1,0.5,0.1\n")
    with pytest.raises(AssertionError):
        _check_folder(out, set())
