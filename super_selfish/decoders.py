"""Convolutional decoders: feature maps (or latent codes) back to images or per-pixel logits.

One :class:`ConvDecoder` serves every method that generates pixels: denoising and context
autoencoders reconstruct images from the backbone's feature map, split-brain predicts
per-pixel colour bins from it, and the BiGAN generator (:class:`LatentGenerator`) decodes a
small latent map. Nothing depends on a fixed resolution: the number of 2x upsampling stages
follows from the map and output sizes given at construction, and :meth:`ConvDecoder.forward`
resizes to the exact size asked for (so other input sizes work as well at run time).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .errors import ConfigError, check

DECODER_NORMS = ("batch", "group", "layer", "none")
OUTPUTS = ("none", "sigmoid", "tanh")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    groups = 1 if kind == "layer" else max(d for d in range(1, 33) if channels % d == 0)
    return nn.GroupNorm(groups, channels)


def upsampling_stages(in_size: int, out_size: int) -> int:
    """Number of 2x stages that bring ``in_size`` closest to ``out_size`` (log2, rounded).

    Args:
        in_size: side of the input map.
        out_size: side of the output.

    Returns:
        The stage count, 0 when ``out_size`` is not larger.
    """
    if out_size <= in_size:
        return 0
    return int(round(math.log2(out_size / in_size)))


class ConvDecoder(nn.Module):
    """Upsample an (N, ``in_channels``, h, w) map to (N, ``out_channels``, H, W).

    A 3x3 conv to ``width`` (128) channels, then ``upsampling_stages(in_size, out_size)``
    stages of (nearest 2x upsampling, 3x3 conv, norm, ReLU) halving the width down to
    ``min_width`` (16), so every stage costs about the same; then a plain ``head_kernel`` x
    ``head_kernel`` conv to ``out_channels`` (no norm or ReLU on the output), bilinear resizing to
    the exact output size when it is not ``in_size`` times a power of 2, and the optional
    ``output`` activation (``sigmoid`` for images in [0, 1], ``none`` for logits).

    Args:
        in_channels: channels of the input map.
        out_channels: channels of the output (3 for RGB, bins for colour logits, ...).
        in_size: side (or height, width) of the input map.
        out_size: side (or height, width) of the output.
        width: channels after the first conv (at most ``in_channels``, at least
            ``min_width``).
        min_width: the smallest width a stage is halved to.
        norm: ``"batch"``, ``"group"``, ``"layer"`` or ``"none"``.
        output: ``"none"``, ``"sigmoid"`` or ``"tanh"``.
        head_kernel: 1 or 3, the output conv's kernel.

    Raises:
        ConfigError: an invalid channel count, size, width, ``norm``, ``output`` or
            ``head_kernel``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_size: int | tuple[int, int],
        out_size: int | tuple[int, int],
        *,
        width: int = 128,
        min_width: int = 16,
        norm: str = "batch",
        output: str = "none",
        head_kernel: int = 3,
    ):
        super().__init__()
        validate.positive_int(in_channels, "in_channels")
        validate.positive_int(out_channels, "out_channels")
        check(norm in DECODER_NORMS, "norm", norm, f"one of {DECODER_NORMS}")
        check(output in OUTPUTS, "output", output, f"one of {OUTPUTS}")
        check(width >= min_width >= 1, "width", (width, min_width), "width >= min_width >= 1")
        in_hw, out_hw = _pair(in_size), _pair(out_size)
        check(
            min(in_hw) >= 1 and min(out_hw) >= 1,
            "size",
            (in_size, out_size),
            "positive map and output sizes",
        )
        self.out_size = out_hw
        self.output = output
        self.stages = upsampling_stages(min(in_hw), min(out_hw))
        channels = max(min_width, min(width, in_channels))
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=norm == "none"),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        for _ in range(self.stages):
            nxt = max(min_width, channels // 2)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, nxt, 3, 1, 1, bias=norm == "none"),
                _norm(norm, nxt),
                nn.ReLU(inplace=True),
            ]
            channels = nxt
        self.body = nn.Sequential(*layers)
        check(head_kernel in (1, 3), "head_kernel", head_kernel, "1 or 3")
        self.head = nn.Conv2d(channels, out_channels, head_kernel, 1, head_kernel // 2)

    def forward(
        self, feature_map: torch.Tensor, size: Optional[int | tuple[int, int]] = None
    ) -> torch.Tensor:
        """Decode; ``size`` (default: the construction ``out_size``) is the exact output size.

        Args:
            feature_map: (N, ``in_channels``, h, w) input.
            size: output side or (height, width).

        Returns:
            (N, ``out_channels``, H, W) after the ``output`` activation.
        """
        out = self.head(self.body(feature_map))
        size = self.out_size if size is None else _pair(size)
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        if self.output == "tanh":
            return torch.tanh(out)
        return out


@torch.no_grad()
def feature_map_shape(backbone: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(C, h, w) of ``backbone.feature_map`` at ``image_size`` (one dummy batch, eval mode).

    Args:
        backbone: a :class:`~super_selfish.backbones.Backbone` (anything with
            ``feature_map``).
        image_size: side of the dummy images.

    Returns:
        ``(C, h, w)``.

    Raises:
        ConfigError: the backbone gives vectors instead of a spatial map (a ViT, or a custom
            body that pools), since pixel decoders need a map.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
        channels = getattr(backbone, "in_channels", 3)
        out = backbone.feature_map(torch.zeros(2, channels, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
    if out.ndim != 4:
        raise ConfigError(
            f"Invalid backbone={getattr(backbone, 'name', backbone)!r}: its "
            f"feature_map gives shape {tuple(out.shape)}, expected a convolutional "
            "backbone with an (N, C, h, w) map (e.g. convnet-small, resnet18)."
        )
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def for_backbone(
    backbone: nn.Module,
    image_size: int,
    out_channels: int,
    out_size: Optional[int] = None,
    **options,
) -> ConvDecoder:
    """A :class:`ConvDecoder` from ``backbone``'s map at ``image_size`` to ``out_size``
    (default: ``image_size``) with ``out_channels`` outputs; ``options`` go to the decoder.

    Args:
        backbone: the backbone whose map is decoded.
        image_size: the training image size.
        out_channels: channels of the decoder's output.
        out_size: side of the output; None for ``image_size``.
        **options: keyword arguments of :class:`ConvDecoder`.

    Returns:
        The decoder.

    Raises:
        ConfigError: the backbone has no spatial map (see :func:`feature_map_shape`).
    """
    channels, height, width = feature_map_shape(backbone, image_size)
    return ConvDecoder(
        channels,
        out_channels,
        (height, width),
        image_size if out_size is None else out_size,
        **options,
    )


def latent_grid(image_size: int) -> int:
    """Side of the generator's first map: ``image_size`` halved while even and above 7
    (32 -> 4, 96 -> 6, 224 -> 7); 4 when that leaves an odd side above 7.

    Args:
        image_size: side of the generated images.

    Returns:
        The side g of the g x g latent map.
    """
    side = image_size
    while side % 2 == 0 and side > 7:
        side //= 2
    return side if side <= 7 else 4


class LatentGenerator(nn.Module):
    """Latent vectors (N, ``latent_dim``) to images (N, ``out_channels``, S, S) in [0, 1].

    A linear layer makes a ``channels`` x g x g map (g = :func:`latent_grid`), which the
    shared :class:`ConvDecoder` upsamples to ``image_size`` (the BiGAN/DCGAN generator).

    Args:
        latent_dim: size of the latent vectors.
        image_size: side S of the generated images.
        out_channels: channels of the generated images.
        channels: channels of the first map (and width of the decoder).
        norm: the decoder's normalisation.

    Raises:
        ConfigError: ``latent_dim`` is not a positive int, or the decoder's arguments are
            invalid.
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: int,
        out_channels: int = 3,
        *,
        channels: int = 256,
        norm: str = "batch",
    ):
        super().__init__()
        validate.positive_int(latent_dim, "latent_dim")
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.grid = latent_grid(image_size)
        self.project = nn.Linear(latent_dim, channels * self.grid * self.grid)
        self.decoder = ConvDecoder(
            channels,
            out_channels,
            self.grid,
            image_size,
            width=channels,
            norm=norm,
            output="sigmoid",
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, ``out_channels``, S, S) in [0, 1] from latent vectors (N, latent_dim)."""
        latent_map = F.relu(self.project(z)).view(len(z), self.channels, self.grid, self.grid)
        return self.decoder(latent_map)
