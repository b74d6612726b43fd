"""Elastic deformation through the ``elasticdeform`` package (CPU, one image at a time)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

import numpy as np
import torch

from .core import Op, Params, Size


def import_elasticdeform() -> ModuleType:
    """Import elasticdeform, turning the NumPy-2 binary mismatch into an actionable error."""
    try:
        import elasticdeform
    except ImportError as error:
        if "numpy.core.multiarray" in str(error):
            raise ImportError(
                "elasticdeform's compiled extension was built against NumPy 1 and cannot load "
                "under NumPy 2. Rebuild it from source: "
                "pip install --no-binary elasticdeform elasticdeform"
            ) from error
        raise ImportError(
            "The 'elastic' augmentation needs the elasticdeform package: "
            "pip install --no-binary elasticdeform elasticdeform"
        ) from error
    return elasticdeform


@dataclass(frozen=True, kw_only=True, repr=False)
class ElasticDeform(Op):
    """Smooth random warps: random displacements on a coarse grid, spline-interpolated.

    elasticdeform runs on NumPy, so this op copies the chosen images to the CPU, deforms them one
    by one and copies them back to their device: it is the one slow op here, keep ``p`` low.
    ``sigma`` is the std of the displacements as a fraction of the image side (super_selfish used
    10 px at 225 px, about 0.045) and ``points`` the control grid size per side.
    """

    name: ClassVar[str] = "elastic"
    p: float = 0.2
    sigma: float = 0.045
    points: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(
            self.sigma >= 0, "sigma", self.sigma, "a non-negative fraction of the image side"
        )
        self._check(
            isinstance(self.points, int) and self.points >= 2, "points", self.points, "an int >= 2"
        )
        import_elasticdeform()  # fail when the pipeline is built, not in the middle of training

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        shape = (images.shape[0], 2, self.points, self.points)
        return {"displacement": torch.randn(shape, generator=generator) * self.sigma}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        elasticdeform = import_elasticdeform()
        side = torch.tensor(images.shape[-2:], dtype=torch.float64).view(1, 2, 1, 1)
        displacements = (params["displacement"].cpu().double() * side).numpy()
        pixels = images.detach().cpu().numpy()
        deformed = [
            elasticdeform.deform_grid(image, displacement, order=1, mode="mirror", axis=(1, 2))
            for image, displacement in zip(pixels, displacements)
        ]
        return torch.from_numpy(np.stack(deformed)).to(images.device).clamp_(0, 1)
