"""Exemplar networks (Dosovitskiy, Springenberg, Riedmiller & Brox, 2014, "Discriminative
Unsupervised Feature Learning with Convolutional Neural Networks"), with the triplet variant
of Kolesnikov, Zhai & Beyer (2019, "Revisiting Self-Supervised Visual Representation
Learning").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import augment, store, validate
from ..data import Batch
from ..errors import ConfigError, check
from ..heads import MLPHead
from ..losses import SemiHardTripletLoss
from ..supervisor import Supervisor
from . import _heads
from .registry import register

LOSSES = ("classification", "triplet")


@register("exemplar")
class ExemplarSupervisor(Supervisor):
    """Every image is its own class, seen through heavy augmentation (``exemplar`` preset:
    crops, flips, colour, rotation, elastic deformation...).

    ``loss="classification"`` (default; the original formulation, for small datasets): one
    augmented view per image and a classifier ``[feature_dim, hidden_dim, num_images]`` with
    one output per dataset image, trained with cross entropy against ``batch.index``.
    ``num_images`` defaults to the dataset size (give it, or load a checkpoint, when built
    without a dataset). The loader shuffles without replacement, so each epoch visits every
    image once (except the last ``len(dataset) % batch_size`` ones of the shuffled order, as
    incomplete batches are dropped); the surrogate classes are never sampled with
    replacement.

    ``loss="triplet"`` (scales to any dataset size): two augmented views of each image are
    anchor and positive, the other images of the batch are the negatives; embeddings
    ``[feature_dim, hidden_dim, embedding_dim=128]`` are L2-normalised and trained with the
    semi-hard triplet loss (margin 0.2, negatives mined in the batch,
    :class:`~super_selfish.losses.SemiHardTripletLoss`).

    Heads as arguments: ``predictor`` (``loss='classification'``: backbone features to one logit
    per image) or ``projector`` (``loss='triplet'``: features to embeddings) take modules of
    your own (None: the paper's, above); each is trained, saved and restored like the built-in
    one (rebuild with ``from_checkpoint(name, predictor=...)``; table in ``docs/methods.md``).
    """

    default_augment = "exemplar"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        loss: str = "classification",
        num_images: Optional[int] = None,
        hidden_dim: int = 1024,
        embedding_dim: int = 128,
        margin: float = 0.2,
        predictor: Optional[nn.Module] = None,
        projector: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        check(loss in LOSSES, "loss", loss, f"one of {LOSSES}")
        # _build_views (run by Supervisor.__init__) needs to know how many views to make.
        object.__setattr__(self, "loss_type", loss)
        check(
            predictor is None or loss == "classification",
            "predictor",
            type(predictor).__name__,
            "None with loss='triplet' (pass projector=)",
        )
        check(
            projector is None or loss == "triplet",
            "projector",
            type(projector).__name__,
            "None with loss='classification' (pass predictor=)",
        )
        object.__setattr__(self, "_user_predictor", predictor)
        super().__init__(dataset, backbone, **kwargs)
        validate.positive_int(hidden_dim, "hidden_dim")
        self.hidden_dim = hidden_dim
        self.classifier: Optional[MLPHead] = None
        if loss == "classification":
            if self.dataset is not None:
                n_data = len(self.dataset)
                check(
                    num_images is None or (isinstance(num_images, int) and num_images >= n_data),
                    "num_images",
                    num_images,
                    f"None or at least the dataset size ({n_data}): one class per image",
                )
                num_images = n_data if num_images is None else num_images
            elif num_images is not None:
                check(
                    isinstance(num_images, int) and num_images >= 2,
                    "num_images",
                    num_images,
                    "an int of at least 2 (the number of dataset images)",
                )
            if num_images is not None:
                self._build_classifier(num_images)
        else:
            validate.positive_int(embedding_dim, "embedding_dim")
            self.projector = _heads.resolve(
                self,
                "projector",
                projector,
                lambda: MLPHead([self.backbone.feature_dim, hidden_dim, embedding_dim]),
                in_dim=self.backbone.feature_dim,
            )
            self.criterion = SemiHardTripletLoss(margin)
        self._record_hparams(
            num_images=num_images,
            embedding_dim=embedding_dim if loss == "triplet" else None,
            margin=margin if loss == "triplet" else None,
        )

    def _build_views(self, spec: Any) -> Any:
        n_views = 2 if self.loss_type == "triplet" else 1
        if isinstance(spec, str):
            return augment.build(spec, self.image_size, n_views=n_views)
        return augment.build(spec, self.image_size)

    def _build_classifier(self, num_images: int) -> None:
        self.classifier = _heads.resolve(
            self,
            "predictor",
            self._user_predictor,
            lambda: MLPHead([self.backbone.feature_dim, self.hidden_dim, num_images]),
        )
        if self._user_predictor is not None:
            _heads.check_width(
                "predictor",
                self.classifier,
                self.backbone.feature_dim,
                num_images,
                "one logit per dataset image",
            )
        self.hparams["num_images"] = num_images
        self.classifier.to(next(self.backbone.parameters()).device)

    def load(self, name: Optional[str] = None, *, strict: bool = True) -> ExemplarSupervisor:
        """As :meth:`Supervisor.load`; a classifier not built yet (no dataset was given) gets
        its size from the checkpoint.
        """
        name = self._run_name_or(name)
        if self.loss_type == "classification" and self.classifier is None:
            num_images = store.read(name)["hparams"].get("num_images")
            if num_images:
                self._build_classifier(int(num_images))
        return super().load(name, strict=strict)

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)
        if self.loss_type == "classification":
            if self.classifier is None:
                raise ConfigError(
                    "ExemplarSupervisor(loss='classification') was built "
                    "without a dataset or num_images: pass either."
                )
            logits = self.classifier(self.backbone(views[0]))
            self.log(accuracy=(logits.detach().argmax(1) == batch.index).float().mean())
            return F.cross_entropy(logits, batch.index)
        check(
            len(views) >= 2,
            "augment",
            self.augment_name,
            "augmentations giving two views per image for loss='triplet'",
        )
        features = torch.cat(self.encode_views(views[:2]))
        embeddings = self.projector(features)
        labels = torch.arange(len(batch.images), device=embeddings.device).repeat(2)
        return self.criterion(embeddings, labels)
