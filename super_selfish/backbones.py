"""Backbone registry: networks that map images to feature vectors.

Every backbone is wrapped in :class:`Backbone`, which accepts uint8 images or floats in
[0, 1], normalises them itself and pools spatial maps to vectors. That makes the module that
``Supervisor.get_backbone()`` hands out self-contained: any image batch in, features out.
Feature sizes are measured with a dummy forward pass, never hard-coded, so any input
resolution the network supports works.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import torch
import torch.nn as nn
import torchvision

from .errors import check, unknown_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMS = ("batch", "group", "layer")

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(in_channels) -> nn.Module`` (images to maps or vectors) under ``name``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return decorator


def available() -> List[str]:
    """Names accepted by :func:`build`."""
    return sorted(_REGISTRY)


class Backbone(nn.Module):
    """Images (uint8, or float in [0, 1]) to feature vectors of size :attr:`feature_dim`.

    ``body`` may return a spatial map (N, C, h, w), which is average-pooled, or vectors.
    :meth:`feature_map` gives the unpooled output for methods that need it (CPC, decoders).
    """

    def __init__(self, body: nn.Module, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 name: str = "custom", probe_size: int = 32):
        super().__init__()
        self.body = body
        self.name = name
        self.in_channels = in_channels
        if mean is None and in_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels).view(1, -1, 1, 1)
        std = torch.tensor(std if std is not None else [0.25] * in_channels).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.feature_dim, self.map_channels = self._measure(probe_size)

    def _measure(self, size: int) -> tuple[int, int]:
        """Run one dummy batch to learn the feature size (eval mode, state untouched)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            device = next((p.device for p in self.parameters()), torch.device("cpu"))
            out = self.feature_map(torch.zeros(2, self.in_channels, size, size, device=device))
        self.train(was_training)
        return int(self._pool(out).shape[1]), int(out.shape[1])

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images to the normalised float input of ``body``."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - self.mean) / self.std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Unpooled body output: (N, C, h, w) for convolutional bodies."""
        return self.body(self.prepare(images))

    @staticmethod
    def _pool(out: torch.Tensor) -> torch.Tensor:
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._pool(self.feature_map(images))


def build(backbone: str | nn.Module = "convnet-small", *, norm: str = "batch",
          in_channels: int = 3, probe_size: int = 32) -> Backbone:
    """Return a :class:`Backbone` from a registry name or any ``nn.Module``.

    ``norm`` swaps every BatchNorm for GroupNorm (32 groups or fewer) or a real per-sample
    LayerNorm (GroupNorm with one group), which do not leak statistics across a batch.
    """
    check(norm in NORMS, "norm", norm, f"one of {NORMS}")
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, nn.Module):
        body, name = backbone, type(backbone).__name__
    elif isinstance(backbone, str):
        if backbone not in _REGISTRY:
            raise unknown_name("backbone", backbone, _REGISTRY)
        body, name = _REGISTRY[backbone](in_channels), backbone
    else:
        raise unknown_name("backbone", backbone, _REGISTRY)
    if norm != "batch":
        replace_batch_norm(body, norm)
    return Backbone(body, in_channels=in_channels, name=name, probe_size=probe_size)


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap BatchNorm2d layers for GroupNorm (``group``) or one-group GroupNorm (``layer``)."""
    for child_name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            channels = child.num_features
            groups = 1 if norm == "layer" else _largest_divisor(channels, 32)
            setattr(module, child_name, nn.GroupNorm(groups, channels))
        else:
            replace_batch_norm(child, norm)
    return module


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if n % d == 0)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register("convnet-small")
def convnet_small(in_channels: int = 3) -> nn.Module:
    """Four strided 3x3 conv blocks (32-64-128-256): fast enough for CPU tests."""
    widths = (32, 64, 128, 256)
    layers, cin = [], in_channels
    for i, w in enumerate(widths):
        layers.append(_conv_block(cin, w, 1 if i == 0 else 2))
        cin = w
    return nn.Sequential(*layers)


def _torchvision_resnet(arch: str, in_channels: int, cifar_stem: bool = False) -> nn.Module:
    net = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    # Keep the spatial map (drop avgpool/fc) so dense methods can use it; Backbone pools.
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3, net.layer4)


for _arch in ("resnet18", "resnet34", "resnet50"):
    register(_arch)(lambda in_channels=3, _a=_arch: _torchvision_resnet(_a, in_channels))

register("cifar-resnet18")(
    lambda in_channels=3: _torchvision_resnet("resnet18", in_channels, cifar_stem=True))


class _EfficientNetFeatures(nn.Module):
    """efficientnet-pytorch network reduced to its convolutional feature map."""

    def __init__(self, variant: str, in_channels: int):
        super().__init__()
        from efficientnet_pytorch import EfficientNet  # heavy import, only when asked for

        self.net = EfficientNet.from_name(variant, in_channels=in_channels)
        self.net._fc = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images)


for _variant in range(8):
    register(f"efficientnet-b{_variant}")(
        lambda in_channels=3, _v=_variant: _EfficientNetFeatures(f"efficientnet-b{_v}", in_channels))
