"""Heads: projection and prediction heads built from one configurable MLP, and
:class:`CombinedNet` (a trained backbone followed by a downstream head).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .errors import check

_NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": None}


class MLPHead(nn.Sequential):
    """Linear layers of sizes ``dims`` with norm and activation between them.

    The last layer is a plain Linear unless ``last_norm`` is set (SimSiam's projector ends in
    an affine-free BatchNorm; most heads must not, or their outputs collapse to unit variance).

    Args:
        dims: layer sizes, input first (at least two), e.g. ``[512, 2048, 128]``.
        norm: ``"batch"``, ``"layer"`` or ``"none"`` after each hidden Linear.
        last_norm: also normalise the output (without affine parameters).
        activation: the activation class put after each hidden layer.
        bias_before_norm: keep the Linear bias in front of a norm layer (dropped by default,
            since the norm's shift replaces it).

    Raises:
        ConfigError: fewer than two sizes, a non-positive size, or an unknown ``norm``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        norm: str = "batch",
        last_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
        bias_before_norm: bool = False,
    ):
        check(
            len(dims) >= 2 and all(int(d) > 0 for d in dims),
            "dims",
            dims,
            "at least two positive layer sizes, e.g. [512, 2048, 128]",
        )
        check(norm in _NORMS, "norm", norm, f"one of {sorted(_NORMS)}")
        layers: list[nn.Module] = []
        norm_cls = _NORMS[norm]
        n_linear = len(dims) - 1
        for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == n_linear - 1
            with_norm = norm_cls is not None and (not last or last_norm)
            layers.append(nn.Linear(din, dout, bias=bias_before_norm or not with_norm))
            if with_norm:
                layers.append(
                    norm_cls(dout, elementwise_affine=not last)
                    if norm_cls is nn.LayerNorm
                    else norm_cls(dout, affine=not last)
                )
            if not last:
                layers.append(activation())
        super().__init__(*layers)
        self.dims = tuple(int(d) for d in dims)


class CombinedNet(nn.Module):
    """A (pre-trained) backbone followed by a downstream head, e.g. a linear classifier.

    With ``freeze_backbone`` the backbone stays in eval mode and receives no gradients.

    Args:
        backbone: the feature extractor.
        head: the module applied to its features.
        freeze_backbone: turn off the backbone's gradients and keep it in eval mode.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> CombinedNet:
        """As ``nn.Module.train``, except that a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The head's output on the backbone's features (no graph through a frozen backbone)."""
        if self.freeze_backbone:
            with torch.no_grad():
                features = self.backbone(images)
        else:
            features = self.backbone(images)
        return self.head(features)
