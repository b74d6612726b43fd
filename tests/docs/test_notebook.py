"""The example notebook runs end to end on a CPU and shows the comparison table and plots."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "compare_methods.ipynb"


def _texts(nb, stream: str = "") -> str:
    """All text outputs (``stream="stderr"``: only what cells wrote to stderr)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and stream in ("", out.get("name")):
                parts.append(out.get("text", ""))
            if not stream:
                for mime in ("text/plain", "text/markdown", "text/html"):
                    parts.append(str(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


@pytest.mark.slow
def test_compare_methods_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for module in ("ipykernel", "matplotlib", "pandas"):
        pytest.importorskip(module)
    # the kernel imports this checkout and runs in a scratch folder
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell

    from super_selfish import methods

    wanted = [m for m in ("simclr", "byol", "rotnet") if m in methods.available()]
    assert "lr=" not in "".join(c.source for c in nb.cells if "compare(" in c.source)
    text = _texts(nb)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:5] == ["method", "knn_accuracy", "linear_accuracy", "knn_gain", "linear_gain"]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in lines[lines.index(header) + 2 :]
        if line.startswith("| ")
    }
    assert list(rows)[:1] == ["untrained"] and all(m in rows for m in wanted)
    # each method on its own recipe: no single lr forced on all (the notes would name it)
    note = next(line for line in lines if line.startswith("- every method:"))
    assert not re.search(r"\blr [0-9]", note), note
    assert all(float(rows[m][columns.index("lr")]) > 0 for m in wanted)
    assert "weighted kNN (k=20" in text and "knn_accuracy" in text
    errors = _texts(nb, "stderr")
    assert "epoch 1/1" in errors  # the progress bars rendered (as text: no ipywidgets here)
    assert "Warning" not in errors and "IProgress" not in errors, errors
    images = sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )
    assert images >= 4  # comparison bars, history curves, t-SNE, augmentation grid
    assert not list(tmp_path.glob("store*"))  # the demo writes no checkpoints


def test_progress_bar_is_plain_text_in_a_kernel_without_ipywidgets(monkeypatch):
    import sys
    import warnings

    from tqdm.std import tqdm as text_bar

    from super_selfish import console

    assert not console._in_jupyter_kernel()  # pytest is no Jupyter kernel
    monkeypatch.setattr(console, "_in_jupyter_kernel", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto warned "IProgress not found" here
        bar = console.progress_bar(total=2, disable=True)
    assert type(bar) is text_bar
