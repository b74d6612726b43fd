"""Deployable backbones: TorchScript and ONNX files, checked against the live network.

:meth:`Supervisor.export_backbone <super_selfish.supervisor.Supervisor.export_backbone>`
calls :func:`export_backbone`. The exported network is the whole
:class:`~super_selfish.backbones.Backbone`: float images in [0, 1] (N, C, H, W) in, feature
vectors out, normalisation included, in eval mode (BatchNorm uses its running statistics).
The batch dimension is dynamic; height and width are the training ``image_size``. Every
export is reloaded (``torch.jit.load``, or an ``onnxruntime`` session) and its output
compared with the live backbone's on a batch of another size; a mismatch raises
:class:`ExportError` and removes the file.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import validate
from .errors import SuperSelfishError, check
from .extras import require

FORMATS = ("torchscript", "onnx")


class ExportError(SuperSelfishError, RuntimeError):
    """The exported file does not reproduce the live backbone."""


@dataclass(frozen=True)
class Exported:
    """Where a backbone was written and how closely the reloaded file matches it.

    Attributes:
        path: the file written.
        format: ``"torchscript"`` or ``"onnx"``.
        max_abs_diff: largest absolute feature difference between the reloaded file and the
            live backbone on the check batch.
        feature_dim: size of the feature vectors.
    """

    path: str
    format: str
    max_abs_diff: float
    feature_dim: int


def export_backbone(
    backbone: nn.Module,
    path: str | os.PathLike,
    format: str = "torchscript",
    *,
    image_size: int,
    in_channels: int = 3,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> Exported:
    """Write ``backbone`` as TorchScript (``.pt``) or ONNX (``.onnx``) and check the file.

    Args:
        backbone: images (N, ``in_channels``, ``image_size``, ``image_size``) to features.
        path: the file to write (folders are created).
        format: ``"torchscript"`` (``torch.jit.trace``) or ``"onnx"`` (``torch.onnx.export``;
            the ``onnx`` extra: onnx, onnxscript and onnxruntime, which runs the check).
        image_size: height and width of the exported input.
        in_channels: channels of the exported input.
        atol: absolute tolerance of the check (float32 kernels differ between runtimes).
        rtol: relative tolerance of the check.

    Returns:
        :class:`Exported` with the path and the largest difference seen.

    Raises:
        ConfigError: ``format`` or ``image_size`` is invalid.
        MissingExtraError: ONNX export without the ``onnx`` extra installed.
        ExportError: the reloaded file's features differ from the live backbone's beyond the
            tolerance (the file is removed).
    """
    check(format in FORMATS, "format", format, f"one of {FORMATS}")
    validate.positive_int(image_size, "image_size", " (pixels)")
    live = copy.deepcopy(backbone).cpu().eval()
    if callable(getattr(live, "check_input", None)):
        # The copy skips Backbone's input checks: their Python branches on tensor values
        # cannot be traced or exported (they would be frozen in, or stop torch.export).
        live.check_input = lambda images: None
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, in_channels, image_size, image_size, generator=generator)
    check_batch = torch.rand(3, in_channels, image_size, image_size, generator=generator)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = live(check_batch)
        run = (_torchscript if format == "torchscript" else _onnx)(live, example, target)
        got = run(check_batch)
    same_shape = got.shape == expected.shape
    diff = float((got - expected).abs().max()) if same_shape else float("inf")
    if not (same_shape and torch.allclose(got, expected, atol=atol, rtol=rtol)):
        target.unlink(missing_ok=True)
        raise ExportError(
            f"The {format} export of the backbone does not reproduce it: features "
            f"{tuple(got.shape)} vs {tuple(expected.shape)}, largest difference "
            f"{diff:.3g} (atol={atol}, rtol={rtol}); {str(target)!r} was removed. "
            "Networks with data-dependent Python control flow may not trace; "
            "try the other format."
        )
    return Exported(str(target), format, diff, int(expected.shape[1]))


def _torchscript(
    live: nn.Module, example: torch.Tensor, target: Path
) -> Callable[[torch.Tensor], torch.Tensor]:
    traced = torch.jit.trace(live, example, check_trace=False)
    traced.save(str(target))
    loaded = torch.jit.load(str(target), map_location="cpu")
    return loaded


def _onnx(
    live: nn.Module, example: torch.Tensor, target: Path
) -> Callable[[torch.Tensor], torch.Tensor]:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "onnx", "export_backbone(format='onnx')")
    import onnxruntime

    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its passes
        torch.onnx.export(
            live,
            (example,),
            str(target),
            input_names=["images"],
            output_names=["features"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            dynamo=True,
        )
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])

    return run
