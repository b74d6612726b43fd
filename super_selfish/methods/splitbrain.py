"""Split-brain autoencoder (Zhang et al., 2017, "Split-Brain Autoencoders: Unsupervised
Learning by Cross-Channel Prediction").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import backbones, color, decoders, validate
from ..data import Batch
from ..errors import ConfigError, check
from ..supervisor import Supervisor
from . import _heads
from .autoencoding import first_view
from .registry import register


def quantize_l(lightness: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index of L scaled to [0, 1] (as :func:`super_selfish.color.to_lab` gives it):
    ``bins`` equal bins over [0, 1].
    """
    return (lightness * bins).floor().clamp(0, bins - 1).long()


def quantize_ab(
    ab: torch.Tensor, bins: int, ab_range: tuple[float, float] = (-110.0, 110.0)
) -> torch.Tensor:
    """Class index ``a_bin * bins + b_bin`` of scaled ab ((N, 2, ...), as ``to_lab`` gives it)
    on a ``bins`` x ``bins`` grid over ``ab_range`` in raw Lab units (values outside are
    clamped to the border bins).
    """
    low, high = ab_range
    raw = ab * 255.0 - 128.0
    index = ((raw - low) / (high - low) * bins).floor().clamp(0, bins - 1).long()
    return index[:, 0] * bins + index[:, 1]


class SplitBrainEncoder(nn.Module):
    """The trained split-brain representation: RGB images (uint8 or [0, 1]) to Lab, the L
    channel through the L encoder, ab through the ab encoder, features concatenated
    (``feature_dim`` = sum of both).
    """

    def __init__(self, encoder_l: backbones.Backbone, encoder_ab: backbones.Backbone):
        super().__init__()
        self.encoder_l, self.encoder_ab = encoder_l, encoder_ab
        self.feature_dim = encoder_l.feature_dim + encoder_ab.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of the L and ab encoders of the Lab image, concatenated."""
        lab = color.to_lab(images)
        return torch.cat([self.encoder_l(lab[:, :1]), self.encoder_ab(lab[:, 1:])], dim=1)


@register("splitbrain")
class SplitBrainSupervisor(Supervisor):
    """Two encoders, each predicting the *other* Lab channels per pixel, as classification.

    ``self.backbone`` encodes L (1 channel) and ``self.backbone_ab`` encodes ab (2 channels),
    both of the architecture named by ``backbone``. ``self.decoder_l`` turns the L features
    into per-pixel logits over ``ab_bins`` x ``ab_bins`` = 16 x 16 ab classes (a grid over
    ``ab_range`` = (-110, 110), which covers the sRGB gamut); ``self.decoder_ab`` turns the
    ab features into logits over ``l_bins`` = 50 L classes. The loss is the sum of both
    per-pixel cross entropies. Predictions are made at ``image_size / output_stride``
    (default 1 below 128 px, 4 from 128 px, as the paper predicts at reduced resolution),
    with targets from the area-averaged Lab image.

    :meth:`get_backbone` returns a :class:`SplitBrainEncoder` that takes RGB images and
    concatenates both encoders' features. ``backbone`` must be a registry name (both
    encoders are built from it) or a pair of modules (L encoder with 1 input channel, ab
    encoder with 2). Augmentation: ``none``; needs convolutional backbones.

    Heads as arguments: ``decoder_l`` and ``decoder_ab`` (None: the ones above) take modules of
    your own, called as ``decoder(feature_map, size=(H, W))`` and returning the logit maps of
    the other channels' bins; each is trained, saved and restored like the built-in one (rebuild
    with ``from_checkpoint(name, decoder_l=...)``; table in ``docs/methods.md``).
    """

    default_augment = "none"
    data_channels = 3  # RGB images, split into L and ab here

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        l_bins: int = 50,
        ab_bins: int = 16,
        ab_range: Sequence[float] = (-110.0, 110.0),
        output_stride: int | None = None,
        decoder_l: Optional[nn.Module] = None,
        decoder_ab: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        if "in_channels" in kwargs and kwargs["in_channels"] not in (1, 3):
            raise ConfigError(
                f"Invalid in_channels={kwargs['in_channels']!r}: split-brain "
                "takes RGB images and builds a 1-channel (L) and a 2-channel "
                "(ab) encoder itself."
            )
        kwargs.pop("in_channels", None)
        if isinstance(backbone, (tuple, list)):
            check(
                len(backbone) == 2 and all(isinstance(b, nn.Module) for b in backbone),
                "backbone",
                backbone,
                "a registry name or a pair of modules (L, ab)",
            )
            backbone_l, backbone_ab = backbone
        elif isinstance(backbone, str):
            backbone_l = backbone_ab = backbone
        else:
            raise ConfigError(
                f"Invalid backbone={backbone!r}: split-brain needs a registry "
                "name (it builds a 1-channel L and a 2-channel ab encoder from "
                "it) or a pair of modules (L encoder, ab encoder)."
            )
        validate.int_at_least(l_bins, "l_bins", 2)
        validate.int_at_least(ab_bins, "ab_bins", 2)
        check(
            len(ab_range) == 2 and ab_range[0] < ab_range[1],
            "ab_range",
            ab_range,
            "a (low, high) pair of raw Lab a/b values, e.g. (-110, 110)",
        )
        super().__init__(dataset, backbone_l, in_channels=1, **kwargs)
        if output_stride is None:
            output_stride = 1 if self.image_size < 128 else 4
        validate.int_in_range(
            output_stride,
            "output_stride",
            1,
            self.image_size // 2,
            " (at most half the image size)",
        )
        norm = self.hparams["norm"]
        self.backbone_ab = backbones.build(
            backbone_ab, norm=norm, in_channels=2, probe_size=self.image_size
        )
        self.l_bins, self.ab_bins = l_bins, ab_bins
        self.ab_range = (float(ab_range[0]), float(ab_range[1]))
        self.output_stride = output_stride
        out_size = self.image_size // output_stride
        self.decoder_l = _heads.resolve(
            self,
            "decoder_l",
            decoder_l,
            lambda: decoders.for_backbone(
                self.backbone, self.image_size, ab_bins**2, out_size, norm=norm, head_kernel=1
            ),
            "called as decoder_l(L feature_map, size=(H, W)), returning ab_bins**2 logit maps",
        )
        self.decoder_ab = _heads.resolve(
            self,
            "decoder_ab",
            decoder_ab,
            lambda: decoders.for_backbone(
                self.backbone_ab, self.image_size, l_bins, out_size, norm=norm, head_kernel=1
            ),
            "called as decoder_ab(ab feature_map, size=(H, W)), returning l_bins logit maps",
        )
        self._record_hparams(
            ab_range=list(self.ab_range),
            output_stride=output_stride,
            backbone_ab=self.backbone_ab.name,
        )

    def get_backbone(self) -> SplitBrainEncoder:
        """RGB images to the concatenated L-encoder and ab-encoder features."""
        return SplitBrainEncoder(self.backbone, self.backbone_ab)

    def _out_size(self, lab: torch.Tensor) -> tuple[int, int]:
        return (lab.shape[-2] // self.output_stride, lab.shape[-1] // self.output_stride)

    def targets(self, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets of the L branch = ab classes, targets of the ab branch = L classes),
        each (N, h, w) long, from a scaled Lab batch.
        """
        size = self._out_size(lab)
        if tuple(lab.shape[-2:]) != size:
            lab = F.adaptive_avg_pool2d(lab, size)
        return (
            quantize_ab(lab[:, 1:], self.ab_bins, self.ab_range),
            quantize_l(lab[:, 0], self.l_bins),
        )

    def predict(self, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ab logits from L, L logits from ab), each (N, classes, h, w)."""
        size = self._out_size(lab)
        from_l = self.decoder_l(self.backbone.feature_map(lab[:, :1]), size=size)
        from_ab = self.decoder_ab(self.backbone_ab.feature_map(lab[:, 1:]), size=size)
        return from_l, from_ab

    def _forward(self, batch: Batch) -> torch.Tensor:
        lab = color.to_lab(first_view(self, batch.images))
        ab_logits, l_logits = self.predict(lab)
        ab_target, l_target = self.targets(lab)
        loss_l_to_ab = F.cross_entropy(ab_logits.float(), ab_target)
        loss_ab_to_l = F.cross_entropy(l_logits.float(), l_target)
        self.log(l_to_ab=float(loss_l_to_ab.detach()), ab_to_l=float(loss_ab_to_l.detach()))
        return loss_l_to_ab + loss_ab_to_l
