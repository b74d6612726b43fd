"""SwAV: swapping assignments between views (Caron et al., 2020, "Unsupervised Learning of
Visual Features by Contrasting Cluster Assignments").
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import console, validate
from ..data import Batch
from ..distributed import is_main_process, world_size
from ..errors import check
from ..heads import MLPHead
from ..losses import SwAVLoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register

#: The paper's queue: 3840 embeddings from epoch 15, for batches below 256.
QUEUE_LENGTH = 3840
QUEUE_START_EPOCH = 15
QUEUE_BELOW_BATCH = 256


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

    A queue (:class:`~super_selfish.memory.Queue`) of the last embeddings of each global
    crop joins the batch's scores in Sinkhorn once full, which balances the codes of small
    batches: the paper uses 3840 embeddings from epoch 15 when the batch is below 256.
    ``queue_length`` None (default) does the same, scaled to the run: the queue is used only
    when the global batch is below 256, holds ``min(3840, len(dataset))`` embeddings (trimmed
    to a multiple of the batch) and fills from epoch ``queue_start_epoch``, by default
    ``min(15, ceil(epochs / 20))`` (15 for the paper's 400-800 epochs, 1 for short runs). A
    message says when it becomes active, and each history record has ``queue_active`` (1
    while Sinkhorn reads the queue). ``queue_length=0`` turns it off; a positive int always
    uses a queue of that size (at least one global batch).

    The prototypes are frozen (no optimizer update) for the first ``freeze_prototypes_steps``
    steps (default: one epoch as in the paper's code, at most a tenth of the run so that short
    runs train them): their gradients are dropped after
    backward (:meth:`_after_backward`) while they stay in the optimizer, so a later
    ``supervise()`` on the same object, or a resume, trains them as usual.

    Heads as arguments: ``projector`` (None: the paper's, above) takes a module of your own
    mapping backbone features to embeddings; the prototypes and the queue take its width; it is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    projector=...)``; table in ``docs/methods.md``).
    """

    default_augment = "swav"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        n_prototypes: int = 3000,
        projection_dim: int = 128,
        hidden_dim: int = 2048,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        n_assign: int = 2,
        queue_length: Optional[int] = None,
        queue_start_epoch: Optional[int] = None,
        freeze_prototypes_steps: Optional[int] = None,
        projector: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        for name, value in (
            ("n_prototypes", n_prototypes),
            ("projection_dim", projection_dim),
            ("hidden_dim", hidden_dim),
            ("n_assign", n_assign),
            ("sinkhorn_iterations", sinkhorn_iterations),
        ):
            _joint.check_positive_int(value, name)
        _joint.check_temperature(temperature)
        _joint.check_temperature(epsilon, "epsilon")
        validate.non_negative_int(
            queue_length,
            "queue_length",
            " (0 = no queue)",
            none="the paper's queue, scaled to the run",
        )
        validate.non_negative_int(
            queue_start_epoch, "queue_start_epoch", none="min(15, ceil(epochs / 20))"
        )
        check(
            freeze_prototypes_steps is None
            or (isinstance(freeze_prototypes_steps, int) and freeze_prototypes_steps >= 0),
            "freeze_prototypes_steps",
            freeze_prototypes_steps,
            "None (one epoch) or a non-negative int",
        )
        super().__init__(dataset, backbone, **kwargs)
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: MLPHead([self.backbone.feature_dim, hidden_dim, projection_dim]),
        )
        if projector is not None:  # the prototypes and the queues take its width
            projection_dim = _heads.output_dim(self.projector, self.backbone.feature_dim)
        self.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
        self.normalize_prototypes()
        self.criterion = SwAVLoss(temperature, epsilon, sinkhorn_iterations)
        auto = queue_length is None
        size = (
            _joint.initial_queue_size(queue_length, QUEUE_LENGTH, self.dataset, "queue_length")
            if auto
            else queue_length
        )
        self.queues = (
            nn.ModuleList(
                _joint.make_queue(size, projection_dim, auto=auto) for _ in range(n_assign)
            )
            if size > 0
            else None
        )
        self.n_assign = n_assign
        self.queue_length = queue_length
        self.queue_start_epoch = queue_start_epoch
        self._queue_start = QUEUE_START_EPOCH if queue_start_epoch is None else queue_start_epoch
        self._queue_used = self.queues is not None
        self._queue_announced = False
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self._pending_queue: list[tuple[nn.Module, torch.Tensor]] = []

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project the prototypes back onto the unit sphere (before each step, as the paper)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def prototypes_frozen(self) -> bool:
        """Whether this step falls in the prototypes' freeze window."""
        return _joint.in_freeze_window(self, self.freeze_prototypes_steps)

    def _on_fit_start(self, batch_size: int, *, epochs: int, **run: Any) -> None:
        self._fit_queues(batch_size, epochs)

    def _fit_queues(self, batch_size: int, epochs: int) -> None:
        """At the start of a run: whether the queue is used, from which epoch, and its size."""
        self._queue_start = (
            min(QUEUE_START_EPOCH, math.ceil(epochs / 20))
            if self.queue_start_epoch is None
            else self.queue_start_epoch
        )
        # The automatic queue is the paper's remedy for small batches only.
        self._queue_used = self.queues is not None and (
            self.queue_length is not None or batch_size * world_size() < QUEUE_BELOW_BATCH
        )
        self._queue_announced = False
        for queue in self.queues if self._queue_used else ():
            _joint.fit_queue(queue, batch_size, "queue_length", multiple=False)

    def _forward(self, batch: Batch) -> torch.Tensor:
        self.normalize_prototypes()
        views = self.augment_views(batch.images)
        check(
            len(views) >= max(2, self.n_assign),
            "augment views",
            len(views),
            f"at least 2 and at least n_assign={self.n_assign} (global crops first)",
        )
        z = F.normalize(self.projector(torch.cat(self.encode_views(views))), dim=1)
        scores = self.prototypes(z).chunk(len(views))
        embeddings = z.detach().chunk(len(views))
        queue_scores: Optional[list[Optional[torch.Tensor]]] = None
        if self.queues is not None and self._queue_used:
            queue_scores = []
            started = self.epoch >= self._queue_start
            for i, queue in enumerate(self.queues):
                use = started and int(queue.filled) == queue.size
                with torch.no_grad():
                    queue_scores.append(self.prototypes(queue.items) if use else None)
                if started:
                    self._pending_queue.append((queue, embeddings[i]))
            active = all(q is not None for q in queue_scores)
            if active and not self._queue_announced and is_main_process():
                console.info(
                    f"swav: queue of {self.queues[0].size} embeddings per global "
                    f"crop active from epoch {self.epoch + 1}, step "
                    f"{self.global_step + 1}"
                )
            self._queue_announced = self._queue_announced or active
            self.log(queue_active=float(active))
        return self.criterion(list(scores), self.n_assign, queue_scores)

    def _after_backward(self) -> None:
        """Drop the prototypes' gradients while they are frozen (they stay in the optimizer)."""
        if self.prototypes_frozen():
            self.prototypes.weight.grad = None

    def _update(self, loss: torch.Tensor) -> None:
        super()._update(loss)
        pending, self._pending_queue = self._pending_queue, []
        for queue, keys in pending:  # after the step: the loss read the queue as it was
            queue.push(keys)

    def _train_step(self, batch: Any, epoch: int, step: int) -> Optional[float]:
        self._pending_queue = []  # drop the keys of a skipped (non-finite) batch
        return super()._train_step(batch, epoch, step)
