"""experiments/quickstart.ipynb runs top to bottom, headless, on the real MNIST_SAMPLE (few epochs)."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

pytestmark = pytest.mark.real_data


def test_quickstart_notebook_executes(monkeypatch, real_data_dir):
    monkeypatch.setenv("QUICKSTART_EPOCHS", "2")
    notebook = nbformat.read(REPO / "experiments" / "quickstart.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # ideal digits, first-layer weights, misclassified images
    tables = [o for o in outputs if "text/markdown" in o.get("data", {})]
    table = tables[-1]["data"]["text/markdown"]
    assert table.startswith("| rank | model |") and "| mlp |" in table and "| pixel_similarity |" in table
    assert os.environ["QUICKSTART_EPOCHS"] == "2"


def test_the_notebook_api_script_runs(sample_root, tmp_path):
    """experiments/notebook_api: a sweep from Python, its DataFrame and a trained model, end to end."""
    import subprocess
    import sys

    from tests.conftest import tiny_overrides

    env = {**os.environ, "NOTEBOOK_API_ARGS": " ".join(tiny_overrides(sample_root, tmp_path))}
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "notebook_api" / "notebook_api.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["rank", "model", "optimizer.lr", "n", "val/acc_best", "val/acc_best", "std"]
    assert len(lines) == 6 and "val/acc recomputed" in lines[-1]
