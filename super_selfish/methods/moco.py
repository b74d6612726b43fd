"""MoCo: momentum contrast (He et al., 2020, "Momentum Contrast for Unsupervised Visual
Representation Learning"; Chen et al., 2020, "Improved Baselines with Momentum Contrastive
Learning" (v2); Chen, Xie & He, 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers" (v3)).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..data import Batch
from ..errors import check
from ..heads import MLPHead
from ..losses import InfoNCELoss
from . import _heads, _joint
from ._momentum import MomentumSupervisor
from .registry import register

QUEUE_CAP = 65536
#: The automatic queue holds at most this fraction (1/N) of the dataset: no stale own keys.
QUEUE_DATASET_FRACTION = 10


def shuffle_permutation(
    n: int, groups: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Order in which the ``n`` key images are fed to the key encoder for shuffle-BN.

    Queries are encoded in ``groups`` contiguous chunks (each one batch-norm group, like one
    GPU each). The keys are encoded as the chunks of ``x[perm]``: every query group is
    shuffled, then its members are dealt round-robin over the key chunks, so every key chunk
    draws evenly from all query groups and never coincides with one (``n // groups >= 2``).
    """
    check(
        isinstance(groups, int) and groups >= 1 and n % groups == 0,
        "shuffle_groups",
        groups,
        f"a positive divisor of the batch size {n}",
    )
    size = n // groups
    members = torch.stack(
        [torch.randperm(size, generator=generator) + g * size for g in range(groups)]
    )  # row g: query group g, shuffled
    return members.t().reshape(-1)  # [g0 m0, g1 m0, ..., g0 m1, g1 m1, ...]


@register("moco")
class MomentumContrastSupervisor(MomentumSupervisor):
    """Contrast each query with its key from a momentum encoder and a queue of past keys
    (MoCo v2: Chen et al., 2020, arXiv:2003.04297; MoCo v3: Chen, Xie & He, 2021, ICCV).

    ``version=2`` (default, MoCo v2): ``moco_v2`` augmentations; projector feature ->
    ``hidden_dim`` 2048 -> ``projection_dim`` 128 with ReLU and no BatchNorm; temperature 0.2;
    momentum encoder (backbone and projector) updated with a constant ``momentum`` 0.999; a
    queue of ``queue_size`` keys (paper: 65536). The query uses view 1, the key view 2.
    Shuffle-BN on one device: the batch is encoded in ``shuffle_groups`` (2) batch-norm
    groups; the key encoder sees the key images regrouped so that no key group coincides
    with a query group (see :func:`shuffle_permutation`), which closes the batch-statistics
    leak of BatchNorm between a query and its key. With ``norm="group"`` or ``"layer"`` the
    default is 1 group (nothing leaks).

    ``version=3`` (MoCo v3, ResNet setting of the authors' code): ``byol`` (asymmetric)
    augmentations; projector feature -> 4096 -> 256 ending in an affine-free BatchNorm;
    predictor 256 -> 4096 -> 256; no queue: the other keys of the batch (of all processes)
    are the negatives; symmetric loss ``2 T (ctr(q1, k2) + ctr(q2, k1))``; temperature 1.0;
    momentum from 0.99 to 1 along a cosine; ``shuffle_groups`` 1.

    Queue size when ``queue_size`` is not given: ``min(65536, len(dataset) // 10)``, trimmed
    at ``supervise`` time to the largest multiple of the global batch (at least one batch).
    The paper's 65536 keys are 5% of ImageNet; a queue as large as a small dataset would hold
    every image's own key from the previous epoch as a negative of its query, hence the tenth
    (the README gives the measured effect). An explicit ``queue_size`` must be a multiple of
    the global batch. Only keys already
    enqueued are negatives (the random initial rows are not), so the very first step has
    none; the step's keys are enqueued in ``_update`` after the backward pass (gathered from
    all processes in distributed runs). The queue and the momentum encoder are buffers and
    frozen modules, so checkpoints save and restore them.

    ``get_backbone()`` returns the query (online) encoder: the papers transfer the query
    encoder (the key encoder only fills the queue with consistent keys and lags behind it);
    ``get_backbone("momentum")`` (or ``"key"``) returns the momentum (key) encoder.

    Heads as arguments: ``projector`` (and with ``version=3`` ``predictor``; None: the paper's,
    above) take modules of your own; the momentum encoder copies the projector, and the queue
    and the default predictor take its width; each is trained, saved and restored like the
    built-in one (rebuild with ``from_checkpoint(name, projector=...)``; table in
    ``docs/methods.md``).
    """

    default_augment = "moco_v2"
    backbone_roles = {
        "online": "backbone",
        "query": "backbone",
        "momentum": "momentum_backbone",
        "key": "momentum_backbone",
    }
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        version: int = 2,
        temperature: Optional[float] = None,
        projection_dim: Optional[int] = None,
        hidden_dim: Optional[int] = None,
        queue_size: Optional[int] = None,
        momentum: Optional[float] = None,
        momentum_schedule: Optional[str] = None,
        shuffle_groups: Optional[int] = None,
        projector: Optional[nn.Module] = None,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        check(version in (2, 3), "version", version, "2 (MoCo v2) or 3 (MoCo v3)")
        v3 = version == 3
        temperature = (1.0 if v3 else 0.2) if temperature is None else temperature
        projection_dim = (256 if v3 else 128) if projection_dim is None else projection_dim
        hidden_dim = (4096 if v3 else 2048) if hidden_dim is None else hidden_dim
        momentum = (0.99 if v3 else 0.999) if momentum is None else momentum
        momentum_schedule = (
            ("cosine" if v3 else "constant") if momentum_schedule is None else momentum_schedule
        )
        if shuffle_groups is None:  # no batch statistics to leak without BatchNorm
            shuffle_groups = 2 if not v3 and kwargs.get("norm", "batch") == "batch" else 1
        _joint.check_temperature(temperature)
        _joint.check_positive_int(projection_dim, "projection_dim")
        _joint.check_positive_int(hidden_dim, "hidden_dim")
        _joint.check_positive_int(shuffle_groups, "shuffle_groups")
        check(
            not (v3 and queue_size is not None),
            "queue_size",
            queue_size,
            "None with version=3 (MoCo v3 uses the keys of the batch, no queue)",
        )
        if v3 and kwargs.get("augment") is None:
            self.default_augment = "byol"
        super().__init__(
            dataset, backbone, momentum=momentum, momentum_schedule=momentum_schedule, **kwargs
        )
        self.version = version
        self.shuffle_groups = shuffle_groups
        feature_dim = self.backbone.feature_dim
        check(
            v3 or predictor is None,
            "predictor",
            type(predictor).__name__,
            "None with version=2 (MoCo v2 has no predictor; version=3 has one)",
        )
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: (
                MLPHead([feature_dim, hidden_dim, projection_dim], last_norm=True)
                if v3
                else MLPHead([feature_dim, hidden_dim, projection_dim], norm="none")
            ),
        )
        if projector is not None:  # the queue and the predictor take its width
            projection_dim = _heads.output_dim(self.projector, feature_dim)
        self.predictor: Optional[nn.Module] = (
            _heads.resolve(
                self,
                "predictor",
                predictor,
                lambda: MLPHead([projection_dim, hidden_dim, projection_dim]),
                in_dim=projection_dim,
            )
            if v3
            else None
        )
        self.add_momentum_copies("backbone", "projector")
        cap = (
            QUEUE_CAP
            if self.dataset is None
            else max(1, min(QUEUE_CAP, len(self.dataset) // QUEUE_DATASET_FRACTION))
        )
        self.queue = (
            None
            if v3
            else _joint.make_queue(
                _joint.initial_queue_size(queue_size, cap, None, "queue_size"),
                projection_dim,
                auto=queue_size is None,
            )
        )
        self.criterion = InfoNCELoss(temperature)
        self._pending_keys: Optional[torch.Tensor] = None
        self._record_hparams(
            temperature=temperature,
            projection_dim=projection_dim,
            hidden_dim=hidden_dim,
            shuffle_groups=shuffle_groups,
            queue_size=None if v3 else self.queue.size,
        )  # resolved values

    # ------------------------------------------------------------------ set-up
    def _on_fit_start(self, batch_size: int, **run: Any) -> None:
        self._check_groups(batch_size)
        if self.queue is not None:
            self._record_hparams(queue_size=_joint.fit_queue(self.queue, batch_size, "queue_size"))

    def _check_groups(self, batch_size: int) -> None:
        g = self.shuffle_groups
        check(
            g == 1 or (batch_size % g == 0 and batch_size // g >= 2),
            "shuffle_groups",
            g,
            f"a divisor of the batch size {batch_size} leaving at least 2 images per group",
        )

    # ------------------------------------------------------------------ encoders
    def _online(self, x: torch.Tensor) -> torch.Tensor:
        out = self.projector(self.backbone(x))
        return out if self.predictor is None else self.predictor(out)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        """Online embeddings, one batch-norm group per contiguous chunk."""
        if self.shuffle_groups == 1:
            return self._online(x)
        return torch.cat([self._online(chunk) for chunk in x.chunk(self.shuffle_groups)])

    @torch.no_grad()
    def _keys(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Momentum-encoder embeddings in the order of ``x``, encoded with shuffle-BN."""

        def encode(images: torch.Tensor) -> torch.Tensor:
            return self.momentum_projector(self.momentum_backbone(images))

        if self.shuffle_groups == 1:
            return encode(x)
        self._check_groups(len(x))
        perm = shuffle_permutation(len(x), self.shuffle_groups, generator).to(x.device)
        shuffled = torch.cat([encode(chunk) for chunk in x[perm].chunk(self.shuffle_groups)])
        keys = torch.empty_like(shuffled)
        keys[perm] = shuffled  # un-shuffle: row p of the shuffled batch is image perm[p]
        return keys

    # ------------------------------------------------------------------ training step
    def _forward(self, batch: Batch) -> torch.Tensor:
        view1, view2 = self.augment_views(batch.images)[:2]
        self._check_groups(len(view1))
        if self.version == 3:
            q1, q2 = self._query(view1), self._query(view2)
            k1, k2 = self._keys(view1), self._keys(view2)
            scale = 2 * self.criterion.temperature
            return scale * (self.criterion(q1, k2) + self.criterion(q2, k1))
        q = self._query(view1)
        k = nn.functional.normalize(self._keys(view2), dim=1)
        self._pending_keys = k
        return self.criterion(q, k, self.queue.valid())

    def _update(self, loss: torch.Tensor) -> None:
        super()._update(loss)  # backward, step, then the momentum encoder's EMA step
        if self._pending_keys is not None:  # after backward: the loss read the old queue
            self.queue.push(self._pending_keys)
            self._pending_keys = None
