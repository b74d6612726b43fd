"""Optional integrations: import a third-party package only when a feature needs it.

Each integration is an extra of the package (``pip install "super_selfish[timm]"``); the core
never imports these libraries at import time. :func:`require` imports one on first use and,
when it is missing, raises an :class:`ImportError` that names the feature, the package and the
extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SuperSelfishError


class MissingExtraError(SuperSelfishError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: the importable name, e.g. ``"timm"`` or ``"lightning.pytorch"``.
        extra: the ``setup.py`` extra that installs it, e.g. ``"timm"``.
        feature: what the user asked for, e.g. ``"backbone='timm/resnet18'"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise MissingExtraError(
            f"{feature} needs the optional package {package!r}, which is not installed: "
            f'pip install "super_selfish[{extra}]" (or pip install {package}).'
        ) from exc
