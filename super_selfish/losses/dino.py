"""Self-distillation with centering and sharpening (DINO, Caron et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..distributed import gather
from ..errors import check


class DINOLoss(nn.Module):
    """Cross entropy between the sharpened, centred teacher and the student, over view pairs
    (Caron et al., 2021, ICCV).

    ``teacher[i]`` (B, K) are the teacher's outputs for the global views; ``student[v]`` the
    student's outputs for all views, global views first and in the same order, so that pairs
    ``(i, v == i)`` (the same crop) are skipped. Teacher probabilities are
    ``softmax((t - center) / teacher_temp)``, student log-probabilities
    ``log_softmax(s / student_temp)``; the loss is the mean over pairs of the batch-mean cross
    entropy.

    After each forward the ``center`` buffer (saved with the model) moves towards the mean
    teacher output of the batch, gathered across processes:
    ``center <- m * center + (1 - m) * mean(teacher)`` with ``m = center_momentum``.

    Args:
        out_dim: size K of the outputs (the paper: 65536).
        student_temp: the student's temperature; paper: 0.1.
        center_momentum: the centre's EMA coefficient; paper: 0.9.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        validate.temperature(student_temp, "student_temp", " such as 0.1")
        validate.probability(center_momentum, "center_momentum", " such as 0.9")
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], teacher_temp: float
    ) -> torch.Tensor:
        """The loss over every (teacher view, other student view) pair; then updates the centre.

        Args:
            student: the student's outputs (B, K) for every view, the global views first.
            teacher: the teacher's outputs (B, K) for the global views.
            teacher_temp: the teacher's temperature at this step (paper: 0.04 to 0.07).

        Returns:
            The scalar loss.
        """
        validate.temperature(teacher_temp, "teacher_temp", " such as 0.04")
        check(
            len(student) >= len(teacher) and len(student) >= 2,
            "student views",
            len(student),
            f"at least the {len(teacher)} teacher (global) views, and at least 2",
        )
        teacher = [t.detach().float() for t in teacher]
        targets = [F.softmax((t - self.center) / teacher_temp, dim=-1) for t in teacher]
        log_probs = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student]
        total, pairs = 0.0, 0
        for i, q in enumerate(targets):
            for v, log_p in enumerate(log_probs):
                if v == i:
                    continue
                total = total + (-q * log_p).sum(dim=-1).mean()
                pairs += 1
        self.update_center(torch.cat(teacher))
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """Move ``center`` towards the batch mean of the teacher outputs (all processes).

        Args:
            teacher_output: the teacher's outputs (B, K), all global views stacked.
        """
        batch_center = gather(teacher_output.detach().float()).mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
