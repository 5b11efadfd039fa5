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
