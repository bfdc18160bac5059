"""nnscratch.threads: element-wise passes split over threads give the same results, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.accel import threads
from nnscratch.backend import CPU
from nnscratch.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from nnscratch.optim import Adam, AdamW


@pytest.fixture
def n_threads(monkeypatch):
    def set_threads(n):
        monkeypatch.setattr(threads, "THREADS", n)
    return set_threads


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_split_covers_the_range_once_in_that_many_threads(count, n_threads):
    n_threads(count)
    seen, lock = [], threading.Lock()

    def fn(part):
        with lock:
            seen.append((part, threading.get_ident()))

    threads.split(fn, 10)
    covered = sorted(i for part, _ in seen for i in range(10)[part])
    assert covered == list(range(10))
    assert len(seen) == count
    assert len({ident for _, ident in seen}) == count       # each part in its own thread
    assert threading.get_ident() in {ident for _, ident in seen}   # one of them this one


def test_small_passes_and_short_ranges_run_in_this_thread(n_threads):
    n_threads(2)
    calls = []
    threads.split(lambda part: calls.append((part, threading.get_ident())), 10,
                  size=threads.MIN_SIZE - 1)
    threads.split(lambda part: calls.append((part, threading.get_ident())), 1)
    assert calls == [(slice(0, 10), threading.get_ident()), (slice(0, 1), threading.get_ident())]
    calls.clear()
    threads.serial(lambda part: calls.append(part), 10)
    assert calls == [slice(0, 10)]


def test_an_error_in_a_worker_is_raised_after_all_parts_finish(n_threads):
    n_threads(3)
    done = []

    def fn(part):
        if part.start > 0 and part.start < 6:
            raise KeyError("in the middle part")
        done.append(part)

    with pytest.raises(KeyError, match="middle part"):
        threads.split(fn, 9)
    assert sorted(p.start for p in done) == [0, 6]
    # the workers still serve the next call
    out = np.zeros(9)
    threads.split(lambda part: out.__setitem__(part, 1), 9)
    assert out.sum() == 9


def test_an_error_here_still_waits_for_the_workers(n_threads):
    n_threads(2)
    done = threading.Event()

    def fn(part):
        if part.start == 0:
            raise ValueError("this thread")
        done.wait(0.01)
        done.set()

    with pytest.raises(ValueError, match="this thread"):
        threads.split(fn, 4)
    assert done.is_set()


def test_a_split_inside_a_part_runs_in_that_thread(n_threads):
    n_threads(2)
    out = np.zeros((4, 6))

    def outer(part):
        def inner(cols):
            out[part, cols] += 1
        threads.split(inner, 6)       # would wait forever on the busy workers
    threads.split(outer, 4)
    np.testing.assert_array_equal(out, 1)


def test_splits_from_two_threads_at_once_are_each_complete(n_threads):
    n_threads(2)
    outs = [np.zeros(1000) for _ in range(2)]
    errors = []

    def user(k):
        try:
            for _ in range(200):
                outs[k][:] = 0
                threads.split(lambda part: outs[k].__setitem__(part, outs[k][part] + 1), 1000)
                assert (outs[k] == 1).all()
        except BaseException as exc:
            errors.append(exc)

    users = [threading.Thread(target=user, args=(k,)) for k in range(2)]
    for t in users:
        t.start()
    for t in users:
        t.join()
    assert not errors, errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_its_own_workers(n_threads):
    n_threads(2)
    threads.split(lambda part: None, 4)          # workers exist in the parent
    pid = os.fork()
    if pid == 0:                                 # child: would hang on the parent's dead threads
        ok = False
        try:
            out = np.zeros(4)
            threads.split(lambda part: out.__setitem__(part, 1), 4)
            ok = out.sum() == 4
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def _train(model_fn, optimizer_fn, X, y, accelerate=True):
    model = model_fn()
    model.accelerate = accelerate
    history = model.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer_fn())
    params = [p.copy() for _, p, _ in model.named_parameters()]
    return params, history["loss"], model.predict_proba(X)


def _cnn():
    return Sequential([Conv2D(1, 12, 3, padding=1), BatchNorm(12), MaxPool2D(2), ReLU(),   # fold
                       Conv2D(12, 16, 3, padding=1), BatchNorm(16), MaxPool2D(2), ReLU(),  # general
                       Flatten(), Dropout(0.2), Dense(64, 10)],
                      input_shape=(1, 8, 8), seed=3, dtype="float32")


@pytest.mark.parametrize("blocks", [True, False])   # accelerated, or the layers one by one
@pytest.mark.parametrize("optimizer_fn", [lambda: Adam(lr=1e-2),
                                          lambda: AdamW(lr=1e-2, weight_decay=0.1)])
def test_training_is_bit_identical_in_one_or_several_threads(optimizer_fn, blocks, scaled,
                                                             n_threads, monkeypatch):
    monkeypatch.setattr(threads, "MIN_SIZE", 1)   # split even these small arrays
    X, y = scaled[0][:200].reshape(-1, 1, 8, 8).astype(np.float32), scaled[1][:200]
    runs = {}
    for count in (1, 2, 3):
        n_threads(count)
        runs[count] = _train(_cnn, optimizer_fn, X, y, accelerate=blocks)
    for count in (2, 3):
        for p, q in zip(runs[1][0], runs[count][0], strict=True):
            np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(runs[1][1], runs[count][1])     # losses
        np.testing.assert_array_equal(runs[1][2], runs[count][2])     # predictions


def test_accelerated_kernels_split_their_passes(n_threads, monkeypatch, scaled):
    """The accelerated kernels hand their passes to ``threads.split`` (so the test above
    exercises their parts), in training and in prediction."""
    monkeypatch.setattr(threads, "MIN_SIZE", 1)
    n_threads(2)
    calls = []
    real = threads.split

    def spy(fn, n, size=None):
        calls.append(fn.__qualname__.split(".<locals>")[0])
        return real(fn, n, size)

    monkeypatch.setattr(threads, "split", spy)
    model = _cnn()
    X, y = scaled[0][:64].reshape(-1, 1, 8, 8).astype(np.float32), scaled[1][:64]
    model.fit(X, y, epochs=1, batch_size=32, optimizer=Adam(lr=1e-3))
    trained = set(calls)
    calls.clear()
    model.predict_proba(np.zeros((5, 1, 8, 8), np.float32))
    assert {"ConvBlock.forward", "ConvBlock.backward"} <= trained, trained
    assert len(set(calls)) >= 2, calls


def test_adam_updates_a_non_contiguous_parameter_in_place():
    p = np.arange(12.0).reshape(3, 4).T          # F-ordered: reshape(-1) would copy it
    g = np.ones_like(p)
    expected = p - 0.1                           # Adam's first step moves each value by ~lr
    opt = Adam(lr=0.1)
    opt.bind([(p, g)])
    opt.step()
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_the_cpu_backend_splits_and_others_do_not():
    assert threads.parallel_of(CPU) is threads.split
    from nnscratch.backend import Backend
    other = Backend("cuda:0", np, np.asarray, np.asarray, lambda d, h: None, None, None)
    assert threads.parallel_of(other) is threads.serial


def _run(code: str, **env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "NNSCRATCH_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=clean | env, check=True)
    return r.stdout.strip(), r.stderr


def test_import_changes_nothing_and_enable_threads_sets_the_openblas_timeout():
    show = ("from nnscratch.accel import threads as t; "
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), t.SHORT_TIMEOUT, t.THREADS)")
    cores = min(len(os.sched_getaffinity(0)), 4)
    # import nnscratch alone: no environment variable, no split, no NumPy
    out, _ = _run("import os, sys, nnscratch; from nnscratch import Sequential; " + show
                  + "; print('numpy' in sys.modules)")
    assert out.splitlines()[0] == "None None None"
    enable = "import os, nnscratch; print(nnscratch.enable_threads()); " + show
    assert _run(enable)[0].split() == ["True", threads.OPENBLAS_TIMEOUT, "True", str(cores)]
    out, err = _run(enable, OPENBLAS_THREAD_TIMEOUT="25")          # the user's, too long
    assert out.split() == ["False", "25", "False", "1"]
    assert err.count("\n") <= 2 and "OPENBLAS_THREAD_TIMEOUT is above 20" in err
    assert _run(enable, OPENBLAS_THREAD_TIMEOUT="16")[0].split() == ["True", "16", "True",
                                                                     str(cores)]
    # NumPy (and OpenBLAS with its default timeout) loaded first: nothing set, one thread, a
    # one-line warning that says why
    out, err = _run("import numpy; " + enable)
    assert out.split() == ["False", "None", "False", "1"] and "before nnscratch.enable_threads" in err
    assert _run("import numpy; " + enable, NNSCRATCH_THREADS="2")[0].split()[0] == "True"


def test_nnscratch_threads_variable():
    code = ("import nnscratch, nnscratch.accel.threads as t; nnscratch.enable_threads(True); "
            "print(t.default_threads()[0])")
    assert _run(code, NNSCRATCH_THREADS="3")[0] == "3"
    out, err = _run(code, NNSCRATCH_THREADS="two")
    assert "NNSCRATCH_THREADS must be a whole number" in err
    assert out == str(min(len(os.sched_getaffinity(0)), 4))


def test_threads_decided_at_the_first_split(monkeypatch):
    monkeypatch.setattr(threads, "THREADS", None)
    monkeypatch.setattr(threads, "default_threads", lambda: (3, "test"))
    seen = []
    threads.split(lambda part: seen.append(part), 9)
    assert threads.THREADS == 3 and len(seen) == 3
