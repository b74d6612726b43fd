"""Backbone registry: networks that map images to feature vectors.

Every backbone is wrapped in :class:`Backbone`, which accepts uint8 images or floats in
[0, 1], normalises them itself and pools spatial maps to vectors. That makes the module that
``Supervisor.get_backbone()`` hands out self-contained: any image batch in, features out.
Feature sizes are measured with a dummy forward pass, never hard-coded, so any input
resolution the network supports works.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torchvision

from . import console, store, validate
from .augment.ops import IMAGENET_MEAN, IMAGENET_STD  # the one definition (Normalize's too)
from .errors import CheckpointError, DataError, check, unknown_name
from .registry import Registry

NORMS = ("batch", "group", "layer")
BACKBONE_FILE = "backbone"  # the ``kind`` of a file written by :func:`save`
#: Float inputs must lie in [0, 1]; this slack absorbs interpolation overshoot, while 0..255
#: pixels (max >> 1) and mean/std-normalised ones (min around -2) are far outside it.
INPUT_SLACK = 0.1
#: Forward calls in training mode whose value range is checked (every call in eval mode): a
#: wrong input pipeline is wrong from its first batch, and long runs then skip the check.
TRAIN_CALLS_CHECKED = 16
_CHECKED_ELEMENTS = 2**18  # value-range check on a strided sample of about this many

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register(
    name: str, description: Optional[str] = None, *, replace: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(in_channels) -> nn.Module`` (images to maps or vectors) under ``name``.

    Args:
        name: the name :func:`build` accepts.
        description: one line for :func:`describe`; default: the first line of ``fn``'s
            docstring.
        replace: allow replacing a backbone already registered under ``name`` (a clash is
            refused otherwise).

    Returns:
        A decorator that registers ``fn`` and returns it unchanged.
    """
    return BACKBONES.register(name, description, replace=replace)


def available() -> list[str]:
    """Names accepted by :func:`build`.

    Returns:
        The registered backbone names, sorted (``"timm/<model>"`` names are accepted too).
    """
    return BACKBONES.available()


def describe() -> dict[str, str]:
    """Describe every registered backbone.

    Returns:
        ``{backbone name: one-line description}``, sorted by name.
    """
    return BACKBONES.describe()


class Backbone(nn.Module):
    """Images (uint8, or float in [0, 1]) to feature vectors of size :attr:`feature_dim`.

    ``body`` may return a spatial map (N, C, h, w), which is average-pooled, or vectors.
    :meth:`feature_map` gives the unpooled output for methods that need it (CPC, decoders).

    Args:
        body: the network; its output size is measured with a dummy batch at construction.
        in_channels: channels of the input images.
        mean: per-channel mean subtracted from [0, 1] inputs; default: the ImageNet mean for 3
            channels, 0.5 per channel otherwise.
        std: per-channel standard deviation; default: the ImageNet one for 3 channels, 0.25
            per channel otherwise.
        name: the registry name (``"custom"`` for a user module); :func:`save` records it.
        probe_size: side of the dummy batch, i.e. the training image size.
        norm: the normalisation the body was built with (recorded, not applied here).
    """

    def __init__(
        self,
        body: nn.Module,
        in_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str = "custom",
        probe_size: int = 32,
        norm: str = "batch",
    ):
        super().__init__()
        self.body = body
        self.name = name
        self.in_channels = in_channels
        self.norm = norm
        self.probe_size = probe_size
        self._train_calls_checked = 0
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
        (timm models: their pooling may include head layers).
        """
        return callable(getattr(self.body, "feature_map", None))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images to the normalised float input of ``body``.

        Checked first (:meth:`check_input`): a wrong layout, dtype or value range raises
        :class:`DataError` naming the fix instead of giving silently different features.

        Args:
            images: batch (N, C, H, W), uint8 or float in [0, 1].

        Returns:
            Float images normalised with :attr:`mean` and :attr:`std`.

        Raises:
            DataError: see :meth:`check_input`.
        """
        self.check_input(images)
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - self.mean) / self.std

    def check_input(self, images: Any) -> None:
        """Refuse inputs that would silently give wrong features.

        Shape and dtype are checked on every call (free). The value range of float input
        (``[0, 1]`` with :data:`INPUT_SLACK`) is checked on every call in eval mode and on
        the first :data:`TRAIN_CALLS_CHECKED` calls in training mode, on a strided sample of
        at most about 262k values (one min/max reduction), so the training hot path pays
        nothing once a run is under way.

        Args:
            images: the candidate input batch.

        Raises:
            DataError: not a tensor, not 4-D, wrong channel count (or channels last), an
                integer dtype other than uint8, non-finite values, or floats outside [0, 1].
        """
        if not isinstance(images, torch.Tensor):
            raise DataError(
                f"backbone input is a {type(images).__name__}: expected a torch "
                "tensor batch (N, C, H, W) of uint8 or floats in [0, 1]."
            )
        if images.ndim != 4:
            hint = " (one image: add the batch dimension with x[None])" if images.ndim == 3 else ""
            raise DataError(
                f"backbone input has shape {tuple(images.shape)}: expected a "
                f"batch (N, C, H, W) with C = {self.in_channels}{hint}."
            )
        channels = images.shape[1]
        if channels != self.in_channels:
            if images.shape[-1] == self.in_channels:
                raise DataError(
                    f"backbone input has shape {tuple(images.shape)}, channels "
                    f"last (N, H, W, C): expected (N, C, H, W) with C = "
                    f"{self.in_channels}; use x.permute(0, 3, 1, 2)."
                )
            raise DataError(
                f"backbone input has {channels} channels (shape "
                f"{tuple(images.shape)}): this backbone takes {self.in_channels}."
            )
        if images.dtype == torch.uint8:
            return
        if not images.is_floating_point():
            raise DataError(
                f"backbone input has dtype {images.dtype}: expected uint8 (0-255) "
                "or floats in [0, 1]; use x.to(torch.uint8) for 0-255 integers."
            )
        if self.training:
            if self._train_calls_checked >= TRAIN_CALLS_CHECKED:
                return
            self._train_calls_checked += 1
        step = max(1, math.isqrt(images.numel() // _CHECKED_ELEMENTS))
        sample = images[:, :, ::step, ::step] if step > 1 else images
        low, high = (float(v) for v in torch.stack(torch.aminmax(sample.detach())).cpu())
        if low >= -INPUT_SLACK and high <= 1 + INPUT_SLACK:
            return
        if not (math.isfinite(low) and math.isfinite(high)):
            raise DataError("backbone input contains NaN or infinite values.")
        if low < -INPUT_SLACK:
            raise DataError(
                f"backbone input floats lie in [{low:.3g}, {high:.3g}]: they look "
                "normalised already (mean/std). The backbone normalises itself: "
                "pass images in [0, 1] (drop your Normalize step) or uint8."
            )
        raise DataError(
            f"backbone input floats lie in [{low:.3g}, {high:.3g}]: expected "
            "[0, 1]. For 0-255 pixel values divide by 255 (x / 255) or pass uint8; "
            "clamp augmented images to [0, 1]."
        )

    def train(self, mode: bool = True) -> Backbone:
        """As ``nn.Module.train``; entering training mode re-arms the input range check.

        Args:
            mode: True for training mode, False for eval mode.

        Returns:
            This backbone.
        """
        if mode and not self.training:
            self._train_calls_checked = 0
        return super().train(mode)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Unpooled body output: (N, C, h, w) for convolutional bodies.

        Args:
            images: batch (N, C, H, W), uint8 or float in [0, 1].

        Returns:
            The body's output before pooling (vectors for bodies that do not keep a map).
        """
        if self._has_own_map():
            return self.body.feature_map(self.prepare(images))
        return self.body(self.prepare(images))

    @staticmethod
    def _pool(out: torch.Tensor) -> torch.Tensor:
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, :attr:`feature_dim`) of uint8 or [0, 1] float images."""
        return self._pool(self.body(self.prepare(images)))


def build(
    backbone: str | nn.Module = "convnet-small",
    *,
    norm: str = "batch",
    in_channels: int = 3,
    probe_size: int = 32,
) -> Backbone:
    """Return a :class:`Backbone` from a registry name, ``"timm/<model>"`` (any timm model,
    see :mod:`super_selfish.timm_backbones`) or any ``nn.Module``.

    ``norm`` swaps every BatchNorm for GroupNorm (32 groups or fewer) or a real per-sample
    LayerNorm (GroupNorm with one group), which do not leak statistics across a batch. A
    torchvision classification model (``torchvision.models.resnet18()``) loses its
    classifier (:func:`remove_classifier`, with a note), so features are not ImageNet logits.

    Args:
        backbone: a name from :func:`available`, ``"timm/<model>"``, an ``nn.Module`` (a
            :class:`Backbone` is returned unchanged).
        norm: ``"batch"`` (keep BatchNorm), ``"group"`` or ``"layer"``.
        in_channels: channels of the input images (a module given must accept them).
        probe_size: side of the dummy batch that measures the feature size.

    Returns:
        A :class:`Backbone` wrapping the network.

    Raises:
        ConfigError: ``norm`` is not one of :data:`NORMS`.
        UnknownNameError: ``backbone`` is neither a registered name nor a module.
    """
    check(norm in NORMS, "norm", norm, f"one of {NORMS}")
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, nn.Module):
        body, name = backbone, type(backbone).__name__
        if type(body).__module__.startswith("torchvision.models"):
            removed = remove_classifier(body)
            if removed is not None:
                console.info(
                    f"backbone {name} (torchvision): its classifier {removed} was "
                    "replaced by nn.Identity, so features are the network's pooled "
                    "output, not ImageNet class logits."
                )
    elif isinstance(backbone, str) and backbone.startswith("timm/"):
        from . import timm_backbones  # the timm extra, imported only when asked for

        return timm_backbones.build(
            backbone, norm=norm, in_channels=in_channels, probe_size=probe_size
        )
    elif isinstance(backbone, str):
        body, name = BACKBONES.get(backbone)(in_channels), backbone
    else:
        raise unknown_name("backbone", backbone, BACKBONES.available())
    if norm != "batch":
        replace_batch_norm(body, norm)
    return Backbone(body, in_channels=in_channels, name=name, probe_size=probe_size, norm=norm)


_CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "head", "heads")


def _describe_layer(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"Linear {layer.in_features} -> {layer.out_features}"
    if isinstance(layer, nn.Conv2d):
        return f"Conv2d {layer.in_channels} -> {layer.out_channels}"
    return type(layer).__name__


def remove_classifier(model: nn.Module) -> Optional[str]:
    """Turn a classification network into a feature extractor, in place.

    A model with ``reset_classifier`` (timm) gets ``reset_classifier(0)``; otherwise the
    first of the attributes ``fc``, ``classifier``, ``head``, ``heads`` that is a linear or
    1x1-convolution layer, or a ``Sequential`` ending in one, has that last layer replaced by
    ``nn.Identity`` (so VGG keeps its hidden layers, ConvNeXt its final norm). Auxiliary
    classifiers (GoogLeNet, Inception v3) are switched off.

    Args:
        model: the network to change in place.

    Returns:
        What was removed, e.g. ``"fc (Linear 512 -> 1000)"``, or None when nothing was
        recognised.
    """
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):
        head = getattr(model, "get_classifier", lambda: None)()
        reset(0)
        return (
            f"{_describe_layer(head) if isinstance(head, nn.Module) else 'head'} "
            "(reset_classifier(0))"
        )
    if getattr(model, "aux_logits", False):
        model.aux_logits = False  # training-mode outputs stay a plain tensor
    for attribute in _CLASSIFIER_ATTRIBUTES:
        layer = getattr(model, attribute, None)
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            setattr(model, attribute, nn.Identity())
            return f"{attribute} ({_describe_layer(layer)})"
        if isinstance(layer, nn.Sequential):
            names = [n for n, m in layer.named_children() if isinstance(m, (nn.Linear, nn.Conv2d))]
            if names:
                last = getattr(layer, names[-1])
                setattr(layer, names[-1], nn.Identity())
                return f"{attribute}.{names[-1]} ({_describe_layer(last)})"
    return None


def save(
    backbone: nn.Module,
    path: str | os.PathLike,
    *,
    norm: Optional[str] = None,
    probe_size: Optional[int] = None,
    method: Optional[str] = None,
) -> Path:
    """Write a backbone alone to ``path`` (atomically; ``.pt`` is appended when missing).

    Stored: the weights and what rebuilds the module: the registry name, ``norm``,
    ``in_channels`` and the probe size (the training image size), plus the feature size,
    the class of the module and, when given, the method that trained it. Only a backbone
    built from a registry name can be rebuilt from the file alone; for a user-defined module
    the file holds its weights (never pickled code) and :func:`load` needs the module:
    ``load(path, module=MyNet())``.

    Args:
        backbone: a :class:`Backbone` or any ``nn.Module``.
        path: the file to write.
        norm: the normalisation to record; default: the backbone's own (``"batch"``).
        probe_size: the image size to record; default: the backbone's (32).
        method: the name of the method that trained the backbone, recorded when given.

    Returns:
        The path written.
    """
    from . import __version__

    registered = isinstance(backbone, Backbone) and _rebuildable(backbone.name)
    body = backbone.body if isinstance(backbone, Backbone) else backbone
    payload: dict[str, Any] = {
        "format": store.FORMAT,
        "kind": BACKBONE_FILE,
        "library_version": __version__,
        "name": getattr(backbone, "name", type(backbone).__name__),
        "registered": registered,
        "wrapped": isinstance(backbone, Backbone),
        "norm": norm or getattr(backbone, "norm", "batch"),
        "in_channels": int(getattr(backbone, "in_channels", 3)),
        "probe_size": int(probe_size or getattr(backbone, "probe_size", 32)),
        "feature_dim": int(getattr(backbone, "feature_dim", 0) or 0),
        "module": {"module": type(body).__module__, "qualname": type(body).__qualname__},
        "method": method,
        "state": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
    }
    return store.write(payload, path)


def _rebuildable(name: str) -> bool:
    """Whether :func:`build` makes this backbone from its name alone (registry, timm)."""
    return name in BACKBONES or name.startswith("timm/")


def load(path: str | os.PathLike, module: Optional[nn.Module] = None) -> nn.Module:
    """Read a backbone written by :func:`save` (or ``Supervisor.save_backbone``).

    A registry backbone is rebuilt from the file (name, norm, in_channels, probe size); a
    user-defined one needs ``module``: a freshly built module of the same architecture
    (the body alone, or the whole backbone), into which the weights are loaded.

    Args:
        path: the file written by :func:`save` (``.pt`` may be left out).
        module: the module to load the weights into, for a user-defined backbone.

    Returns:
        The backbone on the CPU, in eval mode, ready for ``backbone(images)``.

    Raises:
        CheckpointError: the file is missing, unsafe or broken, is a training checkpoint,
            holds a user-defined backbone and ``module`` is None, or does not fit ``module``.
    """
    payload = store.read(path)
    where = str(store.checkpoint_path(path))
    if payload.get("kind") != BACKBONE_FILE:
        raise CheckpointError(
            f"{where!r} is a training checkpoint, not a backbone file: use "
            "Supervisor.from_checkpoint(name).get_backbone(), or write one "
            "with sup.save_backbone(path)."
        )
    options = {
        "norm": payload["norm"],
        "in_channels": payload["in_channels"],
        "probe_size": payload["probe_size"],
    }
    if module is not None:
        net = (
            build(module, **options)
            if payload.get("wrapped") and not isinstance(module, Backbone)
            else module
        )
    elif payload.get("registered") and _rebuildable(payload["name"]):
        net = build(payload["name"], **options)
    else:
        origin = payload.get("module") or {}
        raise CheckpointError(
            f"{where!r} holds the weights of a user-defined backbone ({payload['name']!r}, "
            f"class {origin.get('module', '?')}.{origin.get('qualname', '?')}); the file "
            "stores weights, not code. Build the same module and pass it: "
            "backbones.load(path, module=MyNet(...))."
        )
    try:
        net.load_state_dict(payload["state"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{where!r} does not fit the module given ({type(net).__name__}; "
            f"saved: {payload['name']!r}, in_channels "
            f"{payload['in_channels']}, norm {payload['norm']!r}): {exc}"
        ) from exc
    return net.eval()


def from_timm(model_name: str, **options: Any) -> Backbone:
    """A :class:`Backbone` from a timm model, optionally with a local ``weights`` file (the
    ``timm`` extra; see :func:`super_selfish.timm_backbones.from_timm`).

    Args:
        model_name: the timm model name.
        **options: passed on to :func:`super_selfish.timm_backbones.from_timm`.

    Returns:
        The timm model wrapped as a :class:`Backbone`.
    """
    from .timm_backbones import from_timm as build_from_timm

    return build_from_timm(model_name, **options)


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap BatchNorm2d layers for GroupNorm (``group``) or one-group GroupNorm (``layer``).

    ``group`` uses the largest divisor of the channel count up to 32 as the group count.

    Args:
        module: the network to change in place.
        norm: ``"group"`` or ``"layer"``.

    Returns:
        ``module``.
    """
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
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


@register("convnet-small")
def convnet_small(in_channels: int = 3) -> nn.Module:
    """Four strided 3x3 conv blocks (32-64-128-256): fast enough for CPU tests.

    Args:
        in_channels: channels of the input images.

    Returns:
        The body: a 256-channel map at 1/8 of the input side.
    """
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
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )


for _arch in ("resnet18", "resnet34", "resnet50"):
    register(_arch, f"torchvision {_arch} (ImageNet stem), randomly initialised")(
        lambda in_channels=3, _a=_arch: _torchvision_resnet(_a, in_channels)
    )

register(
    "cifar-resnet18", "ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) for 32 px images"
)(lambda in_channels=3: _torchvision_resnet("resnet18", in_channels, cifar_stem=True))


class _EfficientNetFeatures(nn.Module):
    """efficientnet-pytorch network reduced to its convolutional feature map."""

    def __init__(self, variant: str, in_channels: int):
        super().__init__()
        from efficientnet_pytorch import EfficientNet  # heavy import, only when asked for

        self.net = EfficientNet.from_name(variant, in_channels=in_channels)
        self.net._fc = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The network's last convolutional feature map."""
        return self.net.extract_features(images)


for _variant in range(8):
    register(
        f"efficientnet-b{_variant}",
        f"EfficientNet-B{_variant} (efficientnet-pytorch) convolutional features",
    )(lambda in_channels=3, _v=_variant: _EfficientNetFeatures(f"efficientnet-b{_v}", in_channels))


# ---------------------------------------------------------------------- vision transformer
def sincos_position_embedding(
    dim: int, grid_h: int, grid_w: int, device: torch.device | None = None
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, (grid_h * grid_w, dim), row-major patch order.

    Half of the channels encode the row, half the column, each as sines and cosines of
    geometrically spaced frequencies; computed for any grid, so no interpolation is needed.

    Args:
        dim: code width, a multiple of 4.
        grid_h: patch rows.
        grid_w: patch columns.
        device: where to create the codes.

    Returns:
        Float tensor (grid_h * grid_w, dim).
    """
    check(dim % 4 == 0, "dim", dim, "a multiple of 4 for 2-D sine-cosine position codes")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float32, device=device),
        torch.arange(grid_w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    parts = []
    for pos in (rows.reshape(-1, 1), cols.reshape(-1, 1)):
        angles = pos * freqs.view(1, -1)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)


class ViTBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU MLP, both residual.

    Args:
        dim: token width.
        heads: attention heads, a divisor of ``dim``.
        mlp_ratio: hidden width of the MLP over ``dim``.
    """

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
        """Tokens (N, L, dim) after attention and MLP, same shape."""
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

    Args:
        in_channels: channels of the input images.
        patch_size: patch side; None picks it from the first input's size.
        dim: token width (192 for ViT-Tiny).
        depth: number of transformer blocks.
        heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``dim``.
        pos_embed: ``"sincos"`` or ``"learned"``.
        pool: ``"cls"`` or ``"mean"``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        patch_size: int | None = None,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
        pool: str = "cls",
    ):
        super().__init__()
        validate.positive_int(patch_size, "patch_size", none="automatic")
        validate.positive_int(depth, "depth")
        check(pos_embed in ("sincos", "learned"), "pos_embed", pos_embed, "'sincos' or 'learned'")
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
        """The (rows, columns) patch grid of ``images``; checks that the size fits.

        Args:
            images: batch (N, C, H, W); its size fixes the patch size when none is set yet.

        Returns:
            ``(H // patch_size, W // patch_size)``.

        Raises:
            ConfigError: H or W is not divisible by the patch size.
        """
        height, width = images.shape[-2:]
        if self.patch_embed is None:
            self._build_patch_embed(4 if max(height, width) <= 64 else 8, images.device)
        p = self.patch_size
        check(
            height % p == 0 and width % p == 0,
            "image size",
            (height, width),
            f"height and width divisible by the ViT patch size {p}",
        )
        return height // p, width // p

    def _position(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        if self.pos_kind == "sincos":
            return sincos_position_embedding(self.dim, *grid, device=device).unsqueeze(0)
        if self.pos_embed is None:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.dim, *grid, device=device))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        pos = self.pos_embed
        if tuple(pos.shape[-2:]) != tuple(grid):
            pos = torch.nn.functional.interpolate(
                pos, size=grid, mode="bicubic", align_corners=False
            )
        return pos.flatten(2).transpose(1, 2)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(N, L, dim) patch embeddings with position codes, row-major over the grid.

        Args:
            images: float batch (N, C, H, W).

        Returns:
            The embedded patches plus position codes.
        """
        grid = self.grid(images)
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        return tokens + self._position(grid, images.device).to(tokens.dtype)

    def encode_visible(
        self, images: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode only the patches ``keep`` ((N, K) indices, row-major), or all when None.

        Args:
            images: float batch (N, C, H, W).
            keep: (N, K) indices of the patches to encode; None encodes all L patches.

        Returns:
            The normalised tokens (N, 1 + K, dim), the cls token first.
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
        """One vector (N, dim) per image: the cls token or the mean patch token."""
        tokens = self.encode_visible(images)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)


register("vit-tiny", "ViT-Tiny (192-d, 12 blocks, 3 heads) for MAE and other token methods")(
    lambda in_channels=3: VisionTransformer(in_channels, dim=192, depth=12, heads=3)
)
