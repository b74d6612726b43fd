"""Batched, seeded, device-agnostic augmentations for self-supervised learning.

``build("simclr", 96)`` returns the :class:`Views` a method trains on; calling it on a uint8 or
[0, 1] batch (N, C, H, W) on any device gives one float32 (N, 3, h, w) tensor per view, computed
for the whole batch at once, with per-image random parameters drawn from a CPU generator.
"""

from . import presets as _presets  # noqa: F401  (registers the built-in presets)
from .core import Applied, Op, Pipeline, Views
from .elastic import ElasticDeform
from .fixation import FixationOp, spectral_residual_saliency
from .foveation import Foveation
from .magnification import Magnification
from .ops import (
    ColorJitter,
    Equalize,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    Normalize,
    Posterize,
    RandomErasing,
    RandomResizedCrop,
    Resize,
    Rotate90,
    Solarize,
    SomeOf,
    VerticalFlip,
)
from .preview import preview
from .registry import OPS, PRESETS, available, build, op_from_spec, register

__all__ = [
    "Applied",
    "ColorJitter",
    "ElasticDeform",
    "Equalize",
    "FixationOp",
    "Foveation",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "Magnification",
    "Normalize",
    "OPS",
    "PRESETS",
    "Op",
    "Pipeline",
    "Posterize",
    "RandomErasing",
    "RandomResizedCrop",
    "Resize",
    "Rotate90",
    "Solarize",
    "SomeOf",
    "VerticalFlip",
    "Views",
    "available",
    "build",
    "op_from_spec",
    "preview",
    "register",
    "spectral_residual_saliency",
]
