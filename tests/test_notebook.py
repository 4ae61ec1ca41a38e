"""examples/kaggle_tpu.ipynb, executed headless (nbclient, ipykernel) on the
demo-format test data with its parameter cell switched to a tiny budget: it
must run top to bottom and write submission.csv for every test image."""

from __future__ import annotations

import csv

import nbformat
from nbclient import NotebookClient

from conftest import REPO, tiny_space


def test_the_kaggle_notebook_runs_and_writes_a_submission(flower_root, tmp_path):
    nb = nbformat.read(REPO / "examples" / "kaggle_tpu.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    space = tiny_space(tmp_path, epochs=2, steps=2)
    out = tmp_path / "working"
    params[0].source = "\n".join([
        f"DATA = {str(flower_root)!r}", f"SPACE = {str(space)!r}", f"PROJECT = {str(out / 'runs')!r}",
        f"OUT = {str(out)!r}", 'MAX_TIME = "10m"', "MAX_TRIALS = 1", "ENSEMBLE = 1",
        'WHEELS = "/nonexistent"'])
    out.mkdir()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    with open(out / "submission.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and set(rows[0]) == {"id", "label"}  # the test split's 30 images
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("best trial 0: val macro F1" in t for t in texts)
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))  # plots shown inline
