"""SwAV: swapping assignments between views (Caron et al., 2020, "Unsupervised Learning of
Visual Features by Contrasting Cluster Assignments")."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..data import Batch
from ..errors import check
from ..heads import MLPHead
from ..losses import SwAVLoss
from ..supervisor import Supervisor
from . import _joint
from .registry import register


@register("swav")
class SwAVSupervisor(Supervisor):
    """Predict the cluster code of one crop from the other crops of the same image.

    Backbone -> projector (feature -> ``hidden_dim`` 2048 -> ``projection_dim`` 128, BatchNorm)
    -> L2 normalisation -> ``n_prototypes`` (3000) prototypes, a bias-free linear layer whose
    rows are re-normalised to unit length before every step. Codes are computed for the
    ``n_assign`` (2) global crops with Sinkhorn-Knopp (``sinkhorn_iterations`` 3, ``epsilon``
    0.05) and predicted from every other crop with a softmax at ``temperature`` 0.1
    (:class:`~super_selfish.losses.SwAVLoss`). Multi-crop views from the ``swav`` preset
    (2 global crops first, then local crops).

    ``queue_length`` > 0 keeps a queue (:class:`~super_selfish.memory.Queue`) of the last
    embeddings of each global crop, filled from epoch ``queue_start_epoch`` (15) on; once
    full, their scores join the batch's in Sinkhorn, which balances the codes of small batches
    (the paper's advice below a batch of 256). Off by default (0).

    The prototypes are frozen (no gradient, no optimizer update) for the first
    ``freeze_prototypes_steps`` steps (default: one epoch), as in the paper.
    """

    default_augment = "swav"

    def __init__(self, dataset: Any = None, backbone: Any = "convnet-small", *,
                 n_prototypes: int = 3000, projection_dim: int = 128, hidden_dim: int = 2048,
                 temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 n_assign: int = 2, queue_length: int = 0, queue_start_epoch: int = 15,
                 freeze_prototypes_steps: Optional[int] = None, **kwargs: Any):
        for name, value in (("n_prototypes", n_prototypes), ("projection_dim", projection_dim),
                            ("hidden_dim", hidden_dim), ("n_assign", n_assign),
                            ("sinkhorn_iterations", sinkhorn_iterations)):
            _joint.check_positive_int(value, name)
        _joint.check_temperature(temperature)
        _joint.check_temperature(epsilon, "epsilon")
        validate.non_negative_int(queue_length, "queue_length", " (0 = no queue)")
        validate.non_negative_int(queue_start_epoch, "queue_start_epoch")
        check(freeze_prototypes_steps is None or (isinstance(freeze_prototypes_steps, int)
                                                  and freeze_prototypes_steps >= 0),
              "freeze_prototypes_steps", freeze_prototypes_steps,
              "None (one epoch) or a non-negative int")
        super().__init__(dataset, backbone, **kwargs)
        self.projector = MLPHead([self.backbone.feature_dim, hidden_dim, projection_dim])
        self.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
        self.normalize_prototypes()
        self.criterion = SwAVLoss(temperature, epsilon, sinkhorn_iterations)
        self.queues = nn.ModuleList(_joint.make_queue(queue_length, projection_dim, auto=False)
                                    for _ in range(n_assign)) if queue_length > 0 else None
        self.n_assign = n_assign
        self.queue_start_epoch = queue_start_epoch
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self._pending_queue: List[Tuple[nn.Module, torch.Tensor]] = []

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def prototypes_frozen(self) -> bool:
        steps = self.freeze_prototypes_steps
        if steps is None:
            loader = getattr(self, "loader", None)
            steps = len(loader) if loader is not None else 0
        return self.global_step < steps

    def _on_fit_start(self, batch_size: int, **run: Any) -> None:
        for queue in self.queues or ():
            _joint.fit_queue(queue, batch_size, "queue_length", multiple=False)

    def _forward(self, batch: Batch) -> torch.Tensor:
        self.normalize_prototypes()
        self.prototypes.weight.requires_grad_(not self.prototypes_frozen())
        views = self.augment_views(batch.images)
        check(len(views) >= max(2, self.n_assign), "augment views", len(views),
              f"at least 2 and at least n_assign={self.n_assign} (global crops first)")
        z = F.normalize(self.projector(torch.cat(self.encode_views(views))), dim=1)
        scores = self.prototypes(z).chunk(len(views))
        embeddings = z.detach().chunk(len(views))
        queue_scores: Optional[List[Optional[torch.Tensor]]] = None
        if self.queues is not None:
            queue_scores = []
            started = self.epoch >= self.queue_start_epoch
            for i, queue in enumerate(self.queues):
                use = started and int(queue.filled) == queue.size
                with torch.no_grad():
                    queue_scores.append(self.prototypes(queue.items) if use else None)
                if started:
                    self._pending_queue.append((queue, embeddings[i]))
        return self.criterion(list(scores), self.n_assign, queue_scores)

    def _update(self, loss: torch.Tensor) -> None:
        super()._update(loss)
        pending, self._pending_queue = self._pending_queue, []
        for queue, keys in pending:  # after the step: the loss read the queue as it was
            queue.push(keys)

    def _train_step(self, batch: Any, epoch: int, step: int) -> Optional[float]:
        self._pending_queue = []  # drop the keys of a skipped (non-finite) batch
        return super()._train_step(batch, epoch, step)
