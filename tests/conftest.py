"""Shared fixtures. The tests mirror the package (``tests/methods`` for ``super_selfish/methods``,
``tests/augment`` for ``super_selfish/augment``, ...); test file names are unique across folders
(pytest's default import mode, no ``__init__.py``). ``toys.py`` (tiny supervisors and datasets)
is importable from every folder: this file puts ``tests/`` on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from toys import sample_subset  # noqa: E402


@pytest.fixture(scope="module")
def small_train():
    """96 real CIFAR-10 images of the bundled sample (labelled, 32 px), the same every run."""
    return sample_subset(96)
