"""InfoNCE over a grid of patch codes (Contrastive Predictive Coding, van den Oord et al. 2018;
Hénaff et al. 2019, "Data-Efficient Image Recognition with Contrastive Predictive Coding").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import check


class CPCLoss(nn.Module):
    """Each prediction must pick its true target patch among every patch of the batch.

    ``predictions[s]`` (N, D, H, W) is made from the context at row ``i`` for the target
    ``steps[s]`` rows below (``i + k``, same column). Only rows with a target inside the grid
    are scored. The candidates are all ``N * H * W`` target codes of the batch (other positions
    of the same image and all patches of the other images), scored by a plain dot product
    (no temperature, as in CPC; the method scales its predictions instead). The loss is the
    cross entropy averaged over predictions, then over steps.

    The loss has no parameters: the target projection and the prediction matrices are trained
    modules of the method.

    Args:
        steps: the row offsets predicted, each at least 1.
    """

    def __init__(self, steps: Sequence[int] = (1, 2, 3)):
        super().__init__()
        steps = tuple(int(k) for k in steps)
        check(
            len(steps) > 0 and all(k >= 1 for k in steps),
            "steps",
            steps,
            "a non-empty sequence of positive row offsets, e.g. (1, 2, 3)",
        )
        self.steps = steps

    def forward(self, predictions: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """The InfoNCE loss of the predictions for every step (computed in float32).

        Args:
            predictions: one map (N, D, H, W) per step, in the order of ``steps``.
            targets: the target codes (N, D, H, W).

        Returns:
            The scalar loss.

        Raises:
            ConfigError: the number of maps, their shapes or the grid height do not fit ``steps``.
        """
        check(
            len(predictions) == len(self.steps),
            "predictions",
            len(predictions),
            f"one prediction map per step {self.steps}",
        )
        with torch.autocast(targets.device.type, enabled=False):
            return self._loss(predictions, targets)

    def _loss(self, predictions: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        n, d, h, w = targets.shape
        check(h > max(self.steps), "grid rows", h, f"more than the largest step {max(self.steps)}")
        candidates = targets.permute(0, 2, 3, 1).reshape(-1, d).float()  # (N*H*W, D)
        grid_index = torch.arange(n * h * w, device=targets.device).view(n, h, w)
        losses = []
        for k, pred in zip(self.steps, predictions):
            check(
                pred.shape == targets.shape,
                "prediction shape",
                tuple(pred.shape),
                f"the target shape {tuple(targets.shape)}",
            )
            queries = pred[:, :, : h - k].permute(0, 2, 3, 1).reshape(-1, d).float()
            labels = grid_index[:, k:].reshape(-1)
            losses.append(F.cross_entropy(queries @ candidates.t(), labels))
        return torch.stack(losses).mean()
