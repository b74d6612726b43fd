"""super_selfish: self-supervised learning of image representations with PyTorch."""

from . import augment, backbones, data, evaluate, losses  # noqa: E402
from .compare import compare  # noqa: E402
from .heads import CombinedNet  # noqa: E402
from .methods import *  # noqa: E402,F401,F403
from .methods import __all__ as _method_names  # noqa: E402
from .supervisor import Callback, Supervisor  # noqa: E402
from .version import __version__  # noqa: F401

__all__ = [
    "Supervisor",
    "CombinedNet",
    "Callback",
    "augment",
    "backbones",
    "data",
    "evaluate",
    "losses",
    "compare",
    *_method_names,
]
