"""DINO: self-distillation with no labels (Caron et al., 2021, "Emerging Properties in
Self-Supervised Vision Transformers").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from .. import validate
from ..data import Batch
from ..errors import check
from ..heads import MLPHead
from ..losses import DINOLoss
from . import _heads, _joint
from ._momentum import MomentumSupervisor
from .registry import register


class DINOHead(nn.Module):
    """MLP (GELU) -> L2-normalised bottleneck -> weight-normalised linear layer.

    ``in_dim -> hidden_dim (x n_layers - 1) -> bottleneck_dim``, with ``norm`` ("batch" or
    "none", DINO's ``use_bn_in_head``) after each hidden layer, then a bias-free linear layer
    to ``out_dim`` whose weight is ``g * v / ||v||`` per output unit; with ``norm_last_layer``
    the scale ``g`` is fixed to 1 (not trained), as in the paper's default.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        norm: str = "batch",
    ):
        super().__init__()
        validate.positive_int(n_layers, "n_layers")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        self.mlp = MLPHead(dims, norm=norm, activation=nn.GELU)
        for layer in self.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        scale = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            scale.fill_(1.0)
        scale.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prototype scores of the L2-normalised bottleneck of ``x``."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


@register("dino")
class DINOSupervisor(MomentumSupervisor):
    """A student matches a momentum teacher's centred, sharpened output across crops.

    Student: backbone + :class:`DINOHead` (hidden 2048, bottleneck 256, ``out_dim`` 4096
    instead of the paper's 65536 so that CPU runs stay small; ``head_norm`` "batch": BatchNorm
    after the hidden layers, the paper's ``use_bn_in_head`` option, because with the
    convolutional backbones here the paper's ViT default "none" collapsed to uniform outputs;
    see ``docs/methods.md``).
    Teacher: frozen copies of both (``momentum_backbone``, ``momentum_head``), updated after
    every step by EMA with a momentum rising from ``momentum`` 0.996 to 1 along a cosine over
    the run. Multi-crop views from the
    ``dino`` preset (2 global crops, then local crops); the teacher sees only the global
    crops, the student all of them, and every (teacher view, other student view) pair is
    scored by :class:`~super_selfish.losses.DINOLoss`:
    student temperature 0.1, teacher temperature ``teacher_temp`` 0.04 after a linear warm-up
    from ``warmup_teacher_temp`` 0.04 over ``warmup_teacher_temp_epochs`` (0; the paper uses
    0.04 -> 0.07 over 30 epochs for long runs), centring with ``center_momentum`` 0.9 (the
    centre is a saved buffer, updated from the teacher outputs gathered across processes).

    The last layer of the student head gets no updates during the first
    ``freeze_last_layer_steps`` steps (default: one epoch, the authors' default, but at most a
    tenth of the run so that short runs train it), which stabilises the start of training. As
    in the paper's code its gradients are dropped after backward (:meth:`_after_backward`); it
    stays in the optimizer, so a later ``supervise()`` on the same object, or a resume, trains
    it as usual.

    ``get_backbone()`` returns the teacher backbone: the paper evaluates and releases the
    teacher, an average of the students that it reports to be the better encoder;
    ``get_backbone("student")`` (or ``"online"``) returns the student.

    Heads as arguments: ``head`` (None: the :class:`DINOHead` above) takes a module of your own
    mapping backbone features to ``out_dim`` scores (the centre takes its width); the teacher
    copies it. Its ``last_layer``, if it has one, is frozen at the start as above; it is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    head=...)``; table in ``docs/methods.md``).
    """

    default_augment = "dino"
    backbone_roles = {
        "teacher": "momentum_backbone",
        "momentum": "momentum_backbone",
        "student": "backbone",
        "online": "backbone",
    }
    default_backbone = "teacher"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        momentum: float = 0.996,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: float = 0,
        center_momentum: float = 0.9,
        n_global: int = 2,
        head_norm: str = "batch",
        freeze_last_layer_steps: Optional[int] = None,
        head: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        for name, value in (
            ("out_dim", out_dim),
            ("hidden_dim", hidden_dim),
            ("bottleneck_dim", bottleneck_dim),
            ("n_global", n_global),
        ):
            _joint.check_positive_int(value, name)
        _joint.check_temperature(student_temp, "student_temp")
        _joint.check_temperature(teacher_temp, "teacher_temp")
        _joint.check_temperature(warmup_teacher_temp, "warmup_teacher_temp")
        validate.non_negative_number(
            warmup_teacher_temp_epochs, "warmup_teacher_temp_epochs", " of epochs"
        )
        check(head_norm in ("batch", "none"), "head_norm", head_norm, "'batch' or 'none'")
        check(
            freeze_last_layer_steps is None
            or (isinstance(freeze_last_layer_steps, int) and freeze_last_layer_steps >= 0),
            "freeze_last_layer_steps",
            freeze_last_layer_steps,
            "None (one epoch) or a non-negative int",
        )
        super().__init__(dataset, backbone, momentum=momentum, **kwargs)
        self.head = _heads.resolve(
            self,
            "head",
            head,
            lambda: DINOHead(
                self.backbone.feature_dim,
                out_dim,
                hidden_dim,
                bottleneck_dim,
                n_layers,
                norm_last_layer,
                head_norm,
            ),
        )
        if head is not None:  # the centre has its width
            out_dim = _heads.output_dim(self.head, self.backbone.feature_dim)
        self.add_momentum_copies("backbone", "head")  # the teacher
        self.criterion = DINOLoss(out_dim, student_temp, center_momentum)
        self.teacher_temp = float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.warmup_teacher_temp_epochs = float(warmup_teacher_temp_epochs)
        self.n_global = n_global
        self.freeze_last_layer_steps = freeze_last_layer_steps

    # ------------------------------------------------------------------ schedules
    def _steps_per_epoch(self) -> int:
        loader = getattr(self, "loader", None)
        return max(1, len(loader)) if loader is not None else 1

    def current_teacher_temp(self) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        warmup = int(self.warmup_teacher_temp_epochs * self._steps_per_epoch())
        if self.global_step >= warmup:
            return self.teacher_temp
        frac = self.global_step / warmup
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    def last_layer_frozen(self) -> bool:
        """Whether this step falls in the last layer's freeze window."""
        return _joint.in_freeze_window(self, self.freeze_last_layer_steps)

    # ------------------------------------------------------------------ training step
    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)
        check(
            len(views) >= max(2, self.n_global),
            "augment views",
            len(views),
            f"at least 2 and at least n_global={self.n_global} (global crops first, then "
            "local crops)",
        )
        student = self.head(torch.cat(self.encode_views(views))).chunk(len(views))
        with torch.no_grad():
            globals_ = views[: self.n_global]
            teacher = self.momentum_head(
                torch.cat(self.encode_views(globals_, self.momentum_backbone))
            ).chunk(len(globals_))
        temp = self.current_teacher_temp()
        self.log(teacher_temp=temp)
        return self.criterion(list(student), list(teacher), temp)

    def _after_backward(self) -> None:
        """Drop the last layer's gradients while it is frozen (it stays in the optimizer)."""
        last_layer = getattr(self.head, "last_layer", None)  # a user head may have none
        if last_layer is not None and self.last_layer_frozen():
            for p in last_layer.parameters():
                p.grad = None
