"""The README and test.py stay current as methods are added: test.py's usage examples cover
every registered method; the benchmark table lists each method's default rate."""

from __future__ import annotations


def test_usage_examples_in_test_py_cover_every_registered_method():
    """test.py at the repository root must stay current as methods are added."""
    import ast
    from pathlib import Path

    from super_selfish import methods

    source = (Path(__file__).resolve().parents[2] / "test.py").read_text()
    listed = next(
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ALL"
    )
    names = [element.value for element in listed.elts]
    assert sorted(names) == methods.available()
    for name in names:  # every listed method has its own example branch
        assert f'method == "{name}"' in source


def test_readme_benchmark_lists_each_methods_recipe():
    """The README's methods table says how each method ran: its recipe's optimizer and its
    rate at the benchmark's batch of 128."""
    from pathlib import Path

    import pytest

    from super_selfish import methods
    from super_selfish.recipes import RECIPES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Every method against random initialisation") :]
    rows = [
        line.strip("|").split("|")
        for line in section.splitlines()
        if line.startswith("| ") and "recipe optimizer" not in line
    ][: len(methods.available())]
    listed = {cells[0].strip(): (cells[2].strip(), float(cells[3])) for cells in rows}
    assert set(listed) == set(methods.available())
    for name, (optimizer, lr) in listed.items():
        assert optimizer == RECIPES[name].optimizer, name
        assert lr == pytest.approx(RECIPES[name].lr_for(128), rel=1e-3), name
