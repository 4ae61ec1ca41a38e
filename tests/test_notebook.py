"""examples/kaggle_tpu.ipynb, executed headless (nbclient, ipykernel) on the
demo-format test data with its parameter cell switched to a tiny budget: it
must run top to bottom and write submission.csv for every test image."""

from __future__ import annotations

import csv

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, tiny_space


# jax: today's TPU VM route (issue 21), on 4 fake CPU devices with the
# 4-device graph of tests/test_jax.py (batch 2 per device, dropout 0)
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.jax)])
def test_the_kaggle_notebook_runs_and_writes_a_submission(flower_root, tmp_path, backend, monkeypatch, jax_cache):
    nb = nbformat.read(REPO / "examples" / "kaggle_tpu.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    space = tiny_space(tmp_path, epochs=2, steps=2)
    strategy = "auto"
    if backend == "jax":
        pytest.importorskip("jax")
        space = tiny_space(tmp_path, epochs=2, steps=2, extra="  dropout: {value: 0.0}\n")
        space.write_text(space.read_text().replace("batch_per_replica: 8", "batch_per_replica: 2"))
        monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")  # the kernel inherits it
        for k, v in jax_cache.items():
            monkeypatch.setenv(k, v)
        strategy = "mirrored"
    out = tmp_path / "working"
    params[0].source = "\n".join([
        f"BACKEND = {backend!r}", f"STRATEGY = {strategy!r}",
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
    if backend == "jax":
        assert any("JAX devices: [CpuDevice(id=0), CpuDevice(id=1), CpuDevice(id=2), CpuDevice(id=3)]" in t
                   for t in texts), texts
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))  # plots shown inline
