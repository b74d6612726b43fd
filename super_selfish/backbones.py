"""Backbone registry: networks that map images to feature vectors.

Every backbone is wrapped in :class:`Backbone`, which accepts uint8 images or floats in
[0, 1], normalises them itself and pools spatial maps to vectors. That makes the module that
``Supervisor.get_backbone()`` hands out self-contained: any image batch in, features out.
Feature sizes are measured with a dummy forward pass, never hard-coded, so any input
resolution the network supports works.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.nn as nn
import torchvision

from .errors import check, unknown_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMS = ("batch", "group", "layer")

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(in_channels) -> nn.Module`` (images to maps or vectors) under ``name``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return decorator


def available() -> List[str]:
    """Names accepted by :func:`build`."""
    return sorted(_REGISTRY)


class Backbone(nn.Module):
    """Images (uint8, or float in [0, 1]) to feature vectors of size :attr:`feature_dim`.

    ``body`` may return a spatial map (N, C, h, w), which is average-pooled, or vectors.
    :meth:`feature_map` gives the unpooled output for methods that need it (CPC, decoders).
    """

    def __init__(self, body: nn.Module, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 name: str = "custom", probe_size: int = 32):
        super().__init__()
        self.body = body
        self.name = name
        self.in_channels = in_channels
        if mean is None and in_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels).view(1, -1, 1, 1)
        std = torch.tensor(std if std is not None else [0.25] * in_channels).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.feature_dim, self.map_channels = self._measure(probe_size)

    def _measure(self, size: int) -> tuple[int, int]:
        """Run one dummy batch to learn the feature size (eval mode, state untouched)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            device = next((p.device for p in self.parameters()), torch.device("cpu"))
            probe = torch.zeros(2, self.in_channels, size, size, device=device)
            out = self.feature_map(probe)
            features = self(probe) if self._has_own_map() else self._pool(out)
        self.train(was_training)
        return int(features.shape[1]), int(out.shape[1])

    def _has_own_map(self) -> bool:
        """Whether ``body`` pools itself and gives its map with its own ``feature_map``
        (timm models: their pooling may include head layers)."""
        return callable(getattr(self.body, "feature_map", None))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images to the normalised float input of ``body``."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - self.mean) / self.std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Unpooled body output: (N, C, h, w) for convolutional bodies."""
        if self._has_own_map():
            return self.body.feature_map(self.prepare(images))
        return self.body(self.prepare(images))

    @staticmethod
    def _pool(out: torch.Tensor) -> torch.Tensor:
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._pool(self.body(self.prepare(images)))


def build(backbone: str | nn.Module = "convnet-small", *, norm: str = "batch",
          in_channels: int = 3, probe_size: int = 32) -> Backbone:
    """Return a :class:`Backbone` from a registry name, ``"timm/<model>"`` (any timm model,
    see :mod:`super_selfish.timm_backbones`) or any ``nn.Module``.

    ``norm`` swaps every BatchNorm for GroupNorm (32 groups or fewer) or a real per-sample
    LayerNorm (GroupNorm with one group), which do not leak statistics across a batch.
    """
    check(norm in NORMS, "norm", norm, f"one of {NORMS}")
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, nn.Module):
        body, name = backbone, type(backbone).__name__
    elif isinstance(backbone, str) and backbone.startswith("timm/"):
        from . import timm_backbones  # the timm extra, imported only when asked for

        return timm_backbones.build(backbone, norm=norm, in_channels=in_channels,
                                    probe_size=probe_size)
    elif isinstance(backbone, str):
        if backbone not in _REGISTRY:
            raise unknown_name("backbone", backbone, _REGISTRY)
        body, name = _REGISTRY[backbone](in_channels), backbone
    else:
        raise unknown_name("backbone", backbone, _REGISTRY)
    if norm != "batch":
        replace_batch_norm(body, norm)
    return Backbone(body, in_channels=in_channels, name=name, probe_size=probe_size)


def from_timm(model_name: str, **options: Any) -> Backbone:
    """A :class:`Backbone` from a timm model, optionally with a local ``weights`` file (the
    ``timm`` extra; see :func:`super_selfish.timm_backbones.from_timm`)."""
    from .timm_backbones import from_timm as build_from_timm

    return build_from_timm(model_name, **options)


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap BatchNorm2d layers for GroupNorm (``group``) or one-group GroupNorm (``layer``)."""
    for child_name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            channels = child.num_features
            groups = 1 if norm == "layer" else _largest_divisor(channels, 32)
            setattr(module, child_name, nn.GroupNorm(groups, channels))
        else:
            replace_batch_norm(child, norm)
    return module


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if n % d == 0)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register("convnet-small")
def convnet_small(in_channels: int = 3) -> nn.Module:
    """Four strided 3x3 conv blocks (32-64-128-256): fast enough for CPU tests."""
    widths = (32, 64, 128, 256)
    layers, cin = [], in_channels
    for i, w in enumerate(widths):
        layers.append(_conv_block(cin, w, 1 if i == 0 else 2))
        cin = w
    return nn.Sequential(*layers)


def _torchvision_resnet(arch: str, in_channels: int, cifar_stem: bool = False) -> nn.Module:
    net = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    # Keep the spatial map (drop avgpool/fc) so dense methods can use it; Backbone pools.
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3, net.layer4)


for _arch in ("resnet18", "resnet34", "resnet50"):
    register(_arch)(lambda in_channels=3, _a=_arch: _torchvision_resnet(_a, in_channels))

register("cifar-resnet18")(
    lambda in_channels=3: _torchvision_resnet("resnet18", in_channels, cifar_stem=True))


class _EfficientNetFeatures(nn.Module):
    """efficientnet-pytorch network reduced to its convolutional feature map."""

    def __init__(self, variant: str, in_channels: int):
        super().__init__()
        from efficientnet_pytorch import EfficientNet  # heavy import, only when asked for

        self.net = EfficientNet.from_name(variant, in_channels=in_channels)
        self.net._fc = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images)


for _variant in range(8):
    register(f"efficientnet-b{_variant}")(
        lambda in_channels=3, _v=_variant: _EfficientNetFeatures(f"efficientnet-b{_v}", in_channels))


# ---------------------------------------------------------------------- vision transformer
def sincos_position_embedding(dim: int, grid_h: int, grid_w: int,
                              device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, (grid_h * grid_w, dim), row-major patch order.

    Half of the channels encode the row, half the column, each as sines and cosines of
    geometrically spaced frequencies; computed for any grid, so no interpolation is needed.
    """
    check(dim % 4 == 0, "dim", dim, "a multiple of 4 for 2-D sine-cosine position codes")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float32, device=device),
                                torch.arange(grid_w, dtype=torch.float32, device=device),
                                indexing="ij")
    parts = []
    for pos in (rows.reshape(-1, 1), cols.reshape(-1, 1)):
        angles = pos * freqs.view(1, -1)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)


class ViTBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU MLP, both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        check(dim % heads == 0, "heads", heads, f"a divisor of the width {dim}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length, dim = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).view(n, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(n, length, dim))
        return tokens + self.mlp(self.norm2(tokens))


def _init_transformer_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """A plain ViT (Dosovitskiy et al., 2021) over non-overlapping patches, with a cls token.

    Works at any input size divisible by the patch size: position codes are 2-D sine-cosine
    computed for the input's grid (``pos_embed="sincos"``), or learned on the first grid seen
    and bicubically resized to others (``pos_embed="learned"``). ``patch_size=None`` picks
    4 for inputs up to 64 px and 8 above, on the first forward (the :class:`Backbone` probe at
    the training ``image_size``, i.e. at construction). ``forward`` returns the final cls token
    (``pool="cls"``) or the mean patch token (``pool="mean"``); :meth:`encode_visible` encodes
    only a subset of patches (masked autoencoders).
    """

    def __init__(self, in_channels: int = 3, patch_size: int | None = None, dim: int = 192,
                 depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0,
                 pos_embed: str = "sincos", pool: str = "cls"):
        super().__init__()
        check(patch_size is None or (isinstance(patch_size, int) and patch_size >= 1),
              "patch_size", patch_size, "None (automatic) or a positive int")
        check(isinstance(depth, int) and depth >= 1, "depth", depth, "a positive int")
        check(pos_embed in ("sincos", "learned"), "pos_embed", pos_embed,
              "'sincos' or 'learned'")
        check(pool in ("cls", "mean"), "pool", pool, "'cls' or 'mean'")
        self.in_channels, self.dim, self.pos_kind, self.pool = in_channels, dim, pos_embed, pool
        self.patch_size: int | None = None
        self.patch_embed: nn.Conv2d | None = None
        self.pos_embed: nn.Parameter | None = None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(_init_transformer_weights)
        if patch_size is not None:
            self._build_patch_embed(patch_size, torch.device("cpu"))

    def _build_patch_embed(self, patch_size: int, device: torch.device) -> None:
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(self.in_channels, self.dim, patch_size, patch_size)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        self.patch_embed.to(device)

    def grid(self, images: torch.Tensor) -> tuple[int, int]:
        """The (rows, columns) patch grid of ``images``; checks that the size fits."""
        height, width = images.shape[-2:]
        if self.patch_embed is None:
            self._build_patch_embed(4 if max(height, width) <= 64 else 8, images.device)
        p = self.patch_size
        check(height % p == 0 and width % p == 0, "image size", (height, width),
              f"height and width divisible by the ViT patch size {p}")
        return height // p, width // p

    def _position(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        if self.pos_kind == "sincos":
            return sincos_position_embedding(self.dim, *grid, device=device).unsqueeze(0)
        if self.pos_embed is None:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.dim, *grid, device=device))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        pos = self.pos_embed
        if tuple(pos.shape[-2:]) != tuple(grid):
            pos = torch.nn.functional.interpolate(pos, size=grid, mode="bicubic",
                                                  align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(N, L, dim) patch embeddings with position codes, row-major over the grid."""
        grid = self.grid(images)
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        return tokens + self._position(grid, images.device).to(tokens.dtype)

    def encode_visible(self, images: torch.Tensor, keep: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Encode only the patches ``keep`` ((N, K) indices, row-major), or all when None.

        Returns the normalised tokens (N, 1 + K, dim), the cls token first.
        """
        tokens = self.patch_tokens(images)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # shape[0]: traceable batch
        tokens = torch.cat([cls.to(tokens.dtype), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.encode_visible(images)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)


register("vit-tiny")(lambda in_channels=3: VisionTransformer(in_channels, dim=192, depth=12,
                                                             heads=3))
