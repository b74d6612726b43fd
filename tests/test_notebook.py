"""The example notebook runs end to end on a CPU and shows the comparison table and plots."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "compare_methods.ipynb"


def _texts(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            for mime in ("text/plain", "text/markdown", "text/html"):
                parts.append(str(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def test_compare_methods_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for module in ("ipykernel", "matplotlib", "pandas"):
        pytest.importorskip(module)
    # the kernel imports this checkout and runs in a scratch folder
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any failing cell

    from super_selfish import methods

    wanted = [m for m in ("simclr", "byol", "rotnet") if m in methods.available()]
    text = _texts(nb)
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")][:3] == [
        "method", "knn_accuracy", "linear_accuracy"]
    assert all(f"| {m} " in text for m in wanted)
    assert "weighted kNN (k=20" in text and "knn_accuracy" in text
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells
                 for out in cell.get("outputs", []))
    assert images >= 4  # comparison bars, history curves, t-SNE, augmentation grid
    assert not list(tmp_path.glob("store*"))  # the demo writes no checkpoints
