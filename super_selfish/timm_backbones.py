"""timm models as backbones: ``backbone="timm/<model>"`` (the ``timm`` extra).

Any name of ``timm.list_models()`` works, built without downloading weights, with its
classifier removed by timm itself (``num_classes=0``), so the features are what timm's own
pooling and head layers give; their size is measured like every backbone's. Options for
``timm.create_model`` can follow the name as a query, ``"timm/vit_tiny_patch16_224?
patch_size=4"``, which keeps a checkpoint's backbone name enough to rebuild it. Vision
transformers get the training ``image_size`` (``img_size``) and accept other sizes too
(``dynamic_img_size``, padded to a multiple of the patch: DINO's local crops);
``patch_size`` passes through. A local weights
file (``.pth``, ``.bin`` or ``.safetensors`` of the timm model) may be loaded with
:func:`from_timm`; timm drops its classifier and adapts the stem to ``in_channels``.
"""

from __future__ import annotations

import ast
import os
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode

import torch
import torch.nn as nn

from .backbones import Backbone, _largest_divisor, replace_batch_norm
from .errors import ConfigError, check, unknown_name
from .extras import require

PREFIX = "timm/"


def parse_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"timm/<model>?key=value&..."`` to (model, options); values are Python literals.

    Args:
        name: a backbone name starting with ``"timm/"``.

    Returns:
        ``(model, options)``; a value that is no Python literal stays a string.
    """
    model, _, query = name[len(PREFIX) :].partition("?")
    options: dict[str, Any] = {}
    for key, text in parse_qsl(query, keep_blank_values=True):
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return model, options


def backbone_name(model: str, options: dict[str, Any]) -> str:
    """The registry name of a timm model built with ``options`` (inverse of :func:`parse_name`).

    Args:
        model: the timm model name.
        options: the ``timm.create_model`` options, written sorted by key.

    Returns:
        ``"timm/<model>"`` with a ``?key=value&...`` query when there are options.
    """
    query = urlencode({k: repr(v) for k, v in sorted(options.items())})
    return PREFIX + model + (f"?{query}" if query else "")


class TimmBody(nn.Module):
    """A timm model without classifier. ``forward`` gives timm's pooled features (its own
    global pooling and head layers); ``feature_map`` the unpooled map of convolutional models,
    for dense methods (CPC, decoders).

    Args:
        model: a timm model created with ``num_classes=0``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model  # a timm model: its own methods and attributes are used

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Timm's pooled, pre-logit features (N, D)."""
        return self.model(images)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The unpooled map (N, C, h, w) of convolutional models, else the pooled features."""
        features = self.model.forward_features(images)
        return (
            features if features.ndim == 4 else self.model.forward_head(features, pre_logits=True)
        )


class TimmViTBody(TimmBody):
    """A timm vision transformer that can also encode a subset of its patches (MAE), like
    :class:`~super_selfish.backbones.VisionTransformer`: ``patch_size``, ``dim``,
    :meth:`grid` and :meth:`encode_visible`.
    """

    @property
    def patch_size(self) -> int:
        """Side of the model's square patches."""
        return int(self.model.patch_embed.patch_size[0])

    @property
    def dim(self) -> int:
        """Token width (timm's ``embed_dim``)."""
        return int(self.model.embed_dim)

    def grid(self, images: torch.Tensor) -> tuple[int, int]:
        """Patch rows and columns of ``images``, after checking that the size fits.

        Args:
            images: batch (N, C, H, W).

        Returns:
            ``(H // patch_size, W // patch_size)``.

        Raises:
            ConfigError: H or W is not a multiple of the patch size.
        """
        height, width = images.shape[-2:]
        p = self.patch_size
        check(
            height % p == 0 and width % p == 0,
            "image size",
            (height, width),
            f"height and width divisible by the ViT patch size {p}",
        )
        return height // p, width // p

    def encode_visible(
        self, images: torch.Tensor, keep: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Encode only the patches ``keep`` ((N, K) indices, row-major), or all when None.

        Position codes are resampled to the input's grid.

        Args:
            images: float batch (N, C, H, W).
            keep: (N, K) indices of the patches to encode; None keeps all of them.

        Returns:
            The normalised tokens (N, 1 + K, dim): the class token first (the mean token for
            models without one; register tokens are left out), then the kept patches.
        """
        from timm.layers import resample_abs_pos_embed

        m = self.model
        grid = self.grid(images)
        tokens = m.patch_embed(images)
        tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
        n_prefix = m.num_prefix_tokens
        prefix = [
            t.expand(len(tokens), -1, -1) for t in (m.cls_token, m.reg_token) if t is not None
        ]
        if m.pos_embed is not None:
            embedded_prefix = 0 if m.no_embed_class else n_prefix
            pos = resample_abs_pos_embed(
                m.pos_embed,
                new_size=grid,
                old_size=m.patch_embed.grid_size,
                num_prefix_tokens=embedded_prefix,
            )
            tokens = tokens + pos[:, embedded_prefix:]
            if embedded_prefix:
                prefix = [torch.cat(prefix, dim=1) + pos[:, :embedded_prefix]]
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        x = torch.cat(prefix + [tokens], dim=1)
        x = m.norm(m.blocks(m.norm_pre(m.pos_drop(x))))
        patches = x[:, n_prefix:]
        cls = x[:, :1] if m.cls_token is not None else patches.mean(dim=1, keepdim=True)
        return torch.cat([cls, patches], dim=1)


def _replace_norm_act(module: nn.Module, norm: str) -> None:
    """Timm's BatchNormAct2d (BatchNorm, dropout, activation in one module) to GroupNorm
    followed by the same dropout and activation.
    """
    from timm.layers import BatchNormAct2d

    for child_name, child in module.named_children():
        if isinstance(child, BatchNormAct2d):
            channels = child.num_features
            groups = 1 if norm == "layer" else _largest_divisor(channels, 32)
            setattr(
                module,
                child_name,
                nn.Sequential(nn.GroupNorm(groups, channels), child.drop, child.act),
            )
        else:
            _replace_norm_act(child, norm)


def create(
    model_name: str,
    *,
    in_channels: int = 3,
    image_size: Optional[int] = None,
    weights: Optional[str | os.PathLike] = None,
    **options: Any,
) -> nn.Module:
    """``timm.create_model`` without classifier and without downloads.

    Vision transformers get ``img_size=image_size``, ``dynamic_img_size=True`` and
    ``dynamic_img_pad=True`` unless ``options`` say otherwise; ``options`` such as
    ``patch_size`` pass through.

    Args:
        model_name: a ``timm.list_models()`` name.
        in_channels: image channels (timm's ``in_chans``).
        image_size: the training image size, for vision transformers; None for none.
        weights: a local weights file to load; None builds random weights.
        **options: more ``timm.create_model`` arguments.

    Returns:
        The timm model.

    Raises:
        MissingExtraError: timm is not installed.
        UnknownNameError: timm has no such model.
        ConfigError: ``weights`` is not a file, or timm refuses the arguments.
    """
    timm = require("timm", "timm", f"backbone='timm/{model_name}'")
    if not timm.is_model(model_name):
        raise unknown_name("timm model", model_name, timm.list_models())
    kwargs: dict[str, Any] = dict(num_classes=0, in_chans=in_channels, **options)
    if weights is not None:
        path = os.fspath(weights)
        check(os.path.isfile(path), "weights", path, "the path of an existing weights file")
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=path))
    else:
        kwargs["pretrained"] = False
    # Transformers: built for the training size, and any other size runs too (DINO's local
    # crops; inputs padded to a multiple of the patch size). Other models take none of these.
    attempts = (
        [
            {"img_size": image_size, "dynamic_img_size": True, "dynamic_img_pad": True},
            {"img_size": image_size},
            {},
        ]
        if image_size
        else [{}]
    )
    for extra in attempts:
        try:
            return timm.create_model(model_name, **{**extra, **kwargs})
        except TypeError as exc:
            if not extra or not any(key in str(exc) for key in extra):
                raise ConfigError(
                    f"timm could not build {model_name!r} with {kwargs}: {exc}"
                ) from exc
    raise AssertionError("unreachable: the last attempt has no extra arguments")


def from_timm(
    model_name: str,
    *,
    weights: Optional[str | os.PathLike] = None,
    in_channels: int = 3,
    image_size: int = 32,
    norm: str = "batch",
    **options: Any,
) -> Backbone:
    """A :class:`~super_selfish.backbones.Backbone` from a timm model.

    Args:
        model_name: a ``timm.list_models()`` name, e.g. ``"resnet18"`` or
            ``"vit_tiny_patch16_224"``.
        weights: a local weights file of that model (timm's state dict), loaded by timm:
            the classifier is dropped and the stem adapted to ``in_channels``. Nothing is
            downloaded.
        in_channels: image channels.
        image_size: the training image size (vision transformers are built for it).
        norm: ``batch`` keeps the model's normalisation; ``group``/``layer`` replace
            BatchNorm layers as for every backbone.
        **options: passed to ``timm.create_model`` (``patch_size=4``, ``drop_path_rate``...)
            and kept in the backbone's name, so that checkpoints can rebuild it.

    Returns:
        The backbone, named ``"timm/<model_name>[?options]"``.

    Raises:
        MissingExtraError: timm is not installed.
        UnknownNameError: timm has no such model.
        ConfigError: ``weights`` is not a file, or timm refuses the options.
    """
    model = create(
        model_name, in_channels=in_channels, image_size=image_size, weights=weights, **options
    )
    if norm != "batch":
        _replace_norm_act(model, norm)
        replace_batch_norm(model, norm)
    from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

    body = TimmViTBody(model) if isinstance(model, TimmVisionTransformer) else TimmBody(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = (cfg.get("mean"), cfg.get("std")) if in_channels == 3 else (None, None)
    if mean is not None and len(mean) != in_channels:
        mean = std = None
    return Backbone(
        body,
        in_channels=in_channels,
        mean=mean,
        std=std,
        name=backbone_name(model_name, options),
        probe_size=image_size,
        norm=norm,
    )


def build(
    name: str, *, norm: str = "batch", in_channels: int = 3, probe_size: int = 32
) -> Backbone:
    """The backbone for a ``"timm/<model>[?options]"`` name (see :func:`parse_name`).

    Args:
        name: the backbone name.
        norm: ``"batch"``, ``"group"`` or ``"layer"``.
        in_channels: image channels.
        probe_size: the training image size.

    Returns:
        The :class:`~super_selfish.backbones.Backbone`.
    """
    model_name, options = parse_name(name)
    return from_timm(
        model_name, in_channels=in_channels, image_size=probe_size, norm=norm, **options
    )
