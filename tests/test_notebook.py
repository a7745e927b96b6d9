"""The repository's notebook, executed (nbclient): a Trace displays as the interactive
page in an iframe and as Markdown, a History as its curves."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient and ipykernel (the test extra)")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "explain.ipynb"


def test_the_notebook_runs_and_shows_the_page_the_derivation_and_the_curves(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    trace_output = notebook.cells[1].outputs[0]["data"]
    assert trace_output["text/html"].startswith('<iframe srcdoc="&lt;!doctype html&gt;')
    assert 'id=&quot;backprop-trace&quot;' in trace_output["text/html"]
    assert "Backpropagation, worked" in trace_output["text/markdown"] and "\\section*" in trace_output["text/latex"]
    assert "every gradient agrees with its finite difference: True" in notebook.cells[2].outputs[0]["text"]
    assert notebook.cells[3].outputs[0]["data"]["image/png"]
