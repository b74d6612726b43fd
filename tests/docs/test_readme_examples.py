"""The README's "Use with ..." examples run as written (in a scratch folder), print what the
README shows after them, and every run they name writes a finite first-epoch loss."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def use_with_examples() -> list:
    """(section title, python code, the text block shown after it or None), in order."""
    examples = []
    for section in re.split(r"^### ", README.read_text(), flags=re.MULTILINE)[1:]:
        section = re.split(r"^## ", section, flags=re.MULTILINE)[0]  # up to the next chapter
        title = section.splitlines()[0]
        if not title.startswith("Use with"):
            continue
        blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
        for i, (language, code) in enumerate(blocks):
            if language == "python":
                after = blocks[i + 1] if i + 1 < len(blocks) else None
                examples.append((title, code, after[1] if after and after[0] == "text" else None))
    return examples


EXAMPLES = use_with_examples()


def test_every_integration_has_a_use_with_example():
    titles = {title for title, _, _ in EXAMPLES}
    for name in (
        "timm",
        "Hugging Face",
        "torchvision",
        "WebDataset",
        "folders",
        "Lightning",
        "Weights & Biases",
        "ONNX",
        "multi-channel",
    ):
        assert any(name in title for title in titles), name


@pytest.mark.parametrize(
    "title, code, shown", EXAMPLES, ids=[title.replace("Use with ", "") for title, _, _ in EXAMPLES]
)
def test_readme_example_runs_as_written(title, code, shown, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    exec(compile(code, f"README.md ({title})", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    if shown is not None:
        assert printed.strip().endswith(shown.strip()), printed[-500:]
    for run in re.findall(r'name="(store/[\w-]+)"', code):
        history = json.loads((tmp_path / run / "history.json").read_text())
        assert len(history) == 1 and math.isfinite(history[0]["loss"]), run
