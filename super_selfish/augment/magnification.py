"""Cortical magnification: sample densely around a fixation and ever more sparsely beyond it.

Each output pixel at eccentricity r (output pixels from the output centre) reads the source at
``fixation + coef * f(r) * direction``. ``f`` is the identity inside the fovea and grows faster
outside, so the centre of the view is magnified relative to its periphery, like the primate
retina-to-cortex map. All images of a batch are resampled by one ``grid_sample`` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import unknown_name
from .core import Params, Size, as_range, uniform
from .fixation import FixationOp

RADIAL_FORMS = ("radial_quad", "radial_exp")


@lru_cache(maxsize=32)
def eccentricity_grid(
    height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output pixel-centre offsets from the output centre, (h, w, 2) as (x, y), and their norm r.

    Centres sit at half-integers -w/2 + 0.5 ... w/2 - 0.5, so odd and even sizes are both exact.
    """
    x = torch.arange(width, device=device) + 0.5 - width / 2
    y = torch.arange(height, device=device) + 0.5 - height / 2
    offsets = torch.stack([x.expand(height, width), y[:, None].expand(height, width)], dim=-1)
    return offsets, offsets.norm(dim=-1)


def radial_quad(r: torch.Tensor, fov: float, K: float) -> torch.Tensor:
    """Identity within ``fov``, then quadratic with slope (r + K) / (fov + K): C1 at ``fov``."""
    outside = (r + K) ** 2 / (2 * (fov + K)) + fov - (fov + K) / 2
    return torch.where(r < fov, r, outside)


@lru_cache(maxsize=32)
def quadratic_field(
    height: int, width: int, fov: float, K: float, device: torch.device
) -> tuple[torch.Tensor, float]:
    """``f(r) * direction`` on the output grid for radial_quad, and f at the output's corner.

    It depends only on the output size and the parameters, so it is computed once and reused.
    """
    offsets, r = eccentricity_grid(height, width, device)
    stretch = torch.where(r > 0, radial_quad(r, fov, K) / r.clamp_min(1e-12), 1.0)
    corner = radial_quad(torch.tensor(math.hypot(height / 2, width / 2)), fov, K).item()
    return offsets * stretch[..., None], corner


@dataclass(frozen=True, kw_only=True, repr=False)
class Magnification(FixationOp):
    """Resample each image around its fixation with a cortical-magnification warp.

    ``fov`` (fovea radius) and ``K`` (the constant of the magnification law) are output pixels of
    a ``reference_size`` image, as is the fixation ``border``; they scale with the output's shorter
    side. ``cover_ratio`` c (drawn per image) sets the zoom: the output corners read the source at
    sqrt(c) times the distance from the fixation to its farthest corner, so c is the covered
    fraction of that disc and plays the role of a crop's ``scale``; c > 1 zooms out (black fill).
    ``form="radial_exp"`` uses f(r) = (exp(s r / R) - 1) / s instead, with s = ``slope_C``.
    """

    name: ClassVar[str] = "magnification"
    resamples: ClassVar[bool] = True
    border: float = 16.0
    fov: float = 20.0
    K: float = 20.0
    cover_ratio: tuple[float, float] = (0.05, 0.7)
    form: str = "radial_quad"
    slope_C: tuple[float, float] = (1.5, 1.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in RADIAL_FORMS:
            raise unknown_name("magnification form", self.form, RADIAL_FORMS)
        self._check(self.fov > 0, "fov", self.fov, "a positive fovea radius in reference pixels")
        self._check(
            self.fov + self.K > 0, "K", self.K, f"a constant with fov + K > 0 (fov={self.fov})"
        )
        self._set(
            "cover_ratio", as_range(self.cover_ratio, f"{type(self).__name__}.cover_ratio", 1e-6)
        )
        self._set("slope_C", as_range(self.slope_C, f"{type(self).__name__}.slope_C", 1e-6))

    def shown_fields(self) -> list[str]:
        unused = {"slope_C"} if self.form == "radial_quad" else {"fov", "K"}
        return [name for name in super().shown_fields() if name not in unused]

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        n = images.shape[0]
        params = {
            "fixation": self.sample_fixations(images, generator),
            "cover": uniform(n, self.cover_ratio, generator),
        }
        if self.form == "radial_exp":
            params["slope"] = uniform(n, self.slope_C, generator)
        return params

    def sampling_grid(
        self, params: Params, source_size: Size, size: Size, device: torch.device
    ) -> torch.Tensor:
        """The (N, h, w, 2) ``grid_sample`` grid (align_corners=False) for output ``size``."""
        source_height, source_width = source_size
        height, width = size
        fixation = params["fixation"]
        to_pixels = torch.tensor([source_width / 2, source_height / 2], device=device)
        fixation_px = (fixation + 1) * to_pixels
        farthest = torch.maximum(fixation_px, 2 * to_pixels - fixation_px).norm(dim=1)
        if self.form == "radial_quad":
            scale = min(height, width) / self.reference_size
            field, corner = quadratic_field(height, width, self.fov * scale, self.K * scale, device)
            field = (field / to_pixels)[None]  # normalised, still one (h, w, 2) map for the batch
        else:
            offsets, r = eccentricity_grid(height, width, device)
            slope = params["slope"].view(-1, 1, 1)
            radius = math.hypot(height / 2, width / 2)
            stretch = torch.expm1(slope * r / radius) / (slope * r.clamp_min(1e-12))  # f(r) / r
            field = (offsets / to_pixels) * stretch[..., None]
            corner = torch.expm1(params["slope"]) / params["slope"]
        coef = farthest / corner * params["cover"].sqrt()
        return torch.addcmul(fixation.view(-1, 1, 1, 2), coef.view(-1, 1, 1, 1), field)

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        grid = self.sampling_grid(params, tuple(images.shape[-2:]), size, images.device)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def marked_fixations(self, params: Params) -> torch.Tensor | None:
        # The fixation always lands on the output centre.
        return torch.zeros_like(params["fixation"])
