"""Cost of training dynamics (nnscratch.dynamics.TrainingDynamics) on the seed task: 7 alternating
pairs of 1000-epoch fits in one process, with and without the callback. python bench/dynamics_cost.py"""
import statistics, time
import numpy as np
import nnscratch
nnscratch.enable_threads(quiet=True)
from nnscratch import Sequential
from nnscratch.data import load_digits_split
from nnscratch.dynamics import TrainingDynamics
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import SoftmaxCrossEntropy
from nnscratch.optim import SGD
s = load_digits_split(); X = (s.X_train / 16).astype(np.float32); y = s.y_train
def run(dyn):
    m = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
    cbs = [TrainingDynamics(X[:128], y[:128], SoftmaxCrossEntropy())] if dyn else []
    t = time.perf_counter()
    m.fit(X, y, epochs=1000, batch_size=32, optimizer=SGD(lr=0.1), callbacks=cbs)
    return time.perf_counter() - t
run(True); run(False)
on, off, ratios = [], [], []
for i in range(7):
    a, b = (run(True), run(False)) if i % 2 == 0 else tuple(reversed((run(False), run(True))))
    on.append(a); off.append(b); ratios.append(a / b)
print("with dynamics  s:", " ".join(f"{v:.3f}" for v in on))
print("without        s:", " ".join(f"{v:.3f}" for v in off))
print(f"ratio per pair: {' '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}; "
      f"min/min {min(on)/min(off):.3f}")
