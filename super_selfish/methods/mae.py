"""Masked autoencoder (He et al., 2021, "Masked Autoencoders Are Scalable Vision Learners")."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..backbones import VisionTransformer, ViTBlock, sincos_position_embedding
from ..data import Batch
from ..errors import ConfigError, check
from ..losses import MaskedPatchLoss
from ..supervisor import Supervisor
from . import _heads
from .autoencoding import first_view
from .registry import register


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) to (N, L, p*p*C) patch vectors, row-major over the patch grid (the
    order of the ViT's tokens); each vector is (row, column, channel) ordered.
    """
    n, c, h, w = images.shape
    p = patch_size
    patches = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return patches.reshape(n, (h // p) * (w // p), p * p * c)


def random_masking(
    n: int, length: int, mask_ratio: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking of ``int(length * (1 - mask_ratio))`` kept patches.

    Returns ``keep`` (N, K) indices of the visible patches, ``mask`` (N, L) with 1 for masked
    patches, and ``restore`` (N, L), the permutation that puts [visible, masked] tokens back
    in patch order.
    """
    n_keep = max(1, int(length * (1 - mask_ratio)))
    shuffle = torch.rand(n, length, device=device).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    keep = shuffle[:, :n_keep]
    mask = torch.ones(n, length, device=device)
    mask[:, :n_keep] = 0
    return keep, torch.gather(mask, 1, restore), restore


class MAEDecoder(nn.Module):
    """Lightweight transformer decoder: visible tokens plus a shared learned mask token at
    every masked position, sine-cosine positions, ``depth`` blocks, then a linear layer to
    the pixels of each patch.
    """

    def __init__(
        self, encoder_dim: int, patch_pixels: int, dim: int = 128, depth: int = 2, heads: int = 4
    ):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_pixels)
        self.dim = dim

    def forward(
        self, tokens: torch.Tensor, restore: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """``tokens`` (N, 1 + K, D_enc), cls first -> (N, L, patch_pixels) for every patch."""
        x = self.embed(tokens)
        n, length = restore.shape
        masked = self.mask_token.to(x.dtype).expand(n, length - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, self.dim))
        patches = patches + sincos_position_embedding(self.dim, *grid, device=x.device).to(x.dtype)
        x = torch.cat([x[:, :1], patches], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]


@register("mae")
class MAESupervisor(Supervisor):
    """Mask ``mask_ratio`` = 75% of the patches, encode the rest with the ViT, reconstruct.

    The backbone must be a vision transformer: a
    :class:`~super_selfish.backbones.VisionTransformer` (e.g. ``vit-tiny``) or a timm ViT
    (``"timm/vit_tiny_patch16_224?patch_size=4"``); anything else raises :class:`ConfigError`.
    Only the visible 25% of the patches go through the encoder (``encode_visible``). A
    lightweight :class:`MAEDecoder` (``decoder_dim`` 128, ``decoder_depth`` 2,
    ``decoder_heads`` 4; the paper's decoder is wider and deeper for ViT-L) predicts the
    pixels of every patch; the loss is the mean squared error against per-patch normalised
    pixels (``norm_pix=True``) on the masked patches only. Augmentation: ``none`` (the
    paper uses random resized crops and flips; pass ``augment=`` for those). The image size
    must be divisible by the ViT's patch size.

    Heads as arguments: ``decoder`` (None: the :class:`MAEDecoder` above) takes a module of your
    own, called as ``MAEDecoder`` is: ``decoder(visible_tokens, restore, grid)`` returning
    per-patch pixels; it is trained, saved and restored like the built-in one (rebuild with
    ``from_checkpoint(name, decoder=...)``; table in ``docs/methods.md``).
    """

    default_augment = "none"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "vit-tiny",
        *,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix: bool = True,
        decoder: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        check(0 < mask_ratio < 1, "mask_ratio", mask_ratio, "a fraction in (0, 1), e.g. 0.75")
        super().__init__(dataset, backbone, **kwargs)
        vit = self.vit
        check(
            self.image_size % vit.patch_size == 0,
            "image_size",
            self.image_size,
            f"a multiple of the ViT patch size {vit.patch_size}",
        )
        self.mask_ratio = float(mask_ratio)
        channels = self.backbone.in_channels
        self.decoder = _heads.resolve(
            self,
            "decoder",
            decoder,
            lambda: MAEDecoder(
                vit.dim, vit.patch_size**2 * channels, decoder_dim, decoder_depth, decoder_heads
            ),
            "called as MAEDecoder is: (visible tokens, restore, grid) -> per-patch pixels",
        )
        self.criterion = MaskedPatchLoss(normalize_targets=norm_pix)
        self._record_hparams(patch_size=vit.patch_size)  # the backbone's, for the record

    @property
    def vit(self) -> VisionTransformer:
        """The backbone's vision transformer: ours, a timm ViT (``"timm/vit_..."``), or any
        body with ``patch_size``, ``dim``, ``grid`` and ``encode_visible`` like them.
        """
        body = self.backbone.body
        body = getattr(body, "_orig_mod", body)
        if not all(hasattr(body, part) for part in ("patch_size", "dim", "grid", "encode_visible")):
            raise ConfigError(
                f"Invalid backbone={self.backbone.name!r}: MAE needs a vision "
                "transformer (e.g. backbone='vit-tiny', "
                "'timm/vit_tiny_patch16_224' or a backbones.VisionTransformer "
                "module)."
            )
        return body

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted patches (N, L, p*p*C), mask (N, L), 1 = masked) for float images."""
        vit = self.vit
        grid = vit.grid(images)
        keep, mask, restore = random_masking(
            len(images), grid[0] * grid[1], self.mask_ratio, images.device
        )
        tokens = vit.encode_visible(self.backbone.prepare(images), keep)
        return self.decoder(tokens, restore, grid), mask

    def _forward(self, batch: Batch) -> torch.Tensor:
        images = first_view(self, batch.images)
        pred, mask = self.reconstruct(images)
        target = patchify(images, self.vit.patch_size)
        return self.criterion(pred.float(), target, mask)
