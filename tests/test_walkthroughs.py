"""The learner-facing walkthroughs run: the notebook (via nbclient) and the standalone script.

Both redo a forward and a backward pass by hand and ``assert`` that the package agrees, so these
tests also fail when the package's maths breaks. They train for 5 epochs only, to stay fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "neural_network_from_scratch.ipynb"
SCRIPT = ROOT / "neural_network_from_scratch.py"
PICTURES = ("training_loss.png", "confusion_matrix.png", "sample_digits.png",
            "sample_predictions.png")


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), \
        "store the notebook without outputs"


def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # first, in this in-memory copy only: which Python runs the kernel
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print('PREFIX', sys.prefix)",
                                                 id="test-prefix"))
    env = {**os.environ, "NNSCRATCH_EPOCHS": "5", "NNSCRATCH_OUT": str(tmp_path / "out")}
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # raises CellExecutionError if any cell (or assert) fails

    texts = [_text_outputs(c) for c in nb.cells if c.cell_type == "code"]
    assert f"PREFIX {sys.prefix}" in texts[0], \
        f"the python3 kernel is not this interpreter's ({sys.prefix}): {texts[0]!r}"
    everything = "\n".join(texts)
    assert "epochs: 5" in everything
    assert re.search(r"test accuracy (0\.\d{4}|1\.0000)", everything), everything[-2000:]
    assert re.search(r"predicted digit \d", everything)
    for name in PICTURES:
        assert (tmp_path / "out" / name).is_file(), name


def test_script_runs(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "5", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in PICTURES:
        assert (out / name).is_file(), f"{name} missing; stdout:\n{proc.stdout[-2000:]}"
    assert "agree with the hand computation" in proc.stdout
    assert re.search(r"test accuracy (0\.\d{4}|1\.0000)", proc.stdout)
    match = re.search(r"README example digit: predicted digit (\d)", proc.stdout)
    assert match, proc.stdout[-2000:]
    # the README's digit is a clear zero: even 5 epochs read it right (about 97 % for seed 0)
    assert match.group(1) == "0"
    assert not (tmp_path / "runs").exists()  # --out was honoured


def test_script_rejects_bad_epochs(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "0", "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--epochs" in proc.stderr
