"""Contrastive multiview coding (Tian, Krishnan & Isola, 2019, "Contrastive Multiview
Coding"), with the L and ab channels of Lab colour as the two views.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import augment, backbones
from ..color import to_lab
from ..data import Batch
from ..errors import check
from ..heads import MLPHead
from ..losses import MemoryBankNCELoss
from . import _bank, _heads, _joint
from .registry import register


class LabEncoder(nn.Module):
    """RGB images (uint8 or float in [0, 1]) to ``[f_L(L), f_ab(ab)]``: both CMC encoders'
    features of the image's Lab channels, concatenated (``feature_dim`` = sum of both).
    """

    def __init__(self, l_encoder: nn.Module, ab_encoder: nn.Module):
        super().__init__()
        self.l_encoder = l_encoder
        self.ab_encoder = ab_encoder
        self.feature_dim = int(l_encoder.feature_dim) + int(ab_encoder.feature_dim)
        self.name = f"cmc-lab({getattr(l_encoder, 'name', 'custom')})"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of the L and ab encoders of the Lab image, concatenated."""
        lab = to_lab(images)
        return torch.cat([self.l_encoder(lab[:, :1]), self.ab_encoder(lab[:, 1:])], dim=1)


@register("cmc")
class ContrastiveMultiviewCodingSupervisor(_bank.MemoryBankSupervisor):
    """Contrast the L (lightness) view of an image with its ab (colour) view, and back.

    Each augmented view is converted with :func:`super_selfish.color.to_lab`. Two encoders
    are trained: ``self.backbone`` takes the L channel (``in_channels=1``), ``self.ab_backbone``
    the two ab channels (``in_channels=2``); each is followed by a linear layer to
    ``feature_dim`` (128) and L2 normalisation. Two memory banks (one row per image, momentum
    ``bank_momentum`` 0.5) hold the L and the ab features; the L feature is contrasted with
    the ab bank (its own image's row is the positive, ``n_negatives`` other rows, default
    4096 capped below the dataset size, the negatives) and the ab feature with the L bank, at
    ``temperature`` 0.07. The loss is the sum of both directions, each a softmax over the
    positive and the sampled negatives (``loss="softmax"``, default) or the paper's NCE
    (``loss="nce"``; see :class:`InstanceDiscriminationSupervisor` for why it is not the
    default; ``docs/methods.md`` has the measurements).

    ``backbone`` is a registry name (both encoders are built from it) or a pair
    ``(l_module, ab_module)`` of networks taking 1 and 2 channels. Augmentations: the paper's
    random resized crop (20-100% area) and horizontal flip, one view (``simclr`` preset without
    colour ops, which would corrupt the colour view); other presets are used as given.

    :meth:`get_backbone` returns a :class:`LabEncoder`: RGB images in, the concatenation of
    the L encoder's and the ab encoder's features out (the paper's evaluation).

    Learning rate: ``default_lr`` 3e-4, that of the memory-bank methods (see
    :class:`super_selfish.methods._bank.MemoryBankSupervisor`); the recipe is in the README.

    Heads as arguments: ``head`` (L) and ``ab_head`` (None: the paper's linear layers) take
    modules of your own; both must return the same width, which the memory banks take; each is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    head=...)``; table in ``docs/methods.md``).
    """

    default_augment = "simclr"
    data_channels = 3  # RGB images, split into L and ab here

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        temperature: float = 0.07,
        feature_dim: int = 128,
        n_negatives: int = 4096,
        bank_momentum: float = 0.5,
        loss: str = "softmax",
        memory_size: Optional[int] = None,
        head: Optional[nn.Module] = None,
        ab_head: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_temperature(temperature)
        _joint.check_positive_int(feature_dim, "feature_dim")
        _joint.check_positive_int(n_negatives, "n_negatives")
        # 1 is what CMC records for its L encoder, so from_checkpoint passes it back
        in_channels = kwargs.pop("in_channels", 1)
        check(
            in_channels == 1,
            "in_channels",
            in_channels,
            "not set: CMC's encoders take 1 (L) and 2 (ab) channels",
        )
        pair = isinstance(backbone, (tuple, list))
        check(
            isinstance(backbone, str) or (pair and len(backbone) == 2),
            "backbone",
            backbone,
            "a registered backbone name or a pair (l_module, ab_module) taking 1 and 2 "
            "channels: CMC builds one encoder per colour view",
        )
        l_net, ab_net = backbone if pair else (backbone, backbone)
        super().__init__(dataset, l_net, in_channels=1, **kwargs)
        self.ab_backbone = backbones.build(
            ab_net, norm=self.hparams["norm"], in_channels=2, probe_size=self.image_size
        )
        self.head = _heads.resolve(
            self, "head", head, lambda: MLPHead([self.backbone.feature_dim, feature_dim])
        )
        if head is not None:  # the memory banks and the ab head take its width
            feature_dim = _heads.output_dim(self.head, self.backbone.feature_dim)
        self.ab_head = _heads.resolve(
            self, "ab_head", ab_head, lambda: MLPHead([self.ab_backbone.feature_dim, feature_dim])
        )
        if ab_head is not None:
            _heads.check_width(
                "ab_head",
                self.ab_head,
                self.ab_backbone.feature_dim,
                feature_dim,
                "the L head's width, feature_dim",
            )
        self.memory = _bank.make_bank(self.dataset, feature_dim, bank_momentum, memory_size)
        self.ab_memory = _bank.make_bank(self.dataset, feature_dim, bank_momentum, memory_size)
        n_items = self.memory.items.shape[0]
        self.criterion = MemoryBankNCELoss(n_items, temperature, loss)  # L query vs ab bank
        self.ab_criterion = MemoryBankNCELoss(n_items, temperature, loss)  # ab query vs L bank
        self.n_negatives = n_negatives
        self._record_hparams(ab_backbone=self.ab_backbone.name)

    def _build_views(self, spec: Any) -> Any:
        if spec == "simclr":
            return augment.build(
                "simclr",
                self.image_size,
                n_views=1,
                scale=(0.2, 1.0),
                jitter_p=0.0,
                gray_p=0.0,
                blur_p=0.0,
            )
        return super()._build_views(spec)

    def get_backbone(self) -> LabEncoder:  # type: ignore[override]
        """RGB images to the concatenated L and ab features (see :class:`LabEncoder`)."""
        return LabEncoder(self.backbone, self.ab_backbone)

    def _forward(self, batch: Batch) -> torch.Tensor:
        lab = to_lab(self.augment_views(batch.images)[0])
        z_l = F.normalize(self.head(self.backbone(lab[:, :1])), dim=1)
        z_ab = F.normalize(self.ab_head(self.ab_backbone(lab[:, 1:])), dim=1)
        index = batch.index
        loss_l = self.criterion(
            z_l,
            self.ab_memory.items[index],
            self._negatives(self.ab_memory, index, self.n_negatives),
        )
        loss_ab = self.ab_criterion(
            z_ab, self.memory.items[index], self._negatives(self.memory, index, self.n_negatives)
        )
        self.log(loss_l=float(loss_l.detach()), loss_ab=float(loss_ab.detach()))
        self._defer_bank_update(self.memory, index, z_l)
        self._defer_bank_update(self.ab_memory, index, z_ab)
        return loss_l + loss_ab
