"""The one Registry behind methods and backbones: decorator registration, clashes refused,
descriptions, "did you mean"."""

import pytest
import torch.nn as nn

from super_selfish import backbones, cli
from super_selfish.errors import ConfigError
from super_selfish.methods import registry as method_registry
from super_selfish.registry import Registry


def test_registry_registers_describes_and_refuses_a_clash():
    parts = Registry("part")

    @parts.register("small")
    def small():
        """A small part.

        More text that is not part of the description."""

    parts.add("large", object(), "A large part")
    assert parts.available() == ["large", "small"]
    assert parts.describe() == {"large": "A large part", "small": "A small part."}
    assert parts.get("small") is small and "small" in parts and len(parts) == 2
    with pytest.raises(ConfigError, match="already registered.*replace=True"):
        parts.add("small", lambda: None)
    parts.add("small", small)  # the same entry again (a re-imported module) is no clash
    replacement = parts.add("small", lambda: None, "Another", replace=True)
    assert parts.get("small") is replacement
    with pytest.raises(KeyError, match="Unknown part 'smal'. Did you mean 'small'"):
        parts.get("smal")
    assert parts.remove("large") is not None and parts.available() == ["small"]
    with pytest.raises(ConfigError, match="name"):
        parts.add("", object())


def test_methods_and_backbones_share_the_registry_rules(capsys):
    with pytest.raises(ConfigError, match="backbone of that name is already registered"):
        backbones.register("convnet-small")(lambda in_channels=3: nn.Identity())
    with pytest.raises(ConfigError, match="method of that name is already registered"):
        method_registry.register("simclr")(type("Other", (), {}))
    with pytest.raises(KeyError, match="Did you mean 'simclr'"):
        method_registry.get("simclrr")
    described = method_registry.describe()
    assert set(described) == set(method_registry.available()) and len(described) >= 22
    assert all(described.values())  # every method has a one-line description
    assert all(backbones.describe().values())
    assert cli.main(["list", "backbones"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(backbones.available())
    assert any(line.startswith("convnet-small ") and "conv" in line for line in printed)
