"""Instance discrimination (Wu, Xiong, Yu & Lin, 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import augment, validate
from ..data import Batch
from ..heads import MLPHead
from ..losses import MemoryBankNCELoss
from . import _bank, _heads, _joint
from .registry import register


@register("instdisc")
class InstanceDiscriminationSupervisor(_bank.MemoryBankSupervisor):
    """Every image is its own class, scored against a memory bank of all images' features.

    The backbone feature goes through a linear layer to ``feature_dim`` (128) and is
    L2-normalised. The memory bank holds one such vector per dataset image (``batch.index``);
    after each step the rows of the batch become ``normalize(m * row + (1 - m) * feature)``
    with ``bank_momentum`` m = 0.5 (the authors' code). The loss contrasts the feature with
    its own bank row against ``n_negatives`` rows drawn uniformly from the others (4096,
    capped below the dataset size) at ``temperature`` 0.07, see
    :class:`~super_selfish.losses.MemoryBankNCELoss`. ``loss="softmax"`` (default) is the
    softmax over the positive and the sampled negatives; ``loss="nce"`` is the paper's
    noise-contrastive estimation with a normaliser Z fixed after the first batch. NCE is not
    the default because on small CPU runs its loss kept rising and kNN accuracy fell below
    that of the random initialisation, while the softmax learned (``docs/methods.md``).

    ``proximal`` is the weight lambda of the paper's proximal term
    ``lambda * ||v_i^(t) - v_i^(t-1)||^2`` (Sec. 3.4; current feature against its bank row),
    off by default (0), as in the authors' released code, which relies on the momentum update.

    Augmentations: one view of the ``simclr`` preset with the paper's settings (random
    resized crop of 20-100% area, colour jitter 0.4 on brightness, contrast, saturation and
    hue, grayscale 0.2, flip, no blur); other presets are used as given.

    Without a dataset (to ``load`` a checkpoint) the bank takes its size from the checkpoint.

    Learning rate: ``default_lr`` 3e-4, that of the memory-bank methods (see
    :class:`super_selfish.methods._bank.MemoryBankSupervisor`); the recipe is in the README.

    Heads as arguments: ``head`` (None: the paper's linear layer) takes a module of your own
    mapping backbone features to embeddings; the memory bank takes its width; it is trained,
    saved and restored like the built-in one (rebuild with ``from_checkpoint(name, head=...)``;
    table in ``docs/methods.md``).
    """

    default_augment = "simclr"

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
        proximal: float = 0.0,
        memory_size: Optional[int] = None,
        head: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_temperature(temperature)
        _joint.check_positive_int(feature_dim, "feature_dim")
        _joint.check_positive_int(n_negatives, "n_negatives")
        validate.non_negative_number(proximal, "proximal", " (a weight; 0 = off)")
        super().__init__(dataset, backbone, **kwargs)
        self.head = _heads.resolve(
            self, "head", head, lambda: MLPHead([self.backbone.feature_dim, feature_dim])
        )
        if head is not None:  # the memory bank takes its width
            feature_dim = _heads.output_dim(self.head, self.backbone.feature_dim)
        self.memory = _bank.make_bank(self.dataset, feature_dim, bank_momentum, memory_size)
        self.criterion = MemoryBankNCELoss(self.memory.items.shape[0], temperature, loss)
        self.n_negatives = n_negatives
        self.proximal = float(proximal)

    def _build_views(self, spec: Any) -> Any:
        if spec == "simclr":
            return augment.build(
                "simclr",
                self.image_size,
                n_views=1,
                scale=(0.2, 1.0),
                jitter=(0.4, 0.4, 0.4, 0.4),
                jitter_p=1.0,
                gray_p=0.2,
                blur_p=0.0,
            )
        return super()._build_views(spec)

    def _forward(self, batch: Batch) -> torch.Tensor:
        view = self.augment_views(batch.images)[0]
        features = F.normalize(self.head(self.backbone(view)), dim=1)
        positive = self.memory.items[batch.index]
        negatives = self._negatives(self.memory, batch.index, self.n_negatives)
        loss = self.criterion(features, positive, negatives)
        if self.proximal > 0:
            proximal = (features - positive).pow(2).sum(dim=1).mean()
            self.log(proximal=float(proximal))
            loss = loss + self.proximal * proximal
        self._defer_bank_update(self.memory, batch.index, features)
        return loss
