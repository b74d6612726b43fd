"""docs/architecture.md's worked example (a backbone, a loss and a method added) runs as written
and prints what the page shows."""

from __future__ import annotations

import re
from pathlib import Path

from super_selfish import backbones
from super_selfish.registry import METHODS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_worked_example_runs_and_prints_what_the_page_shows(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    code = next(text for language, text in blocks if language == "python")
    shown = blocks[[text for _, text in blocks].index(code) + 1][1]
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "docs/architecture.md", "exec"), {"__name__": "architecture_example"})
    finally:
        for registry, name in ((backbones.BACKBONES, "tiny-conv"), (METHODS, "toy-align")):
            if name in registry:
                registry.remove(name)
    assert capsys.readouterr().out.strip().endswith(shown.strip())
    assert (tmp_path / "store" / "toy-align.pt").exists()
